"""Metrics against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from marsctl import comparestats, metrics, rewardbench, stats
from marsctl.lengths import correlation, slim_row


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
    lo, hi = stats.bootstrap_ci(small, seed=0)
    assert lo <= small.mean() <= hi
    blo, bhi = stats.bootstrap_ci(big, seed=0)
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


def test_paired_difference_extremes():
    ones, zeros = np.ones(100), np.zeros(100)
    d = comparestats.paired_difference([ones, ones], [zeros, zeros], n_boot=300)
    assert d["mean"] == 1.0 and d["ci95"] == [1.0, 1.0] and (d["wins"], d["losses"]) == (2, 0)
    same = comparestats.paired_difference([ones], [ones], n_boot=300)
    assert same["mean"] == 0.0 and same["ci95"] == [0.0, 0.0] and same["ties"] == 1


def test_paired_difference_known_standard_error():
    # a beats b on exactly 10 of 1000 pairs per seed: d ∈ {0, 1}, mean 0.01, se = sqrt(.01·.99/1000)/sqrt(5).
    rng = np.random.default_rng(0)
    a_runs, b_runs = [], []
    for _ in range(5):
        b = (rng.random(1000) < 0.5).astype(float)
        a = b.copy()
        flip = rng.choice(np.where(b == 0)[0], 10, replace=False)
        a[flip] = 1
        a_runs.append(a)
        b_runs.append(b)
    d = comparestats.paired_difference(a_runs, b_runs, n_boot=2000, seed=1)
    assert d["mean"] == pytest.approx(0.01)
    half = (d["ci95"][1] - d["ci95"][0]) / 2
    assert half == pytest.approx(1.96 * np.sqrt(0.01 * 0.99 / 1000) / np.sqrt(5), rel=0.25)
    assert d["wins"] == 5 and d["ci95"][0] > 0


def _run(seed, strategy, correct, selection=(), tcw=0.2):
    return {"seed": seed, "protocol": "steps", "strategy": strategy, "accuracy": sum(correct) / len(correct),
            "correct": correct, "length_longer": 0.5, "length_shorter": 0.25, "selection": list(selection),
            "test_p_chosen_longer": 0.5, "train_curvature_weight": tcw}


def test_compare_statistics_by_hand():
    sel = [{"ess": 10.0, "max_budget": 2, "pairs_selected": 8, "share_negative_margin": 0.25,
            "p_chosen_longer_selected": 0.5, "novelty": {"corr": 0.8}, "guard": {"passed": False}},
           {"ess": 20.0, "max_budget": 4, "pairs_selected": None, "share_negative_margin": 0.75,
            "p_chosen_longer_selected": 0.5, "novelty": None, "guard": {"passed": True}}]
    results = [_run(1, "none", [1, 1], tcw=0.25), _run(0, "none", [1, 0], tcw=0.25),
               _run(0, "uniform", [1, 1], sel[:1], tcw=0.1), _run(1, "uniform", [1, 1], sel[1:], tcw=0.2)]
    out = comparestats.compare_statistics(results, ["none", "uniform"], ["steps"], refs=("uniform", "none"), n_boot=200)
    none, uni = out["steps"]["none"], out["steps"]["uniform"]
    assert (none["accuracy_mean"], none["accuracy_std"], none["seeds"]) == (0.75, 0.25, 2)
    assert (uni["accuracy_mean"], uni["accuracy_std"]) == (1.0, 0.0) and uni["accuracy_ci95"] == [1.0, 1.0]
    # per seed Δ(uniform − none): seed 0 +0.5, seed 1 0 → mean 0.25, one win, one tie
    d = uni["vs_none"]
    assert d["mean"] == 0.25 and (d["wins"], d["losses"], d["ties"]) == (1, 0, 1) and "vs_uniform" not in uni
    assert none["vs_uniform"]["mean"] == -0.25 and none["vs_uniform"]["losses"] == 1 and "vs_none" not in none
    assert "diagnostics" not in none and none["train_curvature_weight"] == 0.25
    assert uni["diagnostics"] == {"ess": 15.0, "max_budget": 3.0, "pairs_selected": 8.0, "share_negative_margin": 0.5,
                                  "p_chosen_longer_selected": 0.5, "novelty_corr": 0.8, "guard_fallbacks": 1,
                                  "test_p_chosen_longer": 0.5}
    assert uni["train_curvature_weight"] == pytest.approx(0.15)
    assert (none["length_longer"], none["length_shorter"]) == (0.5, 0.25)


def test_mean_std_is_the_population_std():
    assert stats.mean_std([0.25, 0.75]) == (0.5, 0.25)


def _row(subset, margin, group=None, lc=5, lr=3):
    r = {"pred_margin": margin, "score_chosen": margin, "score_rejected": 0.0, "subset": subset,
         "_len_chosen": lc, "_len_rejected": lr}
    if group is not None:
        r["group_id"] = group
    return r


def test_rewardbench_sections_are_prompt_weighted():
    rows = [_row("alpacaeval-easy", 1.0), _row("alpacaeval-easy", -1.0), _row("mt-bench-easy", 1.0),
            _row("llmbar-natural", -1.0), _row("refusals-dangerous", 1.0), _row("donotanswer", -1.0),
            _row("math-prm", 1.0), *[_row(f"hep-{lang}", -1.0) for lang in ("cpp", "go", "java", "js", "python", "rust")]]
    out = metrics.evaluate(rows, n_boot=200)
    rb = out["rewardbench"]
    want = {"Chat": (0.5 * 100 + 1.0 * 28) / (100 + 28),  # alpacaeval-easy weighs 100, mt-bench-easy 28
            "Chat Hard": 0.0,
            "Safety": 100 / (100 + 136),  # refusals-dangerous 100, donotanswer 136
            "Reasoning": 0.5}  # math-prm counts 984 = the six hep-* subsets' 6 × 164: half math, half code
    assert rb["sections"] == pytest.approx(want)
    assert rb["score"] == pytest.approx(sum(want.values()) / 4)
    assert "xstest-should-refuse" in rb["missing_subsets"] and rb["other_subsets"] == []
    # the plain mean of the Reasoning subsets would be 1/7: the weights matter. The '/'-prefix sections
    # are left to other subsets.
    assert out["subsets"]["math-prm"]["accuracy"] == 1.0 and "sections" not in out
    mixed = metrics.evaluate([*rows, _row("A/x", 1.0), _row("A/y", -1.0)], n_boot=200)
    assert mixed["sections"] == {"A": 0.5} and mixed["rewardbench"]["other_subsets"] == ["A/x", "A/y"]
    # a section whose subsets are all missing is absent (RewardBench itself writes 0), and no headline score then
    part = rewardbench.rewardbench_sections({"mt-bench-hard": 0.25})
    assert part["sections"] == {"Chat Hard": 0.25} and part["score"] is None
    assert rewardbench.rewardbench_sections({"A/x": 1.0}) is None
    assert "rewardbench" not in metrics.evaluate([_row("A/x", 1.0)], n_boot=200)


def test_best_of_n_on_hand_built_groups():
    rows = [_row("math", 1.0, "a"), _row("math", 2.0, "a"), _row("math", 0.5, "a"),  # chosen beats all three
            _row("math", 1.0, "b"), _row("math", -0.1, "b"),  # one rejected wins
            _row("Ties", 0.0, "c"), _row("Ties", 3.0, "c"),  # a tie counts as wrong
            _row("math", 5.0)]  # no group
    bon = metrics.evaluate(rows, n_boot=200)["best_of_n"]
    assert (bon["groups"], bon["pairs"], bon["ungrouped_pairs"], bon["ties"]) == (3, 7, 1, 1)
    assert bon["accuracy"] == pytest.approx(1 / 3)
    assert bon["chance"] == pytest.approx((1 / 4 + 1 / 3 + 1 / 3) / 3)
    assert bon["subsets"] == {"Ties": {"groups": 1, "accuracy": 0.0}, "math": {"groups": 2, "accuracy": 0.5}}
    assert "Ties" in bon["ties_subset_note"]
    lo, hi = bon["accuracy_ci95"]
    assert 0 <= lo <= 1 / 3 <= hi <= 1
    assert "best_of_n" not in metrics.evaluate(rows[-1:], n_boot=200)


def test_reward_margin_and_length_diagnostics_by_hand():
    # chosen longer in rows 0-2 (2 right), shorter in rows 3-4 (1 right), equal in row 5 (right)
    rows = [_row("A", 1.0, lc=9, lr=1), _row("A", 2.0, lc=8, lr=2), _row("A", -1.0, lc=7, lr=3),
            _row("B", 4.0, lc=1, lr=9), _row("B", -2.0, lc=2, lr=8), _row("B", 0.5, lc=4, lr=4)]
    out = metrics.evaluate(rows, n_boot=200)
    assert out["mean_chosen_reward"] == pytest.approx(4.5 / 6) and out["mean_rejected_reward"] == 0.0
    q = np.percentile([1, 2, -1, 4, -2, 0.5], [5, 25, 50, 75, 95])
    assert out["margin_quantiles"] == pytest.approx(dict(zip(["5", "25", "50", "75", "95"], q, strict=True)))
    ln = out["length"]
    assert ln["chosen_longer"] == {"n": 3, "accuracy": pytest.approx(2 / 3)}
    assert ln["chosen_shorter"] == {"n": 2, "accuracy": 0.5} and ln["equal_length"] == {"n": 1, "accuracy": 1.0}
    lengths = [9, 8, 7, 1, 2, 4, 1, 2, 3, 9, 8, 4]
    rewards = [1.0, 2.0, -1.0, 4.0, -2.0, 0.5] + [0.0] * 6
    assert ln["reward_vs_length"]["pearson"] == pytest.approx(np.corrcoef(lengths, rewards)[0, 1])
    ranks = [np.argsort(np.argsort(v)) for v in ([8, 6, 4, -8, -6], [1.0, 2.0, -1.0, 4.0, -2.0])]
    assert correlation([8, 6, 4, -8, -6], [1.0, 2.0, -1.0, 4.0, -2.0])["spearman"] == pytest.approx(
        np.corrcoef(*ranks)[0, 1])
    # |Δ| sorted (stable): 0.5+ 1+ | 1− 2+ | 2− | 4+ → buckets of 2, 2, 1, 1 (equal mass, first ones larger)
    assert [(b["n"], b["accuracy"]) for b in out["accuracy_by_margin"]] == [(2, 1.0), (2, 0.5), (1, 0.0), (1, 1.0)]
    assert out["accuracy_by_margin"][0]["abs_margin"] == [0.5, 1.0]
    sub = out["subsets"]["B"]
    assert sub["length"]["chosen_shorter"]["n"] == 2 and sub["accuracy"] == pytest.approx(2 / 3)
    assert sub["length_baseline"]["shorter"] == pytest.approx(2 / 3) and len(sub["accuracy_ci95"]) == 2
    assert set(sub["calibration"]) == {"ece", "n_bins", "brier", "log_loss"}
    assert correlation([1, 1, 1], [1, 2, 3]) == {"spearman": None, "pearson": None}


def test_evaluate_on_slim_rows_equals_full_rows():
    import json
    from pathlib import Path

    rows = [json.loads(line) for line in (Path(__file__).parents[1] / "fixtures" / "tiny_test.jsonl").open()]
    rng = np.random.default_rng(0)
    for i, r in enumerate(rows):
        r["score_chosen"], r["score_rejected"] = float(rng.normal(0.2)), float(rng.normal())
        r["pred_margin"] = r["score_chosen"] - r["score_rejected"]
        r["subset"], r["group_id"] = ("alpacaeval-easy", "hep-go")[i % 2], i // 3
    full = metrics.evaluate(rows, n_boot=200, calibrate=0.5)
    slim = metrics.evaluate([slim_row(r) for r in rows], n_boot=200, calibrate=0.5)
    assert slim == full and full["length"]["chosen_longer"]["n"] > 0
