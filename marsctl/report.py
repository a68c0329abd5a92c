"""Every table: the Markdown files and the Rich tables on stderr (``ui.table`` is the primitive).

Which columns and rows a table has, and how its cells are formatted, is decided here and nowhere else:
refine's per-round summary, compare's strategy tables, eval's metrics and the benchmarks' mean ± std tables.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from marsctl import ui
from marsctl.atomic import atomic_writer

Table = tuple[list[str], list[list[str]]]


def markdown_table(cols: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a Markdown table: header, rule, one line per row.

    >>> markdown_table(["a", "b"], [["1", "2"]])
    ['| a | b |', '|---|---|', '| 1 | 2 |']
    """
    return [_md_row(cols), "|" + "---|" * len(cols)] + [_md_row(r) for r in rows]


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _f(v: Any, fmt: str = ".4f") -> str:
    return "" if v is None else format(v, fmt)


# -- refine: one row per finished round -----------------------------------------------------------
def summary_table(summary: dict[str, Any]) -> Table:
    """Columns and rows of refine's per-round summary."""
    cols = ["round", "train pairs", "synthetic", "held-out acc", "95% CI", "AUC", "SNR",
            "mean σ'(Δ) train", "ESS", "budget on Δ<0"]
    rows = []
    for r in summary["rounds"]:
        ci = r["eval_accuracy_ci95"]
        rows.append([str(r["round"]), str(r["train_size"]), str(r["n_synthetic"]), _f(r["eval_accuracy"]),
                     f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "", _f(r["eval_roc_auc"]),
                     _f(r["eval_margin_snr"]), _f(r["train_curvature_weight"]), _f(r["selection_ess"], ".1f"),
                     _f(r["selection_share_negative"], ".3f")])
    return cols, rows


def length_baseline_text(lb: dict[str, float], *, percent: bool = False) -> tuple[str, str]:
    """The 'pick the longer' and 'pick the shorter' accuracies as every table and plot label prints them.

    >>> length_baseline_text({"longer": 0.5512, "shorter": 0.4401}, percent=True)
    ('55.1 %', '44.0 %')
    >>> length_baseline_text({"longer": 0.5512, "shorter": 0.4401})
    ('0.5512', '0.4401')
    """
    if percent:
        return f"{100 * lb['longer']:.1f} %", f"{100 * lb['shorter']:.1f} %"
    return f"{lb['longer']:.4f}", f"{lb['shorter']:.4f}"


def summary_markdown(summary: dict[str, Any]) -> str:
    """refine's summary.md: the per-round table and the length baseline."""
    lines = markdown_table(*summary_table(summary))
    lb = summary.get("length_baseline")
    if lb:
        longer, shorter = length_baseline_text(lb)
        lines.append(f"\nBaseline on the same held-out rows: pick the longer response {longer}, "
                     f"the shorter {shorter}.")
    return "\n".join(lines) + "\n"


def write_summary(summary: dict[str, Any], path: str | Path) -> None:
    """Write refine's summary.md (atomically)."""
    with atomic_writer(path) as fh:
        fh.write(summary_markdown(summary))


def print_summary(summary: dict[str, Any]) -> None:
    """refine's summary table on stderr."""
    cols, rows = summary_table(summary)
    held = summary.get("heldout")
    ui.table(f"refine summary ({summary['run_dir']}; held-out: {held['path'] if held else 'none'})", cols, rows)
    lb = summary.get("length_baseline")
    if lb:
        longer, shorter = length_baseline_text(lb)
        ui.info(f"length baseline on the same held-out rows: longer {longer}, shorter {shorter}")


# -- compare: one row per strategy, one section per protocol --------------------------------------
PROTOCOL_TITLES = {"epochs": "same epochs per round (the paper's protocol)",
                   "steps": "matched optimiser steps (augmented rounds train fewer epochs)"}
PROTOCOL_SHORT = {"epochs": "same epochs", "steps": "matched steps"}  # plot panel titles, as the README says


def compare_length_baseline(report: dict[str, Any], protocol: str) -> dict[str, float]:
    """The length baseline of a protocol's test rows (every strategy of a seed has the same rows)."""
    first = next(iter(report["protocols"][protocol].values()))
    return {"longer": first["length_longer"], "shorter": first["length_shorter"]}


def format_paired(d: dict[str, Any] | None) -> str:
    """A paired difference in points: '+1.2 [-0.3, +2.5] (3/2)'.

    >>> format_paired({"mean": 0.012, "ci95": [-0.003, 0.025], "wins": 3, "losses": 2})
    '+1.2 [-0.3, +2.5] (3/2)'
    """
    if not d:
        return ""
    lo, hi = d["ci95"]
    return f"{100 * d['mean']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] ({d['wins']}/{d['losses']})"


def _acc(r: dict[str, Any]) -> str:
    return f"{100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_std']:.1f}"


def compare_rows(report: dict[str, Any], protocol: str) -> Table:
    """Accuracy per strategy of one protocol (in %), with the paired differences."""
    cols = ["strategy", "accuracy % (mean ± std)", "95% CI", "Δ vs uniform [CI] (wins/losses)",
            "Δ vs none [CI] (wins/losses)", "length baseline (longer)"]
    rows = []
    for st, r in report["protocols"][protocol].items():
        lo, hi = r["accuracy_ci95"]
        rows.append([st, _acc(r), f"[{100 * lo:.1f}, {100 * hi:.1f}]", format_paired(r.get("vs_uniform")),
                     format_paired(r.get("vs_none")), f"{100 * r['length_longer']:.1f}"])
    return cols, rows


def diagnostics_rows(report: dict[str, Any], protocol: str) -> Table:
    """Selection diagnostics per strategy (means over seeds and rounds)."""
    cols = ["strategy", "ESS", "max b_i", "pairs with b_i>0", "budget on Δ<0", "P(chosen longer) selected",
            "P(chosen longer) test", "mean σ'(Δ) train", "novelty corr", "guard fallbacks"]
    rows = []
    for st, r in report["protocols"][protocol].items():
        d = r.get("diagnostics")
        if not d:
            continue
        rows.append([st, _f(d.get("ess"), ".1f"), _f(d.get("max_budget"), ".1f"), _f(d.get("pairs_selected"), ".1f"),
                     _f(d.get("share_negative_margin"), ".3f"), _f(d.get("p_chosen_longer_selected"), ".3f"),
                     _f(d.get("test_p_chosen_longer"), ".3f"), _f(r.get("train_curvature_weight"), ".4f"),
                     _f(d.get("novelty_corr"), ".3f"), str(d.get("guard_fallbacks"))])
    return cols, rows


def compare_markdown(report: dict[str, Any], command: str = "") -> str:
    """compare's table.md: settings, then per protocol the accuracy and diagnostics tables."""
    cfg, rc = report["config"], report["config"]["refine"]
    lines = [f"# compare: {', '.join(cfg['strategies'])}", ""]
    if command:
        lines += ["```", command, "```", ""]
    lines += [f"{cfg['seeds']} seeds; head {rc['head']}; backend {rc['backend']}; rounds {rc['rounds']}; "
              f"budget {rc['budget'] or 'as many as training pairs'} per round; cap {rc['cap']} rows per pair. "
              "Δ are paired differences in accuracy points with a 95% CI from a bootstrap over seeds and "
              "test pairs; wins/losses count seeds.", ""]
    for protocol in report["protocols"]:
        lines += [f"## {PROTOCOL_TITLES[protocol]}", ""]
        for maker in (compare_rows, diagnostics_rows):
            lines += markdown_table(*maker(report, protocol))
            lines.append("")
        longer, shorter = length_baseline_text(compare_length_baseline(report, protocol), percent=True)
        lines += [f"Length baseline on the same test rows: pick the longer response {longer}, the shorter {shorter}.",
                  ""]
    return "\n".join(lines)


def write_compare(report: dict[str, Any], path: str | Path, command: str = "") -> None:
    """Write compare's table.md (atomically)."""
    with atomic_writer(path) as fh:
        fh.write(compare_markdown(report, command))


def print_compare(report: dict[str, Any]) -> None:
    """Compact compare tables on stderr (table.md has every column)."""
    for protocol, strategies in report["protocols"].items():
        rows = [[st, _acc(r), format_paired(r.get("vs_uniform")), format_paired(r.get("vs_none")),
                 f"{100 * r['length_longer']:.1f}"] for st, r in strategies.items()]
        ui.table(f"compare, {protocol} protocol (accuracy %, Δ in points [95% CI] (seeds won/lost))",
                 ["strategy", "accuracy", "Δ vs uniform", "Δ vs none", "longer"], rows)


# -- eval ---------------------------------------------------------------------------------------------
def _ci(ci: Sequence[float]) -> str:
    return f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def _calibration_text(c: dict[str, Any]) -> str:
    """'ECE 0.0312, Brier 0.2440, log loss 0.6814 (p = 0.5 gives 0.25, 0.693)'."""
    u = c["uniform_forecast"]
    return (f"ECE {_f(c['ece'])}, Brier {_f(c['brier'])}, log loss {_f(c['log_loss'])}  "
            f"(p = 0.5 gives {u['brier']:.2f}, {u['log_loss']:.3f})")


def _corr_text(d: dict[str, Any]) -> str:
    return f"Spearman {_f(d['spearman'], '.3f') or 'n/a'}, Pearson {_f(d['pearson'], '.3f') or 'n/a'}"


def _acc_n(d: dict[str, Any]) -> str:
    return f"{_f(d['accuracy']) or 'n/a'} (n={d['n']})"


def eval_rows(m: dict[str, Any]) -> list[list[str]]:
    """The headline rows of eval's metrics table."""
    lo, hi = m["accuracy_ci95"]
    lb = m["length_baseline"]
    rows = [
        ["eval_accuracy", f"{m['accuracy']:.4f}  [{lo:.4f}, {hi:.4f}] 95% CI"],
        ["eval_roc_auc", f"{m['roc_auc']:.4f}"],
        ["eval_margin_snr", "undefined (all margins equal)" if m["margin_snr"] is None else f"{m['margin_snr']:.4f}"],
        ["eval_curvature_weight", f"{m['curvature_weight']:.4f}  (mean σ'(Δ), max 0.25)"],
        ["eval_mean_reward", f"{m['mean_reward']:.4f}  (min {m['min_reward']:.3f}, max {m['max_reward']:.3f})"],
        ["baseline: longer response", f"{lb['longer']:.4f}  (shorter {lb['shorter']:.4f}, ties {lb['ties']:.4f})"],
    ]
    if (lt := m.get("length_term")) is not None:
        rows.append(["accuracy without the length term", f"{lt['without_length']:.4f}  (with it "
                     f"{lt['with_length']:.4f}, the length term alone {lt['length_only']:.4f})"])
    if "calibration" in m:
        rows += _diagnostic_rows(m)
    return rows


def _diagnostic_rows(m: dict[str, Any]) -> list[list[str]]:
    c, ln, q = m["calibration"], m["length"], m["margin_quantiles"] or {}
    rows = [
        ["mean chosen / rejected reward", f"{_f(m['mean_chosen_reward'])} / {_f(m['mean_rejected_reward'])}"],
        ["Δ quantiles 5/25/50/75/95 %", " / ".join(f"{q[k]:.3f}" for k in q)],
        ["accuracy by |Δ| quartile", " / ".join(_f(b["accuracy"], ".3f") for b in m["accuracy_by_margin"])],
        [f"calibration ({c['binning']}, {c['n_bins']} bins)", _calibration_text(c)],
        ["p = σ(Δ) range", "" if c["p_range"] is None else f"[{c['p_range'][0]:.3f}, {c['p_range'][1]:.3f}]"],
        ["reward vs length (chars)", _corr_text(ln["reward_vs_length"])],
        ["accuracy: chosen longer / shorter", f"{_acc_n(ln['chosen_longer'])} / {_acc_n(ln['chosen_shorter'])}"],
    ]
    ts = m.get("temperature_scaling")
    if ts:
        bound = ", at the search bound" if ts["at_bound"] else ""
        rows += [[f"temperature T (fit on {ts['fit']['n']} pairs{bound})", f"{ts['temperature']:.4f}"],
                 [f"raw on the other {ts['eval']['n']}", _calibration_text(ts["raw"])],
                 [f"calibrated on the other {ts['eval']['n']}", _calibration_text(ts["calibrated"])]]
    bon = m.get("best_of_n")
    if bon:
        rows.append([f"best-of-N accuracy ({bon['groups']} groups)",
                     f"{bon['accuracy']:.4f}  {_ci(bon['accuracy_ci95'])} 95% CI  (chance {bon['chance']:.3f})"])
    rb = m.get("rewardbench")
    if rb:
        text = ", ".join(f"{k} {v:.4f}" for k, v in rb["sections"].items())
        rows.append(["RewardBench v1 sections", text + (f"; score {rb['score']:.4f}" if rb["score"] is not None
                                                        else "")])
    return rows


def print_eval(m: dict[str, Any]) -> None:
    """eval's metrics, the reliability table and per-subset accuracy as tables on stderr."""
    ui.table(f"eval on {m['heldout']['path']} ({m['n']} pairs), model {m['model']}", ["metric", "value"],
             eval_rows(m))
    c = m.get("calibration")
    if c and c["reliability"]:
        ui.table(f"reliability ({c['binning']} bins of max(p, 1−p))",
                 ["bin", "n", "p range", "mean p", "accuracy"],
                 [[i + 1, b["n"], f"{b['p_low']:.3f}–{b['p_high']:.3f}", f"{b['mean_p']:.4f}", f"{b['accuracy']:.4f}"]
                  for i, b in enumerate(c["reliability"])])
    if "subsets" in m:
        srows = [[k, v["n"], v["accuracy"], _ci(v["accuracy_ci95"]) if "accuracy_ci95" in v else "",
                  _f((v.get("calibration") or {}).get("brier"))] for k, v in m["subsets"].items()]
        srows += [[f"section {k} (mean)", "", v, "", ""] for k, v in m.get("sections", {}).items()]
        srows += [[f"RewardBench {k} (weighted)", "", v, "", ""]
                  for k, v in (m.get("rewardbench") or {}).get("sections", {}).items()]
        ui.table("per subset", ["subset", "n", "accuracy", "95% CI", "Brier"], srows)


# -- benchmarks: mean ± std over repeats --------------------------------------------------------------
def mean_std_markdown(rows: Sequence[dict[str, Any]], index: dict[str, Sequence[Any]], column: str,
                      values: Sequence[Any], labels: Sequence[str], metric: str = "accuracy") -> str:
    """A Markdown table of ``metric`` as 'mean ± std' (population std) over the rows of each cell.

    One table row per combination of ``index`` values (e.g. {"dataset": [...], "head": [...]}), one
    column per entry of ``values`` of ``column`` (headed by ``labels``).
    """
    from marsctl.stats import mean_std

    keys = list(index)
    body = []
    for combo in itertools.product(*index.values()):
        cells = [str(c) for c in combo]
        for v in values:
            m, sd = mean_std([r[metric] for r in rows if tuple(r[k] for k in keys) == combo and r[column] == v])
            cells.append(f"{m:.3f} ± {sd:.3f}")
        body.append(cells)
    return "\n".join(markdown_table([*keys, *labels], body)) + "\n"
