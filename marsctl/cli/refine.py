"""marsctl refine PAIRS --rounds R."""

from __future__ import annotations

import typer

from marsctl.cli.common import handle_errors, read_input
from marsctl.cli.select import STRATEGY_HELP, selector_params


def register(app: typer.Typer) -> None:
    """Add the command."""

    @app.command("refine")
    @handle_errors
    def refine_cmd(
        pairs: str = typer.Argument(..., help="Base (human) preference pairs, JSONL."),
        rounds: int = typer.Option(3, "--rounds", "-r", help="Augmentation rounds after round 0."),
        budget: int = typer.Option(None, "--budget", "-b",
                                   help="Synthetic pairs per round (default: as many as base pairs)."),
        strategy: str = typer.Option("mars-abs", "--strategy", "-s", help=STRATEGY_HELP),
        alpha: float = typer.Option(None, "--alpha", help="Softmax sharpness α (0.5)."),
        alpha_scale: str = typer.Option(None, "--alpha-scale", help="none | std."),
        head: str = typer.Option("mlp", "--head", help="Reward head plugin."),
        epochs: int = typer.Option(None, "--epochs", help="Epochs per round (default: the head's)."),
        backend: str = typer.Option("eda", "--backend", help="Augmenter plugin."),
        heldout: str = typer.Option(None, "--eval", help="Held-out pairs evaluated after every round."),
        out: str = typer.Option("runs/refine", "--out", help="Run directory."),
        resume: bool = typer.Option(False, "--resume", help="Continue after the last finished round."),
        merge: str = typer.Option("replace", "--merge",
                                  help="replace: each round trains on base ∪ this round's synthetic (v2); "
                                       "accumulate: keep earlier rounds' synthetic pairs (v1)."),
        seed: int = typer.Option(0, "--seed", help="Seed for everything in the run."),
        cap: int = typer.Option(25, "--cap", help="At most this many synthetic rows per pair and round."),
        mix: float = typer.Option(0.0, "--mix-uniform", help="Blend the selection with uniform: (1−λ)q + λ/n."),
        match_steps: bool = typer.Option(True, "--match-steps/--same-epochs",
                                         help="Scale each augmented round's epochs so its optimiser steps match "
                                              "base-only training (default), or train the same epochs every "
                                              "round (the paper's protocol; measured to over-train)."),
        crossfit: int = typer.Option(0, "--crossfit", help="Select on K-fold cross-fitted margins (0: off)."),
        guard: bool = typer.Option(False, "--guard",
                                   help="Fall back to uniform when a selection fails the guard (ESS, Δ<0 share)."),
        semantic: bool = typer.Option(False, "--semantic-refine",
                                      help="MARS v2: rewrite low-contrast pairs first (rewrite/openai backends)."),
        tries: int = typer.Option(5, "--refine-tries", help="Candidates per side for --semantic-refine."),
        head_param: list[str] = typer.Option(None, "-p", "--param", help="Head parameter key=value."),
        select_param: list[str] = typer.Option(None, "--select-param", help="Selector parameter key=value."),
        augment_param: list[str] = typer.Option(None, "--augment-param", help="Augmenter parameter key=value."),
    ) -> None:
        """Run the MARS loop: train on base pairs, then R × (score → select → augment → retrain)."""
        from marsctl.loop import RefineConfig, RefineRun
        from marsctl.outputs import check_run_dir
        from marsctl.records import read_pairs

        config = RefineConfig(rounds=rounds, budget=budget, strategy=strategy,
                              selector_params=selector_params(select_param, alpha, alpha_scale),
                              head=head, head_params=list(head_param or []), epochs=epochs, backend=backend,
                              augment_params=list(augment_param or []), merge=merge, seed=seed, cap=cap,
                              mix_uniform=mix, match_steps=match_steps, crossfit=crossfit, guard=guard,
                              semantic_tries=tries if semantic else 0)
        check_run_dir(out, [pairs, heldout])
        records, name = read_input(pairs)
        held = read_pairs(heldout) if heldout else None
        if held is not None:
            _leak_check(records, held, heldout)
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
