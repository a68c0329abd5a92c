"""Pool the compare folders of benchmarks/compare_noise.sh for one dataset into one paired table.

    python benchmarks/noise_table.py benchmarks/results/compare_noise/DATASET

Every run of a folder is named by the folder and its strategy (``soft/none``: strategy none with --noise
soft); all folders share the seeds' grouped splits, so each run pairs with ``base/none`` and ``base/uniform``
on the same test pairs. Writes DATASET/table.md and prints it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from marsctl.comparestats import paired_difference

REFS = ("base/none", "base/uniform")  # base/uniform may live in base_uniform/ (a second compare on the same seeds)


def load(root: Path) -> dict[str, list[dict]]:
    """Runs by label, sorted by seed, each with its test-pair correctness and selection diagnostics."""
    runs: dict[str, list[dict]] = {}
    for f in sorted(root.glob("*/runs.jsonl")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            last = json.loads((Path(r["run_dir"]) / "round-1" / "metrics.json").read_text())
            r["correct"] = [1 if m > 0 else 0 for m in last["eval_margins"]]
            runs.setdefault(f"{f.parent.name}/{r['strategy']}", []).append(r)
    out = {k: sorted(v, key=lambda r: r["seed"]) for k, v in runs.items()}
    if "base/uniform" not in out and "base_uniform/uniform" in out:
        out["base/uniform"] = out.pop("base_uniform/uniform")
    return out


def fmt(d: dict) -> str:
    """'+1.2 [-0.3, +2.5] (3/1)' in points."""
    lo, hi = d["ci95"]
    return f"{100 * d['mean']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] ({d.get('wins', '?')}/{d.get('losses', '?')})"


def row(label: str, runs: list[dict], by: dict[str, list[dict]]) -> list[str]:
    """One table row: accuracy, Δ vs each reference and vs the better of them, diagnostics."""
    import numpy as np

    accs = np.array([r["accuracy"] for r in runs]) * 100
    cells = [label, f"{accs.mean():.1f} ± {accs.std():.1f}"]
    refs = [ref for ref in REFS if ref in by]
    best = max(refs, key=lambda ref: np.mean([r["accuracy"] for r in by[ref]]))
    for k, ref in enumerate((*REFS, best)):
        if ref == label or ref not in by:
            cells.append("")
            continue
        d = paired_difference([np.array(r["correct"]) for r in runs], [np.array(r["correct"]) for r in by[ref]])
        cells.append(fmt(d) + (f" ({ref.split('/')[1]})" if k == len(REFS) else ""))
    sels = [s for r in runs for s in r["selection"] if s.get("ess") is not None]
    eq = sum(1 for s in sels if s.get("equals_uniform"))
    noise = [n for r in runs for n in r.get("noise") or [] if n]
    cells.append(f"{eq}/{len(sels)}" if sels else "")
    cells.append(f"{np.mean([n['flagged'] for n in noise]):.1f}" if noise else "")
    return cells


def main(root: Path) -> str:
    """The markdown table of one dataset."""
    by = load(root)
    head = ["run", "accuracy % (mean ± std)", "Δ vs none [CI] (w/l)", "Δ vs uniform [CI] (w/l)",
            "Δ vs better of none/uniform", "selections = uniform's", "flagged pairs (mean)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    n_train = next(iter(by.values()))[0]["n_train"]
    for label, runs in sorted(by.items()):
        lines.append("| " + " | ".join(row(label, runs, by)) + " |")
    text = (f"# {root.name}: matched steps, 5 seeds, mlp head, eda, rounds 1, n_train ≈ {n_train}\n\n"
            + "\n".join(lines) + "\n")
    (root / "table.md").write_text(text)
    return text


if __name__ == "__main__":
    print(main(Path(sys.argv[1])))
