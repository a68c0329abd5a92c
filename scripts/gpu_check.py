#!/usr/bin/env python
"""The transformer head's GPU check (run by scripts/gpu-check.sh).

``prepare`` (here, with internet-free access to the venv): writes ``.gpu-carry/`` with the bundled
MiniLM saved in fp16 (~44 MB) and the pairs of ``../shared/data``, so a GPU machine that receives at
most 64 MiB of the project can run the check. ``run`` (there): two phases, each printing pairs/s,
peak GPU memory and, for the first, held-out accuracy:

1. accuracy: the real MiniLM (carried), fine-tuned on a few thousand pairs at max_length 512, bf16;
2. throughput: a randomly initialised BERT-base-sized backbone (110M parameters; no weights travel),
   same inputs, for pairs/s and memory of a realistic model size only (its accuracy means nothing).

Environment: GPU_CHECK_TINY=1 shrinks everything so the script also runs on CPU in a minute or two.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CARRY = ROOT / ".gpu-carry"
DATASETS = ("hh_rlhf_harmless_base_test", "llmbar", "pandalm_testset")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def shared_data() -> Path | None:
    """Where the pairs are: $GPU_CHECK_DATA, .gpu-carry/data, ../shared/data or shared/data."""
    for p in (os.environ.get("GPU_CHECK_DATA"), CARRY / "data", ROOT.parent / "shared" / "data",
              ROOT / "shared" / "data"):
        if p and (Path(p) / DATASETS[0] / "pairs.jsonl").exists():
            return Path(p)
    return None


def prepare() -> None:
    """Write .gpu-carry/: MiniLM in fp16 plus the shared pairs (and their licences)."""
    import torch
    from transformers import AutoModel

    sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]
    from marsctl.embed import default_encoder_path

    src = Path(default_encoder_path())
    dst = CARRY / "minilm-fp16"
    shutil.rmtree(CARRY, ignore_errors=True)
    dst.mkdir(parents=True)
    AutoModel.from_pretrained(src, dtype=torch.float16).save_pretrained(dst)
    for name in TOKENIZER_FILES:
        if (src / name).exists():
            shutil.copy(src / name, dst / name)
    data = shared_data()
    if data is None:
        sys.exit("no ../shared/data with the pairs")
    for name in DATASETS:
        (CARRY / "data" / name).mkdir(parents=True)
        for f in ("pairs.jsonl", "LICENSE"):
            shutil.copy(data / name / f, CARRY / "data" / name / f)
    size = sum(f.stat().st_size for f in CARRY.rglob("*") if f.is_file())
    print(f"wrote {CARRY} ({size / 2**20:.1f} MiB)")


def load_pairs(data: Path, seed: int) -> list[dict]:
    """Every pair of the three datasets, shuffled with a seed."""
    rows = []
    for name in DATASETS:
        path = data / name / "pairs.jsonl"
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    random.Random(seed).shuffle(rows)
    return rows


def random_backbone(tok_dir: Path, out: Path, tiny: bool) -> Path:
    """A randomly initialised BERT-base-sized classifier dir (the MiniLM tokenizer), for throughput."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    size = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512} \
        if tiny else {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                      "intermediate_size": 3072}
    cfg = BertConfig(vocab_size=30522, max_position_embeddings=512, num_labels=1, **size)
    BertForSequenceClassification(cfg).save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (tok_dir / name).exists():
            shutil.copy(tok_dir / name, out / name)
    return out


def phase(label: str, model_path: str, train: list[dict], test: list[dict], s: dict) -> dict:
    """Fine-tune and score one backbone; return the numbers."""
    import torch

    from marsctl_plugins.heads.transformer.head import TransformerHead

    cuda = torch.cuda.is_available()
    cfg = TransformerHead.Config(model_path=model_path, max_length=s["max_length"], epochs=s["epochs"],
                                 lr=s["lr"], batch_size=s["batch_size"], eval_batch_size=s["eval_batch_size"],
                                 precision="bf16" if cuda else "fp32", warmup_ratio=0.1)
    head = TransformerHead(cfg, seed=42)
    head.encoder()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    head.fit(train)
    peak_train = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    t0 = time.perf_counter()
    scored = head.score(test)
    if cuda:
        torch.cuda.synchronize()
    score_s = time.perf_counter() - t0
    m = head.manifest_
    margins = [r["pred_margin"] for r in scored]
    correct = [int(x > 0) for x in margins]
    boots = sorted(sum(random.Random(i).choices(correct, k=len(correct))) / len(correct) for i in range(1000))
    res = {
        "phase": label, "backbone": model_path,
        "params_m": round(sum(p.numel() for p in head.model_.parameters()) / 1e6, 1),
        "n_train": len(train), "n_test": len(test), "epochs": s["epochs"], "max_length": m["max_length"],
        "batch_size": s["batch_size"], "precision": m["precision"], "device": m["device"],
        "train_pairs_per_s": m["pairs_per_second"], "train_seconds": m["train_seconds"],
        "tokenize_seconds": round(m["wall_seconds"] - m["train_seconds"], 2),
        "score_pairs_per_s": round(len(test) / score_s, 1),
        "peak_gpu_mem_gib_train": round(peak_train, 2) if peak_train is not None else None,
        "peak_gpu_mem_gib_all": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "eval_accuracy": round(sum(correct) / len(correct), 4),
        "eval_accuracy_ci95": [boots[24], boots[974]],
        "truncated_pairs": m["truncated_pairs"],
        "identical_after_truncation": m["identical_after_truncation"],
        "history": head.history_,
    }
    print(json.dumps(res), flush=True)
    del head
    if cuda:
        torch.cuda.empty_cache()
    return res


def run() -> None:
    """Both phases; a summary on stdout and in $OUT/gpu_check.json when $OUT is set."""
    import torch
    import transformers

    sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]
    tiny = os.environ.get("GPU_CHECK_TINY") == "1"
    data = shared_data()
    if data is None:
        sys.exit("no pairs: run `scripts/gpu-check.sh --prepare` here first, or set GPU_CHECK_DATA")
    carried = CARRY / "minilm-fp16"
    model = os.environ.get("GPU_CHECK_MODEL") or (str(carried) if carried.is_dir() else "")
    if not model:
        from marsctl.embed import default_encoder_path

        model = default_encoder_path()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, cuda {gpu}, data {data}, "
          f"model {model}", flush=True)
    rows = load_pairs(data, seed=42)
    if tiny:
        train, test = rows[:32], rows[32:64]
        s = {"max_length": 64, "epochs": 1, "lr": 5e-5, "batch_size": 8, "eval_batch_size": 32}
        s_big = dict(s)
    else:
        n_test = int(os.environ.get("GPU_CHECK_TEST", "1000"))
        train, test = rows[n_test:], rows[:n_test]
        s = {"max_length": 512, "epochs": int(os.environ.get("GPU_CHECK_EPOCHS", "2")), "lr": 5e-5,
             "batch_size": 32, "eval_batch_size": 128}
        s_big = {**s, "epochs": 1, "lr": 2e-5, "batch_size": 16}
    results = [phase("accuracy: all-MiniLM-L6-v2 (carried, fp16 weights)", model, train, test, s)]
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "gpu-check-bert-base-random"
    shutil.rmtree(tmp, ignore_errors=True)
    big = random_backbone(Path(model), tmp, tiny)
    n_big = 32 if tiny else int(os.environ.get("GPU_CHECK_BIG_PAIRS", "2048"))
    results.append(phase("throughput: BERT-base size, random init", str(big), train[:n_big], test[:256],
                         s_big))
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        Path(out, "gpu_check.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print("\nphase | pairs | train pairs/s | score pairs/s | peak GPU GiB | held-out acc [95% CI]")
    for r in results:
        print(f"{r['phase']} | {r['n_train']} | {r['train_pairs_per_s']} | {r['score_pairs_per_s']} | "
              f"{r['peak_gpu_mem_gib_all']} | {r['eval_accuracy']} {r['eval_accuracy_ci95']}")


def main() -> None:
    """prepare | run."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["prepare", "run"])
    args = ap.parse_args()
    prepare() if args.command == "prepare" else run()


if __name__ == "__main__":
    main()
