"""PNG plots for compare (matplotlib, the 'plot' extra; imported only when plotting)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def compare_plots(out: Path, results: list[dict[str, Any]], report: dict[str, Any]) -> list[str]:
    """Write accuracy.png, accuracy_by_round.png, margins_by_round.png, budget_vs_margin.png."""
    written = [_accuracy(out, report), _by_round(out, results, report)]
    first = [r for r in results if r["strategy"] not in ("none",) and r["seed"] == 0]
    if first:
        written.append(_margins(out, first[0]))
        written.append(_budget_vs_margin(out, [r for r in first if r["protocol"] == first[0]["protocol"]]))
    return [str(p) for p in written]


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _accuracy(out: Path, report: dict[str, Any]) -> Path:
    protocols = list(report["protocols"])
    fig, axes = plt.subplots(1, len(protocols), figsize=(5.5 * len(protocols), 4), squeeze=False)
    for ax, protocol in zip(axes[0], protocols, strict=True):
        rows = report["protocols"][protocol]
        names = list(rows)
        means = np.array([rows[n]["accuracy_mean"] for n in names]) * 100
        lo = np.array([rows[n]["accuracy_ci95"][0] for n in names]) * 100
        hi = np.array([rows[n]["accuracy_ci95"][1] for n in names]) * 100
        ax.errorbar(range(len(names)), means, yerr=[means - lo, hi - means], fmt="o", capsize=5)
        lb = np.mean([rows[n]["length_longer"] for n in names]) * 100
        ax.axhline(lb, color="grey", ls="--", lw=1, label=f"pick longer ({lb:.1f}%)")
        sh = np.mean([rows[n]["length_shorter"] for n in names]) * 100
        ax.axhline(sh, color="grey", ls=":", lw=1, label=f"pick shorter ({sh:.1f}%)")
        ax.set_xticks(range(len(names)), names, rotation=20)
        ax.set_ylabel("held-out pairwise accuracy (%)")
        ax.set_title(f"{protocol} protocol (mean, 95% CI over seeds × pairs)", fontsize=9)
        ax.legend(fontsize=7)
    return _save(fig, out / "accuracy.png")


def _by_round(out: Path, results: list[dict[str, Any]], report: dict[str, Any]) -> Path:
    protocols = list(report["protocols"])
    fig, axes = plt.subplots(1, len(protocols), figsize=(5.5 * len(protocols), 4), squeeze=False)
    for ax, protocol in zip(axes[0], protocols, strict=True):
        for st in report["protocols"][protocol]:
            runs = [r["accuracy_by_round"] for r in results if r["protocol"] == protocol and r["strategy"] == st]
            mean = np.mean(np.array(runs), axis=0) * 100
            ax.plot(range(len(mean)), mean, marker="o", label=st)
        ax.set_xlabel("round")
        ax.set_ylabel("held-out accuracy (%), mean over seeds")
        ax.set_title(f"{protocol} protocol", fontsize=9)
        ax.legend(fontsize=7)
    return _save(fig, out / "accuracy_by_round.png")


def _read_margins(path: Path) -> np.ndarray:
    with open(path, encoding="utf-8") as fh:
        return np.array([json.loads(line)["pred_margin"] for line in fh if line.strip()])


def _margins(out: Path, run: dict[str, Any]) -> Path:
    run_dir = Path(run["run_dir"])
    rounds = sorted(run_dir.glob("round-*/scored.jsonl"), key=lambda p: int(p.parent.name.split("-")[1]))
    fig, ax = plt.subplots(figsize=(6, 4))
    for p in rounds:
        ax.hist(_read_margins(p), bins=40, histtype="step", label=p.parent.name)
    ax.axvline(0, color="grey", lw=1)
    ax.set_xlabel("predicted margin Δ on training base pairs")
    ax.set_ylabel("pairs")
    ax.set_title(f"margins per round: {run['strategy']}, {run['protocol']} protocol, seed {run['seed']}", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, out / "margins_by_round.png")


def _budget_vs_margin(out: Path, runs: list[dict[str, Any]]) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for run in runs:
        sel = Path(run["run_dir"]) / "round-1" / "selected.jsonl"
        if not sel.exists():
            continue
        with open(sel, encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        m = np.array([r["pred_margin"] for r in rows])
        b = np.array([r["budget"] for r in rows])
        order = np.argsort(m)
        ax.plot(m[order], b[order], marker=".", ls="", ms=3, label=run["strategy"])
    ax.set_xlabel("predicted margin Δ (round-0 model)")
    ax.set_ylabel("budget b_i (round 1)")
    ax.set_title("where each strategy spends the budget (seed 0)", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, out / "budget_vs_margin.png")
