"""What marsctl says to people: log lines, warnings, progress bars and tables.

All of it goes to stderr, so that stdout carries only records (or ``--json``), except a table that is
itself what the user asked for (``plugins show``, ``eval`` without ``--json``): inside ``on_stdout``
tables go to stdout, so ``| grep`` and ``| less`` see them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

_console = None
_out_console = None
_quiet = 0  # depth of nested quiet() blocks
_on_stdout = 0  # depth of nested on_stdout() blocks


def _new_console(stderr: bool) -> Any:
    from rich.console import Console

    # Off a terminal (logs, CI, a pipe) rich would wrap tables at 80 columns; give them room instead.
    width = None if (sys.stderr if stderr else sys.stdout).isatty() else 160
    return Console(stderr=stderr, no_color=bool(os.environ.get("NO_COLOR")) or None, highlight=False, width=width)


def console() -> Any:
    """The shared rich Console on stderr (colour only on a TTY, NO_COLOR honoured)."""
    global _console
    if _console is None:
        _console = _new_console(stderr=True)
    return _console


def _table_console() -> Any:
    """Where a table goes: the stdout Console inside ``on_stdout``, else the stderr one."""
    global _out_console
    if not _on_stdout:
        return console()
    if _out_console is None:
        _out_console = _new_console(stderr=False)
    return _out_console


@contextlib.contextmanager
def on_stdout() -> Iterator[None]:
    """Print tables on stdout inside the block: the human-readable answer a command was asked for.

    Only where stdout carries nothing else (no records, no ``--json``). Log lines, warnings, held-back
    notes and progress bars stay on stderr.
    """
    global _on_stdout
    _on_stdout += 1
    try:
        yield
    finally:
        _on_stdout -= 1


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence info, warn, table and progress inside the block; restored after it, also on an exception.

    compare runs many refine runs and prints one line per run instead of each run's own logs.
    """
    global _quiet
    _quiet += 1
    try:
        yield
    finally:
        _quiet -= 1


_notes: list[tuple[str, str | None]] = []  # (line, style) held back until the command speaks again
_holding = 0  # depth of nested held() blocks


def note(message: str) -> None:
    """A log line held back until the next line, table or progress bar on stderr (or the command's success).

    What was read (``records.iter_pairs(announce=True)``) is said this way, so that input refused by a
    later check still gets one ``Error:`` line and nothing else (``drop_notes``).
    """
    if not _quiet:
        _notes.append((message, None))


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Hold info and warning lines back as notes inside the block (said after it, dropped if the command fails).

    A command that reads its input once, working as it reads, holds what it says meanwhile: input
    found bad on a late line still gets one ``Error:`` line and nothing else.
    """
    global _holding
    _holding += 1
    try:
        yield
    finally:
        _holding -= 1


def flush_notes() -> None:
    """Print the held-back notes (not yet inside a ``held`` block)."""
    while _notes and not _holding:
        message, style = _notes.pop(0)
        console().print(message, style=style, markup=False)


def drop_notes() -> None:
    """Forget the held-back notes (the command failed)."""
    _notes.clear()


def info(message: str) -> None:
    """A log line on stderr."""
    if _holding and not _quiet:
        _notes.append((message, None))
    elif not _quiet:
        flush_notes()
        console().print(message, markup=False)


def warn(message: str) -> None:
    """A warning on stderr."""
    if _holding and not _quiet:
        _notes.append((f"Warning: {message}", "yellow"))
    elif not _quiet:
        flush_notes()
        console().print(f"Warning: {message}", style="yellow", markup=False)


@contextlib.contextmanager
def progress(description: str, total: int | None, unit: str = "items") -> Iterator[Any]:
    """A progress bar on stderr; yields ``advance(n)``. Quiet when stderr is not a TTY or total is small."""
    show = (sys.stderr.isatty() and (total is None or total > 0) and not os.environ.get("MARSCTL_NO_PROGRESS")
            and not _quiet)
    if show:
        flush_notes()
    if not show:
        yield lambda n=1: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn(unit), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console(), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Print a table on stderr (on stdout inside ``on_stdout``)."""
    if _quiet:
        return
    flush_notes()
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for j, c in enumerate(columns):
        numeric = all(isinstance(r[j], int | float) or _looks_numeric(r[j]) for r in rows if r[j] not in ("", None))
        t.add_column(c, justify="right" if numeric and rows else "left")
    for r in rows:
        t.add_row(*[_fmt(v) for v in r])
    _table_console().print(t)


def _looks_numeric(v: Any) -> bool:
    try:
        float(str(v).split()[0].strip("[],"))
    except (ValueError, IndexError):
        return False
    return True


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "" if v is None else str(v)
