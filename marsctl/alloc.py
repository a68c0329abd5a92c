"""Budget allocation: allocation weights q → integer budgets b_i with Σ b_i = B exactly."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from marsctl.params import check_interval


def softmax(values: Sequence[float]) -> list[float]:
    """A numerically stable softmax.

    >>> [round(x, 3) for x in softmax([0.0, 0.0])]
    [0.5, 0.5]
    """
    if not values:
        return []
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def population_std(values: Sequence[float]) -> float:
    """Standard deviation with denominator n."""
    n = len(values)
    if n == 0:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / n)


def largest_remainder(q: Sequence[float], budget: int, seed: int = 0) -> list[int]:
    """Integer budgets: floor(B·q_i), then one more unit to the largest remainders (seeded ties).

    >>> largest_remainder([0.5, 0.25, 0.25], 4)
    [2, 1, 1]
    >>> sum(largest_remainder([1/3, 1/3, 1/3], 10, seed=7))
    10
    """
    check_interval(budget, "budget", "select", kind=int, low=0)
    if not q:
        return []
    total = sum(q)
    if total <= 0 or any(x < 0 or math.isnan(x) for x in q):
        msg = "allocation weights must be non-negative and sum to a positive number"
        raise ValueError(msg)
    exact = [budget * x / total for x in q]
    floors = [math.floor(e) for e in exact]
    left = budget - sum(floors)
    rng = random.Random(seed)
    tiebreak = [rng.random() for _ in q]
    # Remainders are rounded so that float noise does not decide ties; the seeded draw does.
    order = sorted(range(len(q)), key=lambda i: (-round(exact[i] - floors[i], 12), tiebreak[i]))
    for i in order[:left]:
        floors[i] += 1
    return floors


def effective_sample_size(q: Sequence[float]) -> float:
    """ESS of allocation weights: 1 / Σ q_i² (n for uniform, 1 for a point mass)."""
    s = sum(q)
    return (s * s) / sum(x * x for x in q) if s > 0 else 0.0


def selection_summary(margins: Sequence[float], q: Sequence[float], budgets: Sequence[int]) -> dict[str, Any]:
    """Diagnostics of one selection: ESS, largest b_i, pairs selected, budget share on Δ < 0."""
    budget = sum(budgets)
    neg = sum(b for b, m in zip(budgets, margins, strict=True) if m < 0)
    return {
        "pairs": len(margins),
        "budget": budget,
        "ess": round(effective_sample_size(q), 3),
        "max_budget": max(budgets) if budgets else 0,
        "pairs_selected": sum(1 for b in budgets if b > 0),
        "share_negative_margin": round(neg / budget, 4) if budget else 0.0,
        "margin_std": round(population_std(margins), 6),
        "curvature_weight": round(sum(1 / (2 + math.exp(m) + math.exp(-m)) for m in margins) / len(margins), 6)
        if margins else 0.0,
        "margin_mean": round(sum(margins) / len(margins), 6) if margins else 0.0,
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
