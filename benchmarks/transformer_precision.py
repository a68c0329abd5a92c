"""Transformer head training on CPU, fp32 against bf16, side by side in one run (issue 20, item 5).

One shared set (default hh_rlhf_harmless_base_test), split by prompt (``marsctl.split.grouped_split``,
seed 0): ``--train`` pairs to fine-tune on and ``--test`` held-out pairs from other prompts, the same
for every run. For each seed, the bundled all-MiniLM-L6-v2 with the transformer head
(``max_length`` 128, batch 8, 1 epoch, the head's defaults otherwise) is trained and scored with
``-p precision=fp32`` and ``-p precision=bf16``, in alternating order (seed 0: fp32 first, seed 1:
bf16 first, ...), so both see the same load. Last, seed 0 also trains ``bf16-sdpa``: bf16 with the model's
own SDPA attention kept for training (the head before this change), to show what eager attention gives.

Reported per run: training pairs/s excluding start-up (pairs x epochs / the fit's training-loop
seconds) and including it (pairs / (imports + model load + tokenisation + training); the imports are
timed once in a fresh subprocess), held-out accuracy; per seed the bf16/fp32 ratio (adjacent runs)
and the correlation of the held-out margins; overall the paired accuracy difference bf16 - fp32 with a
95 % bootstrap CI over the held-out pairs (each pair's correctness averaged over the seeds). Also: the
attention forward+backward of one layer at the training shape (16 x 12 heads x 128 tokens x 32), per
implementation and dtype, which is why bf16 training switches to eager attention on CPU.

    HF_HUB_OFFLINE=1 python benchmarks/transformer_precision.py [--train 400] [--test 300] [--seeds 3]

Writes ``--out``/transformer_precision.md (default benchmarks/results) after every run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2] / "shared"
IMPORTS = ("import time; t = time.perf_counter(); import torch, transformers; from marsctl import registry; "
           "registry.load('head', 'transformer'); print(time.perf_counter() - t)")


def load() -> float:
    return round(os.getloadavg()[0], 2)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def attention_ms(reps: int = 5) -> dict[str, float]:
    """Forward+backward CPU ms of one attention layer at the training shape, per implementation."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    b, h, n, d = 16, 12, 128, 32
    mask = torch.zeros(b, 1, n, n)
    mask[:, :, :, 100:] = torch.finfo(torch.float32).min  # some padding, as in a real batch
    out = {}
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        for impl in ("sdpa", "eager"):
            q, k, v = (torch.randn(b, h, n, d, dtype=dtype, requires_grad=True) for _ in range(3))
            m = mask.to(dtype)

            def once(q: Any = q, k: Any = k, v: Any = v, m: Any = m, impl: str = impl, dtype: Any = dtype) -> None:
                if impl == "sdpa":
                    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                        o = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
                else:
                    s = torch.softmax((q @ k.transpose(-1, -2) / d**0.5 + m).float(), -1)
                    o = s.to(dtype) @ v
                o.sum().backward()

            once()
            t = time.process_time()
            for _ in range(reps):
                once()
            out[f"{impl} {name}"] = round((time.process_time() - t) / reps * 1000, 1)
    return out


def run_one(cls: Any, arm: str, seed: int, train: list[dict], test: list[dict], args: Any) -> dict[str, Any]:
    """Train and score one head; its timings, accuracy and held-out margins."""
    from marsctl_plugins.heads.transformer import head as head_mod

    precision = "bf16" if arm.startswith("bf16") else "fp32"
    keep = head_mod.cpu_training_attention
    if arm == "bf16-sdpa":  # the head before this change: SDPA kept for bf16 training
        head_mod.cpu_training_attention = lambda *a: None  # type: ignore[assignment]
    try:
        load0 = load()
        t0 = time.perf_counter()
        head = cls(cls.Config(max_length=args.max_length, batch_size=args.batch_size, epochs=args.epochs,
                              precision=precision), seed=seed)
        head.encoder()  # model and tokenizer load
        load_s = time.perf_counter() - t0
        c0 = time.process_time()
        head.fit(train)
        fit_cpu_s = time.process_time() - c0
        m = head.manifest_
        t1 = time.perf_counter()
        scored = head.score(test)
        score_s = time.perf_counter() - t1
    finally:
        head_mod.cpu_training_attention = keep
    margins = [r["pred_margin"] for r in scored]
    return {"arm": arm, "seed": seed, "precision": m["precision"], "attention": m["attention"],
            "load_s": round(load_s, 2), "fit_wall_s": m["wall_seconds"], "train_s": m["train_seconds"],
            "score_s": round(score_s, 2), "fit_cpu_s": round(fit_cpu_s, 2), "n": len(train), "epochs": args.epochs,
            "accuracy": sum(x > 0 for x in margins) / len(margins), "margins": margins,
            "load": [load0, load()]}


def pearson(a: list[float], b: list[float]) -> float:
    return statistics.correlation(a, b) if len(a) > 1 else float("nan")


def attention_table(a: dict[str, float]) -> list[str]:
    if not a:
        return []
    return ["", "One attention layer, forward + backward, CPU ms (16 x 12 heads x 128 tokens x 32, "
            "1 thread, process time; SDPA = PyTorch's CPU flash-attention kernel):", "",
            "| " + " | ".join(a) + " |", "|" + "---|" * len(a), "| " + " | ".join(map(str, a.values())) + " |"]


def render(rows: list[dict], meta: dict[str, Any], args: Any) -> str:
    from marsctl.stats import bootstrap_ci

    imports = meta["imports_s"]

    def rate(r: dict, startup: bool) -> float:
        secs = imports + r["load_s"] + r["fit_wall_s"] if startup else r["train_s"]
        return r["n"] * (1 if startup else r["epochs"]) / secs

    lines = ["# Transformer head training on CPU: fp32 against bf16", "",
             f"Set: `{args.data}`, prompt-grouped split (seed 0): {meta['n_train']} train pairs, "
             f"{meta['n_test']} held-out pairs (other prompts), the same for every run. Bundled "
             f"all-MiniLM-L6-v2, transformer head, max_length {args.max_length}, batch {args.batch_size}, "
             f"{args.epochs} epoch(s), lr 2e-5; seeds {', '.join(map(str, meta['seeds']))}.", "",
             f"CPU: {meta['cpu']} ({meta['cores']} cores, torch threads {meta['threads']}), bf16 flags: "
             f"{', '.join(meta['bf16_flags']) or 'none'}; torch {meta['torch']}, transformers {meta['transformers']}. "
             f"Imports (fresh process, once): {imports:.1f} s. 1-minute load average: {meta['load_start']} at the "
             "start; per run below (before/after). The machine is shared: read the ratios (adjacent runs), "
             "not the absolute rates.", "",
             "| arm | runs | train pairs/s (excl. start-up), median | pairs/s incl. start-up, median | "
             "held-out accuracy, mean ± std |", "|---|---|---|---|---|"]
    for arm in ("fp32", "bf16", "bf16-sdpa"):
        rs = [r for r in rows if r["arm"] == arm]
        if not rs:
            continue
        accs = [r["accuracy"] for r in rs]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        lines.append(f"| {arm} | {len(rs)} | {statistics.median(rate(r, False) for r in rs):.2f} | "
                     f"{statistics.median(rate(r, True) for r in rs):.2f} | "
                     f"{100 * statistics.mean(accs):.1f} ± {100 * sd:.1f} |")
    pairs = []
    for s in meta["seeds"]:
        by = {r["arm"]: r for r in rows if r["seed"] == s}
        if "fp32" in by and "bf16" in by:
            pairs.append((s, by["fp32"], by["bf16"], by.get("bf16-sdpa")))
    if pairs:
        ratios = [rate(b, False) / rate(f, False) for _, f, b, _ in pairs]
        ratios_su = [rate(b, True) / rate(f, True) for _, f, b, _ in pairs]
        ratios_cpu = [f["fit_cpu_s"] / b["fit_cpu_s"] for _, f, b, _ in pairs]
        n = len(pairs[0][1]["margins"])
        diff = [sum((b["margins"][i] > 0) - (f["margins"][i] > 0) for _, f, b, _ in pairs) / len(pairs)
                for i in range(n)]
        lo, hi = bootstrap_ci(diff, seed=0)
        corr = [pearson(f["margins"], b["margins"]) for _, f, b, _ in pairs]
        lines += ["", f"**bf16 / fp32 training pairs/s (excl. start-up): median {statistics.median(ratios):.2f}x** "
                  f"(per seed {', '.join(f'{x:.2f}' for x in ratios)}); including start-up "
                  f"{statistics.median(ratios_su):.2f}x; process CPU seconds of the fit, fp32 / bf16: "
                  f"{statistics.median(ratios_cpu):.2f}x. Held-out accuracy bf16 - fp32 (paired over "
                  f"{n} pairs, averaged over {len(pairs)} seed(s)): {100 * statistics.mean(diff):+.1f} points, "
                  f"95 % CI [{100 * lo:+.1f}, {100 * hi:+.1f}]. Held-out margin correlation bf16 vs fp32 "
                  f"per seed: {', '.join(f'{c:.3f}' for c in corr)}.",
                  "", "| seed | arm | attention | load s | fit wall s | fit CPU s | train s | train pairs/s | "
                  "score s | accuracy | load avg (before/after) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for s, *arms in pairs:
            for r in arms:
                if r is not None:
                    lines.append(f"| {s} | {r['arm']} | {r['attention']} | {r['load_s']} | {r['fit_wall_s']} | "
                                 f"{r['fit_cpu_s']} | "
                                 f"{r['train_s']} | {rate(r, False):.2f} | {r['score_s']} | "
                                 f"{100 * r['accuracy']:.1f} | {r['load'][0]} / {r['load'][1]} |")
    lines += attention_table(meta.get("attention_ms") or {})
    lines += ["", "Command:", "", "```", meta["command"], "```", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(SHARED / "data" / "hh_rlhf_harmless_base_test" / "pairs.jsonl"))
    ap.add_argument("--train", type=int, default=400)
    ap.add_argument("--test", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--no-sdpa-arm", action="store_true", help="skip the bf16-with-SDPA run of seed 0")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args()
    os.environ.setdefault("MARSCTL_NO_PROGRESS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    imports_s = float(subprocess.run([sys.executable, "-c", IMPORTS], capture_output=True, text=True,
                                     check=True).stdout.strip().splitlines()[-1])
    import random

    import torch
    import transformers

    from marsctl import registry
    from marsctl.embed import BF16_CPU_FLAGS, cpu_flags, native_bf16
    from marsctl.records import read_pairs
    from marsctl.split import grouped_split

    if not native_bf16():
        sys.exit("this CPU has no native bf16 units: nothing to compare (the head runs fp32 here)")
    records = read_pairs(args.data)
    random.Random(0).shuffle(records)
    train, test = grouped_split(records, 0.5, seed=0)
    train, test = train[: args.train], test[: args.test]
    seeds = list(range(args.seeds))
    meta = {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "bf16_flags": sorted(cpu_flags() & set(BF16_CPU_FLAGS)), "torch": torch.__version__,
            "transformers": transformers.__version__, "imports_s": imports_s, "load_start": load(),
            "n_train": len(train), "n_test": len(test), "seeds": seeds,
            "command": "HF_HUB_OFFLINE=1 python benchmarks/transformer_precision.py " + shlex.join(sys.argv[1:])}
    if args.threads:
        torch.set_num_threads(args.threads)
    t = torch.get_num_threads()
    meta["threads"] = t
    torch.set_num_threads(1)
    meta["attention_ms"] = attention_ms()
    torch.set_num_threads(t)
    cls = registry.load("head", "transformer")
    out = Path(args.out) / "transformer_precision.md"
    rows: list[dict] = []
    runs = [(s, arm) for s in seeds for arm in (["fp32", "bf16"] if s % 2 == 0 else ["bf16", "fp32"])]
    if not args.no_sdpa_arm:  # last: the seeds' pairs come first when a run is cut short
        runs.append((0, "bf16-sdpa"))
    for s, arm in runs:
        rows.append(run_one(cls, arm, s, train, test, args))
        r = rows[-1]
        print(f"seed {s} {arm}: train {r['train_s']} s, accuracy {r['accuracy']:.3f}, load {r['load']}",
              file=sys.stderr, flush=True)
        out.write_text(render(rows, meta, args), encoding="utf-8")
    print(out.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
