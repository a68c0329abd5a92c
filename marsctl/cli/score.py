"""marsctl score PAIRS -m MODEL_DIR."""

from __future__ import annotations

import typer

from marsctl.cli.common import bounded, handle_errors, output_option
from marsctl.cli.inputs import format_option, input_file, pairs_argument, split_option
from marsctl.params import MAX_BATCH_SIZE


def register(app: typer.Typer) -> None:
    """Add the command."""

    @app.command("score")
    @handle_errors
    def score_cmd(
        pairs: str = pairs_argument("Pairs"),
        fmt: str = format_option(),
        split: str = split_option(),
        model: str = typer.Option(..., "-m", "--model", help="Model directory from 'marsctl train'."),
        output: str = output_option(),
        batch_size: int = bounded(None, "--batch-size", low=1, high=MAX_BATCH_SIZE,
                                  help="Pairs per scoring batch (default: the head's)."),
        length_free: bool = typer.Option(False, "--length-free", help=(
            "Write the quality part alone as score_chosen, score_rejected, pred_margin and p_chosen (a head "
            "trained with a length term; its quality_* and length_* fields are written either way).")),
    ) -> None:
        """Add score_chosen, score_rejected, pred_margin and p_chosen to every pair."""
        from marsctl import steps, ui
        from marsctl.checks import warn_identical
        from marsctl.modeldir import load_head
        from marsctl.outputs import check_file_output
        from marsctl.params import check_interval
        from marsctl.records import record_writer

        check_file_output(output, [pairs, model], records=True)
        if batch_size is not None:
            check_interval(batch_size, "batch_size", "score", kind=int, low=1)
        head = load_head(model)
        if length_free:
            head.require_length_term()
        with input_file(pairs, format=fmt, split=split) as (src, name), record_writer(output, hold=True) as write:
            # one pass: the output is held (a temporary file) until every line was read and scored
            done = steps.score_pass(src, name, head, write, batch_size=batch_size, length_free=length_free)
        warn_identical(done["identical"], name, "score", "kept in the output")
        n = done["pairs"]
        ui.info(f"scored {n} pairs from {name} with {model} (share with pred_margin > 0: {done['positive'] / n:.3f})")
