"""The whole tool's speed (issue #10), in one run, as ratios measured side by side (the machine is shared).

- P1: README demo (``refine fixtures/demo_train.jsonl --eval fixtures/demo_test.jsonl --rounds 3``, cold
  cache, the head's default encoder precision) wall time ÷ a bare fp32 sentence-transformers encode of
  the unique texts it embeds; and the same refine with each other encoder backend in ``--backends`` ÷ the
  torch one, alternating, median of ``--reps``.
- P3: ``marsctl --help`` wall time (median of 5).
- P4: ``marsctl score`` pairs/s with every embedding cached, at 2k and 200k pairs whose texts are all
  distinct (each stored in the cache under its own key): the whole command, and the marginal rate.
- P5: peak RSS of those two ``score`` runs.
- P6: texts/s of marsctl's default encoder (the head's default ``encoder_precision``) and of its fp32
  path ÷ a bare fp32 sentence-transformers encode of the same ~400 texts (``encoders.sample_texts``),
  alternating, each pass into an empty cache, with each text's cosine to the bare fp32 vector.

The 1-minute load average before and after each part is written with the figures.

    HF_HUB_OFFLINE=1 python benchmarks/perf.py [--reps 2] [--built CACHE_DIR] [--out benchmarks/results]
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


DEMO = ("demo_train.jsonl", "demo_test.jsonl")  # the README's demo


def demo_texts(run_dir: Path) -> tuple[list[str], list[str]]:
    """Unique prompts and responses a refine run embedded: every round's training pairs and the eval file."""
    prompts: set[str] = set()
    responses: set[str] = set()
    for f in [*sorted(run_dir.glob("round-*/train.jsonl")), FIX / DEMO[1]]:
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
            Encoder(backend=b).engine()
    del os.environ["MARSCTL_CACHE_DIR"]
    (cache / "encoders").mkdir(parents=True, exist_ok=True)
    return cache / "encoders"


def p1(reps: int, backends: list[str], tmp: Path) -> dict[str, Any]:
    """Refine wall (cold cache) per backend, and bare encode, alternating; medians and ratios."""
    walls: dict[str, list[float]] = {b: [] for b in backends}
    bare: list[float] = []
    built = tmp / "artefacts" / "encoders"  # main() built them
    for rep in range(reps):
        for b in backends[rep % len(backends):] + backends[: rep % len(backends)]:
            out = tmp / f"demo-{b}-{rep}"
            shutil.copytree(built, tmp / f"cache-{b}-{rep}" / "encoders")  # cold embeddings, built artefacts
            walls[b].append(run(["refine", str(FIX / DEMO[0]), "--eval", str(FIX / DEMO[1]),
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


def pairs_file(n: int, dest: Path, unique: bool = False) -> Path:
    """``n`` pairs cycled from the fixtures; with ``unique``, every text made distinct by a suffix `` #i``."""
    base = [json.loads(x) for x in (FIX / "hh_train.jsonl").read_text().splitlines()]
    with dest.open("w") as f:
        for i in range(n):
            r = base[i % len(base)]
            r = {**r, "id": f"{r.get('id', 'pair')}-{i}"}  # ids must be unique
            if unique:
                r.update({k: f"{r[k]} #{i}" for k in ("prompt", "chosen", "rejected")})
            f.write(json.dumps(r) + "\n")
    return dest


def warm_unique(n: int, model: Path, cache: Path, dest: Path) -> Path:
    """A file of ``n`` pairs with distinct texts, all in the cache: each stored under its own key with the
    vector of the fixture text it was made from (what is measured is scoring, not the vectors' values)."""
    os.environ["MARSCTL_CACHE_DIR"] = str(cache)
    try:
        from marsctl.modeldir import load_head

        enc = load_head(model).encoder
        base = [json.loads(x) for x in (FIX / "hh_train.jsonl").read_text().splitlines()]
        vec = {side: dict(zip(texts, enc.encode(texts, side=side), strict=True))
               for side, texts in (("prompt", [r["prompt"] for r in base]),
                                   ("response", [r[k] for r in base for k in ("chosen", "rejected")]))}
        items = []
        for i in range(n):
            r = base[i % len(base)]
            items.append((enc.key(f"{r['prompt']} #{i}", "prompt"), vec["prompt"][r["prompt"]]))
            items += [(enc.key(f"{r[k]} #{i}", "response"), vec["response"][r[k]]) for k in ("chosen", "rejected")]
            if len(items) >= 30_000:
                enc.cache.put_many(items)
                items = []
        enc.cache.put_many(items)
    finally:
        del os.environ["MARSCTL_CACHE_DIR"]
    return pairs_file(n, dest, unique=True)


def timed_rss(args: list[str], cache: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one marsctl command, output to /dev/null."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MARSCTL_CACHE_DIR": str(cache), "MARSCTL_NO_PROGRESS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", RSS, *MARSCTL, *args], env=env, check=True, capture_output=True,
                          text=True)
    return time.perf_counter() - t0, round(int(proc.stdout.split()[-1]) / 1024, 1)  # ru_maxrss: KiB on Linux


def p4_p5(sizes: tuple[int, int], reps: int, tmp: Path) -> dict[str, Any]:
    """Warm-cache ``marsctl score`` of ``sizes`` pairs with distinct texts: wall, pairs/s and peak RSS."""
    cache = tmp / "cache-warm"
    model = tmp / "model"
    run(["train", str(FIX / "hh_train.jsonl"), "-o", str(model)], cache)
    files = {n: warm_unique(n, model, cache, tmp / f"score-{n}.jsonl") for n in sizes}
    walls: dict[int, list[float]] = {n: [] for n in sizes}
    rss: dict[int, float] = {}
    for _ in range(reps):  # alternating sizes
        for n in sizes:
            w, r = timed_rss(["score", str(files[n]), "-m", str(model), "-o", os.devnull], cache)
            walls[n].append(w)
            rss[n] = max(rss.get(n, 0.0), r)
            print(json.dumps({"score_pairs": n, "seconds": round(w, 2), "rss_mib": r}), flush=True)
    small, big = sizes
    med = {n: statistics.median(v) for n, v in walls.items()}
    return {"sizes": list(sizes), "walls_s": {n: [round(x, 2) for x in v] for n, v in walls.items()},
            "P4_pairs_per_s": round(big / med[big], 1),
            "P4_marginal_pairs_per_s": round((big - small) / (med[big] - med[small]), 1),
            "P5_peak_rss_mib": rss, "P5_delta_mib": round(rss[big] - rss[small], 1)}


def default_precision() -> str:
    """The mlp head's default ``encoder_precision`` (what a run uses unless told otherwise)."""
    from marsctl_plugins.heads.embedding import MLPConfig

    return str(MLPConfig().encoder_precision)


def p6(reps: int) -> list[dict[str, Any]]:
    """marsctl's default encoder and its fp32 path against a bare fp32 sentence-transformers encode, alternating.

    Each marsctl pass embeds into a new, empty cache with the network already loaded; the first untimed
    pass of each takes first-call costs (thread pools, allocations) out of the timings. Cosines are each
    text's to the bare fp32 vector.
    """
    import encoders  # benchmarks/encoders.py, beside this script
    import numpy as np

    from marsctl.embed import EmbeddingCache, Encoder
    from marsctl.embed.precision import resolve_precision

    texts = encoders.sample_texts(encoders.SHARED)
    default = default_precision()
    resolved = resolve_precision(default, "torch", "cpu")
    names = {"bare-st": None, "marsctl fp32": "fp32", f"marsctl default ({default}: {resolved})": default}
    st_model = Encoder().torch.load()

    def timed(name: str, sample: list[str]) -> tuple[float, Any]:
        if names[name] is None:
            return encoders.timed_pass("bare-st", sample, st_model)
        with tempfile.TemporaryDirectory() as d:
            enc = Encoder(precision=names[name], cache=EmbeddingCache(Path(d) / "e.sqlite"))
            t0 = time.perf_counter()
            vecs = enc.encode(sample)
            return time.perf_counter() - t0, np.asarray(vecs, dtype=np.float32)

    order = list(names)
    for n in order:
        timed(n, texts[:32])
    seconds: dict[str, list[float]] = {n: [] for n in order}
    vectors: dict[str, Any] = {}
    for rep in range(reps):
        for n in order[rep % len(order):] + order[: rep % len(order)]:
            s, vectors[n] = timed(n, texts)
            seconds[n].append(s)
            print(json.dumps({"rep": rep, "encoder": n, "seconds": round(s, 3)}), flush=True)
    rows = []
    for n in order:
        ratios = [b / s for s, b in zip(seconds[n], seconds["bare-st"], strict=True)]
        cos = (vectors[n] * vectors["bare-st"]).sum(axis=1)
        rate = round(len(texts) / statistics.median(seconds[n]), 1)
        rows.append({"encoder": n, "texts": len(texts), "texts_per_s": rate,
                     "ratio_to_bare_st": round(statistics.median(ratios), 2), "ratios": [round(r, 2) for r in ratios],
                     "seconds": [round(x, 2) for x in seconds[n]], "min_cos": float(cos.min()),
                     "mean_cos": float(cos.mean())})
    return rows


def p3() -> float:
    """Median wall of ``marsctl --help`` over 5 runs."""
    walls = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([*MARSCTL, "--help"], check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - t0)
    return round(statistics.median(walls), 3)


def render(res: dict[str, Any], command: str, notes: Path | None = None) -> str:
    """perf.md: every P figure as a ratio (and its seconds), with the load average seen around each part.

    ``notes`` (perf_notes.md beside it, written by hand) is appended when it exists.
    """
    load = res["load"]
    lines = ["# Performance (issues #10, #20)", "", f"    {command}", "",
             f"One run on the shared 2-core machine; 1-minute load average before/after each part: "
             f"{', '.join(f'{k} {v[0]:.1f}/{v[1]:.1f}' for k, v in load.items())}. Ratios are measured side "
             "by side in the same run, so they hold better than the seconds under load.", "",
             "| figure | value |", "|---|---|"]
    lines += _render_p1(res["P1"]) if "P1" in res else ["| P1 | not (yet) measured in this run: it runs last |"]
    if "P3" in res:
        lines.append(f"| P3: `marsctl --help` wall (median of 5) | {res['P3']} s |")
    if "P4_P5" in res:
        lines += _render_p4_p5(res["P4_P5"])
    for r in res.get("P6", []):
        if r["encoder"] == "bare-st":
            continue
        cos = ("—" if r["min_cos"] is None else f"min cos {r['min_cos']:.7f}, mean {r['mean_cos']:.7f} to bare fp32")
        lines.append(f"| P6: {r['encoder']} texts/s ÷ bare fp32 sentence-transformers "
                     f"({r['texts_per_s']} vs {_bare_rate(res['P6'])} texts/s) | "
                     f"{r['ratio_to_bare_st']:.2f}× (each repetition {r['ratios']}; {cos}) |")
    lines.append("| transformer head training on CPU, bf16 ÷ fp32 pairs/s | measured in "
                 "[transformer_precision.md](transformer_precision.md) |")
    if notes is not None and notes.exists():
        lines += ["", notes.read_text().rstrip()]
    return "\n".join(lines) + "\n"


def _bare_rate(rows: list[dict[str, Any]]) -> Any:
    return next((r["texts_per_s"] for r in rows if r["encoder"] == "bare-st"), "?")


def _render_p1(d: dict[str, Any]) -> list[str]:
    lines = [f"| P1: README demo refine (torch, cold cache) ÷ bare fp32 sentence-transformers encode of its "
             f"{d['unique_texts']} unique texts | {d['P1']} (refine {d['refine_s']['torch']} s; bare "
             f"{d['bare_encode_s']} s) |"]
    for b, r in d["vs_torch"].items():
        if b != "torch":
            lines.append(f"| refine with `-p encoder_backend={b}` ÷ refine with torch (same run) | {r} "
                         f"({d['refine_s'][b]} s) |")
    return lines


def _render_p4_p5(q: dict[str, Any]) -> list[str]:
    small, big = q["sizes"]
    return [f"| P4: `marsctl score` pairs/s, warm embeddings, {big:,} pairs with distinct texts, whole command "
              f"(start-up included) | {q['P4_pairs_per_s']:,.0f} (walls {q['walls_s'][big]} s) |",
              f"| P4: the same, marginal: ({big:,} − {small:,}) pairs ÷ the difference of the median walls | "
              f"{q['P4_marginal_pairs_per_s']:,.0f} |",
              f"| P5: peak RSS of that score, {small:,} / {big:,} pairs | {q['P5_peak_rss_mib'][small]} / "
              f"{q['P5_peak_rss_mib'][big]} MiB (+{q['P5_delta_mib']} MiB) |"]


def rerender(out: Path) -> None:
    """perf.md from perf.json (its command included) and perf_notes.md."""
    res = json.loads((out / "perf.json").read_text())
    q = res.get("P4_P5")
    if q:
        for key in ("walls_s", "P5_peak_rss_mib"):
            q[key] = {int(k): v for k, v in q[key].items()}  # JSON made the sizes strings
    command = res.get("command") or next(x.strip() for x in (out / "perf.md").read_text().splitlines()
                                         if x.startswith("    "))  # a run before the command was in perf.json
    (out / "perf.md").write_text(render(res, command, out / "perf_notes.md"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--reps", type=int, default=2, help="repetitions of P1 and P4")
    ap.add_argument("--p6-reps", type=int, default=3)
    ap.add_argument("--backends", default="torch,onnx,static")
    ap.add_argument("--score-pairs", default="2000,200000", help="the two sizes of P4/P5")
    ap.add_argument("--built", default="", help="a cache dir whose encoders/ (onnx, static) to reuse")
    ap.add_argument("--parts", default="P3,P4_P5,P6,P1", help="the parts to run (P1, the slowest, runs last)")
    ap.add_argument("--render", action="store_true", help="only write perf.md again from perf.json (and the notes)")
    args = ap.parse_args()
    if args.render:
        rerender(Path(args.out))
        return
    global BUILT
    BUILT = args.built
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "HF_HUB_OFFLINE=1 python benchmarks/perf.py " + " ".join(sys.argv[1:])
    sizes = tuple(int(x) for x in args.score_pairs.split(","))
    res: dict[str, Any] = {"command": command, "load": {}}

    def part(key: str, fn: Any, *a: Any) -> None:
        if key not in args.parts.split(","):
            return
        before = os.getloadavg()[0]
        res[key] = fn(*a)
        res["load"][key] = (before, os.getloadavg()[0])
        print(json.dumps({key: res[key], "load": res["load"][key]}), flush=True)
        res["max_rss_self_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        (out / "perf.json").write_text(json.dumps(res, indent=1) + "\n")  # after each part: a cut run keeps it
        (out / "perf.md").write_text(render(res, command, out / "perf_notes.md"))

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        artefacts = prebuild(args.backends.split(","), tmp / "artefacts")
        part("P3", p3)
        part("P4_P5", p4_p5, sizes, args.reps, tmp)
        os.environ["MARSCTL_CACHE_DIR"] = str(artefacts.parent)  # the built onnx/static artefacts
        part("P6", p6, args.p6_reps)
        del os.environ["MARSCTL_CACHE_DIR"]
        part("P1", p1, args.reps, args.backends.split(","), tmp)
    print(render(res, command, out / "perf_notes.md"))


if __name__ == "__main__":
    main()
