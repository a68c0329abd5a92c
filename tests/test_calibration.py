"""Calibration against known answers: a perfectly calibrated synthetic model, hand-computed ECE, Brier and log loss."""

from __future__ import annotations

import math

import numpy as np
import pytest

from marsctl import calibration as cal
from marsctl import metrics


def _calibrated_rows(n: int, seed: int = 0, scale: float = 1.0) -> list[dict]:
    """Pairs whose first response wins with probability p ~ U(0, 1), drawn; the model's Δ is scale·logit p.

    With scale 1 the model is perfectly calibrated; the row's chosen response is whichever won the draw.
    """
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    first_wins = rng.random(n) < p
    z = np.log(p / (1 - p))
    rows = []
    for i in range(n):
        m = float(scale * (z[i] if first_wins[i] else -z[i]))
        rows.append({"pred_margin": m, "score_chosen": m, "score_rejected": 0.0, "_len_chosen": 3,
                     "_len_rejected": 2, "_line": i + 1})
    return rows


def test_perfectly_calibrated_model_has_ece_near_zero_and_known_brier_and_log_loss():
    rows = _calibrated_rows(20_000)
    c = metrics.evaluate(rows, n_boot=100)["calibration"]
    # 10 equal-mass bins of 2000 pairs: each bin's accuracy has sd ≈ sqrt(.25·.75/2000) ≈ 0.01.
    assert c["ece"] < 0.02 and c["n_bins"] == 10 and c["binning"] == "equal-mass"
    assert [b["n"] for b in c["reliability"]] == [2000] * 10
    for b in c["reliability"]:
        assert b["accuracy"] == pytest.approx(b["mean_p"], abs=0.04)
    # p ~ U(0, 1), calibrated: Brier = E[p(1 − p)] = 1/6, log loss = E[−p ln p − (1 − p) ln(1 − p)] = 1/2.
    assert c["brier"] == pytest.approx(1 / 6, abs=0.005)
    assert c["log_loss"] == pytest.approx(0.5, abs=0.01)
    # Scored for the chosen-is-better event alone (every label 1), the same model would look far off.
    p = cal.probabilities(rows)
    assert float(np.mean(1 - p)) > 0.3


def test_overconfident_model_is_caught_and_temperature_recovers_the_scale():
    rows = _calibrated_rows(20_000, seed=1, scale=3.0)
    out = metrics.evaluate(rows, n_boot=100, calibrate=0.5)
    assert out["calibration"]["ece"] > 0.1
    ts = out["temperature_scaling"]
    assert ts["temperature"] == pytest.approx(3.0, rel=0.05) and not ts["at_bound"]
    assert ts["calibrated"]["ece"] < 0.02 < ts["raw"]["ece"]
    assert ts["calibrated"]["log_loss"] < ts["raw"]["log_loss"]
    assert ts["fit"]["n"] == 10_000 and ts["eval"]["n"] == 10_000
    fit_lines = set(ts["fit"]["lines"])
    assert len(fit_lines) == 10_000 and fit_lines <= set(range(1, 20_001))
    # accuracy is over all rows and a temperature leaves every ranking alone
    assert out["n"] == 20_000


def test_ece_brier_log_loss_by_hand():
    # p = 0.5 (from Δ = 0), 0.9, 0.2, 0.7 (p_chosen, which wins over pred_margin), 0.95
    rows = [{"pred_margin": 0.0}, {"pred_margin": 5.0, "p_chosen": 0.9}, {"pred_margin": 1.0, "p_chosen": 0.2},
            {"pred_margin": -3.0, "p_chosen": 0.7}, {"pred_margin": 0.1, "p_chosen": 0.95}]
    p = cal.probabilities(rows)
    assert p.tolist() == [0.5, 0.9, 0.2, 0.7, 0.95]
    c = cal.calibration_metrics(p, n_bins=2)
    # confidence max(p, 1 − p): 0.5, 0.9, 0.8, 0.7, 0.95; correct: ½, 1, 0, 1, 1.
    # sorted: [0.5, 0.7, 0.8] mean 2/3, accuracy 1.5/3 | [0.9, 0.95] mean 0.925, accuracy 1
    lo, hi = c["reliability"]
    assert (lo["n"], hi["n"]) == (3, 2)
    assert lo["mean_p"] == pytest.approx(2 / 3) and lo["accuracy"] == pytest.approx(0.5)
    assert (lo["p_low"], lo["p_high"]) == (0.5, 0.8)
    assert hi["mean_p"] == pytest.approx(0.925) and hi["accuracy"] == 1.0
    assert c["ece"] == pytest.approx(3 / 5 * (2 / 3 - 0.5) + 2 / 5 * (1 - 0.925))  # = 0.13
    assert c["ece"] == pytest.approx(0.13)
    assert c["brier"] == pytest.approx((0.25 + 0.01 + 0.64 + 0.09 + 0.0025) / 5)
    assert c["log_loss"] == pytest.approx(-sum(math.log(x) for x in (0.5, 0.9, 0.2, 0.7, 0.95)) / 5)
    assert c["p_range"] == [0.2, 0.95]


def test_fewer_pairs_than_bins_and_a_certain_wrong_answer():
    c = cal.calibration_metrics([1.0, 0.0], n_bins=10)
    assert c["n_bins"] == 2 and c["ece"] == 0.5
    assert c["log_loss"] == pytest.approx(-math.log(cal.P_EPS) / 2)  # p = 0 is clipped, never infinite
    assert cal.calibration_metrics([], n_bins=10)["ece"] is None


def test_temperature_stops_at_the_bound_when_every_pair_is_right():
    assert cal.fit_temperature([1.0, 2.0, 0.5]) == pytest.approx(cal.T_BOUNDS[0], rel=1e-3)
    rows = [{"pred_margin": m} for m in (1.0, 2.0, 0.5, 3.0)]
    assert cal.temperature_scaling(rows[:2], rows[2:])["at_bound"]


def test_split_keeps_groups_together_and_is_seeded():
    rows = [{"pred_margin": 1.0, "group_id": i // 3} for i in range(30)] + [{"pred_margin": -1.0}] * 10
    fit, rest = cal.split_rows(rows, 0.25, seed=3)
    assert sorted(fit + rest) == list(range(40)) and not set(fit) & set(rest)
    groups_fit = {rows[i].get("group_id") for i in fit} - {None}
    assert all(rows[i].get("group_id") not in groups_fit for i in rest)
    # 20 units (10 groups, 10 single rows): a quarter is 5 of them
    units_fit = len(groups_fit) + sum(1 for i in fit if rows[i].get("group_id") is None)
    assert units_fit == 5
    assert cal.split_rows(rows, 0.25, seed=3) == (fit, rest) != cal.split_rows(rows, 0.25, seed=4)


def test_split_needs_two_units():
    from marsctl.errors import DataError

    with pytest.raises(DataError, match="at least 2"):
        cal.split_rows([{"pred_margin": 1.0, "group_id": "g"}] * 4, 0.5, seed=0)
