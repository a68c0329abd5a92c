"""marsctl compare PAIRS: strategies side by side with paired statistics, tables and plots."""

from __future__ import annotations

import typer

from marsctl.checks import MAX_PAIR_BUDGET
from marsctl.cli.common import (
    alias,
    alpha_option,
    alpha_scale_option,
    default_of,
    format_option,
    handle_errors,
    help_of,
    merged,
    merged_params,
    option_from,
    param_option,
    read_input,
    selector_params,
    split_option,
)
from marsctl.params import MAX_EPOCHS, MAX_ROUNDS, MAX_SEEDS


def _list(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def register(app: typer.Typer) -> None:
    """Add the command."""
    from marsctl.config import CompareConfig as C

    shared = default_of(C, "refine")  # the refine settings every run shares, with compare's defaults

    @app.command("compare")
    @handle_errors
    def compare_cmd(
        pairs: str = typer.Argument(..., help="Preference pairs (JSONL)."),
        fmt: str = format_option(),
        split: str = split_option(),
        heldout: str = typer.Option(None, "--eval", help="A fixed held-out file (else a grouped split per seed)."),
        heldout_alias: str = alias("--heldout"),
        test_frac: float = option_from(C, "test_frac", "--test-frac"),
        strategies: str = typer.Option(",".join(default_of(C, "strategies")), "--strategies",
                                       help=help_of(C, "strategies")),
        seeds: int = option_from(C, "seeds", "--seeds", low=1, high=MAX_SEEDS),
        budget: int = option_from(shared, "budget", "--budget", "-b"),
        rounds: int = option_from(shared, "rounds", "--rounds", "-r", low=1, high=MAX_ROUNDS),
        head: str = option_from(shared, "head", "--head"),
        epochs: int = option_from(shared, "epochs", "--epochs", low=0, high=MAX_EPOCHS),
        backend: str = option_from(shared, "backend", "--backend"),
        protocols: str = typer.Option(",".join(default_of(C, "protocols")), "--protocols",
                                      help=help_of(C, "protocols")),
        alpha: float = alpha_option(),
        alpha_scale: str = alpha_scale_option(),
        cap: int = option_from(shared, "cap", "--cap", low=1, high=MAX_PAIR_BUDGET),
        crossfit: int = option_from(shared, "crossfit", "--crossfit"),
        noise: str = option_from(shared, "noise", "--noise"),
        noise_threshold: float = option_from(shared, "noise_threshold", "--noise-threshold"),
        noise_folds: int = option_from(shared, "noise_folds", "--noise-folds"),
        guard: bool = option_from(shared, "guard", "--guard"),
        mix: float = option_from(shared, "mix_uniform", "--mix-uniform"),
        out: str = typer.Option("runs/compare", "--out", help="Output directory (resumable)."),
        head_param: list[str] = param_option("head", short=True),
        head_param_alias: list[str] = alias("--param"),
        selector_param: list[str] = param_option("selector"),
        augment_param: list[str] = param_option("augmenter"),
    ) -> None:
        """Run several selection strategies on the same split, pool and seeds; paired Δ with CIs, plots."""
        import dataclasses

        from marsctl.compare import Compare
        from marsctl.outputs import check_run_dir
        from marsctl.records import read_pairs
        from marsctl.store import usable_cache_dir

        heldout = merged(heldout, heldout_alias, "--eval", "--heldout")
        refine = dataclasses.replace(shared, budget=budget, rounds=rounds, head=head, epochs=epochs, backend=backend,
                                     head_params=merged_params(head_param, head_param_alias),
                                     selector_params=selector_params(selector_param, alpha, alpha_scale),
                                     augment_params=list(augment_param or []), cap=cap, crossfit=crossfit,
                                     guard=guard, mix_uniform=mix, noise=noise, noise_threshold=noise_threshold,
                                     noise_folds=noise_folds)
        cfg = C(strategies=_list(strategies), seeds=seeds, protocols=_list(protocols), test_frac=test_frac,
                refine=refine)
        check_run_dir(out, [pairs, heldout], marker="compare.json")
        records, name = read_input(pairs, format=fmt, split=split)
        held = read_pairs(heldout) if heldout else None
        usable_cache_dir()  # a bad MARSCTL_CACHE_DIR is refused before the output folder is written
        Compare(records, out, cfg, heldout=held, input_name=name, heldout_name=heldout).run()
