"""Evaluation metrics, computed over the whole file (never a mean of batch means)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

# numpy is imported inside each function: the CLI reads the refine and compare configs at start-up
# (for --help) through marsctl.loop, which imports this module.


def pairwise_accuracy(margins: Sequence[float]) -> float:
    """mean(Δ > 0): the share of pairs ranked correctly (a tie counts as wrong).

    >>> pairwise_accuracy([1.0, -1.0, 0.0, 2.0])
    0.5
    """
    import numpy as np

    m = np.asarray(margins, dtype=float)
    return float((m > 0).mean()) if len(m) else float("nan")


def bootstrap_ci(values: Sequence[float], *, n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values``."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(v), size=(n_boot, len(v)))
    means = v[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def roc_auc(scores_chosen: Sequence[float], scores_rejected: Sequence[float]) -> float:
    """ROC-AUC with chosen scores labelled 1 and rejected 0, pooled (ties count one half).

    >>> roc_auc([3.0, 2.0], [1.0, 0.0])
    1.0
    """
    import numpy as np

    pos = np.asarray(scores_chosen, dtype=float)
    neg = np.asarray(scores_rejected, dtype=float)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    # average ranks for ties
    i = 0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    r_pos = ranks[: len(pos)].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def margin_snr(margins: Sequence[float]) -> float | None:
    """mean(Δ) / std(Δ), population std; None when every margin is the same (never NaN in JSON).

    >>> margin_snr([1.0, 1.0]) is None
    True
    """
    import numpy as np

    m = np.asarray(margins, dtype=float)
    sd = m.std() if len(m) else 0.0
    return float(m.mean() / sd) if sd > 0 else None


def curvature_weight(margins: Sequence[float]) -> float:
    """mean σ'(Δ) = mean σ(Δ)(1 − σ(Δ)); at most 1/4, largest when margins are near 0."""
    import numpy as np

    m = np.asarray(margins, dtype=float)
    p = 1.0 / (1.0 + np.exp(-m))
    return float((p * (1 - p)).mean()) if len(m) else float("nan")


def curvature_trace(margins: Sequence[float], delta_h: Any) -> float:
    """trace(H) = mean σ'(Δ)·‖Δh‖² for a linear or last-layer head (Δh: chosen − rejected inputs)."""
    import numpy as np

    m = np.asarray(margins, dtype=float)
    p = 1.0 / (1.0 + np.exp(-m))
    sq = (np.asarray(delta_h, dtype=float) ** 2).sum(axis=1)
    return float((p * (1 - p) * sq).mean()) if len(m) else float("nan")


def response_lengths(row: dict[str, Any]) -> tuple[int, int]:
    """Characters in a row's chosen and rejected responses; a slim row (texts dropped) carries them.

    A row from which the texts were dropped to save memory (:func:`slim_row`) keeps the lengths as
    ``_len_chosen`` and ``_len_rejected``.

    >>> response_lengths({"chosen": "abc", "rejected": "a"})
    (3, 1)
    >>> response_lengths(slim_row({"prompt": "p", "chosen": "ab", "rejected": ""}))
    (2, 0)
    """
    if "_len_chosen" in row:
        return row["_len_chosen"], row["_len_rejected"]
    return len(row["chosen"]), len(row["rejected"])


def slim_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row without its prompt and response texts, keeping the response lengths the metrics need."""
    lc, lr = response_lengths(row)
    out = {k: v for k, v in row.items() if k not in ("prompt", "chosen", "rejected")}
    out["_len_chosen"], out["_len_rejected"] = lc, lr
    return out


def length_baseline(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Accuracy of 'pick the longer response' and 'pick the shorter' on the same rows (ties: neither)."""
    import numpy as np

    lengths = [response_lengths(r) for r in records]
    lc = np.array([c for c, _ in lengths])
    lr = np.array([r for _, r in lengths])
    return {"longer": float((lc > lr).mean()), "shorter": float((lc < lr).mean()),
            "ties": float((lc == lr).mean())}


def section_of(subset: str) -> str:
    """RewardBench-style section of a subset name: the part before the first '/'."""
    return subset.split("/", 1)[0]


def evaluate(scored: Sequence[dict[str, Any]], *, seed: int = 0, n_boot: int = 2000) -> dict[str, Any]:
    """All held-out metrics for scored records (rows with score_chosen, score_rejected, pred_margin)."""
    import numpy as np

    margins = [r["pred_margin"] for r in scored]
    correct = [1.0 if m > 0 else 0.0 for m in margins]
    lo, hi = bootstrap_ci(correct, n_boot=n_boot, seed=seed)
    sc = [r["score_chosen"] for r in scored]
    sr = [r["score_rejected"] for r in scored]
    rewards = sc + sr
    out: dict[str, Any] = {
        "n": len(scored),
        "accuracy": pairwise_accuracy(margins),
        "accuracy_ci95": [lo, hi],
        "ties": int(sum(1 for m in margins if m == 0)),
        "roc_auc": roc_auc(sc, sr),
        "margin_snr": margin_snr(margins),
        "margin_mean": float(np.mean(margins)),
        "margin_std": float(np.std(margins)),
        "curvature_weight": curvature_weight(margins),
        "mean_reward": float(np.mean(rewards)),
        "min_reward": float(np.min(rewards)),
        "max_reward": float(np.max(rewards)),
        "length_baseline": length_baseline(scored),
        "bootstrap": {"n_boot": n_boot, "seed": seed, "level": 0.95},
    }
    by_subset: dict[str, list[float]] = defaultdict(list)
    for r, c in zip(scored, correct, strict=True):
        if isinstance(r.get("subset"), str):
            by_subset[r["subset"]].append(c)
    if by_subset:
        out["subsets"] = {k: {"n": len(v), "accuracy": float(np.mean(v))} for k, v in sorted(by_subset.items())}
        sections: dict[str, list[float]] = defaultdict(list)
        for k, v in out["subsets"].items():
            sections[section_of(k)].append(v["accuracy"])
        out["sections"] = {k: float(np.mean(v)) for k, v in sorted(sections.items())}
    return out


def paired_difference(a: Sequence[Any], b: Sequence[Any], *, n_boot: int = 2000,
                      seed: int = 0) -> dict[str, Any]:
    """Mean accuracy difference a − b over seeds, with a 95% CI from a two-level bootstrap.

    ``a[s]`` and ``b[s]`` are 0/1 correctness vectors over the same test pairs of seed s. Each
    resample draws seeds with replacement, then test pairs with replacement inside each seed
    (the same pairs for both strategies, which is what makes the comparison paired).
    """
    import numpy as np

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


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (as the benchmark tables report them).

    >>> mean_std([1.0, 3.0])
    (2.0, 1.0)
    """
    import statistics

    return statistics.mean(values), statistics.pstdev(values)
