"""Every figure: compare's and refine's PNG plots (matplotlib with the Agg backend, imported only when plotting).

Figures are rendered to PNG bytes (:func:`compare_pngs`, :func:`refine_pngs`), so the same images go
into the run folder (``render.write_pngs``) and inline into the HTML report. The runs' files are read
through :mod:`marsctl.rundir` and :mod:`marsctl.runcheck`'s checked reader only. A figure whose data a folder
lacks (a compare folder saved without its runs, a refine run without held-out pairs) is left out.

Compare: ``accuracy.png`` (accuracy per strategy with its CI and every seed), ``paired_delta.png``
(the paired Δ vs uniform and vs none with 95% CIs: the comparison that matters), ``accuracy_by_round.png``,
``margins_by_round.png`` (shared bins) and ``budget_vs_margin.png`` (one panel per strategy, all seeds).
Refine: ``accuracy_by_round.png`` (with CIs), ``margins_by_round.png``, ``budget_vs_margin.png`` (one
panel per round). Panels of one figure share their axes.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from marsctl import rundir
from marsctl.report import PROTOCOL_SHORT, compare_length_baseline, format_paired, length_baseline_text
from marsctl.runcheck import read_columns

MARKERS = "osD^vPX*<>"
DPI = 110
BINS = 40
MAX_PANELS = 12  # refine's budget figure: at most this many rounds side by side
REFS = ("uniform", "none")  # the paired differences compare reports (compare.REFERENCES)


def _plt() -> Any:
    from marsctl.store import quiet_matplotlib

    quiet_matplotlib()  # a read-only HOME: no log lines from matplotlib about its config folder
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig: Any) -> bytes:
    """A figure as PNG bytes (the figure is closed)."""
    plt = _plt()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buf.getvalue()


def _render(makers: Sequence[tuple[str, Callable[[], Any]]]) -> dict[str, bytes]:
    """PNG bytes of each maker's figure, one figure open at a time (a maker returns None without data)."""
    out = {}
    for name, make in makers:
        fig = make()
        if fig is not None:
            out[name] = png_bytes(fig)
    return out


def _style(strategies: Sequence[str]) -> dict[str, dict[str, Any]]:
    """One colour and marker per strategy, the same in every figure."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {st: {"color": cmap(i % 10), "marker": MARKERS[i % len(MARKERS)]} for i, st in enumerate(strategies)}


def _integer_ticks(axis: Any, n: int) -> None:
    """Ticks at 0..n−1 only (rounds and budgets are whole numbers)."""
    from matplotlib.ticker import MaxNLocator

    if n <= 12:
        axis.set_ticks(range(n))
    else:
        axis.set_major_locator(MaxNLocator(integer=True))


def _shared_bins(values: Sequence[Sequence[float]]) -> Any:
    """Histogram bin edges over every sample of a figure, so its histograms are comparable."""
    import numpy as np

    allv = np.concatenate([np.zeros(0), *(np.asarray(v, dtype=float) for v in values if len(v))])
    return np.histogram_bin_edges(allv, bins=BINS)


def _round_colours(n: int) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    return [cmap(k / max(1, n - 1) * 0.9) for k in range(n)]


# -- compare ---------------------------------------------------------------------------------------
def compare_pngs(results: Sequence[dict[str, Any]], report: dict[str, Any], *,
                 root: Path | None = None) -> dict[str, bytes]:
    """compare's figures as PNG bytes by file name; ``results`` are runs.jsonl's rows (may be empty).

    The runs' files are read only inside ``root`` (the compare folder; default: each run's own folder).
    """
    runs = [r for r in results if r.get("run_dir") and Path(r["run_dir"]).is_dir()]
    return _render([
        ("accuracy.png", lambda: _compare_accuracy(report, results)),
        ("paired_delta.png", lambda: _paired_delta(report)),
        ("accuracy_by_round.png", lambda: _compare_by_round(report, results) if results else None),
        ("margins_by_round.png", lambda: _compare_margins(report, runs, root) if runs else None),
        ("budget_vs_margin.png", lambda: _compare_budgets(report, runs, root) if runs else None),
    ])


def _strategies(report: dict[str, Any]) -> list[str]:
    return list(report["config"]["strategies"])


def _panels(n: int, *, width: float = 5.0, height: float = 3.8, rows: int = 1, **kw: Any) -> tuple[Any, Any]:
    plt = _plt()
    return plt.subplots(rows, n, figsize=(width * n, height * rows), squeeze=False, **kw)


def _compare_accuracy(report: dict[str, Any], results: Sequence[dict[str, Any]]) -> Any:
    import numpy as np

    protocols = list(report["protocols"])
    style = _style(_strategies(report))
    fig, axes = _panels(len(protocols), sharey=True)
    for ax, protocol in zip(axes[0], protocols, strict=True):
        rows = report["protocols"][protocol]
        for i, (st, r) in enumerate(rows.items()):
            lo, hi = (100 * x for x in r["accuracy_ci95"])
            mean = 100 * r["accuracy_mean"]
            ax.errorbar([i], [mean], yerr=[[max(0, mean - lo)], [max(0, hi - mean)]], fmt=style[st]["marker"],
                        color=style[st]["color"], capsize=5, ms=7)
            seeds = [100 * x["accuracy"] for x in results if x["protocol"] == protocol and x["strategy"] == st]
            if seeds:
                ax.plot(i + 0.18 + np.zeros(len(seeds)), seeds, ls="", marker=".", color=style[st]["color"],
                        alpha=0.5, ms=5)
        lb = compare_length_baseline(report, protocol)
        longer, shorter = length_baseline_text(lb, percent=True)
        ax.axhline(100 * lb["longer"], color="grey", ls="--", lw=1, label=f"pick longer ({longer})")
        ax.axhline(100 * lb["shorter"], color="grey", ls=":", lw=1, label=f"pick shorter ({shorter})")
        ax.set_xticks(range(len(rows)), list(rows), rotation=20)
        ax.set_title(f"{PROTOCOL_SHORT[protocol]}: mean, 95% CI (seeds × pairs); dots: seeds", fontsize=9)
        ax.legend(fontsize=7, loc="best")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("held-out pairwise accuracy (%)")
    return fig


def _paired_delta(report: dict[str, Any]) -> Any:
    protocols = list(report["protocols"])
    strategies = _strategies(report)
    refs = [ref for ref in REFS if ref in strategies and len(strategies) > 1]
    if not refs:
        return None
    fig, axes = _panels(len(protocols), rows=len(refs), width=5.0, height=0.6 * len(strategies) + 1.2,
                        sharex=True, sharey="row")
    for row, ref in enumerate(refs):
        names = [st for st in strategies if st != ref]
        for ax, protocol in zip(axes[row], protocols, strict=True):
            _forest(ax, report["protocols"][protocol], names, ref)
            ax.set_title(f"{PROTOCOL_SHORT[protocol]}: Δ accuracy vs {ref} (points, paired 95% CI)", fontsize=9)
        axes[row][0].set_yticks(range(len(names)), names)
    for ax in axes[-1]:
        ax.set_xlabel("Δ held-out accuracy (points); black: CI excludes 0")
    return fig


def _forest(ax: Any, rows: dict[str, Any], names: list[str], ref: str) -> None:
    for y, st in enumerate(names):
        d = rows[st].get(f"vs_{ref}")
        if not d:
            continue
        lo, hi = (100 * x for x in d["ci95"])
        mean = 100 * d["mean"]
        beyond = lo > 0 or hi < 0
        ax.errorbar([mean], [y], xerr=[[max(0, mean - lo)], [max(0, hi - mean)]], fmt="o", capsize=4,
                    color="black" if beyond else "grey")
        ax.annotate(format_paired(d), (mean, y), xytext=(0, 6), textcoords="offset points", ha="center",
                    va="bottom", fontsize=7)
    ax.axvline(0, color="tab:red", lw=1)
    ax.set_ylim(len(names) - 0.5, -0.7)
    ax.margins(x=0.1)
    ax.grid(axis="x", alpha=0.3)


def _compare_by_round(report: dict[str, Any], results: Sequence[dict[str, Any]]) -> Any:
    import numpy as np

    protocols = list(report["protocols"])
    strategies = list(next(iter(report["protocols"].values())))
    style = _style(_strategies(report))
    fig, axes = _panels(len(protocols), sharey=True)
    n_rounds = 1
    for ax, protocol in zip(axes[0], protocols, strict=True):
        series: dict[str, Any] = {}
        for st in strategies:
            runs = [r["accuracy_by_round"] for r in results if r["protocol"] == protocol and r["strategy"] == st]
            if runs:
                series[st] = 100 * np.array(runs)
        for i, (st, acc) in enumerate(series.items()):
            same = [o for o in list(series)[:i] if series[o].shape == acc.shape and np.allclose(series[o], acc)]
            x = np.arange(acc.shape[1]) + (i - (len(series) - 1) / 2) * 0.05  # dodge: equal lines stay visible
            ax.errorbar(x, acc.mean(axis=0), yerr=acc.std(axis=0), marker=style[st]["marker"],
                        color=style[st]["color"], capsize=3, ms=5, lw=1.2,
                        label=f"{st} (= {same[0]})" if same else st)
            n_rounds = max(n_rounds, acc.shape[1])
        ax.set_xlabel("round")
        ax.set_title(f"{PROTOCOL_SHORT[protocol]}: mean ± std over seeds", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[0]:
        _integer_ticks(ax.xaxis, n_rounds)
    axes[0][0].set_ylabel("held-out accuracy (%)")
    return fig


def _budget_axis(ax: Any, top: float) -> None:
    """Whole-number budget ticks from 0 (a pair left out has budget 0) to the largest budget."""
    from matplotlib.ticker import MaxNLocator

    ax.set_ylim(-0.5, top + 0.5)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _runs_by(runs: Sequence[dict[str, Any]], protocol: str, strategy: str) -> list[Path]:
    return [Path(r["run_dir"]) for r in sorted(runs, key=lambda r: r["seed"])
            if r["protocol"] == protocol and r["strategy"] == strategy]


def _compare_margins(report: dict[str, Any], runs: Sequence[dict[str, Any]], root: Path | None = None) -> Any:
    protocols = list(report["protocols"])
    strategies = _strategies(report)
    data: dict[tuple[str, str], dict[int, list[float]]] = {}
    for protocol in protocols:
        for st in strategies:
            by_round: dict[int, list[float]] = {}
            for run_dir in _runs_by(runs, protocol, st):
                for k, path in rundir.round_paths(run_dir, rundir.SCORED_JSONL):
                    by_round.setdefault(k, []).extend(
                        read_columns(path, root or run_dir, ("pred_margin",))["pred_margin"])
            data[(protocol, st)] = by_round
    samples = [v for by in data.values() for v in by.values()]
    if not samples:
        return None
    bins = _shared_bins(samples)
    n_rounds = 1 + max(k for by in data.values() for k in by)
    colours = _round_colours(n_rounds)
    fig, axes = _panels(len(strategies), rows=len(protocols), width=3.2, height=2.6, sharex=True, sharey=True)
    for i, protocol in enumerate(protocols):
        for ax, st in zip(axes[i], strategies, strict=True):
            for k, values in sorted(data[(protocol, st)].items()):
                ax.hist(values, bins=bins, histtype="step", color=colours[k], label=f"round {k}")
            ax.axvline(0, color="grey", lw=1)
            ax.set_title(f"{PROTOCOL_SHORT[protocol]}: {st}", fontsize=9)
        axes[i][0].set_ylabel("pairs (all seeds)")
    for ax in axes[-1]:
        ax.set_xlabel("predicted margin Δ")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("Δ on the training base pairs per round (all seeds pooled, shared bins)", fontsize=10)
    return fig


def _compare_budgets(report: dict[str, Any], runs: Sequence[dict[str, Any]], root: Path | None = None) -> Any:
    import matplotlib

    protocols = list(report["protocols"])
    strategies = [st for st in _strategies(report) if st != "none"]
    if not strategies:
        return None
    cmap = matplotlib.colormaps["tab10"]
    fig, axes = _panels(len(strategies), rows=len(protocols), width=3.2, height=2.8, sharex=True, sharey=True)
    top = 0.0
    for i, protocol in enumerate(protocols):
        for ax, st in zip(axes[i], strategies, strict=True):
            for seed, run_dir in enumerate(_runs_by(runs, protocol, st)):
                for _, path in rundir.round_paths(run_dir, rundir.SELECTED_JSONL, first=1):
                    cols = read_columns(path, root or run_dir, ("pred_margin", "budget"))
                    m, b = cols["pred_margin"], cols["budget"]
                    ax.scatter(m, b, s=6, alpha=0.35, color=cmap(seed % 10), label=f"seed {seed}", lw=0)
                    top = max(top, *b, 1)
            ax.set_title(f"{PROTOCOL_SHORT[protocol]}: {st}", fontsize=9)
            ax.grid(alpha=0.3)
        axes[i][0].set_ylabel("budget b_i")
    if not top:
        _plt().close(fig)
        return None
    for ax in axes[-1]:
        ax.set_xlabel("Δ by the previous round's model")
    handles, labels = axes[0][0].get_legend_handles_labels()
    seen = dict(zip(labels, handles, strict=True))
    axes[0][-1].legend(seen.values(), seen.keys(), fontsize=7, markerscale=2)
    _budget_axis(axes[0][0], top)
    fig.suptitle("where each strategy spends the budget (every seed and round)", fontsize=10)
    return fig


# -- refine ----------------------------------------------------------------------------------------
def refine_pngs(run_dir: str | Path, data: Any = None) -> dict[str, bytes]:
    """refine's figures for a run folder as PNG bytes by file name (read from its rounds' files).

    ``data``: the folder as :func:`marsctl.rundir.refine_data` read and checked it (read here when not given).
    """
    run_dir = Path(run_dir)
    metrics = rundir.round_metrics(run_dir) if data is None else data.metrics
    return _render([
        ("accuracy_by_round.png", lambda: _refine_accuracy(metrics)),
        ("margins_by_round.png", lambda: _refine_margins(run_dir, metrics)),
        ("budget_vs_margin.png", lambda: _refine_budgets(run_dir, list(metrics))),
    ])


def _refine_accuracy(metrics: dict[int, dict[str, Any]]) -> Any:
    import numpy as np

    rounds = [k for k, m in metrics.items() if m.get("eval")]
    if not rounds:
        return None
    # Fractions, as summary.md prints them (and the baselines' labels are its numbers).
    acc = np.array([metrics[k]["eval"]["accuracy"] for k in rounds])
    ci = np.array([metrics[k]["eval"]["accuracy_ci95"] for k in rounds])
    fig, axes = _panels(1, width=6.0)
    ax = axes[0][0]
    yerr = np.clip([acc - ci[:, 0], ci[:, 1] - acc], 0, None)  # a CI that misses its mean (edited) draws no bar
    ax.errorbar(rounds, acc, yerr=yerr, marker="o", capsize=5, label="held-out accuracy")
    lb = metrics[rounds[0]]["eval"]["length_baseline"]
    longer, shorter = length_baseline_text(lb)
    ax.axhline(lb["longer"], color="grey", ls="--", lw=1, label=f"pick longer ({longer})")
    ax.axhline(lb["shorter"], color="grey", ls=":", lw=1, label=f"pick shorter ({shorter})")
    _integer_ticks(ax.xaxis, max(rounds) + 1)
    ax.set_xlabel("round")
    ax.set_ylabel("held-out pairwise accuracy")
    ax.set_title("held-out accuracy per round (95% bootstrap CI over pairs)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def _refine_margins(run_dir: Path, metrics: dict[int, dict[str, Any]]) -> Any:
    train = {k: read_columns(p, run_dir, ("pred_margin",))["pred_margin"]
             for k, p in rundir.round_paths(run_dir, rundir.SCORED_JSONL, rounds=list(metrics))}
    held = {k: m["eval_margins"] for k, m in metrics.items() if m.get("eval_margins")}
    panels = [(title, d) for title, d in (("training base pairs", train), ("held-out pairs", held))
              if any(d.values())]
    if not panels:
        return None
    bins = _shared_bins([v for _, d in panels for v in d.values()])
    colours = _round_colours(1 + max(k for _, d in panels for k in d))
    fig, axes = _panels(len(panels), sharex=True)
    for ax, (title, d) in zip(axes[0], panels, strict=True):
        for k, values in sorted(d.items()):
            ax.hist(values, bins=bins, histtype="step", color=colours[k], label=f"round {k}")
        ax.axvline(0, color="grey", lw=1)
        ax.set_xlabel("predicted margin Δ")
        ax.set_ylabel("pairs")
        ax.set_title(f"Δ on the {title} per round (shared bins)", fontsize=9)
        ax.legend(fontsize=7)
    return fig


def _refine_budgets(run_dir: Path, finished: Sequence[int] | None = None) -> Any:
    rounds = list(rundir.round_paths(run_dir, rundir.SELECTED_JSONL, first=1, rounds=finished))
    if not rounds:
        return None
    if len(rounds) > MAX_PANELS:  # a figure stays drawable: evenly spaced rounds, the last one included
        step = (len(rounds) - 1) / (MAX_PANELS - 1)
        rounds = [rounds[round(i * step)] for i in range(MAX_PANELS)]
    fig, axes = _panels(len(rounds), width=4.0, height=3.4, sharex=True, sharey=True)
    top = 1.0
    for ax, (k, path) in zip(axes[0], rounds, strict=True):
        cols = read_columns(path, run_dir, ("pred_margin", "budget"))
        budgets = cols["budget"]
        ax.scatter(cols["pred_margin"], budgets, s=8, alpha=0.5, lw=0)
        ax.set_title(f"round {k}: budget vs round {k - 1}'s Δ", fontsize=9)
        ax.set_xlabel("predicted margin Δ")
        ax.grid(alpha=0.3)
        top = max([top, *budgets])
    _budget_axis(axes[0][0], top)
    axes[0][0].set_ylabel("budget b_i")
    return fig
