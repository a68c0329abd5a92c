"""compare: the paired statistics against known answers, the diagnostics, and a small real run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import FIXTURES, read_jsonl, run_cli

from marsctl.compare import paired_difference
from marsctl.loop import RefineConfig, RefineRun, guard_reasons
from marsctl.records import read_pairs


def test_paired_difference_extremes():
    ones, zeros = np.ones(100), np.zeros(100)
    d = paired_difference([ones, ones], [zeros, zeros], n_boot=300)
    assert d["mean"] == 1.0 and d["ci95"] == [1.0, 1.0] and (d["wins"], d["losses"]) == (2, 0)
    same = paired_difference([ones], [ones], n_boot=300)
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
    d = paired_difference(a_runs, b_runs, n_boot=2000, seed=1)
    assert d["mean"] == pytest.approx(0.01)
    half = (d["ci95"][1] - d["ci95"][0]) / 2
    assert half == pytest.approx(1.96 * np.sqrt(0.01 * 0.99 / 1000) / np.sqrt(5), rel=0.25)
    assert d["wins"] == 5 and d["ci95"][0] > 0


def test_guard_reasons():
    ok = {"ess": 50.0, "pairs": 100, "share_negative_margin": 0.3}
    assert guard_reasons(ok) == []
    bad = {"ess": 10.0, "pairs": 100, "share_negative_margin": 0.8}
    reasons = guard_reasons(bad)
    assert len(reasons) == 2 and "ESS 10.0" in reasons[0] and "0.80 of the budget" in reasons[1]


def test_guard_falls_back_to_uniform_and_says_so(tmp_path):
    pairs = read_pairs(FIXTURES / "tiny.jsonl")
    cfg = RefineConfig(rounds=1, budget=20, epochs=2, strategy="mars", selector_params=["alpha=20", "alpha_scale=std"],
                       guard=True)
    RefineRun(pairs, tmp_path / "g", cfg).run()
    m = json.loads((tmp_path / "g" / "round-1" / "metrics.json").read_text())
    assert m["selection"]["guard"]["passed"] is False
    assert m["selection"]["strategy"] == "uniform"
    assert m["selection"]["guard"]["rejected_selection"]["strategy"] == "mars"
    assert sum(r["budget"] for r in read_jsonl(tmp_path / "g" / "round-1" / "selected.jsonl")) == 20


def test_selection_diagnostics_recorded(tmp_path):
    pairs = read_pairs(FIXTURES / "tiny.jsonl")
    RefineRun(pairs, tmp_path / "d", RefineConfig(rounds=1, budget=30, epochs=2, strategy="mars-abs")).run()
    sel = json.loads((tmp_path / "d" / "round-1" / "metrics.json").read_text())["selection"]
    for key in ("ess", "max_budget", "pairs_selected", "share_negative_margin", "p_chosen_longer_selected",
                "p_chosen_longer_all"):
        assert key in sel
    assert sel["max_budget"] <= 25  # the default per-pair cap (the eda pool size)
    assert -1 <= sel["novelty"]["corr"] <= 1 and sel["novelty"]["pairs"] > 3


def test_small_compare_end_to_end(tmp_path):
    out = tmp_path / "cmp"
    proc = run_cli("compare", str(FIXTURES / "tiny.jsonl"), "--seeds", "2", "--strategies",
                   "none,uniform,mars-abs", "--epochs", "2", "--budget", "20", "--out", str(out), check=True)
    assert "compare, epochs protocol" in proc.stderr and "compare, steps protocol" in proc.stderr
    runs = read_jsonl(out / "runs.jsonl")
    assert len(runs) == 2 * 2 * 3
    assert (out / "runs.csv").read_text().count("\n") == 13
    for png in ("accuracy.png", "accuracy_by_round.png", "margins_by_round.png", "budget_vs_margin.png"):
        assert (out / png).stat().st_size > 5000
    table = (out / "table.md").read_text()
    assert "| none |" in table and "| mars-abs |" in table and "matched optimiser steps" in table
    # Same split per seed for every strategy; none is the same run under both protocols.
    by = {(r["seed"], r["protocol"], r["strategy"]): r for r in runs}
    for seed in (0, 1):
        assert len({by[(seed, p, s)]["n_test"] for p in ("epochs", "steps") for s in ("none", "uniform")}) == 1
        assert by[(seed, "epochs", "none")]["accuracy"] == by[(seed, "steps", "none")]["accuracy"]
        assert by[(seed, "steps", "uniform")]["epochs_by_round"][1] < by[(seed, "epochs", "uniform")]["epochs_by_round"][1]
        assert by[(seed, "epochs", "uniform")]["steps_by_round"][1] > by[(seed, "steps", "uniform")]["steps_by_round"][1]
    report = json.loads((out / "report.json").read_text())
    vs = report["protocols"]["epochs"]["mars-abs"]["vs_uniform"]
    assert vs["wins"] + vs["losses"] + vs["ties"] == 2 and vs["ci95"][0] <= vs["mean"] <= vs["ci95"][1]
