"""marsctl select SCORED --strategy S --budget B."""

from __future__ import annotations

import typer

from marsctl.cli.common import (
    alias,
    alpha_option,
    alpha_scale_option,
    bounded,
    config_option,
    handle_errors,
    merged_params,
    output_option,
    param_option,
    seed_option,
    selector_params,
)
from marsctl.cli.inputs import format_option, input_file, split_option
from marsctl.params import MAX_PAIR_BUDGET


def register(app: typer.Typer) -> None:
    """Add the command."""
    from marsctl.config import RefineConfig

    @app.command("select")
    @handle_errors
    def select_cmd(
        scored: str = typer.Argument("-", help="Scored pairs (from 'marsctl score') or '-'."),
        fmt: str = format_option(),
        split: str = split_option(),
        budget: int = typer.Option(..., "--budget", "-b", help="Synthetic pairs to allocate in total."),
        strategy: str = config_option(RefineConfig, "strategy"),
        alpha: float = alpha_option(),
        alpha_scale: str = alpha_scale_option(),
        seed: int = seed_option("Seed for the tie-breaking draw."),
        cap: int = bounded(None, "--cap", low=1, high=MAX_PAIR_BUDGET,
                           help="At most this many rows per pair (e.g. the pool size, 25)."),
        mix: float = config_option(RefineConfig, "mix_uniform"),
        output: str = output_option(),
        param: list[str] = param_option("selector", short=True),
        param_alias: list[str] = alias("--param"),
    ) -> None:
        """Allocate an integer augmentation budget over scored pairs (adds 'budget'; Σ = B exactly)."""
        from marsctl import augmentation
        from marsctl.lengths import slim_row
        from marsctl.outputs import check_file_output
        from marsctl.records import iter_pairs, record_writer

        check_file_output(output, [scored], records=True)
        params = selector_params(merged_params(param, param_alias), alpha, alpha_scale)
        with input_file(scored, format=fmt, split=split) as (src, name):
            # Two passes: the allocation needs every margin, but not the texts, which are read again to write.
            slim = [slim_row(r) for r in iter_pairs(src, name=name, announce=True)]
            rows, summary = augmentation.select(slim, strategy=strategy, budget=budget, params=params, seed=seed,
                                                cap=cap, mix=mix, name=name)
            with record_writer(output) as write:
                for rec, row in zip(iter_pairs(src, name=name), rows, strict=True):
                    write(augmentation.with_texts(row, rec))
        print_summary(summary)


def print_summary(s: dict) -> None:
    """The selection diagnostics on stderr."""
    from marsctl import ui

    def f(key: str, spec: str = "") -> str:
        return "n/a" if s.get(key) is None else format(s[key], spec)  # diagnostics may be None, never NaN

    alpha = f", α_eff={f('alpha_eff')}" if "alpha_eff" in s else ""
    ui.info(
        f"select {s['strategy']}{alpha}: budget {s['budget']} over {s['pairs']} pairs; "
        f"{s['pairs_selected']} pairs get ≥1, largest b_i={s['max_budget']}, ESS={f('ess')}, "
        f"share of budget on Δ<0: {s['share_negative_margin']:.3f}, std(Δ)={f('margin_std', '.4f')}, "
        f"mean σ'(Δ)={f('curvature_weight', '.4f')}; "
        f"P(chosen longer) selected {s['p_chosen_longer_selected']:.3f} vs all {s['p_chosen_longer_all']:.3f}"
    )
