"""The library verbs from Python: train (also on from a head object), score, select, augment."""

from __future__ import annotations

import pytest
from conftest import FIXTURES

from marsctl import augmentation, steps
from marsctl.errors import ConfigError
from marsctl.records import read_pairs

TINY = FIXTURES / "tiny.jsonl"


@pytest.fixture(scope="module")
def tiny():
    return read_pairs(TINY)


@pytest.fixture
def eda(monkeypatch):
    monkeypatch.setenv("MARSCTL_WORDNET_DIR", "/nonexistent/wordnet")  # eda's built-in synonyms: fast, fixed

    def make(seed: int = 0):
        return augmentation.make_augmenter("eda", seed=seed)

    return make


def margins(rows):
    return [r["pred_margin"] for r in rows]


def test_train_on_from_a_head_object_matches_training_on_from_its_directory(tiny, tmp_path):
    first = steps.train(tiny, head="mlp", seed=1, epochs=2)
    first.save(tmp_path / "m")
    from_dir = steps.train(tiny, init=tmp_path / "m", seed=2, epochs=2)
    from_head = steps.train(tiny, init=first, init_name=str(tmp_path / "m"), seed=2, epochs=2)
    assert from_head is first  # trained in place: no copy, no load
    assert margins(from_head.score(tiny)) == margins(from_dir.score(tiny))  # the same weights, dropout included
    for key in ("init", "init_training", "seed", "n_pairs", "data_sha256"):
        assert from_head.manifest_[key] == from_dir.manifest_[key], key
    assert from_head.manifest_["init"] == str(tmp_path / "m")
    assert from_head.history_ == from_dir.history_ and len(from_head.history_) == 4


def test_train_on_from_a_head_object_refuses_another_kind_and_params(tiny):
    head = steps.train(tiny[:10], head="linear", seed=0, epochs=1)
    with pytest.raises(ConfigError, match="the head to continue is a 'linear' head, not 'mlp'") as e:
        steps.train(tiny[:10], head="mlp", init=head)
    assert e.value.hint == "pass head='linear', or train a new head without init"
    with pytest.raises(ConfigError, match="params cannot change the config of a head object"):
        steps.train(tiny[:10], init=head, params=["lr=0.1"])


def test_score_adds_the_score_fields_and_accepts_a_model_dir(tiny, tmp_path):
    head = steps.train(tiny, head="linear", seed=0, epochs=1)
    head.save(tmp_path / "lin")
    scored = steps.score(tiny, head)
    assert steps.score(tiny, tmp_path / "lin") == scored
    for rec, orig in zip(scored, tiny, strict=True):
        assert rec["pred_margin"] == pytest.approx(rec["score_chosen"] - rec["score_rejected"], abs=2e-6)
        assert 0 < rec["p_chosen"] < 1 and rec["id"] == orig["id"] and "pred_margin" not in orig


def test_select_spends_the_budget_exactly_and_reports_it(tiny):
    scored = steps.train(tiny, head="linear", seed=0, epochs=1).score(tiny)
    rows, summary = augmentation.select(scored, strategy="mars-abs", budget=30, cap=3, seed=4)
    assert sum(r["budget"] for r in rows) == 30 and max(r["budget"] for r in rows) <= 3
    assert [r["id"] for r in rows] == [r["id"] for r in tiny]
    assert {r["selection"]["strategy"] for r in rows} == {"mars-abs"}
    assert {r["selection"]["pick"] for r in rows} == {"random"}
    assert sum(r["selection"]["weight"] for r in rows) == pytest.approx(1.0, abs=1e-6)
    assert summary["pairs"] == 40 and summary["budget"] == 30 and summary["max_budget"] <= 3
    assert summary["strategy"] == "mars-abs" and summary["params"] == {"alpha": 0.5, "alpha_scale": "none"}
    assert summary["alpha_eff"] == 0.5 and summary["cap"] == 3 and summary["mix_uniform"] == 0.0
    assert summary["identical_pairs"] == 0 and 0 <= summary["p_chosen_longer_selected"] <= 1
    assert augmentation.select(scored, strategy="mars-abs", budget=30, cap=3, seed=4) == (rows, summary)  # seeded
    _, uniform = augmentation.select(scored, strategy="uniform", budget=40)
    assert "alpha_eff" not in uniform and uniform["ess"] == 40.0 and uniform["pairs_selected"] == 40


def test_augment_writes_provenance_on_every_row(tiny, eda):
    scored = steps.train(tiny, head="linear", seed=0, epochs=1).score(tiny)
    selected, _ = augmentation.select(scored, strategy="uniform", budget=12)
    rows, stats = augmentation.augment(selected, eda(), round=2)
    by_id = {r["id"]: r for r in selected}
    assert len(rows) == 12 and stats["backend"] == "eda" and stats["rows"] == 12
    for row in rows:
        parent = by_id[row["parent_id"]]
        assert row["source"] == "synthetic" and row["round"] == 2 and row["augmenter"]["name"] == "eda"
        assert row["id"].startswith(f"{parent['id']}~r2~") and row["subset"] == parent["subset"]
        assert set(row["variant"]) == {"prompt", "chosen", "rejected"} and row["chosen"] != row["rejected"]
    assert sorted(r["parent_id"] for r in rows) == sorted(r["id"] for r in selected if r["budget"])


def test_won_keeps_each_pools_top_rows_by_the_head_object_passed(tiny, eda):
    head = steps.train(tiny, head="linear", seed=0, epochs=2)  # never saved: augment must use the object
    selected, summary = augmentation.select(head.score(tiny), strategy="won", budget=8)
    assert summary["pairs_selected"] == 8 and {r["selection"]["pick"] for r in selected} == {"top-margin"}
    rows, _ = augmentation.augment(selected, eda(), model=head)
    pools = eda().augment(selected, [-1 if r["budget"] else 0 for r in selected], round=1)
    assert len(rows) == 8 and sum(len(p) > 1 for p in pools) >= 4
    for row in rows:
        pool = next(p for p in pools if p and p[0]["parent_id"] == row["parent_id"])
        assert row in pool
        pool_margins = {r["id"]: r["pred_margin"] for r in head.score(pool)}
        assert pool_margins[row["id"]] == max(pool_margins.values())
    drawn = [{**r, "selection": {**r["selection"], "pick": "random"}} for r in selected]
    assert augmentation.augment(drawn, eda())[0] != rows  # a random draw keeps other rows
    with pytest.raises(ConfigError, match="augment needs the model"):
        augmentation.augment(selected, eda())
