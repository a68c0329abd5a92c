"""Record files in the formats other than plain JSONL: CSV and Parquet built in a temporary file, JSONL streamed
through gzip or zstd.

Rows come as they are to be written (private keys dropped and layouts put back by :mod:`marsctl.records`, which
also decides where the bytes go); memory stays flat whatever their number.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

from marsctl.errors import DataError

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


class CsvBuilder:
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


class ParquetBuilder:
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
        self.rows.append(rec)
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
def compressor(fmt: str, fh: Any) -> Iterator[Callable[[bytes], Any]]:
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
