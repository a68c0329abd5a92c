"""ui: quiet() silences the console inside a block and restores it after, also after an exception."""

from __future__ import annotations

import sys

import pytest

from marsctl import ui


def test_quiet_silences_info_warn_table_and_restores_after_an_exception(capsys):
    ui.info("before")
    with pytest.raises(RuntimeError, match="boom"), ui.quiet():
        ui.info("hidden info")
        ui.warn("hidden warning")
        ui.table("hidden table", ["col"], [["1"]])
        with ui.quiet():
            ui.info("hidden nested")
        ui.info("hidden after the nested block")
        raise RuntimeError("boom")
    ui.info("after")
    ui.warn("a warning after")
    ui.table("t-after", ["col"], [["1"]])
    err = capsys.readouterr().err
    assert "hidden" not in err
    assert "before" in err and "after" in err and "Warning: a warning after" in err and "t-after" in err


def test_quiet_silences_progress_bars(capsys, monkeypatch):
    monkeypatch.delenv("MARSCTL_NO_PROGRESS", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a bar is drawn only on a terminal
    with ui.progress("visible bar", 3, "steps") as advance:
        advance(3)
    assert capsys.readouterr().err != ""  # a transient bar: at least its cursor hide/show codes
    with ui.quiet(), ui.progress("quiet bar", 3, "steps") as advance:
        advance(3)
    assert capsys.readouterr().err == ""
