"""File formats: which one an input is, reading the non-JSONL ones (Parquet, CSV, JSON arrays, ``datasets`` folders,
the local hub cache), and writing records in the format ``-o``'s extension names.

Plain and compressed JSONL are read by :mod:`marsctl.jsonio`'s strict reader; the ``datasets`` library (and
pyarrow, which it brings) is imported only for the other formats, so ``--help`` stays instant. Row shapes are
:mod:`marsctl.shapes`'s job.

Columnar formats (Parquet, CSV, ``datasets``) hold every column in every row: a null cell counts as absent.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from marsctl.errors import ConfigError, DataError

# -o extension -> what is written there (a name without an extension, a device or '-' gets JSONL)
WRITE_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".jsonl.gz": "jsonl.gz",
                 ".json.gz": "jsonl.gz", ".jsonl.zst": "jsonl.zst", ".parquet": "parquet", ".csv": "csv"}
_COMPRESSED_SUFFIXES = (".gz", ".zst", ".xz")
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_BATCH = 1024  # rows per Arrow batch when streaming Parquet and datasets


# ------------------------------------------------------------------------------------------------ reading
def display_name(path: str | os.PathLike) -> str:
    """The name messages use for an input.

    >>> display_name("-"), display_name("a/b.jsonl")
    ('<stdin>', 'a/b.jsonl')
    """
    return "<stdin>" if str(path) == "-" else str(path)


def _inner_suffix(p: Path) -> str:
    """The extension under any compression suffix: ``x.csv.gz`` -> ``.csv``."""
    suffixes = [s.lower() for s in p.suffixes]
    while suffixes and suffixes[-1] in _COMPRESSED_SUFFIXES:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def _first_char(p: Path) -> bytes:
    """The first non-blank byte of a (maybe compressed) file, to tell a JSON array from JSONL."""
    from marsctl.jsonio import compression_of, decompressing

    with p.open("rb") as fh:
        kind = compression_of(fh.read(6))
    try:
        with (decompressing(p, kind) if kind else p.open("rb")) as fh:
            return fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    except (OSError, EOFError, ValueError):
        return b""  # the JSONL reader names the damage


def source_kind(path: str | os.PathLike) -> str:
    """What an input is: jsonl, parquet, csv, json-array, disk (a ``save_to_disk`` folder) or hub (a cached name).

    An input that can be read only once (stdin, a pipe or FIFO: :func:`marsctl.jsonio.read_once`) is never
    read here, only named by its extension (``.csv``, ``.parquet``; otherwise jsonl): :func:`iter_rows`
    sniffs its first bytes from the one handle it reads.
    """
    from marsctl.jsonio import read_once

    if str(path) == "-":
        return "jsonl"
    p = Path(path)
    if p.is_dir():
        found = any((p / f).is_file() for f in ("dataset_dict.json", "state.json", "dataset_info.json"))
        return "disk" if found else "jsonl"
    if not p.exists():
        return "hub" if _HUB_NAME.fullmatch(str(path)) and _inner_suffix(p) not in WRITE_FORMATS else "jsonl"
    inner = _inner_suffix(p)
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
    from marsctl.jsonio import check_values

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
    from marsctl.jsonio import read_once

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
    from marsctl.jsonio import compression_of, decompressed, json_lines, open_input, read_once, sniff

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
        if kind == "jsonl" and read_once(path) and _inner_suffix(Path(str(path))) == ".json":
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
    from marsctl.jsonio import spool

    return Path(spool(fh, label, suffix, stack))


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _array_rows(fh: Any, label: str) -> Iterator[tuple[int, Any, str, str]]:
    """The elements of a JSON array as rows (nulls dropped, as a columnar row's are)."""
    from marsctl.jsonio import iter_json_array

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
    sep = "\t" if _inner_suffix(Path(str(path))) == ".tsv" else ","
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

    from marsctl.jsonio import decode_line, max_line_bytes, read_line, too_long

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
        from marsctl.outputs import write_failed

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


# ------------------------------------------------------------------------------------------------ writing
def output_format(path: str | os.PathLike, flag: str = "-o") -> str:
    """The format written to ``path``, from its extension; an extension marsctl does not write is a ConfigError.

    >>> output_format("out.parquet"), output_format("-"), output_format("scored.jsonl.gz")
    ('parquet', 'jsonl', 'jsonl.gz')
    """
    if str(path) == "-":
        return "jsonl"
    p = Path(path)
    suffixes = "".join(p.suffixes[-2:]).lower()
    for ext in (suffixes, p.suffix.lower()):
        if ext in WRITE_FORMATS:
            return WRITE_FORMATS[ext]
    from marsctl.outputs import is_special

    if not p.suffix or is_special(p):
        return "jsonl"
    msg = f"{flag} {p}: marsctl does not write {p.suffix!r} files"
    raise ConfigError(msg, hint="name the output with one of: " + ", ".join(WRITE_FORMATS))


# CSV cells starting with one of these are formulas to a spreadsheet (OWASP "CSV injection"): written after a "'"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_GROUP = 16384  # rows per Parquet row group (the rows held in memory at once)
_CHUNK = 1 << 16  # bytes of JSONL handed to a compressor at once


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell: nested values as JSON text, and a text a spreadsheet would run as a formula
    behind a single quote (numbers are left alone: ``-1.5`` is a number, not a formula).

    >>> csv_cell("=HYPERLINK(1)"), csv_cell(-1.5), csv_cell({"a": 1}), csv_cell("- a list item")
    ("'=HYPERLINK(1)", -1.5, '{"a": 1}', "'- a list item")
    """
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


class _LineFeed:
    """Rows end in ``\n``, but the csv module is told ``\r\n`` so that it quotes a cell holding a lone ``\r``
    (with ``\n`` alone it writes that ``\r`` bare, and readers split the row there)."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh

    def write(self, line: str) -> int:
        return self.fh.write(line[:-2] + "\n" if line.endswith("\r\n") else line)


class _CsvBuilder:
    """CSV rows written as they come into a temporary file; a record with a new field rewrites the rows so far.

    The header must come first, so columns are those of the first record, in order; a later record with
    a field not seen yet adds a column at the end: the file is rewritten once with the wider header (the
    earlier rows get an empty cell), which keeps memory flat however many rows there are.
    """

    def __init__(self, scratch: Callable[[], tuple[int, str]]) -> None:
        self.scratch = scratch
        self.columns: dict[str, None] = {}
        self.path = ""
        self.fh: Any = None
        self.writer: Any = None

    def _open(self) -> None:
        import csv

        fd, self.path = self.scratch()
        self.fh = open(fd, "w", encoding="utf-8", newline="")  # noqa: SIM115 (closed in finish/abort)
        self.writer = csv.writer(_LineFeed(self.fh), lineterminator="\r\n")
        self.writer.writerow([csv_cell(c) for c in self.columns])

    def _widen(self, rec: dict[str, Any]) -> None:
        import csv

        old, old_fh, width = self.path, self.fh, len(self.columns)
        self.columns.update(dict.fromkeys(rec))
        if old_fh is None:
            self._open()
            return
        old_fh.close()
        try:
            self._open()
            pad = [""] * (len(self.columns) - width)
            with open(old, encoding="utf-8", newline="") as fin:
                rows = csv.reader(fin)
                next(rows, None)  # the old header
                for row in rows:
                    self.writer.writerow(row + pad)
        finally:
            os.unlink(old)

    def add(self, rec: dict[str, Any]) -> None:
        from marsctl.jsonio import strip_private

        rec = strip_private(rec)
        if self.fh is None or not self.columns.keys() >= rec.keys():
            self._widen(rec)
        self.writer.writerow([csv_cell(rec.get(c)) for c in self.columns])

    def finish(self) -> str:
        if self.fh is None:
            self._open()  # no records: an empty file (no header), as before
        self.fh.close()
        return self.path

    def abort(self) -> None:
        if self.fh is not None:
            with contextlib.suppress(OSError):
                self.fh.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def _mixed(key: str, e: Exception) -> DataError:
    msg = f"field '{key}' holds values of different types, which a Parquet column cannot ({e})"
    return DataError(msg, hint="write .jsonl instead, or make the field one type")


def _arrow_table(rows: list[dict[str, Any]]) -> Any:
    """The rows as an Arrow table, one column per field (first seen first; absent fields null)."""
    import pyarrow as pa

    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    arrays = {}
    for key in keys:
        try:
            arrays[key] = pa.array([r.get(key) for r in rows])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise _mixed(key, e) from None
    return pa.table(arrays)


def _wider(schema: Any, new: Any) -> Any:
    """The schema both ``schema``'s and ``new``'s rows fit (new fields last; int and float give float; null gives
    way to any type); a field of two incompatible types is a DataError naming it."""
    import pyarrow as pa

    for field in new:
        i = schema.get_field_index(field.name)
        if i >= 0 and schema.field(i).type != field.type:
            try:
                pa.unify_schemas([pa.schema([schema.field(i)]), pa.schema([field])], promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                raise _mixed(field.name, e) from None
    return pa.unify_schemas([schema, new], promote_options="permissive")


def _conform(table: Any, schema: Any) -> Any:
    """``table`` with exactly ``schema``'s columns and types (absent columns null)."""
    import pyarrow as pa

    columns = []
    for field in schema:
        if field.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        col = table.column(field.name)
        if col.type != field.type:
            try:
                col = col.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                col = pa.array(col.to_pylist(), type=field.type)
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=schema)


class _ParquetBuilder:
    """Parquet written in row groups of ``_GROUP`` records into a temporary file (pyarrow's ParquetWriter).

    The schema is that of the first row group. A later group that needs a wider one (a new field, a
    float in an int column, a type for a column that was all null) makes the file be rewritten once with
    the wider schema, the groups so far read back one at a time; a field of two incompatible types (text
    and number) is refused, as before, naming it. Memory holds one row group, whatever the row count.
    """

    def __init__(self, scratch: Callable[[], tuple[int, str]]) -> None:
        self.scratch = scratch
        self.rows: list[dict[str, Any]] = []
        self.schema: Any = None
        self.writer: Any = None
        self.path = ""

    def _open(self, schema: Any) -> None:
        import pyarrow.parquet as pq

        fd, self.path = self.scratch()
        os.close(fd)
        self.schema = schema
        self.writer = pq.ParquetWriter(self.path, schema)

    def _flush(self) -> None:
        if not self.rows:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table, self.rows = _arrow_table(self.rows), []
        if self.writer is None:
            self._open(table.schema)
        else:
            schema = _wider(self.schema, table.schema)
            if not schema.equals(self.schema):
                old = self.path
                self.writer.close()
                self._open(schema)
                try:
                    for batch in pq.ParquetFile(old).iter_batches(batch_size=_GROUP):
                        self.writer.write_table(_conform(pa.Table.from_batches([batch]), schema))
                finally:
                    os.unlink(old)
        self.writer.write_table(_conform(table, self.schema))

    def add(self, rec: dict[str, Any]) -> None:
        from marsctl.jsonio import strip_private
        from marsctl.shapes import restore

        self.rows.append(strip_private(restore(rec)))
        if len(self.rows) >= _GROUP:
            self._flush()

    def finish(self) -> str:
        self._flush()
        if self.writer is None:
            import pyarrow as pa

            self._open(pa.schema([]))  # no records: a valid Parquet file with no columns, as before
        self.writer.close()
        return self.path

    def abort(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
        if self.path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


@contextlib.contextmanager
def _compressor(fmt: str, fh: Any) -> Iterator[Callable[[bytes], Any]]:
    """``put(bytes)`` writing ``fh`` plain (jsonl), gzip or zstd compressed, streamed (no seeking: a pipe is fine)."""
    if fmt == "jsonl":
        yield fh.write
        return
    if fmt == "jsonl.gz":
        import gzip

        stream: Any = gzip.GzipFile(filename="", fileobj=fh, mode="wb", mtime=0)
    else:
        import zstandard

        stream = zstandard.ZstdCompressor().stream_writer(fh, closefd=False)
    parts: list[bytes] = []
    size = 0

    def put(data: bytes) -> None:
        nonlocal size
        parts.append(data)
        size += len(data)
        if size >= _CHUNK:
            stream.write(b"".join(parts))
            parts.clear()
            size = 0

    with stream:
        yield put
        stream.write(b"".join(parts))


@contextlib.contextmanager
def record_writer(path: str | os.PathLike, *, hold: bool = False) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Stream records to a file (not ``-``) in ``path``'s format: JSONL, gzip/zstd JSONL, Parquet or CSV.

    Memory stays flat whatever the number of records. A regular file is built in a temporary beside it and
    renamed into place at the end, so nothing is left there when the block raises. A device, pipe or
    ``/dev/stdout`` is written in place, never replaced: (gzip/zstd) JSONL as it comes, or with ``hold``
    only once the block ends without an error (spooled to ``$TMPDIR``); Parquet and CSV are always built in
    a temporary file first (in ``$TMPDIR``) and copied into it when complete.
    """
    from marsctl.jsonio import dumps
    from marsctl.outputs import deliver, held_output, scratch_file, write_failed

    fmt = output_format(path)
    if fmt in ("parquet", "csv"):
        builder: Any = (_ParquetBuilder if fmt == "parquet" else _CsvBuilder)(lambda: scratch_file(path))
        try:
            yield builder.add
            final = builder.finish()
        except BaseException as e:
            builder.abort()
            if isinstance(e, OSError):
                raise write_failed(path, e) from None
            raise
        deliver(final, path)
        return
    with held_output(path, hold) as fh, _compressor(fmt, fh) as put:
        yield lambda rec: put((dumps(rec) + "\n").encode("utf-8"))
