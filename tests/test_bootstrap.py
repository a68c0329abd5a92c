"""bootstrap_ci in bounded memory (issue #10): binomial counts for 0/1 data, blocks otherwise; known answers."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from marsctl import stats


def half_width(sd: float, n: int) -> float:
    return 1.959964 * sd / math.sqrt(n)


def test_ci_of_correctness_is_the_binomial_one():
    n, k = 20_000, 14_000  # accuracy 0.7
    values = np.r_[np.ones(k), np.zeros(n - k)]
    lo, hi = stats.bootstrap_ci(values, n_boot=4000, seed=1)
    h = half_width(math.sqrt(0.7 * 0.3), n)
    assert lo == pytest.approx(0.7 - h, abs=0.15 * h) and hi == pytest.approx(0.7 + h, abs=0.15 * h)


def test_ci_of_other_values_is_the_normal_one():
    values = np.random.default_rng(5).normal(3.0, 2.0, size=5_000)
    lo, hi = stats.bootstrap_ci(values, n_boot=4000, seed=2)
    h = half_width(values.std(), len(values))
    assert lo == pytest.approx(values.mean() - h, abs=0.15 * h)
    assert hi == pytest.approx(values.mean() + h, abs=0.15 * h)


def test_counts_resample_as_index_draws_do():
    """The binomial shortcut has the distribution of the index-matrix bootstrap it replaces."""
    values = (np.random.default_rng(0).random(3_000) < 0.62).astype(float)
    rng = np.random.default_rng(9)
    by_index = values[rng.integers(0, len(values), size=(4000, len(values)))].mean(axis=1)
    by_count = stats.resampled_means(values, 4000, np.random.default_rng(9))
    assert by_count.mean() == pytest.approx(by_index.mean(), abs=5e-4)
    assert by_count.std() == pytest.approx(by_index.std(), rel=0.06)


def test_degenerate_data():
    assert stats.bootstrap_ci([1.0] * 10) == (1.0, 1.0)
    assert stats.bootstrap_ci([0.0] * 10) == (0.0, 0.0)
    assert stats.bootstrap_ci([2.5] * 10) == (2.5, 2.5)
    assert all(math.isnan(x) for x in stats.bootstrap_ci([]))


@pytest.mark.parametrize("values", [[0.0, 1.0, 1.0, 0.0, 1.0] * 40, [0.3, -1.0, 2.0, 0.5] * 50])
def test_same_seed_same_numbers_and_blocks_do_not_change_them(values, monkeypatch):
    a = stats.bootstrap_ci(values, seed=4)
    assert stats.bootstrap_ci(values, seed=4) == a
    assert stats.bootstrap_ci(values, seed=5) != a
    monkeypatch.setattr(stats, "BOOT_BLOCK", 3 * len(values) + 1)  # 3 resamples per block
    assert stats.bootstrap_ci(values, seed=4) == a


@pytest.mark.parametrize("binary", [True, False])
def test_memory_is_bounded_at_a_million_values(binary):
    """The index matrix would hold 2,000 x 1M int64 (16 GB); the bootstrap stays within ~2 blocks."""
    rng = np.random.default_rng(0)
    values = (rng.random(1_000_000) < 0.6).astype(float) if binary else rng.normal(size=1_000_000)
    tracemalloc.start()
    try:
        lo, hi = stats.bootstrap_ci(values, n_boot=200 if not binary else 2000, seed=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert lo < values.mean() < hi
    assert peak < (values.nbytes if binary else 3 * 8 * stats.BOOT_BLOCK)  # well below one index matrix
