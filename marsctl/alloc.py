"""Budget allocation: allocation weights q → integer budgets b_i with Σ b_i = B exactly."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from marsctl.params import check_interval
from marsctl.stats import population_std


def softmax(values: Sequence[float]) -> list[float]:
    """A numerically stable softmax.

    >>> [round(x, 3) for x in softmax([0.0, 0.0])]
    [0.5, 0.5]
    >>> softmax([float("inf"), 1.0, float("inf")]), softmax([float("-inf"), 0.0])
    ([0.5, 0.0, 0.5], [0.0, 1.0])

    Infinite values (a huge α times a margin) share the mass, or get none; NaN is refused.
    """
    if not values:
        return []
    if any(math.isnan(v) for v in values):
        msg = "softmax of NaN"
        raise ValueError(msg)
    top = max(values)
    if math.isinf(top):  # +inf wins outright; all −inf: no preference
        hits = [1.0 if v == top else 0.0 for v in values]
        return [h / sum(hits) for h in hits]
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


# Up to this budget, B·q_i computed in floats is within 1e-4 of exact, so its remainders can order the
# pairs as they always have; the floors are exact integers either way.
FLOAT_EXACT_BUDGET = 2**40


def largest_remainder(q: Sequence[float], budget: int, seed: int = 0) -> list[int]:
    """Integer budgets: floor(B·q_i), then one more unit to the largest remainders (seeded ties).

    >>> largest_remainder([0.5, 0.25, 0.25], 4)
    [2, 1, 1]
    >>> sum(largest_remainder([1/3, 1/3, 1/3], 10, seed=7))
    10
    >>> sum(largest_remainder([0.1, 0.2, 0.7], 10**20)) == 10**20
    True

    The arithmetic is exact (integers), so Σ b_i = B for any int B.
    """
    check_interval(budget, "budget", "select", kind=int, low=0)
    if not q:
        return []
    values, weights = _scaled_weights(q)
    total = sum(weights)
    floors, rems = [], []
    for w in weights:
        f, r = divmod(budget * w, total)
        floors.append(f)
        rems.append(r)
    left = budget - sum(floors)
    rng = random.Random(seed)
    tiebreak = [rng.random() for _ in q]
    if budget <= FLOAT_EXACT_BUDGET:  # the float remainders earlier versions ranked by (same results)
        fsum = sum(values)
        keys = [round(budget * v / fsum - f, 12) for v, f in zip(values, floors, strict=True)]
    else:
        keys = [round(r / total, 12) for r in rems]
    # Remainders are rounded so that float noise in q does not decide ties; the seeded draw does.
    order = sorted(range(len(q)), key=lambda i: (-keys[i], tiebreak[i]))
    for i in order[:left]:
        floors[i] += 1
    return floors


def _scaled_weights(q: Sequence[float]) -> tuple[list[float], list[int]]:
    """q as floats, and as integers on one power-of-two scale (exact: a float is a binary fraction).

    >>> _scaled_weights([0.5, 0.25, 0])
    ([0.5, 0.25, 0.0], [2, 1, 0])
    """
    try:
        values = [float(x) for x in q]
    except (TypeError, ValueError, OverflowError):
        values = [math.nan]
    ok = all(0 <= v < math.inf for v in values)  # NaN fails both comparisons
    ratios = [v.as_integer_ratio() for v in values] if ok else []
    if not any(n for n, _ in ratios):
        msg = "allocation weights must be finite, non-negative and sum to a positive number"
        raise ValueError(msg)
    scale = max(d for _, d in ratios)
    return values, [n * (scale // d) for n, d in ratios]


def effective_sample_size(q: Sequence[float]) -> float:
    """ESS of allocation weights: 1 / Σ q_i² (n for uniform, 1 for a point mass); 0.0 without mass.

    >>> effective_sample_size([0.25] * 4), effective_sample_size([0.0, 0.0])
    (4.0, 0.0)
    """
    s = sum(q)
    if not 0 < s < math.inf:
        return 0.0
    p = [x / s for x in q]  # normalised first: Σ p² ≥ 1/n, so no underflow to 0
    return 1 / sum(x * x for x in p)


def curvature(margin: float) -> float:
    """σ'(Δ) = σ(Δ)·σ(−Δ), computed without overflow for any |Δ|.

    >>> curvature(0.0), curvature(1000.0)
    (0.25, 0.0)
    """
    e = math.exp(-abs(margin))
    return e / (1 + e) ** 2


def _finite(x: float, digits: int) -> float | None:
    """``x`` rounded, or None when it is not finite (diagnostics never carry NaN or Infinity)."""
    return round(x, digits) if math.isfinite(x) else None


def selection_summary(margins: Sequence[float], q: Sequence[float], budgets: Sequence[int]) -> dict[str, Any]:
    """Diagnostics of one selection: ESS, largest b_i, pairs selected, budget share on Δ < 0."""
    budget = sum(budgets)
    neg = sum(b for b, m in zip(budgets, margins, strict=True) if m < 0)
    n = len(margins)
    return {
        "pairs": n,
        "budget": budget,
        "ess": _finite(effective_sample_size(q), 3),
        "max_budget": max(budgets) if budgets else 0,
        "pairs_selected": sum(1 for b in budgets if b > 0),
        "share_negative_margin": round(neg / budget, 4) if budget else 0.0,
        "margin_std": _finite(population_std(margins), 6),
        "curvature_weight": _finite(sum(curvature(m) for m in margins) / n, 6) if n else 0.0,
        "margin_mean": _finite(sum(margins) / n, 6) if n else 0.0,
    }


def mix_uniform(q: Sequence[float], weight: float) -> list[float]:
    """(1 − λ)·q + λ/n: a mixture with uniform that bounds how far a selection can tilt.

    >>> mix_uniform([1.0, 0.0], 0.5)
    [0.75, 0.25]
    """
    check_interval(weight, "mix_uniform", "select", low=0, high=1)
    n = len(q)
    return [(1 - weight) * x + weight / n for x in q]


def capped_allocation(q: Sequence[float], budget: int, cap: int, seed: int = 0) -> list[int]:
    """Largest-remainder budgets with b_i ≤ cap: overflow is re-spread over uncapped pairs by q.

    >>> capped_allocation([0.9, 0.05, 0.05], 10, cap=4)
    [4, 3, 3]
    """
    check_interval(cap, "cap", "select", kind=int, low=1)
    n = len(q)
    if cap * n < budget:
        msg = f"a cap of {cap} rows per pair over {n} pairs cannot hold a budget of {budget}"
        raise ValueError(msg)
    fixed = [0] * n
    free = list(range(n))
    left = budget
    while True:
        weights = [q[i] for i in free]
        if sum(weights) <= 0:
            weights = [1.0] * len(free)
        b = largest_remainder(weights, left, seed=seed)
        over = [i for i, bi in zip(free, b, strict=True) if bi > cap]
        if not over:
            for i, bi in zip(free, b, strict=True):
                fixed[i] = bi
            return fixed
        for i in over:
            fixed[i] = cap
        left -= cap * len(over)
        free = [i for i in free if i not in set(over)]
