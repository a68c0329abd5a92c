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
import io
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
    """What an input is: jsonl, parquet, csv, json-array, disk (a ``save_to_disk`` folder) or hub (a cached name)."""
    if str(path) == "-":
        return "jsonl"
    p = Path(path)
    if p.is_dir():
        found = any((p / f).is_file() for f in ("dataset_dict.json", "state.json", "dataset_info.json"))
        return "disk" if found else "jsonl"
    if not p.exists():
        return "hub" if _HUB_NAME.fullmatch(str(path)) and _inner_suffix(p) not in WRITE_FORMATS else "jsonl"
    with contextlib.suppress(OSError), p.open("rb") as fh:
        if fh.read(4) == b"PAR1":
            return "parquet"
    inner = _inner_suffix(p)
    if inner in (".csv", ".tsv"):
        return "csv"
    if inner == ".parquet":
        return "parquet"
    return "json-array" if inner == ".json" and _first_char(p) == b"[" else "jsonl"


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
    elif kind == "hub":
        ds = _pick_split(datasets.load_dataset(path), split, path)
    else:
        builder = "csv" if kind == "csv" else "json"
        ds = datasets.load_dataset(builder, data_files=path, split="train", streaming=True)
        for batch in ds.iter(batch_size=_BATCH):
            yield _Batch(batch)
        return
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
    by record batches; CSV, JSON arrays, ``save_to_disk`` folders and cached hub datasets go through ``datasets``.
    Rows are checked as JSONL rows are (valid Unicode, bounded nesting, finite numbers).
    """
    from marsctl.jsonio import iter_json_lines

    kind = source_kind(path)
    label = name or display_name(path)
    if kind == "jsonl":
        if split is not None:
            msg = f"--split {split}: {label} is a JSONL file, which has no splits"
            raise ConfigError(msg)
        for lineno, value, shown in iter_json_lines(path, name):
            yield lineno, value, shown, "line"
        return
    tables = _parquet_tables(Path(path)) if kind == "parquet" else _dataset_tables(kind, str(path), split)
    try:
        yield from _rows_of_tables(tables, label)
    except (DataError, ConfigError):
        raise
    except Exception as e:  # pyarrow, pandas and datasets raise many kinds; all mean unreadable
        raise _unreadable(kind, label, e) from None


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


def _jsonl_bytes(rows: list[dict[str, Any]]) -> bytes:
    from marsctl.jsonio import dumps

    return "".join(dumps(r) + "\n" for r in rows).encode("utf-8")


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    return list(keys)


def _parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from marsctl.jsonio import strip_private
    from marsctl.shapes import restore

    rows = [strip_private(restore(r)) for r in rows]
    arrays = {}
    for key in _columns(rows):
        try:
            arrays[key] = pa.array([r.get(key) for r in rows])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            msg = f"field '{key}' holds values of different types, which a Parquet column cannot ({e})"
            raise DataError(msg, hint="write .jsonl instead, or make the field one type") from None
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(arrays) if arrays else pa.table({}), sink)
    return sink.getvalue().to_pybytes()


def _csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    """CSV is flat: texts as they are, nested values as JSON text, absent fields empty."""
    import csv

    from marsctl.jsonio import strip_private

    rows = [strip_private(r) for r in rows]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_columns(rows), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v
                         for k, v in r.items()})
    return out.getvalue().encode("utf-8")


def _encode(fmt: str, rows: list[dict[str, Any]]) -> bytes:
    if fmt == "parquet":
        return _parquet_bytes(rows)
    if fmt == "csv":
        return _csv_bytes(rows)
    data = _jsonl_bytes(rows)
    if fmt == "jsonl.gz":
        import gzip

        return gzip.compress(data, mtime=0)
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


@contextlib.contextmanager
def record_writer(path: str | os.PathLike) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Collect records and write them in ``path``'s format (Parquet, CSV, compressed JSONL) atomically at the end.

    Nothing is written when the block raises. Plain JSONL is :func:`marsctl.jsonio.record_writer`'s (it streams).
    """
    from marsctl.jsonio import write_bytes

    fmt = output_format(path)
    rows: list[dict[str, Any]] = []

    def write(rec: dict[str, Any]) -> None:
        rows.append(rec)

    yield write
    write_bytes(_encode(fmt, rows), path)
