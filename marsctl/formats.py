"""Rows of any input: which format it is, and its rows read from JSONL, Parquet, CSV, JSON arrays, ``datasets``
folders and the local hub cache.

Plain and compressed JSONL are read by :mod:`marsctl.jsonio`'s strict reader, JSON arrays by :mod:`marsctl.jsonarray`;
the ``datasets`` library (and pyarrow, which it brings) is imported only for the other formats, so ``--help`` stays
instant. Writing them is :mod:`marsctl.writers`'s job, row shapes :mod:`marsctl.shapes`'s.

Columnar formats (Parquet, CSV, ``datasets``) hold every column in every row: a null cell counts as absent.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from marsctl.errors import ConfigError, DataError
from marsctl.extensions import WRITE_FORMATS, inner_suffix
from marsctl.inputs import (
    compression_of,
    decompressed,
    decompressing,
    display_name,
    open_input,
    read_once,
    sniff,
    spool,
)
from marsctl.jsonarray import iter_json_array
from marsctl.jsonio import check_values, decode_line, json_lines, max_line_bytes, read_line, too_long

_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_BATCH = 1024  # rows per Arrow batch when streaming Parquet and datasets


def _first_char(p: Path) -> bytes:
    """The first non-blank byte of a (maybe compressed) file, to tell a JSON array from JSONL."""
    with p.open("rb") as fh:
        kind = compression_of(fh.read(6))
    try:
        with (decompressing(p, kind) if kind else p.open("rb")) as fh:
            return fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    except (OSError, EOFError, ValueError):
        return b""  # the JSONL reader names the damage


def source_kind(path: str | os.PathLike) -> str:
    """What an input is: jsonl, parquet, csv, json-array, disk (a ``save_to_disk`` folder) or hub (a cached name).

    An input that can be read only once (stdin, a pipe or FIFO: :func:`marsctl.inputs.read_once`) is never
    read here, only named by its extension (``.csv``, ``.parquet``; otherwise jsonl): :func:`iter_rows`
    sniffs its first bytes from the one handle it reads.
    """
    if str(path) == "-":
        return "jsonl"
    p = Path(path)
    if p.is_dir():
        found = any((p / f).is_file() for f in ("dataset_dict.json", "state.json", "dataset_info.json"))
        return "disk" if found else "jsonl"
    if not p.exists():
        return "hub" if _HUB_NAME.fullmatch(str(path)) and inner_suffix(p) not in WRITE_FORMATS else "jsonl"
    inner = inner_suffix(p)
    if read_once(p):
        return _ONCE_KINDS.get(inner, "jsonl")
    with contextlib.suppress(OSError), p.open("rb") as fh:
        if fh.read(4) == b"PAR1":
            return "parquet"
    if inner in (".csv", ".tsv"):
        return "csv"
    if inner == ".parquet":
        return "parquet"
    return "json-array" if inner == ".json" and _first_char(p) == b"[" else "jsonl"


_ONCE_KINDS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}


def plain(value: Any, where: str, field: str) -> Any:
    """A columnar value as JSON would hold it: nulls dropped from objects, dates as ISO text; NaN refused.

    >>> plain({"a": 1, "b": None, "t": datetime.date(2024, 1, 2)}, "here", "row")
    {'a': 1, 't': '2024-01-02'}
    """
    if isinstance(value, dict):
        return {k: plain(v, where, f"{field}.{k}") for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [plain(v, where, f"{field}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        msg = f"{where}: field '{field}' is {value}, which JSON cannot carry (use null or a finite number)"
        raise DataError(msg)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, bytes):
        msg = f"{where}: field '{field}' holds binary data, not text"
        raise DataError(msg)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)  # Decimal and other Arrow scalars


def _rows_of_tables(tables: Iterator[Any], name: str) -> Iterator[tuple[int, Any, str, str]]:
    """Rows of a stream of Arrow tables/batches, checked like JSONL rows."""
    n = 0
    for table in tables:
        for raw in table.to_pylist():
            n += 1
            where = f"{name} row {n}"
            row = {k: plain(v, where, k) for k, v in raw.items() if v is not None}
            check_values(row, where)
            yield n, row, name, "row"


def _parquet_tables(p: Path) -> Iterator[Any]:
    import pyarrow.parquet as pq

    yield from pq.ParquetFile(p).iter_batches(batch_size=_BATCH)


def _import_datasets() -> Any:
    """``datasets``, offline and quiet: marsctl reads what is on this machine and never downloads."""
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    import datasets
    import huggingface_hub.constants

    datasets.config.HF_DATASETS_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = True
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    return datasets


def _pick_split(obj: Any, split: str | None, name: str) -> Any:
    """One split of a DatasetDict (``--split``; the only one when there is one), or the Dataset itself."""
    if not hasattr(obj, "keys"):
        if split is not None:
            msg = f"{name}: holds one dataset, not splits; drop --split {split}"
            raise ConfigError(msg)
        return obj
    splits = list(obj.keys())
    if split is None and len(splits) == 1:
        return obj[splits[0]]
    if split not in splits:
        what = "name one with --split" if split is None else f"there is no split {split!r}"
        msg = f"{name}: holds the splits {', '.join(splits)}; {what}"
        raise ConfigError(msg, hint=f"e.g. --split {splits[0]}")
    return obj[split]


def _dataset_tables(kind: str, path: str, split: str | None) -> Iterator[Any]:
    datasets = _import_datasets()
    if kind == "disk":
        ds = _pick_split(datasets.load_from_disk(path), split, path)
    else:
        ds = _pick_split(datasets.load_dataset(path), split, path)
    yield from ds.with_format("arrow").iter(batch_size=_BATCH)


class _Batch:
    """A dict of columns (an IterableDataset batch) with Arrow's ``to_pylist``."""

    def __init__(self, columns: dict[str, list[Any]]) -> None:
        self.columns = columns

    def to_pylist(self) -> list[dict[str, Any]]:
        keys = list(self.columns)
        return [dict(zip(keys, values, strict=True)) for values in zip(*self.columns.values(), strict=True)]


_WHAT = {"parquet": "Parquet", "csv": "CSV", "json-array": "a JSON array", "disk": "a datasets folder",
         "hub": "a dataset in the local hub cache"}


def iter_rows(path: str | os.PathLike, *, split: str | None = None,
              name: str | None = None) -> Iterator[tuple[int, Any, str, str]]:
    """Yield ``(number, row, file name, unit)`` for each row of any readable input; ``unit`` is line or row.

    JSONL (plain, gzip, zstd or xz; a file or ``-``) is read by the strict reader, line by line; Parquet streams
    by record batches; CSV is checked row by row (:func:`_csv_rows`: a row with more or fewer fields than the
    header is refused) and parsed by ``datasets``; a JSON array is read element by element; ``save_to_disk``
    folders and cached hub datasets go through ``datasets``. Rows are checked as JSONL rows are (valid
    Unicode, bounded nesting, finite numbers), and no line, CSV row or array element may be longer than
    :func:`marsctl.jsonio.max_line_bytes`.

    Every input is opened once and its format sniffed from that handle, so stdin, a pipe or a FIFO
    (``<(zcat a.gz)``) loses nothing; Parquet on a pipe is first copied to a temporary file (it needs seeking).
    """
    kind = source_kind(path)
    label = name or display_name(path)
    if kind == "jsonl" and split is not None:
        msg = f"--split {split}: {label} is a JSONL file, which has no splits"
        raise ConfigError(msg)
    if kind in ("disk", "hub"):
        yield from _guarded(kind, label, _rows_of_tables(_dataset_tables(kind, str(path), split), label))
        return
    if kind == "parquet" and not read_once(path):
        yield from _guarded(kind, label, _rows_of_tables(_parquet_tables(Path(path)), label))
        return
    yield from _rows_of_stream(path, kind, label)


def _rows_of_stream(path: str | os.PathLike, kind: str, label: str) -> Iterator[tuple[int, Any, str, str]]:
    """:func:`iter_rows` of a JSONL, CSV or JSON-array input (or Parquet on a pipe), opened once."""
    with contextlib.ExitStack() as stack:
        fh, head, _ = open_input(path, stack)
        if kind == "parquet" or head.startswith(b"PAR1"):
            copy = _spool(fh, label, ".parquet", stack)
            yield from _guarded("parquet", label, _rows_of_tables(_parquet_tables(copy), label))
            return
        fh = decompressed(fh, head, label, stack)
        if kind == "csv":
            yield from _guarded(kind, label, _csv_rows(
                fh, label, path, spool=read_once(path) or bool(compression_of(head)), stack=stack))
            return
        if kind == "jsonl" and read_once(path) and inner_suffix(Path(str(path))) == ".json":
            fh, first = sniff(fh, 4096, label, stack)
            if first.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"[":
                kind = "json-array"
        if kind == "json-array":
            yield from _array_rows(fh, label)
            return
        for lineno, value, shown in json_lines(fh, label):
            yield lineno, value, shown, "line"


def _guarded(kind: str, label: str, rows: Iterator[tuple[int, Any, str, str]]) -> Iterator[tuple[int, Any, str, str]]:
    """``rows``, with any exception of pyarrow, pandas or ``datasets`` turned into one DataError naming the input."""
    try:
        yield from rows
    except (DataError, ConfigError):
        raise
    except Exception as e:  # pyarrow, pandas and datasets raise many kinds; all mean unreadable
        raise _unreadable(kind, label, e) from None


def _spool(fh: Any, label: str, suffix: str, stack: contextlib.ExitStack) -> Path:
    """Copy the rest of a read-once stream to a temporary file (removed when ``stack`` closes); return its path."""
    return Path(spool(fh, label, suffix, stack))


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _array_rows(fh: Any, label: str) -> Iterator[tuple[int, Any, str, str]]:
    """The elements of a JSON array as rows (nulls dropped, as a columnar row's are)."""
    for n, value in iter_json_array(fh, label):
        where = f"{label} row {n}"
        row = {k: plain(v, where, k) for k, v in value.items() if v is not None} if isinstance(value, dict) else value
        yield n, row, label, "row"


def _csv_rows(fh: Any, label: str, path: str | os.PathLike, *, spool: bool,
              stack: contextlib.ExitStack) -> Iterator[tuple[int, Any, str, str]]:
    """The rows of a CSV file: checked here first, whole, then parsed by ``datasets`` (which infers column types).

    The check reads the (decompressed) bytes once, line by line in bounded pieces, and refuses invalid UTF-8,
    a NUL byte, a line or row longer than :func:`marsctl.jsonio.max_line_bytes`, and a row with more or fewer
    fields than the header (pandas would shift a longer row's columns silently, or fill a shorter one with
    nulls). A pipe, stdin or compressed input is copied (decompressed) to a temporary file as it is checked.
    """
    sep = "\t" if inner_suffix(Path(str(path))) == ".tsv" else ","
    copy = None
    if spool:
        import tempfile

        fd, tmp = tempfile.mkstemp(prefix="marsctl-input-", suffix=".csv")
        stack.callback(_remove, tmp)
        copy = stack.enter_context(os.fdopen(fd, "wb"))
        target = tmp
    else:
        target = str(path)
    rows = _check_csv(fh, label, sep, copy)
    if copy is not None:
        copy.close()
    if rows == 0:
        return
    yield from _rows_of_tables(_csv_tables(target, sep), label)


def _check_csv(fh: Any, label: str, sep: str, copy: Any) -> int:
    """Check every row of a CSV stream has the header's number of fields; return the number of rows."""
    import csv

    cap = max_line_bytes()
    state = {"lineno": 0, "offset": 0, "held": 0}

    def lines() -> Iterator[str]:
        while raw := read_line(fh, label, state["lineno"] + 1, state["offset"], cap):
            state["lineno"] += 1
            state["held"] += len(raw)
            if state["held"] > cap + 1:
                raise too_long(f"{label} line {state['lineno']}", "a CSV row", cap)
            text = decode_line(raw, label, state["lineno"], state["offset"])
            state["offset"] += len(raw)
            if copy is not None:
                _copy_write(copy, raw if state["lineno"] > 1 else text.encode("utf-8"), label)
            yield text

    csv.field_size_limit(max(cap, 1 << 17))
    reader = csv.reader(lines(), delimiter=sep, strict=False)
    header: list[str] | None = None
    rows = 0
    try:
        for fields in reader:
            state["held"] = 0
            if not fields:
                continue  # a blank line (pandas skips them too)
            if header is None:
                header = fields
                continue
            rows += 1
            if len(fields) != len(header):
                more = "more" if len(fields) > len(header) else "fewer"
                msg = (f"{label} line {reader.line_num}: row {rows} has {len(fields)} fields, {more} than the "
                       f"header's {len(header)}")
                raise DataError(msg, hint="quote a field that holds the separator (\"a, b\"), or fix the row")
    except csv.Error as e:
        msg = f"{label} line {state['lineno']}: cannot be read as CSV ({e})"
        raise DataError(msg) from None
    return rows


def _copy_write(copy: Any, data: bytes, label: str) -> None:
    try:
        copy.write(data)
    except OSError as e:
        from marsctl.atomic import write_failed

        raise write_failed(f"a temporary copy of {label}", e) from None


def _csv_tables(path: str, sep: str) -> Iterator[Any]:
    datasets = _import_datasets()
    ds = datasets.load_dataset("csv", data_files=path, split="train", streaming=True, sep=sep)
    for batch in ds.iter(batch_size=_BATCH):
        yield _Batch(batch)


def _unreadable(kind: str, label: str, e: Exception) -> DataError:
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if kind == "hub":
        msg = f"{label}: no such file, and no dataset of that name in the local hub cache ({reason[:200]})"
        return DataError(msg, hint="marsctl never downloads: load it once with datasets.load_dataset on a "
                                   "machine that is online, or give a file")
    return DataError(f"{label}: cannot be read as {_WHAT[kind]} ({reason[:200]})")
