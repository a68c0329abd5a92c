"""Do a length term and an ensemble make the mlp head better? Measured on the shared data (issue #13).

For each dataset: grouped 70/30 splits by prompt, 5 seeds; the mlp head with ``length=off`` and
``length=term`` (at three ``length_lr``), each with ``ensemble=1`` and ``ensemble=5`` (one with
bootstrap resamples); held-out pairwise accuracy (and, with a length term, the accuracy of the
quality part alone), next to the length baselines (pick the longer / the shorter response) on the
same test pairs. Embeddings come from the cache.

    HF_HUB_OFFLINE=1 MARSCTL_CACHE_DIR=DIR python benchmarks/heads.py [--seeds 5]

Writes heads.jsonl and heads.md (with the command) to benchmarks/results.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from common import DATASETS

from marsctl import steps
from marsctl.lengths import length_baseline
from marsctl.metrics import evaluate
from marsctl.records import read_pairs
from marsctl.report import mean_std_markdown
from marsctl.split import grouped_split

SHARED = Path(__file__).resolve().parents[2] / "shared"
# label: head parameters (the head's defaults for everything else)
VARIANTS = {
    "off": ["length=off"],
    "term lr=0.02": ["length=term", "length_lr=0.02"],
    "term lr=0.05": ["length=term", "length_lr=0.05"],
    "term lr=0.1": ["length=term", "length_lr=0.1"],
    "off K=5": ["length=off", "ensemble=5"],
    "term lr=0.05 K=5": ["length=term", "length_lr=0.05", "ensemble=5"],
    "term lr=0.05 K=5 boot": ["length=term", "length_lr=0.05", "ensemble=5", "ensemble_resample=true"],
}
BASELINES = ("longer", "shorter")


def run(shared: Path, seeds: int) -> list[dict[str, Any]]:
    """One row per dataset, seed and variant (and one per length baseline)."""
    rows = []
    for ds in DATASETS:
        pairs = read_pairs(shared / "data" / ds / "pairs.jsonl")
        for seed in range(seeds):
            train, test = grouped_split(pairs, 0.3, seed=seed)
            base = length_baseline(test)
            common = {"dataset": ds, "seed": seed, "head": "mlp", "n_train": len(train), "n_test": len(test)}
            rows += [{**common, "variant": b, "accuracy": base[b]} for b in BASELINES]
            for label, params in VARIANTS.items():
                t0 = time.perf_counter()
                model = steps.train(train, head="mlp", params=params, seed=seed, warn_identical=False)
                scored = steps.score(test, model)
                m = evaluate(scored, n_boot=200)
                row = {**common, "variant": label, "accuracy": m["accuracy"],
                       "seconds": round(time.perf_counter() - t0, 2)}
                if "length_term" in m:
                    row["accuracy_length_free"] = m["length_term"]["without_length"]
                    row["accuracy_length_only"] = m["length_term"]["length_only"]
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def mean(rows: list[dict[str, Any]], ds: str, variant: str, metric: str = "accuracy") -> float:
    return statistics.fmean(r[metric] for r in rows if r["dataset"] == ds and r["variant"] == variant)


def paired(rows: list[dict[str, Any]], variant: str, ref: str = "off") -> dict[str, tuple[float, float, int]]:
    """Per set: mean and std over seeds of (variant − ref) on the same split, and the seeds it wins."""
    out = {}
    for ds in DATASETS:
        acc = {(r["variant"], r["seed"]): r["accuracy"] for r in rows if r["dataset"] == ds}
        d = [acc[(variant, s)] - acc[(ref, s)] for (v, s) in acc if v == variant]
        out[ds] = (statistics.fmean(d), statistics.pstdev(d), sum(x > 0 for x in d))
    return out


def default_rule(rows: list[dict[str, Any]]) -> str:
    """The length default (one network: off or term at the best length_lr), then the issue's goal for every variant."""
    single = [v for v in VARIANTS if "K=" not in v]
    best = max(single, key=lambda v: statistics.fmean(mean(rows, ds, v) for ds in DATASETS))
    lines = ["Length option, one network: the variant with the highest mean accuracy over the three sets is "
             f"**`{best}`**; paired over `off` (same splits), mean ± std over seeds, seeds won:\n"]
    for v in VARIANTS:
        if v != "off":
            diffs = paired(rows, v).items()
            shown = ", ".join(f"{ds} {100 * m:+.1f} ± {100 * sd:.1f} ({w})" for ds, (m, sd, w) in diffs)
            lines.append(f"- `{v}`: {shown}")
    lines.append("\nThe goal (the default head beats the better length baseline on every set), for every variant:\n")
    for v in VARIANTS:
        gaps = {ds: mean(rows, ds, v) - max(mean(rows, ds, b) for b in BASELINES) for ds in DATASETS}
        wins = sum(g > 0 for g in gaps.values())
        shown = ", ".join(f"{ds} {100 * g:+.1f}" for ds, g in gaps.items())
        lines.append(f"- `{v}`: {shown} points vs the better length baseline → above it on {wins} of {len(DATASETS)}")
    return "\n".join(lines)


def render(rows: list[dict[str, Any]], out: Path, command: str, seeds: int) -> str:
    """heads.md: accuracy table, length-free table, the rule."""
    index = {"dataset": DATASETS, "head": ("mlp",)}
    labels = [*BASELINES, *VARIANTS]
    full = mean_std_markdown(rows, index, "variant", labels, labels)
    term = [v for v in VARIANTS if v.startswith("term")]
    lf_rows = [r for r in rows if "accuracy_length_free" in r]
    free = mean_std_markdown(lf_rows, index, "variant", term, term, metric="accuracy_length_free")
    only = mean_std_markdown(lf_rows, index, "variant", term, term, metric="accuracy_length_only")
    md = (f"# Length term and ensembles on the mlp head (issue #13)\n\n    {command}\n\n"
          f"Grouped 70/30 splits by prompt, {seeds} seeds, held-out pairwise accuracy, mean ± std over "
          "seeds; `longer`/`shorter` pick the longer/shorter response on the same test pairs (ties wrong). "
          "`term`: reward = quality + a·z + b·z² of the standardised log length, learned jointly "
          "(`length_lr` its own learning rate); `K=5`: `ensemble=5` (mean of 5 networks), `boot`: "
          "`ensemble_resample=true`.\n\n"
          f"## Accuracy of the full reward\n\n{full}\n"
          f"## Accuracy of the quality part alone (`score --length-free`)\n\n{free}\n"
          f"## Accuracy of the length part alone\n\n{only}\n"
          f"## The default rule\n\n{default_rule(rows)}\n")
    (out / "heads.md").write_text(md)
    return md


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(SHARED))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--render", action="store_true", help="Only write heads.md again from heads.jsonl.")
    ap.add_argument("--command", help="The command to record in heads.md (default: this one).")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.render:  # the table again from heads.jsonl
        rows = [json.loads(x) for x in (out / "heads.jsonl").read_text().splitlines()]
    else:
        rows = run(Path(args.shared), args.seeds)
        (out / "heads.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cache = os.environ.get("MARSCTL_CACHE_DIR", "")
    command = args.command or (f"HF_HUB_OFFLINE=1 MARSCTL_CACHE_DIR={cache} python benchmarks/heads.py "
                               f"{' '.join(sys.argv[1:])}").strip()
    print(render(rows, out, command, args.seeds))


if __name__ == "__main__":
    main()
