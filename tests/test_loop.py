"""refine end to end on a real fixture with the real encoder; interruption and --resume."""

from __future__ import annotations

import json

import pytest
from conftest import FIXTURES, read_jsonl, run_cli

from marsctl import augmentation
from marsctl.errors import ConfigError
from marsctl.loop import RefineConfig, RefineRun
from marsctl.records import read_pairs

TINY = FIXTURES / "tiny.jsonl"
TEST = FIXTURES / "tiny_test.jsonl"


def config(**kw) -> RefineConfig:
    base = {"rounds": 2, "budget": 30, "epochs": 4, "seed": 3}
    return RefineConfig(**{**base, **kw})


def test_refine_two_rounds_cli(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("refine", str(TINY), "--rounds", "2", "--budget", "30", "--epochs", "4", "--eval", str(TEST),
                   "--out", str(out), "--seed", "3", check=True)
    assert "refine summary" in proc.stderr and proc.stdout == ""
    summary = json.loads((out / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1, 2]
    assert [r["train_size"] for r in summary["rounds"]] == [40, 70, 70]
    assert [r["n_synthetic"] for r in summary["rounds"]] == [0, 30, 30]
    for r in summary["rounds"]:
        assert 0 <= r["eval_accuracy"] <= 1 and 0 < r["train_curvature_weight"] <= 0.25
    assert summary["heldout"]["path"] == str(TEST) and summary["heldout"]["n"] == 30
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rounds_finished"] == [0, 1, 2] and manifest["format_version"] == 1
    assert manifest["plugins"]["augmenter"]["name"] == "eda" and len(manifest["input"]["sha256"]) == 64
    assert set(manifest["timing"]) == {"round-0", "round-1", "round-2"}
    r1 = out / "round-1"
    for f in ("selected.jsonl", "synthetic.jsonl", "train.jsonl", "scored.jsonl", "metrics.json",
              "model/config.json", "model/model.safetensors"):
        assert (r1 / f).exists(), f
    selected = read_jsonl(r1 / "selected.jsonl")
    assert sum(r["budget"] for r in selected) == 30
    synthetic = read_jsonl(r1 / "synthetic.jsonl")
    assert all(r["round"] == 1 and r["source"] == "synthetic" for r in synthetic)
    # Weights carry forward: round 1 starts from round 0's model.
    cfg1 = json.loads((r1 / "model" / "config.json").read_text())
    assert cfg1["training"]["init"].endswith("round-0/model")
    assert (out / "summary.md").read_text().startswith("| round |")
    assert not list(out.glob("*.partial"))


def _scores(run_dir):
    return [r["pred_margin"] for r in read_jsonl(run_dir / "round-2" / "scored.jsonl")]


def test_interrupted_run_loses_no_finished_round_and_resume_matches(tmp_path, monkeypatch):
    pairs, held = read_pairs(TINY), read_pairs(TEST)
    full = RefineRun(pairs, tmp_path / "full", config(), heldout=held).run()

    calls = {"n": 0}
    real_augment = augmentation.augment

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # round 2's augmentation
            raise KeyboardInterrupt
        return real_augment(*args, **kwargs)

    monkeypatch.setattr(augmentation, "augment", flaky)
    run = RefineRun(pairs, tmp_path / "cut", config(), heldout=held)
    with pytest.raises(KeyboardInterrupt):
        run.run()
    assert run.finished_rounds() == [0, 1]
    assert not (tmp_path / "cut" / "round-2.partial").exists()
    before = (tmp_path / "cut" / "round-1" / "scored.jsonl").read_bytes()
    monkeypatch.setattr(augmentation, "augment", real_augment)
    resumed = RefineRun(pairs, tmp_path / "cut", config(), heldout=held).run(resume=True)
    assert (tmp_path / "cut" / "round-1" / "scored.jsonl").read_bytes() == before  # never rewritten
    assert _scores(tmp_path / "cut") == _scores(tmp_path / "full")
    assert [r["eval_accuracy"] for r in resumed["rounds"]] == [r["eval_accuracy"] for r in full["rounds"]]


def test_existing_run_needs_resume_and_same_settings(tmp_path):
    pairs = read_pairs(TINY)
    RefineRun(pairs, tmp_path / "r", config(rounds=0)).run()
    with pytest.raises(ConfigError, match="already holds a run"):
        RefineRun(pairs, tmp_path / "r", config(rounds=0)).run()
    with pytest.raises(ConfigError, match=r"different settings \(strategy: 'mars-abs' → 'uniform'\)"):
        RefineRun(pairs, tmp_path / "r", config(rounds=1, strategy="uniform")).run(resume=True)
    with pytest.raises(ConfigError, match="different input"):
        RefineRun(pairs[:-1], tmp_path / "r", config(rounds=1)).run(resume=True)


def test_won_strategy_in_refine(tmp_path):
    pairs = read_pairs(TINY)
    summary = RefineRun(pairs, tmp_path / "w", config(rounds=1, strategy="won", budget=20)).run()
    assert summary["rounds"][1]["n_synthetic"] == 20
    sel = read_jsonl(tmp_path / "w" / "round-1" / "selected.jsonl")
    assert {r["selection"]["pick"] for r in sel} == {"top-margin"}
