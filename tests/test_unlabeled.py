"""Unlabeled pairs in, labeled pairs back: the pairwise and arena layouts, ties, and score on unlabeled rows."""

from __future__ import annotations

import json
import math

import pytest
from conftest import FIXTURES, read_jsonl, run_cli
from labeling_helpers import ARENA, LABELED, POOL, train_model

from marsctl.records import read_pairs


@pytest.fixture(scope="module")
def model(tmp_path_factory, cache_dir):
    return train_model(tmp_path_factory.mktemp("m"), cache_dir)


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory, cache_dir):
    return train_model(tmp_path_factory.mktemp("e"), cache_dir, "ensemble=3")


def test_preferred_reads_as_chosen_and_rejected_with_the_real_labels():
    original = read_pairs(FIXTURES / "tiny_test.jsonl")
    labeled = read_pairs(LABELED)
    assert len(labeled) == len(original) == 30
    assert {r["preferred"] for r in read_jsonl(LABELED)} == {"a", "b"}  # both orders occur
    for got, want in zip(labeled, original, strict=True):
        assert (got["prompt"], got["chosen"], got["rejected"]) == (want["prompt"], want["chosen"], want["rejected"])
        assert "preferred" not in got and "response_a" not in got


def test_arena_winner_with_conversations_reads_as_chosen_and_rejected():
    original = read_pairs(FIXTURES / "llmbar_sample.jsonl")[:6]
    arena = read_pairs(ARENA)
    for got, want in zip(arena, original, strict=True):
        assert got["prompt"] == "User: " + want["prompt"]
        assert (got["chosen"], got["rejected"]) == (want["chosen"], want["rejected"])
        assert got["model_a"] == "x"  # the row's other fields are kept


def test_arena_winner_with_response_strings(tmp_path):
    rows = read_jsonl(POOL)[:2]
    f = tmp_path / "judged.jsonl"
    f.write_text("".join(json.dumps({**r, "winner": w}) + "\n" for r, w in zip(rows, ["model_b", "model_a"],
                                                                              strict=True)), encoding="utf-8")
    got = read_pairs(f)
    assert got[0]["chosen"] == rows[0]["response_b"] and got[1]["chosen"] == rows[1]["response_a"]


def test_ties_are_counted_and_skipped_with_one_message(tmp_path):
    rows = read_jsonl(LABELED)[:6]
    rows[1]["preferred"] = "tie"
    rows[4]["preferred"] = "TIE"
    f = tmp_path / "with_ties.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    proc = run_cli("convert", str(f), "--to", "trl", "-o", "-", check=True)
    assert len(proc.stdout.splitlines()) == 4
    said = [line for line in proc.stderr.splitlines() if " tie" in line]
    assert len(said) == 1 and "skipped 2 ties (the first: row 2)" in said[0]


@pytest.mark.parametrize(("field", "value", "expect"), [
    ("preferred", "c", "line 3: field 'preferred' must be one of a, b, tie; got 'c'"),
    ("preferred", "", "line 3: field 'preferred' is empty: this pair is not labeled yet"),
    ("winner", "model_c", "line 3: field 'winner' must be one of model_a, model_b, tie, tie (bothbad); got 'model_c'"),
])
def test_an_unknown_label_is_refused_naming_file_line_and_field(tmp_path, field, value, expect):
    rows = read_jsonl(LABELED)[:4]
    if field == "winner":
        rows = [{k: v for k, v in r.items() if k != "preferred"} | {"winner": "model_a"} for r in rows]
    rows[2][field] = value
    f = tmp_path / "bad.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    proc = run_cli("convert", str(f), "--to", "trl", "-o", str(out))
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: {f} {expect}"]
    assert not out.exists()


def test_train_refuses_unlabeled_pairs(tmp_path):
    proc = run_cli("train", str(POOL), "-o", str(tmp_path / "m"))
    assert proc.returncode == 2
    assert f"Error: {POOL} line 1: missing field 'preferred'" in proc.stderr
    assert not (tmp_path / "m").exists()


def test_score_on_unlabeled_rows_writes_rewards_of_a_and_b(model, tmp_path):
    out = tmp_path / "scored.jsonl"
    run_cli("score", str(POOL), "-m", str(model), "-o", str(out), check=True)
    scored = read_jsonl(out)
    pool = read_jsonl(POOL)
    assert [r["id"] for r in scored] == [r["id"] for r in pool]
    for r, src in zip(scored, pool, strict=True):
        assert (r["response_a"], r["response_b"]) == (src["response_a"], src["response_b"])
        assert abs(r["pred_margin"] - (r["reward_a"] - r["reward_b"])) <= 2e-6
        assert abs(r["p_a"] - 1 / (1 + math.exp(-r["pred_margin"]))) <= 2e-6
        assert "pred_margin_std" not in r and "score_chosen" not in r
    # the same pairs scored as labeled pairs: margin a − b is chosen − rejected, or its negative
    labeled = tmp_path / "labeled_scored.jsonl"
    run_cli("score", str(LABELED), "-m", str(model), "-o", str(labeled), check=True)
    for r, lab, src in zip(scored, read_jsonl(labeled), read_jsonl(LABELED), strict=True):
        sign = 1 if src["preferred"] == "a" else -1
        assert r["pred_margin"] == pytest.approx(sign * lab["pred_margin"], abs=2e-6)


def test_score_with_an_ensemble_writes_the_spread(ensemble, tmp_path):
    out = tmp_path / "scored.jsonl"
    run_cli("score", str(POOL), "-m", str(ensemble), "-o", str(out), check=True)
    spreads = [r["pred_margin_std"] for r in read_jsonl(out)]
    assert len(spreads) == 30 and all(s >= 0 for s in spreads) and max(spreads) > 0


def test_score_refuses_a_labeled_row_in_an_unlabeled_file(model, tmp_path):
    rows = read_jsonl(POOL)[:5]
    rows[3]["preferred"] = "a"
    f = tmp_path / "mixed.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    proc = run_cli("score", str(f), "-m", str(model), "-o", str(out))
    assert proc.returncode == 2
    assert [x for x in proc.stderr.splitlines() if x.startswith("Error:")] == [
        f"Error: {f} line 4: field 'preferred' holds a label: this input must hold unlabeled pairs only "
        "(prompt, response_a, response_b, and 'preferred' empty or absent)"]
    assert not out.exists()


def test_score_reads_an_unlabeled_pool_from_stdin(model):
    proc = run_cli("score", "-", "-m", str(model), input=POOL.read_text(encoding="utf-8"), check=True)
    assert len(proc.stdout.splitlines()) == 30 and "reward_a" in proc.stdout.splitlines()[0]
