"""marsctl compare PAIRS: strategies side by side with paired statistics, tables and plots."""

from __future__ import annotations

import typer

from marsctl.cli.common import (
    alias,
    alpha_option,
    alpha_scale_option,
    comma_list,
    config_option,
    default_of,
    handle_errors,
    merged,
    merged_params,
    param_option,
    selector_params,
)
from marsctl.cli.inputs import format_option, pairs_argument, read_input, split_option


def register(app: typer.Typer) -> None:
    """Add the command."""
    from marsctl.config import CompareConfig as C

    shared = default_of(C, "refine")  # the refine settings every run shares, with compare's defaults

    @app.command("compare")
    @handle_errors
    def compare_cmd(
        pairs: str = pairs_argument("Preference pairs", ...),
        fmt: str = format_option(),
        split: str = split_option(),
        heldout: str = typer.Option(None, "--eval", help="A fixed held-out file (else a grouped split per seed)."),
        heldout_alias: str = alias("--heldout"),
        test_frac: float = config_option(C, "test_frac"),
        strategies: str = config_option(C, "strategies"),
        seeds: int = config_option(C, "seeds"),
        budget: int = config_option(shared, "budget"),
        rounds: int = config_option(shared, "rounds", low=1),  # compare needs a round to compare
        head: str = config_option(shared, "head"),
        epochs: int = config_option(shared, "epochs"),
        backend: str = config_option(shared, "backend"),
        protocols: str = config_option(C, "protocols"),
        alpha: float = alpha_option(),
        alpha_scale: str = alpha_scale_option(),
        cap: int = config_option(shared, "cap"),
        crossfit: int = config_option(shared, "crossfit"),
        noise: str = config_option(shared, "noise"),
        noise_threshold: float = config_option(shared, "noise_threshold"),
        noise_folds: int = config_option(shared, "noise_folds"),
        guard: bool = config_option(shared, "guard"),
        mix_uniform: float = config_option(shared, "mix_uniform"),
        out: str = typer.Option("runs/compare", "--out", help="Output directory (resumable)."),
        head_param: list[str] = param_option("head", short=True),
        head_param_alias: list[str] = alias("--param"),
        selector_param: list[str] = param_option("selector"),
        augment_param: list[str] = param_option("augmenter"),
    ) -> None:
        """Run several selection strategies on the same split, pool and seeds; paired Δ with CIs, plots."""
        import dataclasses

        from marsctl.outputs import check_run_dir
        from marsctl.records import read_pairs
        from marsctl.runs import Compare
        from marsctl.store import usable_cache_dir

        heldout = merged(heldout, heldout_alias, "--eval", "--heldout")
        refine = dataclasses.replace(shared, budget=budget, rounds=rounds, head=head, epochs=epochs, backend=backend,
                                     head_params=merged_params(head_param, head_param_alias),
                                     selector_params=selector_params(selector_param, alpha, alpha_scale),
                                     augment_params=list(augment_param or []), cap=cap, crossfit=crossfit,
                                     guard=guard, mix_uniform=mix_uniform, noise=noise, noise_threshold=noise_threshold,
                                     noise_folds=noise_folds)
        cfg = C(strategies=comma_list(strategies), seeds=seeds, protocols=comma_list(protocols), test_frac=test_frac,
                refine=refine)
        check_run_dir(out, [pairs, heldout], marker="compare.json")
        records, name = read_input(pairs, format=fmt, split=split)
        held = read_pairs(heldout) if heldout else None
        usable_cache_dir()  # a bad MARSCTL_CACHE_DIR is refused before the output folder is written
        Compare(records, out, cfg, heldout=held, input_name=name, heldout_name=heldout).run()
