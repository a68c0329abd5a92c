"""marsctl score PAIRS -m MODEL_DIR."""

from __future__ import annotations

from typing import Any

import typer

from marsctl.cli.common import bounded, handle_errors, output_option
from marsctl.cli.inputs import format_option, input_file, pairs_argument, split_option
from marsctl.params import MAX_BATCH_SIZE


def register(app: typer.Typer) -> None:
    """Add the command."""

    @app.command("score")
    @handle_errors
    def score_cmd(
        pairs: str = pairs_argument("Pairs (labeled, or unlabeled: prompt, response_a, response_b)"),
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
        """Add score_chosen, score_rejected, pred_margin and p_chosen to every pair.

        Unlabeled pairs (prompt, response_a, response_b; the first row decides) get reward_a, reward_b,
        pred_margin (a - b), p_a and, from an ensemble head, pred_margin_std.
        """
        from marsctl import steps, ui
        from marsctl.checks import warn_identical
        from marsctl.inputs import read_once
        from marsctl.modeldir import load_head
        from marsctl.outputs import check_file_output
        from marsctl.params import check_interval
        from marsctl.records import record_writer
        from marsctl.unlabeled import first_row_unlabeled

        check_file_output(output, [pairs, model], records=True)
        if batch_size is not None:
            check_interval(batch_size, "batch_size", "score", kind=int, low=1)
        head = load_head(model)
        if length_free:
            head.require_length_term()
        if fmt is None and split is None and not read_once(pairs) and first_row_unlabeled(pairs):
            _score_unlabeled(pairs, pairs, head, output, batch_size, length_free, model)
            return
        with input_file(pairs, format=fmt, split=split) as (src, name):
            if fmt is None and first_row_unlabeled(src, name):
                _score_unlabeled(src, name, head, output, batch_size, length_free, model)
                return
            with record_writer(output, hold=True) as write:
                # one pass: the output is held (a temporary file) until every line was read and scored
                done = steps.score_pass(src, name, head, write, batch_size=batch_size, length_free=length_free)
        warn_identical(done["identical"], name, "score", "kept in the output")
        n = done["pairs"]
        ui.info(f"scored {n} pairs from {name} with {model} (share with pred_margin > 0: {done['positive'] / n:.3f})")


def _score_unlabeled(src: str, name: str, head: Any, output: str, batch_size: int | None, length_free: bool,
                     model: str) -> None:
    """Score unlabeled pairs in one held pass (bad input on a late line leaves no output)."""
    from marsctl import ui
    from marsctl.records import record_writer
    from marsctl.unlabeled import iter_unlabeled, score_unlabeled

    n = positive = 0
    with record_writer(output, hold=True) as write, ui.held():
        for rec in score_unlabeled(iter_unlabeled(src, name=name), head, batch_size, length_free=length_free):
            write(rec)
            n += 1
            positive += rec["pred_margin"] > 0
    ui.info(f"scored {n} unlabeled pairs from {name} with {model} (share with response a ahead, pred_margin > 0: "
            f"{positive / n:.3f})")
