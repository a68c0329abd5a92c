"""Which pair features should the embedding heads use? Measured on the shared data.

For each dataset: a split grouped by prompt (30% test), heads mlp and linear, every feature
set, 3 seeds; held-out pairwise accuracy. Embeddings come from the shared cache.

    HF_HUB_OFFLINE=1 python benchmarks/features.py [--shared ../shared] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import DATASETS, write_results

from marsctl import steps
from marsctl.metrics import evaluate
from marsctl.records import read_pairs
from marsctl.split import grouped_split
from marsctl_plugins.heads.embedding import FEATURES


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for ds in DATASETS:
        pairs = read_pairs(Path(args.shared) / "data" / ds / "pairs.jsonl")
        for seed in range(args.seeds):
            train, test = grouped_split(pairs, 0.3, seed=seed)
            for head in ("mlp", "linear"):
                for feat in FEATURES:
                    t0 = time.perf_counter()
                    model = steps.train(train, head=head, params=[f"features={feat}"], seed=seed)
                    m = evaluate(steps.score(test, model), n_boot=200)
                    rows.append({"dataset": ds, "seed": seed, "head": head, "features": feat,
                                 "n_train": len(train), "n_test": len(test), "accuracy": m["accuracy"],
                                 "seconds": round(time.perf_counter() - t0, 2)})
                    print(json.dumps(rows[-1]), flush=True)
    print(write_results(rows, out, "features", "features", list(FEATURES), list(FEATURES)))


if __name__ == "__main__":
    main()
