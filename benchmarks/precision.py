"""The encoder's bf16 path against fp32 (issue 20, item 1): how close, and how much faster, through marsctl.

For each of the three shared sets (``../shared/data/*/pairs.jsonl``), ``--per-set`` texts as marsctl
embeds them: up to half prompts (side ``prompt``: their tail, the keep-end truncation), the rest
distinct responses (side ``response``: chosen first), from pairs shuffled with seed 0. Each set is embedded through
``marsctl.embed.Encoder`` with ``encoder_precision=fp32`` and ``bf16``, alternating, ``--reps`` times,
each pass into a new, empty cache (cold) with the model already loaded (its load is not timed; the
same loaded network serves both precisions: autocast does not change the weights). Reported per set:
per-text cosine bf16 vs fp32 (min, mean; from the first repetition), and the wall seconds of each
precision (median of the repetitions) with their ratio, plus the 1-minute load average around each set.

    HF_HUB_OFFLINE=1 python benchmarks/precision.py [--per-set 600] [--reps 3] [--out benchmarks/results]

Writes precision.md and precision.jsonl to ``--out`` after each set (a cut-short run keeps what it did).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import DATASETS

from marsctl.embed import BF16_CPU_FLAGS, EmbeddingCache, Encoder, cpu_flags, native_bf16
from marsctl.records import read_pairs

SHARED = Path(__file__).resolve().parents[2] / "shared"


def set_texts(path: Path, n: int) -> tuple[list[str], list[str]]:
    """Up to ``n // 2`` distinct prompts, and distinct responses (chosen, then rejected) to make ``n`` texts.

    From pairs shuffled with seed 0; a set with fewer distinct prompts gets more responses.
    """
    pairs = read_pairs(path)
    random.Random(0).shuffle(pairs)
    prompts = list(dict.fromkeys(p["prompt"] for p in pairs))[: n // 2]
    pool = dict.fromkeys([p["chosen"] for p in pairs] + [p["rejected"] for p in pairs])
    responses = list(pool)[: n - len(prompts)]
    return prompts, responses


def one_pass(model: Any, precision: str, prompts: list[str], responses: list[str]) -> tuple[float, Any]:
    """Seconds to embed the texts into a new, empty cache, and the vectors (prompts then responses)."""
    import numpy as np

    enc = Encoder(precision=precision, cache=EmbeddingCache(Path(tempfile.mkdtemp()) / "e.sqlite", dim=384))
    enc.torch.model = model  # loaded once, outside the timing
    t0 = time.perf_counter()
    vecs = np.concatenate([enc.encode(prompts, side="prompt"), enc.encode(responses, side="response")])
    seconds = time.perf_counter() - t0
    assert enc.stats["misses"] == len(set(prompts)) + len(set(responses))  # cold: every text embedded
    return seconds, vecs


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def render(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Encoder precision: bf16 autocast against fp32 (issue 20, item 1)",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"CPU: {meta['cpu']} ({meta['cores']} cores), bf16 flags: {', '.join(meta['bf16_flags']) or 'none'} "
        f"(native bf16: {meta['native']}); torch {meta['torch']}, {meta['threads']} threads; "
        f"{meta['per_set']} texts per set (up to half prompts, as their tail; the rest responses), "
        f"max_seq_length 256, batch 64, {meta['reps']} alternating repetitions, cold cache each pass, "
        "model load not timed.",
        "",
        "| set | texts | cosine min | cosine mean | fp32 s (median) | bf16 s (median) | fp32 ÷ bf16 | "
        "load before → after |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['texts']} | {r['cos_min']:.5f} | {r['cos_mean']:.5f} | "
                     f"{r['fp32_median']:.1f} | {r['bf16_median']:.1f} | {r['speedup']:.2f}× | "
                     f"{r['load_before']:.1f} → {r['load_after']:.1f} |")
    lines += ["", "Each pass (seconds, in run order): " + "; ".join(
        f"{r['dataset']}: fp32 {r['fp32_seconds']}, bf16 {r['bf16_seconds']}" for r in rows), ""]
    lines += [meta["note"], ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-set", type=int, default=600)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--note", default="", help="A line added to the results (e.g. how busy the machine was).")
    args = ap.parse_args()
    import numpy as np
    import torch

    if not native_bf16():
        sys.exit("this CPU has no native bf16 units: marsctl runs fp32 only here (nothing to compare)")
    out = Path(args.out)
    model = Encoder().torch.load()
    meta = {"command": "HF_HUB_OFFLINE=1 python benchmarks/precision.py " + shlex.join(sys.argv[1:]),
            "cpu": cpu_model(), "cores": os.cpu_count(), "bf16_flags": sorted(cpu_flags() & set(BF16_CPU_FLAGS)),
            "native": native_bf16(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "per_set": args.per_set, "reps": args.reps, "note": args.note}
    rows: list[dict[str, Any]] = []
    for ds in DATASETS:
        prompts, responses = set_texts(SHARED / "data" / ds / "pairs.jsonl", args.per_set)
        before = os.getloadavg()[0]
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        vecs: dict[str, Any] = {}
        for rep in range(args.reps):
            for precision in (("fp32", "bf16") if rep % 2 == 0 else ("bf16", "fp32")):
                seconds, v = one_pass(model, precision, prompts, responses)
                times[precision].append(round(seconds, 2))
                vecs.setdefault(precision, v)
                print(f"{ds} rep {rep} {precision}: {seconds:.1f} s", file=sys.stderr, flush=True)
        cos = (vecs["fp32"] * vecs["bf16"]).sum(axis=1)
        fp, bf = statistics.median(times["fp32"]), statistics.median(times["bf16"])
        rows.append({"dataset": ds, "texts": len(prompts) + len(responses), "cos_min": float(np.min(cos)),
                     "cos_mean": float(np.mean(cos)), "fp32_seconds": times["fp32"], "bf16_seconds": times["bf16"],
                     "fp32_median": fp, "bf16_median": bf, "speedup": fp / bf, "load_before": before,
                     "load_after": os.getloadavg()[0]})
        (out / "precision.jsonl").write_text("".join(json.dumps({**r, **meta}) + "\n" for r in rows))
        (out / "precision.md").write_text(render(rows, meta))
    print(render(rows, meta))


if __name__ == "__main__":
    main()
