"""The whole tool's speed (issue #10), in one run, as ratios measured side by side (the machine is shared).

- P1: README demo (``refine fixtures/hh_train.jsonl --eval fixtures/hh_test.jsonl --rounds 3``, cold
  cache) wall time ÷ a bare sentence-transformers encode of the unique texts it embeds; and the same
  refine with each faster encoder backend ÷ the torch one, alternating, median of ``--reps``.
- P3: ``marsctl --help`` wall time (median of 5).
- P4: ``marsctl score`` pairs/s with every embedding cached (``--score-pairs`` pairs).
- P5: peak RSS of that ``score`` at 2k and at 200k pairs (warm embeddings).
- P6: texts/s of each backend ÷ bare sentence-transformers, with cosines: ``benchmarks/encoders.py``.

    HF_HUB_OFFLINE=1 python benchmarks/perf.py [--reps 2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "fixtures"
MARSCTL = [sys.executable, "-m", "marsctl"]
BUILT = ""  # --built: reuse these artefacts instead of building them
RSS = "import resource,subprocess,sys; subprocess.run(sys.argv[1:], check=True); " \
      "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"


def run(args: list[str], cache: Path, **kw: Any) -> float:
    """Wall seconds of one marsctl command with MARSCTL_CACHE_DIR=cache (output discarded)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MARSCTL_CACHE_DIR": str(cache), "MARSCTL_NO_PROGRESS": "1"}
    t0 = time.perf_counter()
    subprocess.run([*MARSCTL, *args], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t0


def demo_texts(run_dir: Path) -> tuple[list[str], list[str]]:
    """Unique prompts and responses a refine run embedded: every round's training pairs and the eval file."""
    prompts: set[str] = set()
    responses: set[str] = set()
    for f in [*sorted(run_dir.glob("round-*/train.jsonl")), FIX / "hh_test.jsonl"]:
        for line in f.read_text().splitlines():
            r = json.loads(line)
            prompts.add(r["prompt"])
            responses.update((r["chosen"], r["rejected"]))
    return sorted(prompts), sorted(responses)


def bare_encode(prompts: list[str], responses: list[str]) -> float:
    """Seconds of sentence-transformers encode (its defaults) of the texts, model load excluded."""
    from sentence_transformers import SentenceTransformer

    from marsctl.embed import default_encoder_path

    model = SentenceTransformer(default_encoder_path(), device="cpu", model_kwargs={"use_safetensors": True})
    t0 = time.perf_counter()
    model.encode(prompts)
    model.encode(responses)
    return time.perf_counter() - t0


def prebuild(backends: list[str], cache: Path) -> Path:
    """Build the onnx/static artefacts once into ``cache`` (their one-off cost is in encoders.md)."""
    from marsctl.embed import Encoder

    if BUILT:
        shutil.copytree(Path(BUILT) / "encoders", cache / "encoders")
    os.environ["MARSCTL_CACHE_DIR"] = str(cache)
    for b in backends:
        if b != "torch":
            Encoder(backend=b)._backend()
    del os.environ["MARSCTL_CACHE_DIR"]
    (cache / "encoders").mkdir(parents=True, exist_ok=True)
    return cache / "encoders"


def p1(reps: int, backends: list[str], tmp: Path) -> dict[str, Any]:
    """Refine wall (cold cache) per backend, and bare encode, alternating; medians and ratios."""
    walls: dict[str, list[float]] = {b: [] for b in backends}
    bare: list[float] = []
    built = prebuild(backends, tmp / "artefacts")
    for rep in range(reps):
        for b in backends[rep % len(backends):] + backends[: rep % len(backends)]:
            out = tmp / f"demo-{b}-{rep}"
            shutil.copytree(built, tmp / f"cache-{b}-{rep}" / "encoders")  # cold embeddings, built artefacts
            walls[b].append(run(["refine", str(FIX / "hh_train.jsonl"), "--eval", str(FIX / "hh_test.jsonl"),
                                 "--rounds", "3", "--out", str(out), "-p", f"encoder_backend={b}"],
                                tmp / f"cache-{b}-{rep}"))
            if b == "torch":
                bare.append(bare_encode(*demo_texts(out)))
                print(json.dumps({"rep": rep, "bare_encode": round(bare[-1], 2)}), flush=True)
            print(json.dumps({"rep": rep, "refine": b, "seconds": round(walls[b][-1], 2)}), flush=True)
    prompts, responses = demo_texts(tmp / "demo-torch-0")
    return {"unique_texts": len(prompts) + len(responses), "bare_encode_s": [round(x, 2) for x in bare],
            "refine_s": {b: [round(x, 2) for x in v] for b, v in walls.items()},
            "P1": round(statistics.median(w / e for w, e in zip(walls["torch"], bare, strict=True)), 2),
            "vs_torch": {b: round(statistics.median(x / t for x, t in zip(v, walls["torch"], strict=True)), 3)
                         for b, v in walls.items()}}


def pairs_file(n: int, dest: Path) -> Path:
    """``n`` pairs cycled from the fixtures (so every text is embedded once, in the warm-up)."""
    base = [json.loads(x) for x in (FIX / "hh_train.jsonl").read_text().splitlines()]
    with dest.open("w") as f:
        for i in range(n):
            r = base[i % len(base)]
            f.write(json.dumps({**r, "id": f"{r.get('id', 'pair')}-{i}"}) + "\n")  # ids must be unique
    return dest


def p4_p5(n_score: int, tmp: Path) -> dict[str, Any]:
    """Warm-cache scoring: pairs/s at ``n_score`` pairs, and peak RSS at 2k and 200k pairs."""
    cache = tmp / "cache-warm"
    model = tmp / "model"
    run(["train", str(FIX / "hh_train.jsonl"), "-o", str(model)], cache)
    run(["score", str(pairs_file(len((FIX / "hh_train.jsonl").read_text().splitlines()), tmp / "warm.jsonl")),
         "-m", str(model)], cache)
    f = pairs_file(n_score, tmp / "score.jsonl")
    wall = statistics.median(run(["score", str(f), "-m", str(model)], cache) for _ in range(2))
    rss = {}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MARSCTL_CACHE_DIR": str(cache), "MARSCTL_NO_PROGRESS": "1"}
    for n in (2_000, 200_000):
        g = pairs_file(n, tmp / f"rss-{n}.jsonl")
        proc = subprocess.run([sys.executable, "-c", RSS, *MARSCTL, "score", str(g), "-m", str(model), "-o",
                               os.devnull], env=env, check=True, capture_output=True, text=True)
        rss[n] = round(int(proc.stdout.split()[-1]) / 1024, 1)  # ru_maxrss is in KiB on Linux
    return {"P4_pairs_per_s": round(n_score / wall, 1), "score_wall_s": round(wall, 2), "n_score": n_score,
            "P5_peak_rss_mib": rss, "P5_delta_mib": round(rss[200_000] - rss[2_000], 1)}


def p3() -> float:
    """Median wall of ``marsctl --help`` over 5 runs."""
    walls = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([*MARSCTL, "--help"], check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - t0)
    return round(statistics.median(walls), 3)


def render(res: dict[str, Any], command: str) -> str:
    d = res["P1"]
    lines = ["# Performance (issue #10)", "", f"    {command}", "",
             "| figure | value |", "|---|---|",
             f"| P1: README demo refine (torch, cold cache) ÷ bare sentence-transformers encode of its "
             f"{d['unique_texts']} unique texts | {d['P1']} (refine {d['refine_s']['torch']} s; bare "
             f"{d['bare_encode_s']} s) |"]
    for b, r in d["vs_torch"].items():
        if b != "torch":
            lines.append(f"| refine with `-p encoder_backend={b}` ÷ refine with torch (same run) | {r} "
                         f"({d['refine_s'][b]} s) |")
    q = res["P4_P5"]
    lines += [f"| P3: `marsctl --help` wall (median of 5) | {res['P3']} s |",
              f"| P4: score pairs/s, warm embeddings ({q['n_score']} pairs) | {q['P4_pairs_per_s']} |",
              f"| P5: peak RSS of score, 2k / 200k pairs (warm) | {q['P5_peak_rss_mib'][2000]} / "
              f"{q['P5_peak_rss_mib'][200000]} MiB (+{q['P5_delta_mib']} MiB) |",
              "| P6: each backend's texts/s ÷ bare sentence-transformers | see encoders.md |", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--backends", default="torch,onnx,static")
    ap.add_argument("--score-pairs", type=int, default=20_000)
    ap.add_argument("--built", default="", help="a cache dir whose encoders/ (onnx, static) to reuse")
    args = ap.parse_args()
    global BUILT
    BUILT = args.built
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "HF_HUB_OFFLINE=1 python benchmarks/perf.py " + " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        res = {"P3": p3(), "P1": p1(args.reps, args.backends.split(","), tmp), "P4_P5": p4_p5(args.score_pairs, tmp)}
    res["max_rss_self_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    (out / "perf.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "perf.md").write_text(render(res, command))
    print(render(res, command))


if __name__ == "__main__":
    main()
