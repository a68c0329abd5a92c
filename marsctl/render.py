"""The rendering step of a run: its figures and report.html, and where they are written.

The loop (:mod:`marsctl.loop`) and the compare runner (:mod:`marsctl.compare`) write data and tables
only; the runs that ``marsctl refine``, ``marsctl compare`` and ``marsctl.refine`` start
(:mod:`marsctl.runs`) check the report's target here before any work (:func:`check_report_output`) and
write the figures and report.html last (:func:`refine_plots`, :func:`compare_plots`, :func:`write_report`).
``marsctl report`` renders a finished folder again with :func:`write_report`.

A folder is read through :mod:`marsctl.rundir` (checked), drawn by :mod:`marsctl.plots` and laid out by
:mod:`marsctl.htmlreport`. The report is written atomically, and an existing file is replaced only when
it is a report marsctl wrote (its ``<meta name="generator">``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from marsctl import rundir
from marsctl.errors import ConfigError

REPORT_NAME = rundir.REPORT_HTML  # the report's default place: RUN_DIR/report.html


# -- where the report goes ---------------------------------------------------------------------------------
def check_report_output(path: str | Path) -> None:
    """Refuse an output that is a directory or an existing file marsctl did not write as a report."""
    from marsctl.outputs import check_file_output, check_special, is_special

    p = Path(path)
    if str(path) == "-" or is_special(p):
        check_special(p)  # a socket or a disk is refused; other devices and pipes are written in place
        return
    check_file_output(p, flag="-o")
    if p.exists() and not _is_marsctl_report(p):
        msg = f"{p} exists and is not a report marsctl wrote; it is left as it is"
        raise ConfigError(msg, hint="move it away, or write the report elsewhere with -o FILE")


def _is_marsctl_report(path: Path) -> bool:
    from marsctl.htmlreport import GENERATOR

    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return GENERATOR.encode() in head


def write_report(run_dir: str | Path, output: str | Path | None = None, *,
                 pngs: dict[str, bytes] | None = None) -> str:
    """Write the HTML report of a run folder (default ``RUN_DIR/report.html``; '-': stdout); return where.

    ``pngs`` are figures already rendered by the caller (refine and compare pass the ones they wrote);
    without them the figures are drawn from the folder's files.
    """
    import os

    from marsctl.atomic import atomic_writer, write_stdout

    run_dir = Path(run_dir)
    target = run_dir / REPORT_NAME if output is None else output
    if output is None and os.path.lexists(target):  # never follow a link out of the folder, even to check it
        from marsctl.runcheck import inside_folder

        inside_folder(Path(target), run_dir)
    check_report_output(target)
    page = build_report(run_dir, pngs=pngs)
    if str(target) == "-":
        write_stdout(page)
        return "stdout"
    with atomic_writer(target) as fh:
        fh.write(page)
    return str(target)


def build_report(run_dir: str | Path, *, pngs: dict[str, bytes] | None = None) -> str:
    """The report page of a refine or compare run folder (HTML text), read through the checked reader."""
    from marsctl import htmlreport, plots

    run_dir = Path(run_dir)
    if rundir.run_kind(run_dir) == "compare":
        cdata = rundir.compare_data(run_dir)  # every file the page and the figures use, checked
        if pngs is None:
            pngs = plots.compare_pngs(cdata.results, cdata.report, root=run_dir)
        return htmlreport.compare_page(cdata, pngs)
    data = rundir.refine_data(run_dir)  # every file the page and the figures use, checked
    summary = rundir.summary(run_dir, data)
    if pngs is None:
        pngs = plots.refine_pngs(run_dir, data)
    return htmlreport.refine_page(data, summary, pngs)


# -- the figures in the folder -------------------------------------------------------------------------------
def write_pngs(out: Path, pngs: dict[str, bytes]) -> list[str]:
    """Write each PNG into ``out`` atomically; return the paths."""
    from marsctl.atomic import write_bytes

    paths = []
    for name, data in pngs.items():
        write_bytes(data, out / name)
        paths.append(str(out / name))
    return paths


def refine_plots(run_dir: str | Path) -> dict[str, bytes]:
    """Write refine's figures into its run folder; return them as PNG bytes by file name."""
    from marsctl import plots

    pngs = plots.refine_pngs(run_dir)
    write_pngs(Path(run_dir), pngs)
    return pngs


def compare_plots(out: Path, results: list[dict[str, Any]], report: dict[str, Any]) -> dict[str, bytes]:
    """Write compare's figures into ``out``; return them as PNG bytes by file name."""
    from marsctl import plots

    pngs = plots.compare_pngs(results, report, root=out)
    write_pngs(out, pngs)
    return pngs
