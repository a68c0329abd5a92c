"""The score fields a head writes for a pair, from its rewards (and its ensemble members' rewards).

``Head.score`` turns rewards into score_chosen, score_rejected, pred_margin and p_chosen, rounded to 6
decimals; a head with members (``PairRewards``) also gets pred_margin_std and, with a length term, the
quality and length parts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from marsctl.stats import sigmoid


def mean_over_members(values: list[list[float]]) -> list[float]:
    """The mean over members of [K][n] values, per column (one member: its values, exactly).

    >>> mean_over_members([[1.0, 2.0], [3.0, 2.0]])
    [2.0, 2.0]
    """
    if len(values) == 1:
        return list(values[0])
    return [math.fsum(col) / len(col) for col in zip(*values, strict=True)]


def spread(values: list[float]) -> float:
    """Population standard deviation (0.0 exactly for one value).

    >>> spread([1.0]), spread([1.0, 3.0])
    (0.0, 1.0)
    """
    m = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / len(values))


@dataclass
class PairRewards:
    """What ``Head.score_members`` returns: each member's rewards for aligned pairs, as [K][n] lists.

    ``chosen``/``rejected`` are the members' full rewards (the head's reward is their mean);
    ``length_chosen``/``length_rejected`` the length term's part of them, or None for a head
    without a length term (the quality part is the full reward minus the length part).
    """

    chosen: list[list[float]]
    rejected: list[list[float]]
    length_chosen: list[list[float]] | None = None
    length_rejected: list[list[float]] | None = None


def score_fields(c: float, r: float, extra: dict[str, float] | None = None) -> dict[str, float]:
    """score_chosen, score_rejected, pred_margin and p_chosen of one pair's rewards (6 decimals)."""
    c, r = float(c), float(r)
    out = {"score_chosen": round(c, 6), "score_rejected": round(r, 6), "pred_margin": round(c - r, 6)}
    out["p_chosen"] = round(sigmoid(c - r), 6) if math.isfinite(c - r) else math.nan
    return {**out, **(extra or {})}


def round6(values: list[float]) -> list[float]:
    """``[round(v, 6) for v in values]``, computed with numpy where that is provably the same float.

    numpy rounds ``v * 1e6`` to an integer k and divides by 1e6, which gives Python's result whenever
    it picks Python's k: always, unless ``v * 1e6`` lies within a few ulps of a half-integer, or ``|v|``
    is huge or not finite; those values are rounded by Python.

    >>> values = [0.1234565, 2.5e-7, -1.0000005, 1e300, float("inf")]
    >>> round6(values) == [round(v, 6) for v in values]
    True
    """
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        t = x * 1e6
        out = np.rint(t) / 1e6
        near_half = np.abs(np.abs(t - np.floor(t)) - 0.5) <= 8 * np.spacing(np.abs(t))
        odd = ~(np.abs(x) < 1e9) | near_half  # also NaN and infinities
    result = out.tolist()
    for i in np.flatnonzero(odd).tolist():
        result[i] = round(values[i], 6)
    return result


def member_fields(m: PairRewards, length_free: bool) -> list[dict[str, float]]:
    """The score fields of each pair from its members' rewards (see ``Head.score``)."""
    n = len(m.chosen[0]) if m.chosen else 0
    sc, sr = mean_over_members(m.chosen), mean_over_members(m.rejected)
    if m.length_chosen is None or m.length_rejected is None:
        stds = margin_spreads(m.chosen, m.rejected, None, None)
        return [score_fields(sc[i], sr[i], {"pred_margin_std": stds[i]}) for i in range(n)]
    lc, lr = mean_over_members(m.length_chosen), mean_over_members(m.length_rejected)
    stds = margin_spreads(m.chosen, m.rejected, m.length_chosen if length_free else None,
                           m.length_rejected if length_free else None)
    qc = round6([c - a for c, a in zip(sc, lc, strict=True)])
    qr = round6([r - b for r, b in zip(sr, lr, strict=True)])
    lc, lr = round6(lc), round6(lr)
    if length_free:  # the quality part alone
        c, r = qc, qr
    else:  # written as quality + length, so that the two differ by exactly the length term
        c = [q + a for q, a in zip(qc, lc, strict=True)]
        r = [q + b for q, b in zip(qr, lr, strict=True)]
    d = [x - y for x, y in zip(c, r, strict=True)]
    p = round6([sigmoid(x) if math.isfinite(x) else math.nan for x in d])
    keys = ("score_chosen", "score_rejected", "pred_margin", "p_chosen", "quality_chosen", "quality_rejected",
            "length_chosen", "length_rejected", "pred_margin_std")
    columns = (round6(c), round6(r), round6(d), p, qc, qr, lc, lr, stds)
    return [dict(zip(keys, row, strict=True)) for row in zip(*columns, strict=True)]


def margin_spreads(chosen: list[list[float]], rejected: list[list[float]], length_chosen: list[list[float]] | None,
                    length_rejected: list[list[float]] | None) -> list[float]:
    """Each pair's ``pred_margin_std``: the spread of its members' margins (of the quality parts, given lengths)."""
    if length_chosen is None or length_rejected is None:
        margins = [[c - r for c, r in zip(cs, rs, strict=True)] for cs, rs in zip(chosen, rejected, strict=True)]
    else:
        margins = [[(c - a) - (r - b) for c, r, a, b in zip(cs, rs, las, lbs, strict=True)]
                   for cs, rs, las, lbs in zip(chosen, rejected, length_chosen, length_rejected, strict=True)]
    if len(margins) == 1:  # one member: spread([x]) is 0.0, NaN for a non-finite x
        return [0.0 if math.isfinite(x) else math.nan for x in margins[0]]
    return [round(spread(list(col)), 6) for col in zip(*margins, strict=True)]
