"""marsctl report RUN_DIR: one self-contained HTML page of a refine or compare run."""

from __future__ import annotations

from pathlib import Path

import typer

from marsctl.cli.common import handle_errors


def register(app: typer.Typer) -> None:
    """Add the command."""

    @app.command("report")
    @handle_errors
    def report_cmd(
        run_dir: str = typer.Argument(..., help="A refine or compare run folder (its --out)."),
        output: str = typer.Option(None, "-o", "--output",
                                   help="The HTML file (default: RUN_DIR/report.html; '-': stdout). An existing "
                                        "file is replaced only when it is a report marsctl wrote."),
        plots: bool = typer.Option(False, "--plots",
                                   help="Also (re)write the run's PNG figures into RUN_DIR, drawn from its saved "
                                        "files (never re-running anything)."),
    ) -> None:
        """Write one self-contained HTML report: settings, provenance, tables, plots, diagnostics, a verdict."""
        import contextlib
        import os

        from marsctl import ui
        from marsctl.render import REPORT_NAME, check_report_output, write_report
        from marsctl.runcheck import inside_folder
        from marsctl.rundir import run_kind
        from marsctl.runlock import run_lock

        folder = Path(run_dir)
        kind = run_kind(folder)
        if output is None and os.path.lexists(folder / REPORT_NAME):  # a link out of the folder is not followed
            inside_folder(folder / REPORT_NAME, folder)
        check_report_output(folder / REPORT_NAME if output is None else output)
        # Writing into the folder (report.html, --plots): refused while a refine or compare writes it.
        with run_lock(folder) if output is None or plots else contextlib.nullcontext():
            pngs = _write_plots(folder, kind) if plots else None
            ui.info(f"report: {write_report(folder, output, pngs=pngs)}")


def _write_plots(folder: Path, kind: str) -> dict[str, bytes]:
    """The run's figures, written into its folder (read through the checked reader, ``marsctl.rundir``)."""
    from marsctl import render
    from marsctl.rundir import compare_report, compare_results

    if kind == "refine":
        return render.refine_plots(folder)
    rep = compare_report(folder)
    return render.compare_plots(folder, compare_results(folder, rep), rep)
