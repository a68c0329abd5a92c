"""Statistics over compare's runs: the paired two-level bootstrap and each strategy's summary.

Per protocol and strategy: the accuracy over seeds, its paired differences from the reference
strategies, and the mean selection diagnostics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def paired_difference(a: Sequence[Any], b: Sequence[Any], *, n_boot: int = 2000,
                      seed: int = 0) -> dict[str, Any]:
    """Mean accuracy difference a − b over seeds, with a 95% CI from a two-level bootstrap.

    ``a[s]`` and ``b[s]`` are 0/1 correctness vectors over the same test pairs of seed s. Each
    resample draws seeds with replacement, then test pairs with replacement inside each seed
    (the same pairs for both strategies, which is what makes the comparison paired).
    """
    import numpy as np

    from marsctl.params import MAX_N_BOOT, check_interval, check_seed

    check_seed(seed, "seed", "the paired bootstrap")
    check_interval(n_boot, "n_boot", "the paired bootstrap", kind=int, low=1, high=MAX_N_BOOT)
    rng = np.random.default_rng(seed)
    diffs_by_seed = [np.asarray(x, dtype=float) - np.asarray(y, dtype=float) for x, y in zip(a, b, strict=True)]
    per_seed = np.array([d.mean() for d in diffs_by_seed])
    boots = np.empty(n_boot)
    for i in range(n_boot):
        seeds = rng.integers(0, len(diffs_by_seed), len(diffs_by_seed))
        total = 0.0
        for s in seeds:
            d = diffs_by_seed[s]
            total += d[rng.integers(0, len(d), len(d))].mean()
        boots[i] = total / len(seeds)
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return {"mean": float(per_seed.mean()), "ci95": [float(lo), float(hi)],
            "wins": int((per_seed > 0).sum()), "losses": int((per_seed < 0).sum()),
            "ties": int((per_seed == 0).sum())}


def mean_selection_diagnostics(sels: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means over selections (seeds × rounds) of ESS, max b_i, Δ<0 share, length bias, novelty; guard fallbacks."""
    import numpy as np

    def mean(key: str) -> float | None:
        vals = [s[key] for s in sels if s.get(key) is not None]
        return float(np.mean(vals)) if vals else None

    nov = [s["novelty"]["corr"] for s in sels if s.get("novelty") and s["novelty"].get("corr") is not None]
    guard_failed = sum(1 for s in sels if s.get("guard") and not s["guard"]["passed"])
    return {"ess": mean("ess"), "max_budget": mean("max_budget"), "pairs_selected": mean("pairs_selected"),
            "share_negative_margin": mean("share_negative_margin"),
            "p_chosen_longer_selected": mean("p_chosen_longer_selected"),
            "novelty_corr": float(np.mean(nov)) if nov else None, "guard_fallbacks": guard_failed}


def compare_statistics(results: Sequence[dict[str, Any]], strategies: Sequence[str], protocols: Sequence[str], *,
                       refs: Sequence[str], n_boot: int = 2000) -> dict[str, dict[str, dict[str, Any]]]:
    """Per protocol and strategy: accuracy mean ± std, bootstrap CI, paired Δ vs each of ``refs``, diagnostics.

    ``results`` are compare's per-run rows (``seed``, ``protocol``, ``strategy``, ``accuracy``, ``correct``,
    ``length_longer``, ``length_shorter``, ``selection``, ``test_p_chosen_longer``, ``train_curvature_weight``).
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for protocol in protocols:
        by = {st: sorted((r for r in results if r["protocol"] == protocol and r["strategy"] == st),
                         key=lambda r: r["seed"]) for st in strategies}
        out[protocol] = {st: _strategy_statistics(st, by, refs, n_boot) for st in by}
    return out


def _strategy_statistics(st: str, by: dict[str, list[dict[str, Any]]], refs: Sequence[str],
                         n_boot: int) -> dict[str, Any]:
    import numpy as np

    runs = by[st]
    accs = np.array([r["accuracy"] for r in runs])
    correct = [np.array(r["correct"]) for r in runs]
    own = paired_difference(correct, [np.zeros(len(c)) for c in correct], n_boot=n_boot)
    row: dict[str, Any] = {
        "accuracy_mean": float(accs.mean()), "accuracy_std": float(accs.std()),
        "accuracy_ci95": own["ci95"], "seeds": len(runs),
        "length_longer": float(np.mean([r["length_longer"] for r in runs])),
        "length_shorter": float(np.mean([r["length_shorter"] for r in runs])),
    }
    for ref in refs:
        if ref in by and ref != st:
            row[f"vs_{ref}"] = paired_difference(correct, [np.array(r["correct"]) for r in by[ref]], n_boot=n_boot)
    sels = [s for r in runs for s in r["selection"]]
    if sels:
        row["diagnostics"] = mean_selection_diagnostics(sels)
        row["diagnostics"]["test_p_chosen_longer"] = float(np.mean([r["test_p_chosen_longer"] for r in runs]))
    row["train_curvature_weight"] = float(np.mean([r["train_curvature_weight"] for r in runs]))
    return row
