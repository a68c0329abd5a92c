"""The plain-words verdicts of a run: did refinement help beyond noise, and which strategy is best.

Computed from a run's checked metrics (:mod:`marsctl.rundir`) and report; :mod:`marsctl.htmlreport`
shows them at the top of the page.
"""

from __future__ import annotations

from typing import Any

from marsctl import report as tables


def refine_verdict(metrics: dict[int, dict[str, Any]]) -> tuple[list[str], bool]:
    """Plain-words lines on a refine run (did the last round beat round 0 beyond noise?), and a warning flag."""
    from marsctl.comparestats import paired_difference

    evals = {k: m for k, m in metrics.items() if m.get("eval")}
    if not evals:
        return ["No held-out file: the rounds were compared on training data only, so this run cannot say "
                "whether refinement helped. Run it with --eval HELDOUT.jsonl."], True
    first, last = min(evals), max(evals)
    a0, a1 = evals[first]["eval"]["accuracy"], evals[last]["eval"]["accuracy"]
    lines = [f"Held-out accuracy: round {first} {a0:.4f}, round {last} {a1:.4f}."]
    warn = False
    if last != first and evals[first].get("eval_margins") and evals[last].get("eval_margins"):
        c0 = [1.0 if x > 0 else 0.0 for x in evals[first]["eval_margins"]]
        c1 = [1.0 if x > 0 else 0.0 for x in evals[last]["eval_margins"]]
        d = paired_difference([c1], [c0])
        lines.append(f"Round {last} vs round {first}: Δ {tables.format_paired(d).rsplit(' (', 1)[0]} points "
                     f"(paired 95% bootstrap CI over the same held-out pairs): {noise_words(d)}.")
        warn = d["ci95"][1] < 0
    lb = evals[last]["eval"].get("length_baseline")
    if lb:
        longer, _ = tables.length_baseline_text(lb)
        side = "above" if a1 > lb["longer"] else "not above"
        lines.append(f"Picking the longer response scores {longer} on these pairs; the final model is {side} it.")
        warn = warn or a1 <= lb["longer"]
    fallbacks = sum(1 for m in metrics.values() if ((m.get("selection") or {}).get("guard") or {}).get("passed")
                    is False)
    if fallbacks:
        lines.append(f"The guard replaced {fallbacks} selection{'s' if fallbacks != 1 else ''} by uniform.")
    return lines, warn


def noise_words(d: dict[str, Any]) -> str:
    """'beyond noise (better)' when a paired 95% CI excludes 0, else 'within noise (the CI includes 0)'."""
    lo, hi = d["ci95"]
    if lo > 0:
        return "better, beyond noise (the CI excludes 0)"
    if hi < 0:
        return "worse, beyond noise (the CI excludes 0)"
    return "within noise (the CI includes 0)"


def compare_verdict(rep: dict[str, Any]) -> tuple[list[str], bool]:
    """Plain words per protocol: the best strategy, and whether its Δ vs none and vs uniform is beyond noise."""
    lines = []
    warn = False
    for protocol, rows in rep["protocols"].items():
        best = max(rows, key=lambda st: rows[st]["accuracy_mean"])
        r = rows[best]
        tied = [st for st in rows if st != best and rows[st]["accuracy_mean"] == r["accuracy_mean"]]
        head = (f"{tables.PROTOCOL_SHORT.get(protocol, protocol)}: the best strategy is {best} "
                f"({100 * r['accuracy_mean']:.1f} % mean held-out accuracy over {r['seeds']} seeds"
                f"{', tied with ' + ', '.join(tied) if tied else ''}).")
        parts = [head]
        for ref in ("none", "uniform"):
            d = r.get(f"vs_{ref}")
            if d:
                parts.append(f"Against {ref}: {tables.format_paired(d)} points (wins/losses over seeds), "
                             f"{noise_words(d)}.")
        if not any(r.get(f"vs_{ref}") for ref in ("none", "uniform")):
            parts.append("There is no none or uniform run to compare it with.")
        if best == "none":
            parts.append("No augmentation strategy beat training on the base pairs alone.")
            warn = True
        lines.append(" ".join(parts))
    return lines, warn
