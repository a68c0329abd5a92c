"""Calibration of p = σ(Δ): equal-mass ECE, Brier, log loss, a reliability table, temperature scaling.

p is a row's ``p_chosen`` when it has one, else σ(``pred_margin``): the model's probability that the
chosen response is the better one. Brier and log loss score p for that event. Every label of that event
is 1 (the data say the chosen response won), so a reliability table of it would compare each bin's mean
p with 1 and measure nothing about calibration. A pair is an unordered comparison, so the ECE and the
reliability table symmetrize: each pair counts once in the order the model prefers, with confidence
max(p, 1 − p) and correct when p > 0.5 (½ when p = 0.5). This is the same as scoring every pair in
both orders (p for chosen-first, 1 − p for rejected-first), whose reliability diagram is the mirror image
of this one; Brier and log loss are the same in either form.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from marsctl.errors import DataError

ECE_BINS = 10  # eval --bins default
BINNING = "equal-mass"
EVENT = "chosen is better"
P_EPS = 1e-15  # log loss clips p to [P_EPS, 1]: a p_chosen rounded to 0 would otherwise be infinite
T_BOUNDS = (0.01, 100.0)  # the temperature search interval
# What the uninformative forecast p = 0.5 scores: the yardstick the eval table prints beside Brier and log loss.
UNIFORM = {"brier": 0.25, "log_loss": math.log(2)}


def probabilities(rows: Sequence[dict[str, Any]]) -> Any:
    """p per row: ``p_chosen`` if the row has it, else σ(``pred_margin``) (a numpy array)."""
    import numpy as np
    from scipy.special import expit

    return np.array([float(r["p_chosen"]) if r.get("p_chosen") is not None else float(expit(r["pred_margin"]))
                     for r in rows], dtype=float)


def brier(p: Any) -> float:
    """Mean (1 − p)²: the Brier score of p for the chosen-is-better event (every label is 1).

    >>> brier([0.5, 1.0])
    0.125
    """
    import numpy as np

    return float(np.mean((1.0 - np.asarray(p, dtype=float)) ** 2))


def log_loss(p: Any) -> float:
    """Mean −log p (p clipped below at 1e-15): the log loss of p for the chosen-is-better event.

    >>> round(log_loss([0.5]), 4)
    0.6931
    """
    import numpy as np

    return float(np.mean(-np.log(np.clip(np.asarray(p, dtype=float), P_EPS, 1.0))))


def top_label(p: Any) -> tuple[Any, Any]:
    """Confidence max(p, 1 − p) and correctness (1 when p > 0.5, 0 when p < 0.5, ½ at 0.5) per pair.

    >>> [c.tolist() for c in top_label([0.8, 0.3, 0.5])]
    [[0.8, 0.7, 0.5], [1.0, 0.0, 0.5]]
    """
    import numpy as np

    p = np.asarray(p, dtype=float)
    return np.maximum(p, 1.0 - p), np.where(p > 0.5, 1.0, np.where(p < 0.5, 0.0, 0.5))


def reliability(p: Any, n_bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """Equal-mass bins of the confidence (sizes differ by at most one; fewer bins than pairs only if n < n_bins).

    Pairs are sorted by confidence (stable, so equal confidences keep the input order) and cut into
    ``n_bins`` consecutive runs. Per bin: n, the confidence range, the mean confidence and the accuracy.
    """
    import numpy as np

    conf, correct = top_label(p)
    if len(conf) == 0:
        return []
    order = np.argsort(conf, kind="stable")
    return [{"n": len(b), "p_low": float(conf[b].min()), "p_high": float(conf[b].max()),
             "mean_p": float(conf[b].mean()), "accuracy": float(correct[b].mean())}
            for b in np.array_split(order, min(n_bins, len(conf)))]


def ece(bins: Sequence[dict[str, Any]]) -> float | None:
    """Expected calibration error of a reliability table: Σ (n_b / n)·|accuracy_b − mean_p_b|.

    >>> round(ece([{"n": 3, "mean_p": 0.9, "accuracy": 1.0}, {"n": 1, "mean_p": 0.6, "accuracy": 0.0}]), 6)
    0.225
    """
    n = sum(b["n"] for b in bins)
    return sum(b["n"] * abs(b["accuracy"] - b["mean_p"]) for b in bins) / n if n else None


def calibration_metrics(p: Any, n_bins: int = ECE_BINS) -> dict[str, Any]:
    """ECE (equal-mass bins of max(p, 1 − p)), Brier, log loss, the reliability table and the range of p."""
    import numpy as np

    p = np.asarray(p, dtype=float)
    bins = reliability(p, n_bins)
    empty = len(p) == 0
    return {"event": EVENT, "binning": BINNING, "n_bins": len(bins),
            "p_source": "p_chosen if present, else sigmoid(pred_margin)",
            "scored_as": "max(p, 1 - p) against whether the preferred response is the chosen one",
            "ece": ece(bins), "brier": None if empty else brier(p), "log_loss": None if empty else log_loss(p),
            "uniform_forecast": dict(UNIFORM),
            "p_range": None if empty else [float(p.min()), float(p.max())], "reliability": bins}


def logits(p: Any) -> Any:
    """logit p, with p clipped to [1e-15, 1 − 1e-15] (the Δ a temperature divides)."""
    import numpy as np
    from scipy.special import logit

    return logit(np.clip(np.asarray(p, dtype=float), P_EPS, 1.0 - P_EPS))


def fit_temperature(z: Any) -> float:
    """The T in [0.01, 100] that minimizes the mean log loss −log σ(z / T) (searched over log T).

    All-zero logits leave the loss flat at log 2: T = 1 then. When every z > 0 the loss falls as T → 0
    and the fit stops at the lower bound.

    >>> fit_temperature([0.0, 0.0])
    1.0
    """
    import numpy as np
    from scipy.optimize import minimize_scalar

    z = np.asarray(z, dtype=float)
    if not np.any(z):
        return 1.0
    res = minimize_scalar(lambda t: float(np.mean(np.logaddexp(0.0, -z * math.exp(-t)))),
                          bounds=tuple(math.log(b) for b in T_BOUNDS), method="bounded",
                          options={"xatol": 1e-6})
    return float(math.exp(res.x))


def split_rows(rows: Sequence[dict[str, Any]], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of the calibration part (``fraction`` of the rows, at least one) and of the rest.

    The draw is a seeded permutation of the units: rows that share a ``group_id`` are one unit and stay
    on the same side.
    """
    import numpy as np

    from marsctl.stats import derive_seed

    units: dict[Any, list[int]] = {}
    for i, r in enumerate(rows):
        units.setdefault(("group", r["group_id"]) if r.get("group_id") is not None else ("row", i), []).append(i)
    keys = list(units)
    if len(keys) < 2:
        raise DataError(f"--calibrate needs at least 2 pairs (or groups) to split; the input has {len(keys)}")
    n_fit = min(len(keys) - 1, max(1, round(fraction * len(keys))))
    perm = np.random.default_rng(derive_seed(seed, "calibrate")).permutation(len(keys))
    fit = sorted(i for k in perm[:n_fit] for i in units[keys[k]])
    rest = sorted(i for k in perm[n_fit:] for i in units[keys[k]])
    return fit, rest


def _lines(rows: Sequence[dict[str, Any]], idx: Sequence[int] | None = None) -> list[int]:
    idx = range(len(rows)) if idx is None else idx
    return [int(rows[i].get("_line", i + 1)) for i in idx]


def temperature_scaling(fit_rows: Sequence[dict[str, Any]], eval_rows: Sequence[dict[str, Any]], *,
                        n_bins: int = ECE_BINS, fit_source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit T on ``fit_rows`` (minimum log loss), then raw and calibrated figures, σ(logit p / T), on ``eval_rows``.

    Temperature leaves every ranking, hence accuracy, unchanged. ``fit_source`` says where the fit rows
    came from (it goes into the ``fit`` entry, beside their count and line numbers).
    """
    from scipy.special import expit

    t = fit_temperature(logits(probabilities(fit_rows)))
    p = probabilities(eval_rows)
    return {"temperature": t, "at_bound": any(math.isclose(t, b, rel_tol=1e-3) for b in T_BOUNDS),
            "fit": {**(fit_source or {}), "n": len(fit_rows), "lines": _lines(fit_rows)},
            "eval": {"n": len(eval_rows)},
            "raw": calibration_metrics(p, n_bins), "calibrated": calibration_metrics(expit(logits(p) / t), n_bins)}


def temperature_on_split(rows: Sequence[dict[str, Any]], fraction: float, seed: int,
                         n_bins: int = ECE_BINS) -> dict[str, Any]:
    """:func:`temperature_scaling` with T fitted on a seeded ``fraction`` of ``rows`` and scored on the rest."""
    fit, rest = split_rows(rows, fraction, seed)
    out = temperature_scaling([rows[i] for i in fit], [rows[i] for i in rest], n_bins=n_bins,
                              fit_source={"rule": f"a seeded random {fraction:g} of the input's pairs "
                                                  "(rows sharing a group_id together)", "seed": seed})
    out["fit"]["lines"] = _lines(rows, fit)
    out["eval"]["rows"] = "the input's other rows"
    return out
