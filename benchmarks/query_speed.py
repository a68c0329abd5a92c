"""Query vs score on pools with warm embeddings: wall time and peak RSS of each (issue 22's speed and memory goal).

A pool of N unlabeled pairs is built from the texts of ``SHARED/data/hh_rlhf_harmless_base_test`` (prompts and
responses recombined, so every text is already in the embedding cache: warm embeddings), a model is trained on
that set, then ``marsctl score POOL`` and ``marsctl query POOL -k N/100 --strategy S`` run side by side, each in
its own subprocess (peak RSS from ``os.wait4``). The goal: query costs at most scoring the pool once + 10 %, and
its memory stays flat as N grows.

    HF_HUB_OFFLINE=1 python benchmarks/query_speed.py [--sizes 5000,20000] [--strategies margin,diverse] \
        [--shared ../shared] [--out benchmarks/results/query_speed.jsonl]
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


def peak_rss(args: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one command run to completion."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MARSCTL_NO_PROGRESS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(args)} failed:\n{err.decode(errors='replace')}")
    return usage.ru_maxrss / 1024, wall


def write_pool(src: Path, n: int, path: Path) -> None:
    rows = [json.loads(x) for x in src.read_text(encoding="utf-8").splitlines() if x.strip()]
    prompts = [r["prompt"] for r in rows]
    responses = [r["chosen"] for r in rows] + [r["rejected"] for r in rows]
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            a, b = responses[(i * 7) % len(responses)], responses[(i * 13 + 1) % len(responses)]
            fh.write(json.dumps({"id": f"q{i}", "prompt": prompts[i % len(prompts)], "response_a": a,
                                 "response_b": b}, ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="5000,20000")
    ap.add_argument("--strategies", default="margin,diverse")
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "query_speed.jsonl"))
    args = ap.parse_args()
    marsctl = [sys.executable, "-m", "marsctl"]
    src = Path(args.shared) / "data" / "hh_rlhf_harmless_base_test" / "pairs.jsonl"
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        peak_rss([*marsctl, "train", str(src), "-o", str(model)])
        rows = []
        for n in (int(x) for x in args.sizes.split(",")):
            pool = Path(tmp) / f"pool{n}.jsonl"
            write_pool(src, n, pool)
            peak_rss([*marsctl, "score", str(pool), "-m", str(model), "-o", os.devnull])  # warm the OS file cache
            rss, wall = peak_rss([*marsctl, "score", str(pool), "-m", str(model), "-o", os.devnull])
            rows.append({"pool": n, "command": "score", "k": None, "wall_s": round(wall, 2), "peak_rss_mb": round(rss)})
            for st in args.strategies.split(","):
                rss, wall = peak_rss([*marsctl, "query", str(pool), "-m", str(model), "-k", str(max(1, n // 100)),
                                      "--strategy", st, "-o", os.devnull])
                rows.append({"pool": n, "command": f"query {st}", "k": max(1, n // 100), "wall_s": round(wall, 2),
                             "peak_rss_mb": round(rss)})
            for r in rows[-1 - len(args.strategies.split(",")):]:
                print(json.dumps({**r, "load1": round(load, 2)}), flush=True)
    with open(args.out, "a", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps({**r, "load1_at_start": round(load, 2)}) + "\n")


if __name__ == "__main__":
    main()
