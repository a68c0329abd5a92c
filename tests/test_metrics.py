"""Metrics against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from marsctl import metrics


def test_roc_auc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    sc = rng.normal(0.3, 1, 200).round(1)  # rounding makes ties
    sr = rng.normal(0, 1, 200).round(1)
    want = roc_auc_score([1] * 200 + [0] * 200, np.concatenate([sc, sr]))
    assert metrics.roc_auc(sc, sr) == pytest.approx(want)


def test_bootstrap_ci_brackets_the_mean_and_narrows_with_n():
    rng = np.random.default_rng(1)
    small = (rng.random(50) < 0.7).astype(float)
    big = (rng.random(5000) < 0.7).astype(float)
    lo, hi = metrics.bootstrap_ci(small, seed=0)
    assert lo <= small.mean() <= hi
    blo, bhi = metrics.bootstrap_ci(big, seed=0)
    assert (bhi - blo) < (hi - lo)
    # Normal-approximation half-width for p=0.7, n=5000 is 1.96*sqrt(.21/5000) ≈ 0.0127.
    assert (bhi - blo) / 2 == pytest.approx(1.96 * math.sqrt(0.7 * 0.3 / 5000), rel=0.15)


def test_snr_curvature_accuracy():
    m = [1.0, -1.0, 3.0, 1.0]
    assert metrics.pairwise_accuracy(m) == 0.75
    assert metrics.margin_snr(m) == pytest.approx(np.mean(m) / np.std(m))
    assert metrics.curvature_weight([0.0, 0.0]) == pytest.approx(0.25)
    assert metrics.curvature_weight([10.0]) < 1e-4
    assert metrics.curvature_trace([0.0], [[1.0, 2.0]]) == pytest.approx(0.25 * 5)


def test_evaluate_length_baseline_and_subsets():
    rows = [
        {"chosen": "long answer", "rejected": "no", "score_chosen": 1.0, "score_rejected": 0.0,
         "pred_margin": 1.0, "subset": "A/x"},
        {"chosen": "a", "rejected": "longer", "score_chosen": 0.0, "score_rejected": 1.0,
         "pred_margin": -1.0, "subset": "A/y"},
        {"chosen": "same", "rejected": "size", "score_chosen": 2.0, "score_rejected": 0.0,
         "pred_margin": 2.0, "subset": "B/z"},
    ]
    out = metrics.evaluate(rows, n_boot=200)
    assert out["accuracy"] == pytest.approx(2 / 3)
    assert out["length_baseline"] == {"longer": pytest.approx(1 / 3), "shorter": pytest.approx(1 / 3),
                                      "ties": pytest.approx(1 / 3)}
    assert out["subsets"]["A/x"]["accuracy"] == 1.0 and out["subsets"]["A/y"]["accuracy"] == 0.0
    assert out["sections"] == {"A": 0.5, "B": 1.0}
    assert out["min_reward"] == 0.0 and out["max_reward"] == 2.0
