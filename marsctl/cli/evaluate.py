"""marsctl eval PAIRS -m MODEL_DIR."""

from __future__ import annotations

import contextlib
import json
import os
import sys

import typer

from marsctl.calibration import ECE_BINS
from marsctl.cli.common import bounded, handle_errors, seed_option
from marsctl.cli.inputs import format_option, input_file, pairs_argument, split_option
from marsctl.params import MAX_BINS, MAX_N_BOOT, MIN_N_BOOT


def register(app: typer.Typer) -> None:
    """Add the command."""

    @app.command("eval")
    @handle_errors
    def eval_cmd(
        pairs: str = pairs_argument("Held-out pairs"),
        fmt: str = format_option(),
        split: str = split_option(),
        model: str = typer.Option(..., "-m", "--model", help="Model directory."),
        as_json: bool = typer.Option(False, "--json",
                                     help="Write the metrics as JSON on stdout (the tables then go to stderr)."),
        scored_out: str = typer.Option(None, "--scored", help="Also write the scored rows here."),
        seed: int = seed_option("Seed of the bootstrap and of the --calibrate split."),
        n_boot: int = bounded(2000, "--n-boot", low=MIN_N_BOOT, high=MAX_N_BOOT,
                              help="Bootstrap resamples for the CI."),
        n_bins: int = bounded(ECE_BINS, "--bins", low=1, high=MAX_BINS,
                              help="Equal-mass bins of the ECE and the reliability table."),
        calibrate: float = typer.Option(None, "--calibrate", metavar="FRACTION",
                                        help="Fit a temperature on this seeded fraction of the pairs (rows sharing "
                                             "a group_id stay together); report raw and calibrated figures on the "
                                             "rest."),
        calibration_split: str = typer.Option(None, "--calibration-split", metavar="FILE",
                                              help="Fit the temperature on these pairs instead (scored with the same "
                                                   "model); report on all of PAIRS."),
    ) -> None:
        """Held-out metrics: accuracy with a bootstrap 95% CI, ROC-AUC, SNR, σ'(Δ), calibration, length, subsets.

        Calibration of p = σ(Δ): ECE over equal-mass bins, Brier, log loss and a reliability table; with
        --calibrate or --calibration-split, a fitted temperature and the calibrated figures beside the raw ones.
        Also: mean chosen and rejected reward, margin quantiles, accuracy by |Δ| quartile, reward against
        response length beside the length baseline, per-subset figures with CIs, RewardBench v1 section
        scores when the subsets are RewardBench's, and best-of-N accuracy over rows sharing a group_id.
        """
        from marsctl import steps, ui
        from marsctl.metrics import evaluate
        from marsctl.modeldir import load_head
        from marsctl.outputs import check_file_output
        from marsctl.params import check_interval
        from marsctl.report import print_eval
        from marsctl.stats import file_sha256

        check_interval(n_boot, "n_boot", "eval", kind=int, low=MIN_N_BOOT, high=MAX_N_BOOT)
        check_interval(n_bins, "bins", "eval", kind=int, low=1, high=MAX_BINS)
        check_calibration_options(calibrate, calibration_split, pairs)
        check_file_output(scored_out, [pairs, model], flag="--scored", records=True)
        head = load_head(model)
        calib_rows = None
        if calibration_split:  # first, so that a bad calibration file fails before --scored is written
            with input_file(calibration_split, format=fmt, split=split) as (src, cname):
                calib_rows = steps.score_slim(src, cname, head)
        # streamed: the metrics keep slim rows, --scored is written as it goes
        with input_file(pairs, format=fmt, split=split) as (src, name):
            scored = steps.score_slim(src, name, head, scored_out)
        metrics = evaluate(scored, seed=seed, n_boot=n_boot, n_bins=n_bins, calibrate=calibrate,
                           calibration_rows=calib_rows)
        if calibration_split:
            metrics["temperature_scaling"]["fit"].update(
                path=calibration_split,
                sha256=file_sha256(calibration_split) if os.path.isfile(calibration_split) else None)
        metrics["heldout"] = {"path": name, "sha256": file_sha256(pairs) if os.path.isfile(pairs) else None}
        metrics["model"] = model
        # The tables are the answer unless stdout carries the JSON or the scored rows.
        with ui.on_stdout() if not as_json and not _is_stdout(scored_out) else contextlib.nullcontext():
            print_eval(metrics)
        if as_json:
            typer.echo(json.dumps(metrics, indent=2))



def _is_stdout(path: str | None) -> bool:
    """Whether an output path is stdout: '-', or a name of the same file (``/dev/stdout``)."""
    if path is None:
        return False
    if path == "-":
        return True
    try:
        return os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError):  # no such file yet; a stdout without a descriptor (io.UnsupportedOperation)
        return False


def check_calibration_options(calibrate: float | None, calibration_split: str | None, pairs: str) -> None:
    """--calibrate is a fraction in (0, 1); it and --calibration-split exclude each other; the split is another file."""
    from marsctl.errors import ConfigError
    from marsctl.params import check_interval

    if calibrate is not None and calibration_split:
        raise ConfigError("give --calibrate FRACTION or --calibration-split FILE, not both")
    if calibrate is not None:
        check_interval(calibrate, "calibrate", "eval", low=0, high=1, closed="neither")
    if calibration_split and (calibration_split == "-" or (
            pairs != "-" and os.path.exists(calibration_split) and os.path.exists(pairs)
            and os.path.samefile(calibration_split, pairs))):
        raise ConfigError(f"--calibration-split {calibration_split} must be a file other than the held-out pairs",
                          hint="to fit and report on one file, use --calibrate FRACTION")
