"""marsctl score PAIRS -m MODEL_DIR."""

from __future__ import annotations

import typer

from marsctl.cli.common import handle_errors, read_input


def register(app: typer.Typer) -> None:
    """Add the command."""

    @app.command("score")
    @handle_errors
    def score_cmd(
        pairs: str = typer.Argument("-", help="Pairs (JSONL) or '-' for stdin."),
        model: str = typer.Option(..., "-m", "--model", help="Model directory from 'marsctl train'."),
        output: str = typer.Option("-", "-o", "--output", help="Output JSONL, or '-' for stdout."),
        batch_size: int = typer.Option(None, "--batch-size", help="Pairs per scoring batch (default: the head's)."),
    ) -> None:
        """Add score_chosen, score_rejected, pred_margin and p_chosen to every pair."""
        from marsctl import steps, ui
        from marsctl.jsonio import write_records
        from marsctl.modeldir import load_head
        from marsctl.outputs import check_file_output
        from marsctl.params import check_interval

        check_file_output(output, [pairs, model])
        if batch_size is not None:
            check_interval(batch_size, "batch_size", "score", kind=int, low=1)
        head = load_head(model)
        records, name = read_input(pairs)
        scored = steps.score(records, head, batch_size=batch_size, name=name)
        write_records(scored, output)
        acc = sum(1 for r in scored if r["pred_margin"] > 0) / len(scored)
        ui.info(f"scored {len(scored)} pairs from {name} with {model} (share with pred_margin > 0: {acc:.3f})")
