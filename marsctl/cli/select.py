"""marsctl select SCORED --strategy S --budget B."""

from __future__ import annotations

import typer

from marsctl.cli.common import PARAM_HELP, handle_errors, read_input

STRATEGY_HELP = (
    "Selector: mars-abs (v1: softmax(−α|Δ|), ambiguous pairs), mars (v2, signed: softmax(−αΔ); measured "
    "caveat: on noisy labels it favours likely label noise), mars-robust (|Δ| with pairs below −floor·std(Δ) "
    "skipped), uniform (the paper's baseline), won (West-of-N: equal share, keep each pool's highest-margin "
    "rows), or a plugin."
)


def register(app: typer.Typer) -> None:
    """Add the command."""

    @app.command("select")
    @handle_errors
    def select_cmd(
        scored: str = typer.Argument("-", help="Scored pairs (from 'marsctl score') or '-'."),
        budget: int = typer.Option(..., "--budget", "-b", help="Synthetic pairs to allocate in total."),
        strategy: str = typer.Option("mars-abs", "--strategy", "-s", help=STRATEGY_HELP),
        alpha: float = typer.Option(None, "--alpha", help="Softmax sharpness α for mars/mars-abs (0.5)."),
        alpha_scale: str = typer.Option(None, "--alpha-scale",
                                        help="none | std: α_eff = α / std(Δ) (scale-free)."),
        seed: int = typer.Option(0, "--seed", help="Seed for the tie-breaking draw."),
        cap: int = typer.Option(None, "--cap", help="At most this many rows per pair (e.g. the pool size, 25)."),
        mix: float = typer.Option(0.0, "--mix-uniform", help="Blend q with uniform: (1−λ)q + λ/n."),
        output: str = typer.Option("-", "-o", "--output", help="Output JSONL, or '-' for stdout."),
        param: list[str] = typer.Option(None, "-p", "--param", help=PARAM_HELP),
    ) -> None:
        """Allocate an integer augmentation budget over scored pairs (adds 'budget'; Σ = B exactly)."""
        from marsctl import steps
        from marsctl.outputs import check_file_output
        from marsctl.records import write_records

        check_file_output(output, [scored])
        params = selector_params(param, alpha, alpha_scale)
        records, name = read_input(scored)
        rows, summary = steps.select(records, strategy=strategy, budget=budget, params=params, seed=seed,
                                     cap=cap, mix=mix, name=name)
        write_records(rows, output)
        print_summary(summary)


def selector_params(param: list[str] | None, alpha: float | None, alpha_scale: str | None) -> list[str]:
    """Fold --alpha/--alpha-scale into key=value parameters."""
    params = list(param or [])
    if alpha is not None:
        params.append(f"alpha={alpha}")
    if alpha_scale is not None:
        params.append(f"alpha_scale={alpha_scale}")
    return params


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
