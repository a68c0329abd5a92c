"""compare: the guard, the selection diagnostics, and small real runs."""

from __future__ import annotations

import json

import pytest
from conftest import FIXTURES, read_jsonl, run_cli

from marsctl.errors import ConfigError
from marsctl.loop import RefineConfig, RefineRun
from marsctl.records import read_pairs
from marsctl.selection import guard_reasons


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


def test_each_selector_gets_only_the_parameters_its_config_declares():
    from marsctl.compare import CompareConfig

    cfg = CompareConfig(strategies=["none", "uniform", "mars", "mars-robust"],
                        refine=RefineConfig(rounds=1, selector_params=["alpha=1.0", "floor=2.0"]))
    assert cfg.selector_params("none") == [] and cfg.selector_params("uniform") == []
    assert cfg.selector_params("mars") == ["alpha=1.0"]
    assert cfg.selector_params("mars-robust") == ["alpha=1.0", "floor=2.0"]
    with pytest.raises(ConfigError, match="Unknown selector parameter 'floor' for compare"):
        CompareConfig(strategies=["uniform", "mars"], refine=RefineConfig(rounds=1, selector_params=["floor=2"]))


def test_third_party_selector_without_alpha_runs_through_compare(tmp_path, fake_plugin):
    from marsctl.compare import Compare, CompareConfig
    from marsctl.plugin import Selector

    class FirstPair(Selector):
        """A third-party selector with no parameters: the whole budget on the first pair."""

        def weights(self, margins: list[float]) -> list[float]:
            return [1.0] + [0.0] * (len(margins) - 1)

    fake_plugin("selector", "first-pair", FirstPair)
    pairs = read_pairs(FIXTURES / "tiny.jsonl")
    cfg = CompareConfig(strategies=["first-pair", "mars-abs"], seeds=1, protocols=["steps"], n_boot=200,
                        refine=RefineConfig(rounds=1, budget=10, epochs=2, pool_seed=0, selector_params=["alpha=2.0"]))
    report = Compare(pairs, tmp_path / "cmp", cfg).run()
    assert list(report["protocols"]["steps"]) == ["first-pair", "mars-abs"]
    runs = tmp_path / "cmp" / "runs" / "steps"
    manifest = {st: json.loads((runs / st / "seed-0" / "manifest.json").read_text()) for st in cfg.strategies}
    assert manifest["first-pair"]["config"]["selector_params"] == []
    assert manifest["mars-abs"]["config"]["selector_params"] == ["alpha=2.0"]
    sel = json.loads((runs / "first-pair" / "seed-0" / "round-1" / "metrics.json").read_text())["selection"]
    assert sel["strategy"] == "first-pair" and sel["pairs_selected"] == 1 and sel["max_budget"] == 10
    assert json.loads((tmp_path / "cmp" / "report.json").read_text())["config"]["refine"]["selector_params"] == [
        "alpha=2.0"]
