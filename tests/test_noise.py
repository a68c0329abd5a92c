"""Noise-aware refinement (--noise), the uncertainty selector, and whether a selection equals uniform's."""

from __future__ import annotations

import json
import math

import pytest
from conftest import FIXTURES, read_jsonl, run_cli

from marsctl import augmentation
from marsctl.errors import ConfigError, DataError
from marsctl.loop import RefineConfig, RefineRun
from marsctl.records import read_pairs
from marsctl.selection import prompt_folds

TINY = FIXTURES / "tiny.jsonl"
TEST = FIXTURES / "tiny_test.jsonl"


def config(**kw) -> RefineConfig:
    base = {"rounds": 1, "budget": 30, "epochs": 4, "seed": 3, "noise_threshold": 0.5}
    return RefineConfig(**{**base, **kw})


def _noise_round(run_dir, k=1):
    d = run_dir / f"round-{k}"
    return (read_jsonl(d / "train.jsonl"), read_jsonl(d / "suspect.jsonl"), read_jsonl(d / "selected.jsonl"),
            json.loads((d / "metrics.json").read_text())["noise"])


def test_soft_weights_reach_training_rows_and_flagged_pairs_get_no_budget(tmp_path):
    pairs = read_pairs(TINY)
    RefineRun(pairs, tmp_path / "soft", config(noise="soft")).run()
    train, suspects, selected, noise = _noise_round(tmp_path / "soft")
    assert noise["flagged"] == len(suspects) > 0
    sd = noise["crossfit_margin_std"]
    # Selection ran on the cross-fitted margins: each base row's weight is σ(2·Δ_cf/std(Δ_cf)).
    cf = {r["id"]: r["pred_margin"] for r in selected}
    weight = {r["id"]: r["weight"] for r in train if r.get("source") != "synthetic"}
    assert set(weight) == set(cf)  # soft keeps every base pair
    for i, w in weight.items():
        assert w == pytest.approx(1 / (1 + math.exp(-2 * cf[i] / sd)), rel=1e-4)
    for r in train:  # synthetic rows carry their parent's weight
        if r.get("source") == "synthetic":
            assert r["weight"] == weight[r["parent_id"]]
    flagged = {r["id"] for r in suspects}
    for s in suspects:
        assert s["crossfit_margin"] == cf[s["id"]] < -0.5 * sd and "label" in s["reason"]
        assert s["chosen"] and s["input_line"] >= 1
    assert all(r["budget"] == 0 for r in selected if r["id"] in flagged)
    assert sum(r["budget"] for r in selected) == 30
    assert not flagged & {r["parent_id"] for r in train if r.get("source") == "synthetic"}
    manifest = json.loads((tmp_path / "soft" / "manifest.json").read_text())
    assert manifest["suspects"] == {"round-1": len(suspects)}


def test_drop_leaves_flagged_pairs_out_of_training_cli(tmp_path):
    out = tmp_path / "drop"
    run_cli("refine", str(TINY), "-r", "1", "-b", "30", "--epochs", "4", "--seed", "3", "--noise", "drop",
            "--noise-threshold", "0.5", "--noise-folds", "4", "--out", str(out), check=True)
    train, suspects, selected, noise = _noise_round(out)
    flagged = {r["id"] for r in suspects}
    base_ids = {r["id"] for r in selected}
    trained = {r["id"] for r in train if r.get("source") != "synthetic"}
    assert flagged and trained == base_ids - flagged
    assert noise["dropped"] == len(flagged) and noise["folds"] == 4
    assert all("weight" not in r for r in train)
    assert json.loads((out / "round-1" / "metrics.json").read_text())["train_size"] == len(train)


def test_resume_with_noise_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    pairs, held = read_pairs(TINY), read_pairs(TEST)
    cfg = config(rounds=2, noise="soft", strategy="uniform")
    full = RefineRun(pairs, tmp_path / "full", cfg, heldout=held).run()
    real_augment = augmentation.augment
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_augment(*args, **kwargs)

    monkeypatch.setattr(augmentation, "augment", flaky)
    with pytest.raises(KeyboardInterrupt):
        RefineRun(pairs, tmp_path / "cut", cfg, heldout=held).run()
    monkeypatch.setattr(augmentation, "augment", real_augment)
    resumed = RefineRun(pairs, tmp_path / "cut", cfg, heldout=held).run(resume=True)
    for f in ("train.jsonl", "suspect.jsonl", "scored.jsonl"):
        assert (tmp_path / "cut" / "round-2" / f).read_bytes() == (tmp_path / "full" / "round-2" / f).read_bytes()
    assert [r["eval_accuracy"] for r in resumed["rounds"]] == [r["eval_accuracy"] for r in full["rounds"]]
    assert json.loads((tmp_path / "cut" / "manifest.json").read_text())["suspects"] == \
        json.loads((tmp_path / "full" / "manifest.json").read_text())["suspects"]


def test_noise_options_are_checked():
    with pytest.raises(ConfigError, match="noise"):
        RefineConfig(noise="flip")
    with pytest.raises(ConfigError, match="crossfit and noise"):
        RefineConfig(noise="soft", crossfit=5)


def test_prompt_folds_keep_a_prompt_in_one_fold():
    rows = read_pairs(TINY)[:12]
    rows = [{**r, "prompt": rows[i // 3]["prompt"]} for i, r in enumerate(rows)]  # 4 prompts, 3 pairs each
    folds = prompt_folds(rows, 3)
    by_prompt: dict[str, set[int]] = {}
    for r, f in zip(rows, folds, strict=True):
        by_prompt.setdefault(r["prompt"], set()).add(f)
    assert all(len(s) == 1 for s in by_prompt.values()) and set(folds) == {0, 1, 2}


# ------------------------------------------------------------------------------------------- uncertainty
def _scored(spreads):
    rows = read_pairs(TINY)[: len(spreads)]
    return [{**r, "pred_margin": 0.1 * (i % 3 - 1), **({} if s is None else {"pred_margin_std": s})}
            for i, (r, s) in enumerate(zip(rows, spreads, strict=True))]


def test_uncertainty_selector_needs_the_ensemble_spread(tmp_path):
    with pytest.raises(DataError, match=r"mine line 3: the uncertainty selector needs a number in field "
                                        r"'pred_margin_std' \(no such field\)") as e:
        augmentation.select(_scored([0.1, 0.2, None]), strategy="uncertainty", budget=6, name="mine")
    assert "ensemble=5" in (e.value.hint or "")
    src = tmp_path / "scored.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _scored([0.1, None])))
    out = tmp_path / "sel.jsonl"
    proc = run_cli("select", str(src), "-s", "uncertainty", "--budget", "4", "-o", str(out))
    assert proc.returncode == 2 and not out.exists()
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and f"{src} line 2" in errors[0] and "Traceback" not in proc.stderr
    assert "Hint:" in proc.stderr and "ensemble=5" in proc.stderr


def test_uncertainty_selector_prefers_high_spread_pairs():
    spreads = [0.01, 0.02, 0.5, 0.01, 0.6, 0.02, 0.01, 0.03]
    selected, summary = augmentation.select(_scored(spreads), strategy="uncertainty", budget=24, cap=25)
    budgets = [r["budget"] for r in selected]
    assert budgets[2] > max(budgets[i] for i in (0, 1, 3, 5, 6, 7)) and budgets[4] >= budgets[2]
    assert summary["equals_uniform"] is False and summary["alpha_eff"] > 0
    flat, summary = augmentation.select(_scored([0.2] * 8), strategy="uncertainty", budget=24)
    assert [r["budget"] for r in flat] == [3] * 8 and summary["equals_uniform"] is True


def test_selection_summary_says_when_it_equals_uniform():
    rows = [{**r, "pred_margin": m} for r, m in zip(read_pairs(TINY)[:6], [0.01, -0.02, 0.03, 0.0, 0.02, -0.01],
                                                    strict=True)]
    _, flat = augmentation.select(rows, strategy="mars-abs", budget=6)  # budget n, flat margins: one row each
    assert flat["equals_uniform"] is True
    _, tilted = augmentation.select(rows, strategy="mars-abs", budget=30, params=["alpha=3", "alpha_scale=std"])
    assert tilted["equals_uniform"] is False
