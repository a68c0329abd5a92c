"""The HTML report of a refine or compare run folder: one self-contained page, readable offline.

The page holds the settings and provenance (inputs with sha256, plugin and library versions, the
augmenter's synonym source), the summary tables (built by :mod:`marsctl.report`, as in summary.md and
table.md), the figures (:mod:`marsctl.plots`, inlined as base64 PNG), the held-out evaluation with
whatever diagnostics ``eval`` recorded, the guard's decisions and a plain-words verdict. It loads
nothing: no script, no stylesheet, no font or image from anywhere but itself. Every text from the run
folder is escaped.

It renders what it is given: a folder as :mod:`marsctl.rundir` read and checked it, the figures as
PNG bytes and the verdicts of :mod:`marsctl.verdict`. Reading the folder, drawing the figures and
deciding where the page goes are :mod:`marsctl.render`'s.
"""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marsctl import report as tables
from marsctl.verdict import compare_verdict, refine_verdict

if TYPE_CHECKING:
    from marsctl.rundir import CompareData, RefineData

GENERATOR = '<meta name="generator" content="marsctl report">'  # marks a page marsctl may replace
# eval's headline metrics (shown in one table); every other key of a round's "eval" is shown as its own section.
CORE_EVAL = ("n", "accuracy", "accuracy_ci95", "ties", "roc_auc", "margin_snr", "margin_mean", "margin_std",
             "curvature_weight", "mean_reward", "min_reward", "max_reward", "length_baseline", "bootstrap")
CSS = """
body{font:14px/1.45 system-ui,sans-serif;max-width:1200px;margin:1.5em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{background:#f6f8fa;border-left:4px solid #4a7;padding:.6em 1em}.warn{border-left-color:#d90}
figure{margin:1em 0}img{max-width:100%;height:auto;border:1px solid #eee}figcaption{color:#555;font-size:12px}
code{background:#f2f2f2;padding:0 3px}.muted{color:#666}
"""


# -- the page ---------------------------------------------------------------------------------------------
def refine_page(data: RefineData, summary: dict[str, Any], pngs: dict[str, bytes]) -> str:
    """The report page of a refine folder (``summary``: ``rundir.summary`` of it; ``pngs``: its figures)."""
    return _page("refine", data.dir, _refine_body(data, summary, pngs))


def compare_page(data: CompareData, pngs: dict[str, bytes]) -> str:
    """The report page of a compare folder (``pngs``: its figures)."""
    return _page("compare", data.dir, _compare_body(data, pngs))


def _page(kind: str, run_dir: Path, body: list[str]) -> str:
    title = f"marsctl {kind} report: {run_dir}"
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', GENERATOR,
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>", f"<style>{CSS}</style>", "</head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">Written {_e(time.strftime("%Y-%m-%d %H:%M:%S %z"))} by <code>marsctl report</code>; '
        "this page loads nothing from the network.</p>",
        *body, "</body></html>", ""])


# -- HTML pieces ------------------------------------------------------------------------------------------
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(v: Any) -> str:
    """A cell's text: floats to 4 significant decimals, lists joined, None as an empty cell.

    >>> _fmt(0.123456), _fmt([0.1, 0.25]), _fmt(None), _fmt(True)
    ('0.1235', '[0.1000, 0.2500]', '', 'yes')
    """
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, list) and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, list | dict):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def html_table(cols: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table (every cell escaped; numbers right-aligned)."""
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = []
    for row in rows:
        cells = []
        for v in row:
            text = v if isinstance(v, str) else _fmt(v)
            num = _is_num(v) or (isinstance(v, str) and v[:1] in "+-0123456789" and v[:2] != "--")
            cells.append(f'<td class="num">{_e(text)}</td>' if num else f"<td>{_e(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) for each leaf of nested dicts (lists stay leaves).

    >>> _flatten({"a": {"b": 1}, "c": [2]})
    [('a.b', 1), ('c', [2])]
    """
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out += _flatten(v, key + ".")
        else:
            out.append((key, v))
    return out


def kv_table(d: dict[str, Any]) -> str:
    """A two-column table of a (nested) dict's leaves."""
    return html_table(["setting", "value"], [[k, _fmt(v)] for k, v in _flatten(d)])


def value_html(value: Any) -> str:
    """Any JSON value as HTML: a list of records or a dict of records as a table, a dict as key/value rows."""
    if isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
        cols = list(dict.fromkeys(k for x in value for k in x))
        return html_table(cols, [[x.get(c) for c in cols] for x in value])
    if isinstance(value, dict) and value and all(isinstance(x, dict) for x in value.values()):
        cols = list(dict.fromkeys(k for x in value.values() for k in x))
        return html_table(["", *cols], [[k, *(x.get(c) for c in cols)] for k, x in value.items()])
    if isinstance(value, dict):
        return kv_table(value)
    return f"<p>{_e(_fmt(value))}</p>"


def _section(title: str, *parts: str) -> list[str]:
    return [f"<h2>{_e(title)}</h2>", *parts]


def _verdict(lines: Sequence[str], warn: bool = False) -> str:
    items = "".join(f"<li>{_e(line)}</li>" for line in lines)
    return f'<div class="verdict{" warn" if warn else ""}"><ul>{items}</ul></div>'


def _figures(pngs: dict[str, bytes]) -> list[str]:
    if not pngs:
        return ["<p>No figures: the folder holds no data to plot.</p>"]
    out = []
    for name, data in pngs.items():
        b64 = base64.b64encode(data).decode("ascii")
        out.append(f'<figure><img alt="{_e(name)}" src="data:image/png;base64,{b64}">'
                   f"<figcaption>{_e(name)}</figcaption></figure>")
    return out


def _libraries(recorded: dict[str, str] | None) -> str:
    if recorded:
        return kv_table(recorded)
    return "<p>Not recorded (the run was made by a marsctl that did not record library versions).</p>"


def _synonym_sources(metrics: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many augmented rounds used each synonym source (eda: wordnet or builtin), from augment.provenance."""
    out: dict[str, int] = {}
    for m in metrics:
        src = ((m.get("augment") or {}).get("provenance") or {}).get("synonym_source")
        if src:
            out[src] = out.get(src, 0) + 1
    return out


def _synonym_text(sources: dict[str, int]) -> str:
    if not sources:
        return ("<p>Synonym source: not recorded (no augmented round, an augmenter without word tables, or a run "
                "made before marsctl recorded it).</p>")
    words = {"wordnet": "WordNet (topped up by the built-in table)", "builtin": "the built-in fallback table only"}
    parts = [f"{words.get(k, k)} in {n} augmented round{'s' if n != 1 else ''}" for k, n in sorted(sources.items())]
    return f"<p>Synonym source: {_e('; '.join(parts))}.</p>"


# -- refine ----------------------------------------------------------------------------------------------
def _refine_body(data: RefineData, summ: dict[str, Any], pngs: dict[str, bytes]) -> list[str]:
    manifest, metrics = data.manifest, data.metrics
    lb = summ.get("length_baseline")
    baseline = ""
    if lb:
        longer, shorter = tables.length_baseline_text(lb)
        baseline = (f"<p>Baseline on the same held-out rows: pick the longer response {longer}, "
                    f"the shorter {shorter}.</p>")
    return [
        *_section("Verdict", _verdict(*refine_verdict(metrics))),
        *_section("Rounds", html_table(*tables.summary_table(summ)), baseline),
        *_section("Figures", *_figures(pngs)),
        *_section("Held-out evaluation (last round)", *_eval_html(metrics)),
        *_section("Selection and the guard", *_selection_html(metrics)),
        *_section("Settings", kv_table({"config": manifest["config"],
                                        "budget_per_round": manifest.get("budget_per_round")})),
        *_section("Provenance", *_refine_provenance(manifest, metrics)),
    ]


def _refine_provenance(manifest: dict[str, Any], metrics: dict[int, dict[str, Any]]) -> list[str]:
    files = [[role, d.get("path"), d.get("n"), d.get("sha256")]
             for role, d in (("input", manifest.get("input")), ("held-out", manifest.get("heldout"))) if d]
    plugins = [[kind, p.get("name"), p.get("version")] for kind, p in (manifest.get("plugins") or {}).items()]
    return [
        "<h3>Inputs</h3>", html_table(["file", "path", "pairs", "sha256 (of the records)"], files),
        "<h3>Plugins</h3>", html_table(["kind", "name", "version"], plugins),
        _synonym_text(_synonym_sources(list(metrics.values()))),
        "<h3>Libraries</h3>", _libraries(manifest.get("libraries")),
        f"<p>marsctl {_e(manifest.get('marsctl_version'))}, format version {_e(manifest.get('format_version'))}; "
        f"run created {_e(manifest.get('created', '?'))}; rounds finished "
        f"{_e(_fmt(manifest.get('rounds_finished')))}.</p>",
        "<h3>Timing</h3>", value_html(manifest.get("timing") or {}),
    ]


def _eval_html(metrics: dict[int, dict[str, Any]]) -> list[str]:
    evals = [(k, m["eval"]) for k, m in metrics.items() if m.get("eval")]
    if not evals:
        return ["<p>No held-out file was given (--eval): there is no held-out evaluation.</p>"]
    k, ev = evals[-1]
    out = [f"<p>Round {k}'s model on the held-out pairs.</p>", eval_tables(ev)]
    return out


def eval_tables(ev: dict[str, Any]) -> str:
    """eval's metrics: the headline figures, then each further section it recorded (calibration, lengths, …)."""
    def structured(key: str) -> bool:
        return key not in CORE_EVAL and isinstance(ev[key], dict | list)

    parts = [kv_table({key: v for key, v in ev.items() if not structured(key)})]
    for key, value in ev.items():
        if structured(key):
            parts += [f"<h3>{_e(key)}</h3>", value_html(value)]
    return "".join(parts)


def _selection_html(metrics: dict[int, dict[str, Any]]) -> list[str]:
    rows = []
    for k, m in metrics.items():
        sel = m.get("selection")
        if not sel:
            continue
        guard = sel.get("guard")
        rows.append([k, sel.get("strategy"), sel.get("ess"), sel.get("share_negative_margin"),
                     sel.get("pairs_selected"), _guard_text(guard), (m.get("noise") or {}).get("flagged")])
    if not rows:
        return ["<p>No selection was made (round 0 only, or the none strategy).</p>"]
    return [html_table(["round", "strategy used", "ESS", "budget on Δ<0", "pairs with b_i>0", "guard",
                        "flagged as noise"], rows)]


def _guard_text(guard: dict[str, Any] | None) -> str:
    """The guard's decision on one selection in words."""
    if guard is None:
        return "off"
    if guard.get("passed"):
        return "passed"
    rejected = (guard.get("rejected_selection") or {}).get("strategy", "the selection")
    return f"failed ({'; '.join(guard.get('reasons') or [])}): {rejected} replaced by uniform"


# -- compare ---------------------------------------------------------------------------------------------
def _compare_body(data: CompareData, pngs: dict[str, bytes]) -> list[str]:
    info, rep, results = data.info, data.report, data.results
    lines, warn = compare_verdict(rep)
    body = [*_section("Verdict", _verdict(lines, warn))]
    for protocol in rep["protocols"]:
        longer, shorter = tables.length_baseline_text(tables.compare_length_baseline(rep, protocol), percent=True)
        body += _section(tables.PROTOCOL_TITLES.get(protocol, protocol),
                         html_table(*tables.compare_rows(rep, protocol)),
                         html_table(*tables.diagnostics_rows(rep, protocol)),
                         f"<p>Length baseline on the same test rows: pick the longer response {_e(longer)}, "
                         f"the shorter {_e(shorter)}.</p>")
    finals = [(r, d.metrics) for r, d in data.runs if d is not None]
    manifests = [d.manifest for _, d in data.runs if d is not None]
    body += [
        *_section("Figures", *_figures(pngs)),
        *_section("Held-out diagnostics (last round, mean over seeds)", *_compare_eval_html(rep, results, finals)),
        *_section("The guard's decisions", _compare_guard_html(rep, results)),
        *_section("Settings", kv_table(info.get("config") or rep["config"])),
        *_section("Provenance", *_compare_provenance(data.runs_dir, info, results, finals, manifests)),
    ]
    return body


def _compare_eval_html(rep: dict[str, Any], results: Sequence[dict[str, Any]],
                       finals: Sequence[tuple[dict[str, Any], dict[int, dict[str, Any]]]]) -> list[str]:
    import numpy as np

    if not finals:
        return ["<p>The runs' folders are not there (a saved summary): no per-run diagnostics.</p>"]
    out = []
    for protocol in rep["protocols"]:
        by: dict[str, dict[str, list[float]]] = {}
        for r, metrics in finals:
            ev = (metrics[max(metrics)].get("eval") or {}) if metrics and r["protocol"] == protocol else {}
            for key, v in _flatten({k: v for k, v in ev.items() if k not in ("subsets", "sections")}):
                if _is_num(v) and key not in ("n", "ties") and not key.startswith("bootstrap"):
                    by.setdefault(r["strategy"], {}).setdefault(key, []).append(float(v))
        if not by:
            continue
        keys = list(dict.fromkeys(k for d in by.values() for k in d))  # one row per metric: narrow
        rows = [[key, *(float(np.mean(d[key])) if key in d else None for d in by.values())] for key in keys]
        out += [f"<h3>{_e(tables.PROTOCOL_TITLES.get(protocol, protocol))}</h3>",
                html_table(["metric", *by], rows)]
    return out or ["<p>The runs recorded no held-out evaluation.</p>"]


def _compare_guard_html(rep: dict[str, Any], results: Sequence[dict[str, Any]]) -> str:
    cfg = rep["config"]
    if not (cfg.get("refine") or cfg).get("guard"):  # older compare reports kept the refine settings flat
        return "<p>The guard was off (--guard not given): every selection was used as made.</p>"
    rows = []
    for r in results:
        for k, sel in enumerate(r.get("selection") or [], start=1):
            rows.append([r["protocol"], r["strategy"], r["seed"], k, _guard_text(sel.get("guard"))])
    if not rows:
        return "<p>No selection was recorded.</p>"
    return html_table(["protocol", "strategy", "seed", "round", "guard"], rows)


def _compare_provenance(runs_dir: Path, info: dict[str, Any], results: Sequence[dict[str, Any]],
                        finals: Sequence[tuple[dict[str, Any], dict[int, dict[str, Any]]]],
                        manifests: Sequence[dict[str, Any]]) -> list[str]:
    files = [["input", info.get("input", "not recorded"), info.get("input_sha256") or "not recorded"]]
    if info.get("heldout"):
        files.append(["held-out", info["heldout"], info.get("heldout_sha256") or "not recorded"])
    plugins: dict[tuple[str, str, str], None] = {}
    for manifest in manifests:
        for kind, p in (manifest.get("plugins") or {}).items():
            plugins[(kind, str(p.get("name")), str(p.get("version")))] = None
    all_metrics = [m for _, ms in finals for m in ms.values()]
    return [
        "<h3>Inputs</h3>", html_table(["file", "path", "sha256 (of the records)"], files),
        "<h3>Plugins</h3>", html_table(["kind", "name", "version"], [list(p) for p in plugins]) if plugins
        else "<p>Not recorded (the runs' folders are not there).</p>",
        _synonym_text(_synonym_sources(all_metrics)),
        "<h3>Libraries</h3>", _libraries(info.get("libraries")),
        f"<p>compare started {_e(info.get('started', '?'))}; {len(results)} runs in {_e(runs_dir)}.</p>",
    ]
