"""A command's input: the PAIRS argument, --format and --split, and reading pairs from a path or '-'."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import typer


def pairs_argument(what: str, default: Any = "-") -> Any:
    """The PAIRS argument: ``what`` (e.g. "Preference pairs") in any format marsctl reads, or '-' for stdin."""
    return typer.Argument(default, help=f"{what} in any format marsctl reads (see --format), or '-' for stdin.")


def format_option() -> Any:
    """--format NAME: the row shape of the input (default: detected row by row)."""
    from marsctl.shapes import SHAPES

    return typer.Option(None, "--format", metavar="SHAPE",
                        help="Read every row as this shape instead of detecting it row by row: "
                             f"{', '.join(SHAPES)} (pku-safer: PKU-SafeRLHF by safer_response_id). "
                             "The input may be JSONL (also .gz/.zst/.xz), Parquet, CSV, a JSON array, a "
                             "datasets save_to_disk folder or a dataset name in the local hub cache.")


def split_option() -> Any:
    """--split NAME: the split of a datasets folder or cached hub dataset to read."""
    return typer.Option(None, "--split", metavar="NAME",
                        help="The split to read from a datasets save_to_disk folder or a cached hub dataset "
                             "(e.g. train, test); needed when it holds several.")


def read_input(path: str, *, allow_empty: bool = False, format: str | None = None,
               split: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """Read pairs from any readable input or '-' and return them with the display name.

    One stderr line says which shapes were read and how many rows. A closed stdin (``<&-``) is refused
    by ``read_pairs``; a terminal is refused here.
    """
    from marsctl.records import read_pairs

    name = "<stdin>" if path == "-" else path
    _refuse_terminal(path)
    return read_pairs(path, allow_empty=allow_empty, format=format, split=split, announce=True), name


def _refuse_terminal(path: str) -> None:
    """Refuse '-' when stdin is a terminal: nobody types JSONL."""
    open_stdin = sys.stdin is not None and not sys.stdin.closed
    if path == "-" and open_stdin and sys.stdin.isatty():
        from marsctl.errors import DataError

        msg = "no input: give a JSONL file or pipe records into stdin"
        raise DataError(msg, hint="marsctl COMMAND pairs.jsonl, or ... | marsctl COMMAND -")


@contextlib.contextmanager
def input_file(path: str, *, format: str | None = None,
               split: str | None = None) -> Iterator[tuple[str, str]]:
    """``(a file to read with records.iter_pairs as often as needed, the display name)`` for a path or '-'.

    Streaming commands read their input twice: once to check every line (keeping nothing), then to
    work, so bad input fails before any output. Stdin, a pipe, a FIFO or a device is spooled to a temporary
    file (``inputs.rereadable``), so it is read once.
    Any other input (Parquet, CSV, a datasets folder or hub name, or a forced ``format``) is read once into
    a temporary JSONL of flat pairs (conversational rows keep their messages), said on stderr.
    """
    from marsctl.formats import source_kind
    from marsctl.inputs import rereadable

    _refuse_terminal(path)
    if format is None and split is None and source_kind(path) == "jsonl":
        with rereadable(path) as opened:
            yield opened
        return
    with rereadable(path) as (src, name), _spooled(src, name, format, split) as tmp:
        yield tmp, name


@contextlib.contextmanager
def _spooled(src: str, name: str, format: str | None, split: str | None) -> Iterator[str]:
    """The pairs of ``src`` as a temporary JSONL file (removed afterwards)."""
    import os
    import tempfile

    from marsctl.records import iter_pairs, record_writer

    fd, tmp = tempfile.mkstemp(prefix="marsctl-pairs-", suffix=".jsonl")
    os.close(fd)
    try:
        with record_writer(tmp) as write:
            for rec in iter_pairs(src, name=name, format=format, split=split, announce=True):
                write(rec)
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
