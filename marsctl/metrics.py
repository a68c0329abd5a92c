"""Evaluation metrics of a scored file: accuracy with its CI, AUC, margin and reward figures, per subset.

Every figure is computed over the whole file (never a mean of batch means). :func:`evaluate` gathers
them with the length figures (:mod:`marsctl.lengths`), calibration (:mod:`marsctl.calibration`) and
RewardBench's scores (:mod:`marsctl.rewardbench`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from marsctl.calibration import ECE_BINS
from marsctl.lengths import length_baseline, length_diagnostics
from marsctl.rewardbench import REWARDBENCH_COUNTS, best_of_n, rewardbench_sections, section_of
from marsctl.stats import bootstrap_ci, logistic

# numpy is imported inside each function, so that importing this module stays cheap.


def pairwise_accuracy(margins: Sequence[float]) -> float:
    """mean(Δ > 0): the share of pairs ranked correctly (a tie counts as wrong).

    >>> pairwise_accuracy([1.0, -1.0, 0.0, 2.0])
    0.5
    """
    import numpy as np

    m = np.asarray(margins, dtype=float)
    return float((m > 0).mean()) if len(m) else float("nan")


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
    p = logistic(m)
    return float((p * (1 - p)).mean()) if len(m) else float("nan")


def curvature_trace(margins: Sequence[float], delta_h: Any) -> float:
    """trace(H) = mean σ'(Δ)·‖Δh‖² for a linear or last-layer head (Δh: chosen − rejected inputs)."""
    import numpy as np

    m = np.asarray(margins, dtype=float)
    p = logistic(m)
    sq = (np.asarray(delta_h, dtype=float) ** 2).sum(axis=1)
    return float((p * (1 - p) * sq).mean()) if len(m) else float("nan")


LENGTH_PARTS = ("quality_chosen", "quality_rejected", "length_chosen", "length_rejected")


def length_term_accuracy(rows: Sequence[dict[str, Any]]) -> dict[str, float] | None:
    """Accuracy with the length term (quality + length), without it (quality alone) and of it alone.

    None unless every row has the quality and length parts a head with a length term writes
    (``Head.score``); the full reward is rebuilt from the parts, so rows scored length-free serve too.

    >>> length_term_accuracy([{"quality_chosen": 1, "quality_rejected": 0, "length_chosen": 0, "length_rejected": 2}])
    {'with_length': 0.0, 'without_length': 1.0, 'length_only': 0.0}
    """
    if not rows or not all(all(k in r for k in LENGTH_PARTS) for r in rows):
        return None
    quality = [r["quality_chosen"] - r["quality_rejected"] for r in rows]
    length = [r["length_chosen"] - r["length_rejected"] for r in rows]
    return {"with_length": pairwise_accuracy([q + ell for q, ell in zip(quality, length, strict=True)]),
            "without_length": pairwise_accuracy(quality), "length_only": pairwise_accuracy(length)}


MARGIN_QUANTILES = (5, 25, 50, 75, 95)  # percent
MARGIN_BUCKETS = 4  # equal-mass buckets of |Δ| for accuracy by margin


def margin_quantiles(margins: Sequence[float]) -> dict[str, float] | None:
    """The 5/25/50/75/95 % quantiles of Δ (numpy's linear interpolation), keyed by percent.

    >>> margin_quantiles([0.0, 1.0, 2.0, 3.0, 4.0])
    {'5': 0.2, '25': 1.0, '50': 2.0, '75': 3.0, '95': 3.8}
    """
    import numpy as np

    m = np.asarray(margins, dtype=float)
    if len(m) == 0:
        return None
    return {str(q): round(float(v), 12) for q, v in zip(MARGIN_QUANTILES, np.percentile(m, MARGIN_QUANTILES),
                                                         strict=True)}


def accuracy_by_margin(margins: Sequence[float], n_buckets: int = MARGIN_BUCKETS) -> list[dict[str, Any]]:
    """Accuracy in equal-mass buckets of |Δ|: pairs sorted by |Δ| (stable) and cut into ``n_buckets`` runs.

    >>> [b["accuracy"] for b in accuracy_by_margin([0.1, -0.2, 3.0, 4.0], 2)]
    [0.5, 1.0]
    """
    import numpy as np

    m = np.asarray(margins, dtype=float)
    if len(m) == 0:
        return []
    a = np.abs(m)
    return [{"n": len(b), "abs_margin": [float(a[b].min()), float(a[b].max())],
             "accuracy": float((m[b] > 0).mean())}
            for b in np.array_split(np.argsort(a, kind="stable"), min(n_buckets, len(m)))]


def reward_diagnostics(rows: Sequence[dict[str, Any]], margins: Any) -> dict[str, Any]:
    """Mean chosen and rejected reward, margin quantiles, accuracy by |Δ| bucket and the length diagnostics."""
    import numpy as np

    n = len(rows)
    return {"mean_chosen_reward": float(np.mean([r["score_chosen"] for r in rows])) if n else None,
            "mean_rejected_reward": float(np.mean([r["score_rejected"] for r in rows])) if n else None,
            "margin_quantiles": margin_quantiles(margins), "accuracy_by_margin": accuracy_by_margin(margins),
            "length": length_diagnostics(rows, margins)}


def _subset_metrics(rows: Sequence[dict[str, Any]], margins: Any, *, seed: int, n_boot: int,
                    n_bins: int) -> dict[str, Any]:
    """Per-subset accuracy (with a bootstrap CI), reward, length and calibration figures; the section scores."""
    import numpy as np

    from marsctl import calibration as cal

    by: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        if isinstance(r.get("subset"), str):
            by[r["subset"]].append(i)
    if not by:
        return {}
    subsets: dict[str, Any] = {}
    for k, idx in sorted(by.items()):
        sub, m = [rows[i] for i in idx], margins[idx]
        c = (m > 0).astype(float)
        calib = cal.calibration_metrics(cal.probabilities(sub), n_bins)
        subsets[k] = {"n": len(idx), "accuracy": float(c.mean()),
                      "accuracy_ci95": list(bootstrap_ci(c.tolist(), n_boot=n_boot, seed=seed)),
                      **reward_diagnostics(sub, m), "length_baseline": length_baseline(sub),
                      "calibration": {key: calib[key] for key in ("ece", "n_bins", "brier", "log_loss")}}
    sections: dict[str, list[float]] = defaultdict(list)
    for k, v in subsets.items():
        if k not in REWARDBENCH_COUNTS:  # RewardBench's subsets have their own sections (below)
            sections[section_of(k)].append(v["accuracy"])
    out: dict[str, Any] = {"subsets": subsets}
    if sections:
        out["sections"] = {k: float(np.mean(v)) for k, v in sorted(sections.items())}
    rb = rewardbench_sections({k: v["accuracy"] for k, v in subsets.items()})
    if rb:
        out["rewardbench"] = rb
    return out


def evaluate(scored: Sequence[dict[str, Any]], *, seed: int = 0, n_boot: int = 2000, n_bins: int = ECE_BINS,
             calibrate: float | None = None,
             calibration_rows: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """All held-out metrics for scored records (rows with score_chosen, score_rejected, pred_margin).

    Every figure needs only those fields, ``p_chosen``, ``subset``, ``group_id`` and the response lengths
    (``lengths.response_lengths``), so slim rows (``lengths.slim_row``) serve as well as full ones.

    Parameters
    ----------
    n_bins : equal-mass bins of the ECE and the reliability table.
    calibrate : fit a temperature on this fraction of the rows (seeded by ``seed``), report on the rest.
    calibration_rows : fit the temperature on these scored rows instead, and report on all of ``scored``.
    """
    import numpy as np

    from marsctl import calibration as cal
    from marsctl.params import MAX_BINS, MAX_N_BOOT, check_interval, check_seed

    check_seed(seed, "seed", "eval")
    check_interval(n_boot, "n_boot", "eval", kind=int, low=1, high=MAX_N_BOOT)
    check_interval(n_bins, "bins", "eval", kind=int, low=1, high=MAX_BINS)
    margins = np.array([r["pred_margin"] for r in scored], dtype=float)
    out = _headline(scored, margins, seed=seed, n_boot=n_boot)
    if (length_term := length_term_accuracy(scored)) is not None:
        out["length_term"] = length_term
    out.update(reward_diagnostics(scored, margins))
    out["calibration"] = cal.calibration_metrics(cal.probabilities(scored), n_bins)
    if calibration_rows is not None:
        out["temperature_scaling"] = cal.temperature_scaling(calibration_rows, scored, n_bins=n_bins)
    elif calibrate is not None:
        out["temperature_scaling"] = cal.temperature_on_split(scored, calibrate, seed, n_bins)
    out.update(_subset_metrics(scored, margins, seed=seed, n_boot=n_boot, n_bins=n_bins))
    bon = best_of_n(scored, seed=seed, n_boot=n_boot)
    if bon:
        out["best_of_n"] = bon
    return out


def _headline(scored: Sequence[dict[str, Any]], margins: Any, *, seed: int, n_boot: int) -> dict[str, Any]:
    import numpy as np

    correct = (margins > 0).astype(float)
    lo, hi = bootstrap_ci(correct.tolist(), n_boot=n_boot, seed=seed)
    sc = [r["score_chosen"] for r in scored]
    sr = [r["score_rejected"] for r in scored]
    rewards = sc + sr
    return {
        "n": len(scored),
        "accuracy": pairwise_accuracy(margins),
        "accuracy_ci95": [lo, hi],
        "ties": int((margins == 0).sum()),
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


