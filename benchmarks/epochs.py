"""How many epochs should the mlp and linear heads train by default? Held-out accuracy by epochs.

Same protocol as benchmarks/features.py (grouped 70/30 split, 3 seeds, shared embedding cache).

    HF_HUB_OFFLINE=1 python benchmarks/epochs.py [--shared ../shared] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import DATASETS, write_results

from marsctl import steps
from marsctl.metrics import pairwise_accuracy
from marsctl.records import read_pairs
from marsctl.split import grouped_split

EPOCHS = [2, 5, 10, 20]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for ds in DATASETS:
        pairs = read_pairs(Path(args.shared) / "data" / ds / "pairs.jsonl")
        for seed in range(3):
            train, test = grouped_split(pairs, 0.3, seed=seed)
            for head in ("mlp", "linear"):
                model = None
                done = 0
                for ep in EPOCHS:  # continue training: accuracy after 2, 5, 10, 20 epochs
                    if model is None:
                        model = steps.train(train, head=head, seed=seed, epochs=ep)
                    else:
                        model.fit(train, epochs=ep - done)
                    done = ep
                    acc = pairwise_accuracy([r["pred_margin"] for r in steps.score(test, model)])
                    rows.append({"dataset": ds, "seed": seed, "head": head, "epochs": ep, "accuracy": acc})
                    print(json.dumps(rows[-1]), flush=True)
    print(write_results(rows, out, "epochs", "epochs", EPOCHS, [f"{e} epochs" for e in EPOCHS]))


if __name__ == "__main__":
    main()
