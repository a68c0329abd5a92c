"""marsctl compare PAIRS: strategies side by side with paired statistics, tables and plots."""

from __future__ import annotations

import typer

from marsctl.cli.common import handle_errors, read_input


def register(app: typer.Typer) -> None:
    """Add the command."""

    @app.command("compare")
    @handle_errors
    def compare_cmd(
        pairs: str = typer.Argument(..., help="Preference pairs (JSONL)."),
        heldout: str = typer.Option(None, "--heldout", help="A fixed held-out file (else a grouped split)."),
        test_frac: float = typer.Option(0.3, "--test-frac", help="Test share of a split grouped by prompt."),
        strategies: str = typer.Option("none,uniform,won,mars,mars-abs", "--strategies",
                                       help="Comma-separated: none (base pairs only) and selector names."),
        seeds: int = typer.Option(5, "--seeds", help="Seeds (each: its own split, pool draw and init)."),
        budget: int = typer.Option(None, "--budget", "-b",
                                   help="Synthetic pairs per round (default: as many as training pairs)."),
        rounds: int = typer.Option(1, "--rounds", "-r", help="Augmentation rounds."),
        head: str = typer.Option("mlp", "--head", help="Reward head plugin."),
        epochs: int = typer.Option(None, "--epochs", help="Epochs per round (default: the head's)."),
        backend: str = typer.Option("eda", "--backend", help="Augmenter plugin."),
        protocols: str = typer.Option("epochs,steps", "--protocols",
                                      help="epochs (same epochs per round, the paper's) and/or steps "
                                           "(matched optimiser steps)."),
        alpha: float = typer.Option(None, "--alpha", help="α for the mars selectors."),
        alpha_scale: str = typer.Option(None, "--alpha-scale", help="none | std."),
        cap: int = typer.Option(25, "--cap", help="At most this many rows per pair (the eda pool holds 25)."),
        crossfit: int = typer.Option(0, "--crossfit", help="Select on K-fold cross-fitted margins (0: off)."),
        guard: bool = typer.Option(False, "--guard", help="Fall back to uniform when a selection fails the guard."),
        mix: float = typer.Option(0.0, "--mix-uniform", help="Blend selections with uniform: (1−λ)q + λ/n."),
        out: str = typer.Option("runs/compare", "--out", help="Output directory (resumable)."),
        head_param: list[str] = typer.Option(None, "-p", "--param", help="Head parameter key=value."),
        augment_param: list[str] = typer.Option(None, "--augment-param", help="Augmenter parameter key=value."),
    ) -> None:
        """Run several selection strategies on the same split, pool and seeds; paired Δ with CIs, plots."""
        from marsctl.cli.select import selector_params
        from marsctl.compare import Compare, CompareConfig
        from marsctl.outputs import check_run_dir
        from marsctl.records import read_pairs

        cfg = CompareConfig(strategies=[s.strip() for s in strategies.split(",") if s.strip()], seeds=seeds,
                            budget=budget, rounds=rounds, head=head, head_params=list(head_param or []),
                            epochs=epochs, backend=backend, augment_params=list(augment_param or []),
                            selector_params=selector_params(None, alpha, alpha_scale),
                            protocols=[p.strip() for p in protocols.split(",") if p.strip()],
                            test_frac=test_frac, cap=cap, crossfit=crossfit, guard=guard,
                            mix_uniform=mix)
        check_run_dir(out, [pairs, heldout], marker="compare.json")
        records, name = read_input(pairs)
        held = read_pairs(heldout) if heldout else None
        Compare(records, out, cfg, heldout=held, input_name=name, heldout_name=heldout).run()
