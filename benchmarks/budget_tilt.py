"""What mars-abs does to the allocation at budgets of n, 2n and 5n (no training: selection only).

    python benchmarks/budget_tilt.py benchmarks/results/compare_noise/DATASET/base

Selects on each seed's round-0 margins (``runs/steps/none/seed-S/round-0/scored.jsonl``, the margins
round 1 selects on) with mars-abs at α = 0.5 (the default), and with α = 1 scaled by std(Δ) (scale-free),
cap 25; reports whether the budgets equal uniform's, ESS / n, largest b_i and pairs left without a row.
"""

from __future__ import annotations

import sys
from pathlib import Path

from marsctl import augmentation
from marsctl.records import read_pairs

SETTINGS = {"mars-abs α=0.5": [], "mars-abs α=1/std(Δ)": ["alpha=1", "alpha_scale=std"]}


def main(base: Path) -> None:
    """Print one markdown row per (setting, budget multiple), pooled over seeds."""
    print("| selection | budget | equals uniform (seeds) | ESS / n | max b_i | pairs with b_i = 0 |")
    print("|---|---|---|---|---|---|")
    seeds = sorted((base / "runs" / "steps" / "none").glob("seed-*"))
    for label, params in SETTINGS.items():
        for mult in (1, 2, 5):
            eq, ess, top, zero = 0, [], [], []
            for d in seeds:
                scored = read_pairs(d / "round-0" / "scored.jsonl")
                n = len(scored)
                sel, s = augmentation.select(scored, strategy="mars-abs", params=params, budget=mult * n, cap=25,
                                      warn_identical=False)
                eq += bool(s["equals_uniform"])
                ess.append(s["ess"] / n)
                top.append(s["max_budget"])
                zero.append(sum(1 for r in sel if r["budget"] == 0) / n)
            print(f"| {label} | {mult}n | {eq}/{len(seeds)} | {sum(ess) / len(ess):.3f} | {max(top)} | "
                  f"{100 * sum(zero) / len(zero):.1f}% |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
