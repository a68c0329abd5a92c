"""marsctl eval PAIRS -m MODEL_DIR."""

from __future__ import annotations

import json

import typer

from marsctl.cli.common import handle_errors, read_input


def register(app: typer.Typer) -> None:
    """Add the command."""

    @app.command("eval")
    @handle_errors
    def eval_cmd(
        pairs: str = typer.Argument("-", help="Held-out pairs (JSONL) or '-'."),
        model: str = typer.Option(..., "-m", "--model", help="Model directory."),
        as_json: bool = typer.Option(False, "--json", help="Write the metrics as JSON on stdout."),
        scored_out: str = typer.Option(None, "--scored", help="Also write the scored rows here."),
        seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
        n_boot: int = typer.Option(2000, "--n-boot", help="Bootstrap resamples for the CI."),
    ) -> None:
        """Held-out metrics: accuracy with a bootstrap 95% CI, ROC-AUC, SNR, σ'(Δ), length baseline, subsets."""
        from marsctl import steps
        from marsctl.metrics import evaluate
        from marsctl.outputs import check_file_output
        from marsctl.params import check_interval
        from marsctl.plugin import load_head
        from marsctl.records import file_sha256, write_records

        check_interval(n_boot, "n_boot", "eval", kind=int, low=100)
        check_file_output(scored_out, [pairs, model], flag="--scored")
        head = load_head(model)
        records, name = read_input(pairs)
        scored = steps.score(records, head, name=name)
        metrics = evaluate(scored, seed=seed, n_boot=n_boot)
        metrics["heldout"] = {"path": name, "sha256": file_sha256(pairs) if pairs != "-" else None}
        metrics["model"] = model
        if scored_out:
            write_records(scored, scored_out)
        print_metrics(metrics)
        if as_json:
            typer.echo(json.dumps(metrics, indent=2))


def print_metrics(m: dict) -> None:
    """The metrics as tables on stderr."""
    from marsctl import ui

    lo, hi = m["accuracy_ci95"]
    lb = m["length_baseline"]
    rows = [
        ["eval_accuracy", f"{m['accuracy']:.4f}  [{lo:.4f}, {hi:.4f}] 95% CI"],
        ["eval_roc_auc", f"{m['roc_auc']:.4f}"],
        ["eval_margin_snr", "undefined (all margins equal)" if m["margin_snr"] is None else f"{m['margin_snr']:.4f}"],
        ["eval_curvature_weight", f"{m['curvature_weight']:.4f}  (mean σ'(Δ), max 0.25)"],
        ["eval_mean_reward", f"{m['mean_reward']:.4f}  (min {m['min_reward']:.3f}, max {m['max_reward']:.3f})"],
        ["baseline: longer response", f"{lb['longer']:.4f}  (shorter {lb['shorter']:.4f}, ties {lb['ties']:.4f})"],
    ]
    ui.table(f"eval on {m['heldout']['path']} ({m['n']} pairs), model {m['model']}", ["metric", "value"], rows)
    if "subsets" in m:
        srows = [[k, v["n"], v["accuracy"]] for k, v in m["subsets"].items()]
        srows += [[f"section {k} (mean)", "", v] for k, v in m["sections"].items()]
        ui.table("per subset", ["subset", "n", "accuracy"], srows)
