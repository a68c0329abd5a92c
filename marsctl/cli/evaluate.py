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
        from marsctl.jsonio import write_records
        from marsctl.metrics import evaluate
        from marsctl.modeldir import load_head
        from marsctl.outputs import check_file_output
        from marsctl.params import check_interval
        from marsctl.records import file_sha256
        from marsctl.report import print_eval

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
        print_eval(metrics)
        if as_json:
            typer.echo(json.dumps(metrics, indent=2))

