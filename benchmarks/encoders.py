"""How fast is each encoder backend, how close are its vectors, and how good are heads trained on them?

Speed (P6): ~400 real texts from the three shared sets, each backend in turn inside one repetition
(the order rotates), against a bare sentence-transformers ``encode`` of the same texts in the same
repetition; texts/s, the ratio to bare sentence-transformers (median over repetitions of the ratio
measured side by side: the machine is shared and noisy), and min/mean cosine to the torch vectors.
Every timed pass embeds into a new, empty cache. Building the onnx/static artefacts is not timed
here (reported once, as measured on first use).

Accuracy: the mlp head (defaults) on each backend, grouped 70/30 splits by prompt, 5 seeds, on the
three shared sets (``features.py``'s pattern); and the default rule of issue #10 applied to it.

    HF_HUB_OFFLINE=1 MARSCTL_CACHE_DIR=DIR python benchmarks/encoders.py [--part speed|accuracy|all]

Each part writes its results (encoders_speed.jsonl, encoders_accuracy.jsonl, with the command in
encoders_runs.json), and encoders.md is rendered from the parts present.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import DATASETS

from marsctl.embed import BACKENDS, EmbeddingCache, Encoder
from marsctl.records import read_pairs
from marsctl.report import mean_std_markdown

SHARED = Path(__file__).resolve().parents[2] / "shared"
TOLERANCE = 0.005  # the default rule: held-out accuracy within 0.5 points of MiniLM (torch) on every set


def sample_texts(shared: Path, per_set: int = 135) -> list[str]:
    """``per_set`` responses (chosen and rejected) from each shared set, drawn with a fixed seed."""
    texts: list[str] = []
    for ds in DATASETS:
        pairs = read_pairs(shared / "data" / ds / "pairs.jsonl")
        random.Random(0).shuffle(pairs)
        half = per_set // 2
        texts += [p["chosen"] for p in pairs[:half]] + [p["rejected"] for p in pairs[half:per_set]]
    return texts


def build_seconds(backends: list[str]) -> dict[str, float]:
    """Build each artefact once (not timed with the encoders); seconds spent, 0 when it was cached."""
    out = {}
    for b in backends:
        t0 = time.perf_counter()
        Encoder(backend=b, cache=EmbeddingCache(Path(tempfile.mkdtemp()) / "e.sqlite")).engine()
        out[b] = round(time.perf_counter() - t0, 1)
    return out


def timed_pass(name: str, texts: list[str], st_model: Any) -> tuple[float, Any]:
    """Seconds to embed ``texts`` with ``name`` (``bare-st`` or a backend, into an empty cache), and the vectors."""
    import numpy as np

    t0 = time.perf_counter()
    if name == "bare-st":
        vecs = st_model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    else:
        with tempfile.TemporaryDirectory() as d:
            vecs = Encoder(backend=name, cache=EmbeddingCache(Path(d) / "e.sqlite")).encode(texts)
    return time.perf_counter() - t0, np.asarray(vecs, dtype=np.float32)


def speed(texts: list[str], backends: list[str], reps: int) -> list[dict[str, Any]]:
    """One row per backend: texts/s (median), ratio to bare sentence-transformers (median), cosines."""
    torch_enc = Encoder()
    st_model = torch_enc.torch.load()
    names = ["bare-st", *backends]
    seconds: dict[str, list[float]] = {n: [] for n in names}
    vectors: dict[str, Any] = {}
    for n in names:  # one untimed pass each: first-call costs (thread pools, allocations) out of the timings
        timed_pass(n, texts[:32], st_model)
    for rep in range(reps):
        order = names[rep % len(names):] + names[: rep % len(names)]
        for n in order:
            s, vectors[n] = timed_pass(n, texts, st_model)
            seconds[n].append(s)
            print(json.dumps({"rep": rep, "encoder": n, "seconds": round(s, 3)}), flush=True)
    ref = vectors["torch"]
    rows = []
    for n in names:
        ratios = [b / s for s, b in zip(seconds[n], seconds["bare-st"], strict=True)]
        cos = (vectors[n] * ref).sum(axis=1) if vectors[n].shape == ref.shape else None
        rows.append({"encoder": n, "texts_per_s": round(len(texts) / statistics.median(seconds[n]), 1),
                     "ratio_to_bare_st": round(statistics.median(ratios), 2),
                     "ratios": [round(r, 2) for r in ratios], "seconds": [round(s, 2) for s in seconds[n]],
                     "min_cos": None if cos is None else float(cos.min()),
                     "mean_cos": None if cos is None else float(cos.mean())})
    return rows


def accuracy(shared: Path, backends: list[str], seeds: int) -> list[dict[str, Any]]:
    """Held-out accuracy of the mlp head on each backend, grouped splits, ``seeds`` seeds per set."""
    from marsctl import steps
    from marsctl.metrics import evaluate
    from marsctl.split import grouped_split

    rows = []
    for ds in DATASETS:
        pairs = read_pairs(shared / "data" / ds / "pairs.jsonl")
        for seed in range(seeds):
            train, test = grouped_split(pairs, 0.3, seed=seed)
            for b in backends:
                t0 = time.perf_counter()
                model = steps.train(train, head="mlp", params=[f"encoder_backend={b}"], seed=seed)
                m = evaluate(steps.score(test, model), n_boot=200)
                rows.append({"dataset": ds, "seed": seed, "head": "mlp", "backend": b, "n_train": len(train),
                             "n_test": len(test), "accuracy": m["accuracy"],
                             "seconds": round(time.perf_counter() - t0, 2)})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def default_rule(acc: list[dict[str, Any]], fastest_first: list[str]) -> str:
    """The issue's rule: the fastest backend within TOLERANCE of torch's mean accuracy on every set."""
    def mean(b: str, ds: str) -> float:
        return statistics.fmean(r["accuracy"] for r in acc if r["backend"] == b and r["dataset"] == ds)

    lines = []
    for b in fastest_first:
        gaps = {ds: mean(b, ds) - mean("torch", ds) for ds in DATASETS}
        ok = all(g >= -TOLERANCE for g in gaps.values())
        shown = ", ".join(f"{ds} {100 * g:+.2f}" for ds, g in gaps.items())
        lines.append(f"- `{b}`: {shown} points vs torch → {'within' if ok else 'NOT within'} 0.5 points on all")
        if ok:
            lines.append(f"\n**By the rule the default would be `{b}`** (the fastest that qualifies).")
            break
    return "\n".join(lines)


def speed_table(rows: list[dict[str, Any]]) -> str:
    from marsctl.report import markdown_table

    def cos(v: float | None) -> str:
        return "— (another space)" if v is None else f"{v:.7f}"

    body = [[r["encoder"], f"{r['texts_per_s']:.1f}", f"{r['ratio_to_bare_st']:.2f}×",
             " ".join(map(str, r["ratios"])), cos(r["min_cos"]), cos(r["mean_cos"])] for r in rows]
    head = ["encoder", "texts/s (median)", "÷ bare ST (median)", "each repetition", "min cos to torch",
            "mean cos to torch"]
    return "\n".join(markdown_table(head, body)) + "\n"


def render(out: Path) -> str:
    """encoders.md from the parts' result files (each part records the exact command that made it)."""
    runs = json.loads((out / "encoders_runs.json").read_text()) if (out / "encoders_runs.json").exists() else {}
    md = ["# Encoder backends (issue #10, levers 1 and 2)\n"]
    rows = acc = None
    if "speed" in runs:
        rows = [json.loads(x) for x in (out / "encoders_speed.jsonl").read_text().splitlines()]
        r = runs["speed"]
        md.append(f"## Speed and agreement (P6)\n\n    {r['command']}\n\n{r['n_texts']} texts from the three shared "
                  f"sets, {r['reps']} repetitions (order rotated), after one untimed warm-up pass each. Seconds "
                  f"to build each artefact before timing (or, when in the cache, to load it; first imports "
                  f"included): "
                  f"{r['builds']}.\n\n{speed_table(rows)}")
        notes = out / "encoders_notes.md"
        if notes.exists():
            md.append(notes.read_text())
    if "accuracy" in runs:
        acc = [json.loads(x) for x in (out / "encoders_accuracy.jsonl").read_text().splitlines()]
        backends = list(dict.fromkeys(a["backend"] for a in acc))
        table = mean_std_markdown(acc, {"dataset": DATASETS, "head": ("mlp",)}, "backend", backends, backends)
        md.append(f"## Held-out accuracy, mlp head\n\n    {runs['accuracy']['command']}\n\n"
                  f"Grouped 70/30 splits, {runs['accuracy']['seeds']} seeds, mean ± std.\n\n{table}")
        speeds = {r["encoder"]: r["texts_per_s"] for r in rows or []}
        order = sorted(backends, key=lambda b: -speeds.get(b, 0)) if speeds else ["static", "onnx", "torch"]
        md.append("## The default rule\n\n" + default_rule(acc, order) + "\n")
    (out / "encoders.md").write_text("\n".join(md))
    return "\n".join(md)


def record_run(out: Path, part: str, facts: dict[str, Any]) -> None:
    path = out / "encoders_runs.json"
    runs = json.loads(path.read_text()) if path.exists() else {}
    cache = os.environ.get("MARSCTL_CACHE_DIR", "")
    command = f"HF_HUB_OFFLINE=1 MARSCTL_CACHE_DIR={cache} python benchmarks/encoders.py {' '.join(sys.argv[1:])}"
    runs[part] = {"command": command, **facts}
    path.write_text(json.dumps(runs, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(SHARED))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--part", choices=["speed", "accuracy", "all"], default="all")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    shared, out = Path(args.shared), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backends = list(BACKENDS)
    if args.part in ("speed", "all"):
        builds = build_seconds([b for b in backends if b != "torch"])
        texts = sample_texts(shared)
        rows = speed(texts, backends, args.reps)
        (out / "encoders_speed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        record_run(out, "speed", {"n_texts": len(texts), "reps": args.reps, "builds": builds})
    if args.part in ("accuracy", "all"):
        acc = accuracy(shared, backends, args.seeds)
        (out / "encoders_accuracy.jsonl").write_text("".join(json.dumps(r) + "\n" for r in acc))
        record_run(out, "accuracy", {"seeds": args.seeds})
    print(render(out))

if __name__ == "__main__":
    main()
