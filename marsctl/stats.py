"""Shared maths, written once: derived seeds, the logistic function, bootstrap CIs, mean ± std, file hashes.

A leaf: it imports nothing from marsctl at import time (numpy and the parameter checks inside functions).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from typing import Any


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed derived from any parts (stable across runs and platforms).

    >>> derive_seed(42, "pair-1") == derive_seed(42, "pair-1")
    True
    """
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") >> 1


def sigmoid(x: float) -> float:
    """The logistic function, stable for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def logistic(m: Any) -> Any:
    """The logistic function of a numpy array, element-wise (``1 / (1 + exp(−m))``)."""
    import numpy as np

    return 1.0 / (1.0 + np.exp(-m))


BOOT_BLOCK = 1 << 22  # resample indices held at once by the bootstrap of non-0/1 values (32 MiB)


def bootstrap_ci(values: Sequence[float], *, n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values``, in memory bounded whatever the length.

    0/1 values (correctness) are resampled as counts: the mean of n draws with replacement from
    values holding k ones is Binomial(n, k/n) / n, so a resample costs one binomial draw. Other values
    are resampled ``BOOT_BLOCK // n`` resamples at a time. The same seed gives the same numbers.

    >>> bootstrap_ci([1.0] * 50)
    (1.0, 1.0)
    """
    import numpy as np

    from marsctl.params import MAX_N_BOOT, check_interval, check_seed

    check_seed(seed, "seed", "the bootstrap")
    check_interval(n_boot, "n_boot", "the bootstrap", kind=int, low=1, high=MAX_N_BOOT)
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan")
    means = resampled_means(v, n_boot, np.random.default_rng(seed))
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def resampled_means(v: Any, n_boot: int, rng: Any) -> Any:
    """Means of ``n_boot`` bootstrap resamples of the 1-d array ``v`` drawn from ``rng`` (see :func:`bootstrap_ci`)."""
    import numpy as np

    n = len(v)
    if ((v == 0) | (v == 1)).all():
        return rng.binomial(n, int(v.sum()) / n, size=n_boot) / n
    rows = max(1, BOOT_BLOCK // n)
    means = np.empty(n_boot)
    for start in range(0, n_boot, rows):
        k = min(rows, n_boot - start)  # the generator's stream does not depend on how the draws are split
        means[start : start + k] = v[rng.integers(0, n, size=(k, n))].mean(axis=1)
    return means


def population_std(values: Sequence[float]) -> float:
    """Standard deviation with denominator n."""
    n = len(values)
    if n == 0:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) * (v - mean) for v in values) / n)  # inf, not OverflowError, at 1e308


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (as the benchmark tables report them).

    >>> mean_std([1.0, 3.0])
    (2.0, 1.0)
    """
    import statistics

    return statistics.mean(values), statistics.pstdev(values)


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
