"""Compare two output trees of scripts/behaviour_check.sh byte for byte, after dropping what a clock decides.

The folder each tree was written to is replaced by ``<OUT>`` in every file. Volatile, and dropped: JSON keys
that hold the clock or the cache's state (``*_seconds``, ``seconds``, ``started``, ``created``, the
manifest's ``timing``: texts embedded vs found in the cache) and, in an HTML report, the "Written <date>",
a run's created/started time and its Timing table. Everything else (model weights, PNGs, JSONL rows,
tables) must be identical.
    usage: python scripts/compare_trees.py BEFORE AFTER      exit 0: identical; 1: differences listed
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

VOLATILE_KEY = re.compile(r"(^|_)seconds$|^started$|^created$|^timing$")
WRITTEN = re.compile(rb"Written \d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}")
ISO_TIME = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}")  # a run's created/started
TIMING_TABLE = re.compile(rb"<h3>Timing</h3>\s*<table>.*?</table>", re.S)


def _drop(x):
    if isinstance(x, dict):
        return {k: _drop(v) for k, v in x.items() if not VOLATILE_KEY.search(k)}
    if isinstance(x, list):
        return [_drop(v) for v in x]
    return x


def normalised(path: Path, root: Path) -> bytes:
    data = path.read_bytes().replace(str(root).encode(), b"<OUT>")  # where each tree was written
    if path.suffix == ".json":
        return json.dumps(_drop(json.loads(data)), sort_keys=True).encode()
    if path.suffix == ".jsonl":
        return b"\n".join(json.dumps(_drop(json.loads(line)), sort_keys=True).encode()
                          for line in data.splitlines() if line.strip())
    if path.suffix == ".html":
        return TIMING_TABLE.sub(b"", ISO_TIME.sub(b"", WRITTEN.sub(b"", data)))
    if path.suffix == ".stderr":
        return b""  # progress and timings; compared by eye
    return data


def main(before: str, after: str) -> int:
    a, b = Path(before), Path(after)
    fa = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    fb = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    bad = [f"only in {before}: {p}" for p in sorted(fa - fb)] + [f"only in {after}: {p}" for p in sorted(fb - fa)]
    bad += [f"differs: {p}" for p in sorted(fa & fb) if normalised(a / p, a) != normalised(b / p, b)]
    print("\n".join(bad) or f"identical: {len(fa)} files (volatile timings dropped)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
