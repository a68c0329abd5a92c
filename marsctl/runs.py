"""The runs that ``marsctl refine``, ``marsctl compare`` and `marsctl.refine` start: the loop, then the rendering step.

:class:`RefineRun` and :class:`Compare` are :mod:`marsctl.loop`'s and :mod:`marsctl.compare`'s with
:mod:`marsctl.render`'s step added: the report's target is checked before any work (a report.html
marsctl did not write stays), and the figures and report.html are written last, with the folder
still locked. Compare's own refine runs are the loop's, without it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from marsctl import compare, loop, ui
from marsctl.config import RefineConfig
from marsctl.errors import ConfigError
from marsctl.render import REPORT_NAME, check_report_output, compare_plots, refine_plots, write_report


class RefineRun(loop.RefineRun):
    """A refine run that writes its figures and report.html last (``marsctl refine``, :func:`refine`)."""

    def check_outputs(self) -> None:
        """Before any work: a report.html marsctl did not write stays."""
        check_report_output(self.out / REPORT_NAME)

    def finish(self) -> None:
        """The run's figures and report.html in its folder (``marsctl report`` writes the same page)."""
        path = write_report(self.out, pngs=refine_plots(self.out))
        ui.info(f"report: {path}")


class Compare(compare.Compare):
    """A compare run that writes its figures and report.html last (``marsctl compare``)."""

    def check_outputs(self) -> None:
        """Before any work: a report.html marsctl did not write stays."""
        check_report_output(self.out / REPORT_NAME)

    def finish(self, results: list[dict[str, Any]], report: dict[str, Any]) -> None:
        """The figures (listed in ``report["plots"]``) and report.html in the compare folder."""
        pngs = compare_plots(self.out, results, report)
        report["plots"] = [str(self.out / name) for name in pngs]
        ui.info(f"report: {write_report(self.out, pngs=pngs)}")


def refine(pairs: list[dict[str, Any]], out: str | Path, *, heldout: list[dict[str, Any]] | None = None,
           resume: bool = False, **settings: Any) -> dict[str, Any]:
    """Run the MARS loop into run directory ``out`` (``settings``: RefineConfig fields); returns the summary."""
    known = {f.name for f in dataclasses.fields(RefineConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        msg = f"refine: unknown setting {unknown[0]!r}"
        raise ConfigError(msg, hint=f"settings are RefineConfig fields: {', '.join(sorted(known))}")
    return RefineRun(pairs, out, RefineConfig(**settings), heldout=heldout).run(resume=resume)
