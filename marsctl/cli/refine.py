"""marsctl refine PAIRS --rounds R."""

from __future__ import annotations

import typer

from marsctl.cli.common import (
    alias,
    alpha_option,
    alpha_scale_option,
    config_option,
    handle_errors,
    merged,
    merged_params,
    param_option,
    selector_params,
    semantic_option,
    tries_option,
)
from marsctl.cli.inputs import format_option, pairs_argument, read_input, split_option


def register(app: typer.Typer) -> None:
    """Add the command."""
    from marsctl.config import RefineConfig as C

    @app.command("refine")
    @handle_errors
    def refine_cmd(
        pairs: str = pairs_argument("Base (human) preference pairs", ...),
        fmt: str = format_option(),
        split: str = split_option(),
        rounds: int = config_option(C, "rounds"),
        budget: int = config_option(C, "budget"),
        strategy: str = config_option(C, "strategy"),
        alpha: float = alpha_option(),
        alpha_scale: str = alpha_scale_option(),
        head: str = config_option(C, "head"),
        epochs: int = config_option(C, "epochs"),
        backend: str = config_option(C, "backend"),
        heldout: str = typer.Option(None, "--eval", help="Held-out pairs evaluated after every round."),
        heldout_alias: str = alias("--heldout"),
        out: str = typer.Option("runs/refine", "--out", help="Run directory."),
        resume: bool = typer.Option(False, "--resume", help="Continue after the last finished round."),
        merge: str = config_option(C, "merge"),
        seed: int = config_option(C, "seed"),
        cap: int = config_option(C, "cap"),
        mix_uniform: float = config_option(C, "mix_uniform"),
        match_steps: bool = config_option(C, "match_steps"),
        crossfit: int = config_option(C, "crossfit"),
        noise: str = config_option(C, "noise"),
        noise_threshold: float = config_option(C, "noise_threshold"),
        noise_folds: int = config_option(C, "noise_folds"),
        guard: bool = config_option(C, "guard"),
        semantic: bool = semantic_option(),
        tries: int = tries_option(),
        head_param: list[str] = param_option("head", short=True),
        head_param_alias: list[str] = alias("--param"),
        selector_param: list[str] = param_option("selector"),
        selector_param_alias: list[str] = alias("--select-param"),
        augment_param: list[str] = param_option("augmenter"),
    ) -> None:
        """Run the MARS loop: train on base pairs, then R × (score → select → augment → retrain)."""
        from marsctl.outputs import check_run_dir
        from marsctl.records import read_pairs
        from marsctl.runs import RefineRun
        from marsctl.store import usable_cache_dir

        heldout = merged(heldout, heldout_alias, "--eval", "--heldout")
        config = C(rounds=rounds, budget=budget, strategy=strategy,
                   selector_params=selector_params(merged_params(selector_param, selector_param_alias), alpha,
                                                   alpha_scale),
                   head=head, head_params=merged_params(head_param, head_param_alias), epochs=epochs,
                   backend=backend, augment_params=list(augment_param or []), merge=merge, seed=seed, cap=cap,
                   mix_uniform=mix_uniform, match_steps=match_steps, crossfit=crossfit, guard=guard,
                   semantic_tries=tries if semantic else 0, noise=noise, noise_threshold=noise_threshold,
                   noise_folds=noise_folds)
        check_run_dir(out, [pairs, heldout])
        records, name = read_input(pairs, format=fmt, split=split)
        held = read_pairs(heldout) if heldout else None
        if held is not None:
            _leak_check(records, held, heldout)
        usable_cache_dir()  # a bad MARSCTL_CACHE_DIR is refused before the run folder is written
        RefineRun(records, out, config, heldout=held, input_name=name, heldout_name=heldout).run(resume=resume)


def _leak_check(train: list[dict], held: list[dict], name: str) -> None:
    from marsctl import ui

    seen = {(r["prompt"], r["chosen"], r["rejected"]) for r in train}
    same = sum(1 for r in held if (r["prompt"], r["chosen"], r["rejected"]) in seen)
    prompts = {r["prompt"] for r in train}
    shared = sum(1 for r in held if r["prompt"] in prompts)
    if same:
        ui.warn(f"{same} pairs of {name} also occur in the training pairs: held-out accuracy is optimistic")
    elif shared:
        ui.warn(f"{shared} pairs of {name} share their prompt with a training pair")
