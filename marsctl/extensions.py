"""File extensions and the record formats they name: the one table that the readers and the writers share."""

from __future__ import annotations

from pathlib import Path

# -o extension -> what is written there (a name without an extension, a device or '-' gets JSONL)
WRITE_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".jsonl.gz": "jsonl.gz",
                 ".json.gz": "jsonl.gz", ".jsonl.zst": "jsonl.zst", ".parquet": "parquet", ".csv": "csv"}
COMPRESSED_SUFFIXES = (".gz", ".zst", ".xz")


def inner_suffix(p: Path) -> str:
    """The extension under any compression suffix: ``x.csv.gz`` -> ``.csv``.

    >>> inner_suffix(Path("pairs.CSV.gz")), inner_suffix(Path("a.jsonl")), inner_suffix(Path("README"))
    ('.csv', '.jsonl', '')
    """
    suffixes = [s.lower() for s in p.suffixes]
    while suffixes and suffixes[-1] in COMPRESSED_SUFFIXES:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""
