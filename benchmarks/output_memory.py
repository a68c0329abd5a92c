"""Peak memory of writing N pairs to each output format (issue #18: outputs are streamed, not held in memory).

For N pairs (default 100,000, cut from ``../shared/data/hh_rlhf_harmless_base_test`` and repeated with
distinct ids and prompts), runs ``marsctl convert IN --to trl -o OUT`` once per output format, each in its
own subprocess, and records that process's peak RSS (``os.wait4``'s ``ru_maxrss``) and wall time. No
embedding is needed. ``convert`` holds its input pairs in memory (``read_pairs``), so the JSONL row is the
floor: a format that streams costs about what JSONL costs.

    HF_HUB_OFFLINE=1 python benchmarks/output_memory.py [--pairs 100000] [--label after] \
        [--out benchmarks/results/output_memory.jsonl]

The marsctl measured is the one ``python -c 'import marsctl'`` finds outside the repository (the
installed one); for another version, ``git archive REV marsctl | tar -x -C DIR`` and set
``PYTHONPATH=DIR``.

Each run appends one JSON row per format to ``--out`` (with ``--label``); the Markdown table in
``benchmarks/results/output_memory.md`` is written from those rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "hh_rlhf_harmless_base_test" / "pairs.jsonl"
FORMATS = ["jsonl", "jsonl.gz", "jsonl.zst", "parquet", "csv", "-"]


def make_input(n: int, dest: Path) -> None:
    """N distinct pairs: the source rows repeated, each with its own id and a numbered prompt."""
    rows = [json.loads(line) for line in SOURCE.read_text(encoding="utf-8").splitlines() if line.strip()]
    with dest.open("w", encoding="utf-8") as fh:
        for i in range(n):
            r = dict(rows[i % len(rows)])
            r["id"] = f"bench-{i}"
            r["prompt"] = f"{r.get('prompt', '')} [{i}]"
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def peak_rss(args: list[str], cwd: str, stdout: int | None = None) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one command run to completion in ``cwd``.

    ``cwd`` is not the repository, so ``PYTHONPATH`` picks the marsctl that runs (``python -m`` puts the
    current directory first on ``sys.path``).
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MARSCTL_NO_PROGRESS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=stdout, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({proc.returncode}):\n{err.decode(errors='replace')}")
    return usage.ru_maxrss / 1024, wall  # ru_maxrss is in KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--label", default="after", help="e.g. before / after (a column of the results)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "output_memory.jsonl"))
    ap.add_argument("--formats", default=",".join(FORMATS))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="marsctl-outmem-") as tmp:
        src = Path(tmp) / "pairs.jsonl"
        make_input(a.pairs, src)
        print(f"input: {a.pairs} pairs, {src.stat().st_size / 1e6:.0f} MB", file=sys.stderr)
        for fmt in a.formats.split(","):
            out = "-" if fmt == "-" else str(Path(tmp) / f"out.{fmt}")
            args = [sys.executable, "-m", "marsctl", "convert", str(src), "--to", "trl", "-o", out]
            rss, wall = peak_rss(args, tmp, stdout=subprocess.DEVNULL)
            size = 0 if out == "-" else Path(out).stat().st_size
            row = {"label": a.label, "pairs": a.pairs, "format": "stdout" if fmt == "-" else fmt,
                   "peak_rss_mb": round(rss), "wall_s": round(wall, 1), "output_mb": round(size / 1e6, 1)}
            print(json.dumps(row), flush=True)
            with open(a.out, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
            if out != "-":
                os.unlink(out)


if __name__ == "__main__":
    main()
