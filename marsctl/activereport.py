"""What a labeling simulation (:mod:`marsctl.active`) shows: learning curves with CIs over seeds, the area under
each curve and its paired difference from random, the labels a strategy needs to reach random's final accuracy,
and the files: ``report.json``, ``table.md`` and ``curves.png``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REFERENCE = "random"
# two-sided 95% Student t quantiles by degrees of freedom (n seeds - 1); beyond 30, the normal's 1.96
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042}


def t95(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (the nearest tabulated below).

    >>> t95(4), t95(11), t95(100)
    (2.776, 2.228, 1.96)
    """
    if df > 30:
        return 1.96
    return _T95[max(d for d in _T95 if d <= df)]


def mean_ci(values: Sequence[float]) -> dict[str, Any]:
    """Mean and 95% t interval over seeds (the interval is the mean alone for one seed).

    >>> mean_ci([1.0, 2.0, 3.0])["ci95"]
    [-0.484338, 4.484338]
    """
    n = len(values)
    m = math.fsum(values) / n
    if n < 2:
        return {"mean": m, "ci95": [m, m], "n": n}
    sd = math.sqrt(math.fsum((v - m) ** 2 for v in values) / (n - 1))
    h = t95(n - 1) * sd / math.sqrt(n)
    return {"mean": m, "ci95": [round(m - h, 6), round(m + h, 6)], "n": n}


def area(labels: Sequence[int], acc: Sequence[float]) -> float:
    """Area under a learning curve, normalised by the label range (the curve's mean height), in points.

    >>> area([50, 100, 150], [0.5, 0.6, 0.7])
    60.0
    """
    if len(labels) < 2:
        return 100 * acc[0]
    total = sum((labels[i + 1] - labels[i]) * (acc[i] + acc[i + 1]) / 2 for i in range(len(labels) - 1))
    return round(100 * total / (labels[-1] - labels[0]), 6)


def labels_to_reach(labels: Sequence[int], mean_acc: Sequence[float], target: float) -> int | None:
    """The fewest labels at which a mean curve reaches ``target`` (None: never within the budget).

    >>> labels_to_reach([50, 100, 150], [0.5, 0.62, 0.61], 0.6)
    100
    """
    return next((n for n, a in zip(labels, mean_acc, strict=True) if a >= target - 1e-12), None)


def summarize(sim: dict[str, Any]) -> dict[str, Any]:
    """Per strategy: the curve (mean and CI per budget), AUC, its paired difference from random, labels to reach."""
    curves = sim["curves"]
    strategies = list(dict.fromkeys(c["strategy"] for c in curves))
    labels = curves[0]["labels"]
    by = {st: sorted((c for c in curves if c["strategy"] == st), key=lambda c: c["seed"]) for st in strategies}
    out: dict[str, Any] = {"labels": labels, "strategies": {}}
    ref = by.get(REFERENCE)
    ref_mean = [mean_ci([c["accuracy"][i] for c in ref])["mean"] for i in range(len(labels))] if ref else None
    for st in strategies:
        runs = by[st]
        points = [mean_ci([c["accuracy"][i] for c in runs]) for i in range(len(labels))]
        aucs = [area(labels, c["accuracy"]) for c in runs]
        row: dict[str, Any] = {
            "seeds": len(runs),
            "accuracy": [round(p["mean"], 6) for p in points],
            "ci95": [p["ci95"] for p in points],
            "auc": mean_ci(aucs),
            "lift": round(100 * (points[-1]["mean"] - points[0]["mean"]), 4),
        }
        if ref is not None and ref_mean is not None:
            diffs = [a - area(labels, r["accuracy"]) for a, r in zip(aucs, ref, strict=True)]
            row["auc_vs_random"] = mean_ci(diffs)
            reach = labels_to_reach(labels, row["accuracy"], ref_mean[-1])
            row["labels_to_random_final"] = reach
            row["share_of_random_labels"] = None if reach is None else round(reach / labels[-1], 4)
        out["strategies"][st] = row
    if ref is not None and ref_mean is not None:
        out["random_final_accuracy"] = round(ref_mean[-1], 6)
        out["random_lift_points"] = round(100 * (ref_mean[-1] - ref_mean[0]), 4)
    out["verdict"] = verdict(out)
    return out


def verdict(summary: dict[str, Any]) -> str:
    """One line: does selection save labels here (the issue's goals: AUC >= 1 point over random with a CI above 0,
    never 0.5 below, random's final accuracy with <= 60% of the labels), or has it nothing to save?"""
    lift = summary.get("random_lift_points")
    if lift is None:
        return "no random baseline: run with random among the strategies"
    others = {k: v for k, v in summary["strategies"].items() if k != REFERENCE}
    if not others:
        return f"random alone (lift {lift:+.1f} points)"
    best = max(others, key=lambda k: others[k]["auc_vs_random"]["mean"])
    d = others[best]["auc_vs_random"]
    share = others[best]["share_of_random_labels"]
    if lift < 1.0:
        head = f"random lifts {lift:+.1f} points from first to last budget (< 1): selection has nothing to save"
    else:
        win = d["mean"] >= 1.0 and d["ci95"][0] > 0 and share is not None and share <= 0.6
        head = f"random lifts {lift:+.1f} points; {'WIN' if win else 'LOSE'}"
    worst = min(others, key=lambda k: others[k]["auc_vs_random"]["mean"])
    return (f"{head}; best {best}: AUC {d['mean']:+.2f} points vs random, 95% CI [{d['ci95'][0]:+.2f}, "
            f"{d['ci95'][1]:+.2f}]; worst {worst}: {others[worst]['auc_vs_random']['mean']:+.2f}")


def table_md(summary: dict[str, Any], title: str, command: str | None = None) -> str:
    """The learning curves and the verdict as Markdown."""
    labels = summary["labels"]
    lines = [f"# {title}", ""]
    if command:
        lines += ["```", command, "```", ""]
    lines += ["Held-out accuracy (%) by labels, mean over seeds [95% CI]:", "",
              "| strategy | " + " | ".join(str(n) for n in labels) + " |",
              "|---|" + "---|" * len(labels)]
    for st, row in summary["strategies"].items():
        cells = [f"{100 * m:.1f} [{100 * c[0]:.1f}, {100 * c[1]:.1f}]" for m, c in zip(row["accuracy"], row["ci95"],
                                                                                         strict=True)]
        lines.append(f"| {st} | " + " | ".join(cells) + " |")
    lines += ["", "| strategy | seeds | AUC (points) | AUC − random [95% CI] | lift first→last | labels to random's "
              "final | share of random's labels |", "|---|---|---|---|---|---|---|"]
    for st, row in summary["strategies"].items():
        d = row.get("auc_vs_random")
        diff = "" if d is None or st == REFERENCE else f"{d['mean']:+.2f} [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]"
        reach = row.get("labels_to_random_final")
        share = row.get("share_of_random_labels")
        lines.append(f"| {st} | {row['seeds']} | {row['auc']['mean']:.2f} | {diff} | {row['lift']:+.1f} | "
                     f"{'not reached' if reach is None else reach} | {'' if share is None else f'{share:.0%}'} |")
    lines += ["", f"Verdict: {summary['verdict']}.", ""]
    return "\n".join(lines)


def curves_png(summary: dict[str, Any], title: str) -> bytes:
    """Accuracy vs labels, one line per strategy with its 95% CI band."""
    from marsctl.plots import _plt, png_bytes

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    x = summary["labels"]
    for st, row in summary["strategies"].items():
        y = [100 * v for v in row["accuracy"]]
        ax.plot(x, y, marker="o", label=f"{st} (AUC {row['auc']['mean']:.1f})")
        ax.fill_between(x, [100 * c[0] for c in row["ci95"]], [100 * c[1] for c in row["ci95"]], alpha=0.15)
    ax.set_xlabel("labeled pairs")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return png_bytes(fig)


def write_outputs(sim: dict[str, Any], out: str | Path, title: str, command: str | None = None) -> dict[str, Any]:
    """report.json (config, split, summary, every curve), table.md and curves.png in ``out``; returns the summary."""
    from marsctl.atomic import atomic_writer, write_bytes, write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(sim)
    png = curves_png(summary, title)
    write_json({**sim, "summary": summary, "command": command}, out / "report.json")
    with atomic_writer(out / "table.md") as fh:
        fh.write(table_md(summary, title, command))
    write_bytes(png, out / "curves.png")
    return summary
