#!/usr/bin/env python
"""Side by side: TRL's RewardTrainer and marsctl's transformer head on the same pairs.

Both train the same backbone (default: the bundled all-MiniLM-L6-v2) from the same seeded
initialisation on the same token ids, with the same epochs, learning rate, batch size,
max_length, schedule (linear decay, no warm-up), weight decay, gradient clipping and dropout off
(TRL's ``disable_dropout`` default); both are scored on the same held-out pairs.

Inputs: marsctl's encoder makes the token ids for both (``[CLS] prompt [SEP] response [SEP]``,
prompt start cut first). TRL's own preprocessing would instead concatenate prompt and response
text and *drop* every pair longer than ``max_length``; pre-tokenised input keeps the comparison
about the trainers. TRL sees input_ids only (its collator has no token_type_ids).

Each trainer runs in its own child process, so peak memory is its own: RSS on CPU,
``torch.cuda.max_memory_allocated`` on GPU. Wall time is tokenisation plus training.

    python scripts/bench_trl.py --n-train 256 --n-test 256 --max-length 128 --epochs 1 \\
        --out bench-out

writes ``bench-out/bench_trl.json`` and ``bench-out/bench_trl.md``. TRL is a benchmark dependency
only: ``pip install torch==2.13.0 trl`` (it brings datasets; accelerate comes with it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def default_data() -> Path:
    """../shared/data/hh_rlhf_harmless_base_test/pairs.jsonl beside the checkout (or inside it)."""
    for base in (ROOT.parent / "shared" / "data", ROOT / "shared" / "data"):
        p = base / "hh_rlhf_harmless_base_test" / "pairs.jsonl"
        if p.exists():
            return p
    return ROOT.parent / "shared" / "data" / "hh_rlhf_harmless_base_test" / "pairs.jsonl"


def split(path: Path, n_train: int, n_test: int, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded shuffle of the file, cut into train and held-out pairs (no overlap)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    random.Random(seed).shuffle(rows)
    if n_train + n_test > len(rows):
        sys.exit(f"{path} has {len(rows)} pairs; asked for {n_train} + {n_test}")
    return rows[:n_train], rows[n_train : n_train + n_test]


def peak_memory_mib(device: str) -> float:
    """Peak memory of this process: CUDA allocations on GPU, else the resident set size."""
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------- the children
def make_head(args: argparse.Namespace):
    """A marsctl transformer head with the benchmark's settings (used by both children for ids)."""
    from marsctl import registry

    cls = registry.load("head", "transformer")
    cfg = cls.Config(model_path=args.model_path, max_length=args.max_length, epochs=args.epochs, lr=args.lr,
                     batch_size=args.batch_size, warmup_ratio=0.0, weight_decay=0.0, max_grad_norm=1.0,
                     dropout=0.0, precision="fp32", eval_batch_size=64)
    return cls(cfg, seed=args.seed)


def run_marsctl(args: argparse.Namespace, train: list[dict], test: list[dict]) -> dict:
    """Train and score with marsctl's transformer head."""
    head = make_head(args)
    head.encoder()  # load the model outside the timed part, as TRL's child does
    t0 = time.perf_counter()
    head.fit(train)
    wall = time.perf_counter() - t0
    margins = [r["pred_margin"] for r in head.score(test)]
    return {"wall_seconds": wall, "margins": margins, "history": head.history_}


def run_trl(args: argparse.Namespace, train: list[dict], test: list[dict]) -> dict:
    """Train TRL's RewardTrainer on the same token ids, then score the held-out pairs."""
    import tempfile

    import torch
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    head = make_head(args)
    enc = head.encoder()  # seeded model load: the same initial weights as marsctl's
    model, tok = head.model_, head.tokenizer_
    device = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.perf_counter()
    prompts = [p["prompt"] for p in train]
    chosen, _ = enc.encode(prompts, [p["chosen"] for p in train])
    rejected, _ = enc.encode(prompts, [p["rejected"] for p in train])
    ds = Dataset.from_dict({"chosen_ids": [c["input_ids"] for c in chosen],
                            "rejected_ids": [r["input_ids"] for r in rejected]})
    with tempfile.TemporaryDirectory() as out:
        config = RewardConfig(
            output_dir=out, per_device_train_batch_size=args.batch_size, num_train_epochs=args.epochs,
            learning_rate=args.lr, lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0,
            max_grad_norm=1.0, seed=args.seed, max_length=args.max_length, disable_dropout=True,
            report_to="none", save_strategy="no", logging_steps=10, use_cpu=device == "cpu",
            gradient_checkpointing=False, dataloader_num_workers=0, bf16=False, fp16=False,
        )
        trainer = RewardTrainer(model=model, args=config, train_dataset=ds, processing_class=tok)
        trainer.train()
    wall = time.perf_counter() - t0
    model = trainer.model.eval()
    tp = [p["prompt"] for p in test]
    sc = _score_ids(model, tok, [c["input_ids"] for c in enc.encode(tp, [p["chosen"] for p in test])[0]])
    sr = _score_ids(model, tok, [r["input_ids"] for r in enc.encode(tp, [p["rejected"] for p in test])[0]])
    margins = [c - r for c, r in zip(sc, sr, strict=True)]
    return {"wall_seconds": wall, "margins": margins}


def _score_ids(model, tok, ids: list[list[int]], bs: int = 64) -> list[float]:
    """Rewards for token ids (input_ids only, as TRL's collator feeds them)."""
    import torch

    out = []
    device = next(model.parameters()).device
    with torch.inference_mode():
        for i in range(0, len(ids), bs):
            batch = tok.pad({"input_ids": ids[i : i + bs]}, return_tensors="pt").to(device)
            out += model(**batch).logits.squeeze(-1).float().cpu().tolist()
    return out


def child(args: argparse.Namespace) -> None:
    """Run one trainer and write its result JSON."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    train, test = split(Path(args.data), args.n_train, args.n_test, args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    res = (run_trl if args.child == "trl" else run_marsctl)(args, train, test)
    res.update({"trainer": args.child, "device": device, "peak_memory_mib": peak_memory_mib(device),
                "memory_kind": "cuda max_memory_allocated" if device == "cuda" else "peak RSS"})
    Path(args.result).write_text(json.dumps(res), encoding="utf-8")


# -------------------------------------------------------------------------------------- the parent
def bootstrap_ci(correct: list[int], seed: int, n_boot: int = 2000) -> tuple[float, float]:
    """Percentile bootstrap 95% CI of the mean of 0/1 outcomes."""
    import numpy as np

    x = np.asarray(correct, dtype=float)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def versions() -> dict:
    """Versions of the packages that matter here."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "transformers", "accelerate", "trl", "marsctl"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def main() -> None:
    """Parse arguments; run each trainer in a child; write JSON and a Markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(default_data()), help="pairs.jsonl to sample from")
    ap.add_argument("--n-train", type=int, default=256)
    ap.add_argument("--n-test", type=int, default=256)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--model-path", default="", help="HF model dir (default: the bundled MiniLM)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads per child (0: torch's default)")
    ap.add_argument("--trainers", default="trl,marsctl")
    ap.add_argument("--out", default="bench-out")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.trainers.split(","):
        result = out / f"{name}.json"
        cmd = [sys.executable, __file__, *sys.argv[1:], "--child", name, "--result", str(result)]
        print(f"running {name} ...", file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, env={**os.environ, "MARSCTL_NO_PROGRESS": "1"})
        res = json.loads(result.read_text())
        correct = [int(m > 0) for m in res["margins"]]
        lo, hi = bootstrap_ci(correct, args.seed)
        rows.append({"trainer": name, "eval_accuracy": sum(correct) / len(correct), "ci95": [lo, hi],
                     "wall_seconds": round(res["wall_seconds"], 2),
                     "pairs_per_second": round(args.n_train * args.epochs / res["wall_seconds"], 2),
                     "peak_memory_mib": round(res["peak_memory_mib"], 1), "memory_kind": res["memory_kind"],
                     "device": res["device"]})
    settings = {k: getattr(args, k) for k in ("data", "n_train", "n_test", "max_length", "epochs", "lr",
                                              "batch_size", "seed", "model_path")}
    summary = {"settings": settings, "versions": versions(), "results": rows}
    (out / "bench_trl.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    md = [f"Data: `{Path(args.data).parent.name}`, {args.n_train} train / {args.n_test} held-out pairs, "
          f"max_length {args.max_length}, {args.epochs} epoch(s), lr {args.lr}, batch {args.batch_size}, "
          f"seed {args.seed}, device {rows[0]['device'] if rows else '?'}.", "",
          "| trainer | held-out accuracy [95% CI] | wall s | pairs/s | peak memory MiB |",
          "| --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        md.append(f"| {r['trainer']} | {r['eval_accuracy']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] | "
                  f"{r['wall_seconds']:.1f} | {r['pairs_per_second']:.2f} | {r['peak_memory_mib']:.0f} "
                  f"({r['memory_kind']}) |")
    (out / "bench_trl.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print("\n".join(md))


if __name__ == "__main__":
    main()
