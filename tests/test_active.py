"""The labeling simulation on a small real set (fixtures/tiny.jsonl, 40 HH pairs): labels hidden, then revealed
as queried; random is seeded; the CLI writes the report, table and plot, and refuses a budget the set lacks."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from labeling_helpers import TINY

from marsctl.active import ActiveConfig, hide, run_curve, simulate
from marsctl.records import read_pairs
from marsctl.split import grouped_split

CONFIG = ActiveConfig(seed_labels=8, per_round=4, rounds=2, strategies=["random", "margin"], seeds=2)


@pytest.fixture(scope="module")
def pairs():
    return read_pairs(TINY)


def test_strategies_see_no_labels_and_revealed_labels_equal_the_hidden_ones(pairs):
    sim = simulate(pairs, CONFIG, name="tiny")
    train_side, test = grouped_split(pairs, CONFIG.test_frac, seed=CONFIG.split_seed)
    truth = {p["id"]: p for p in train_side}
    pool, hidden = hide(train_side, CONFIG.split_seed)
    assert all(set(row) == {"id", "prompt", "response_a", "response_b"} for row in pool)
    assert {row["response_" + hidden[row["id"]]] for row in pool} == {p["chosen"] for p in train_side}
    assert 0 < sum(v == "b" for v in hidden.values()) < len(hidden)  # the chosen response is not always a
    assert sim["split"]["test"] == len(test)
    for curve in sim["curves"]:
        assert curve["labels"] == CONFIG.budgets()
        ids = [i for batch in curve["picked"] for i in batch]
        assert len(ids) == len(set(ids)) == CONFIG.rounds * CONFIG.per_round
        assert set(ids) <= set(truth)  # never a test pair


def test_reveal_gives_the_hidden_label(pairs):
    from marsctl.active import reveal

    pool, hidden = hide(pairs, 7)
    for row, original in zip(pool, pairs, strict=True):
        got = reveal(row, hidden)
        assert (got["chosen"], got["rejected"]) == (original["chosen"], original["rejected"])


def test_random_is_seeded(pairs):
    train_side, test = grouped_split(pairs, 0.3, seed=0)
    pool, hidden = hide(train_side, 0)
    one = run_curve(pool, hidden, test, "random", 1, CONFIG)
    again = run_curve(pool, hidden, test, "random", 1, CONFIG)
    other = run_curve(pool, hidden, test, "random", 2, CONFIG)
    assert one["picked"] == again["picked"] and one["accuracy"] == again["accuracy"]
    assert one["picked"] != other["picked"]


def test_the_cli_writes_curves_table_and_plot(tmp_path):
    out = tmp_path / "sim"
    proc = run_cli("active", "simulate", str(TINY), "--seed-labels", "8", "--per-round", "4", "--rounds", "2",
                   "--seeds", "2", "--strategies", "random,margin,diverse", "--out", str(out), check=True)
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    summary = report["summary"]
    assert summary["labels"] == [8, 12, 16]
    assert set(summary["strategies"]) == {"random", "margin", "diverse"}
    assert len(report["curves"]) == 6
    for row in summary["strategies"].values():
        assert len(row["accuracy"]) == 3 and row["seeds"] == 2
    assert "auc_vs_random" in summary["strategies"]["margin"]
    table = (out / "table.md").read_text(encoding="utf-8")
    assert "| margin |" in table and "Verdict:" in table
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "verdict:" in proc.stderr


def test_a_budget_larger_than_the_pool_is_refused(tmp_path):
    out = tmp_path / "sim"
    proc = run_cli("active", "simulate", str(TINY), "--seed-labels", "10", "--per-round", "10", "--rounds", "3",
                   "--out", str(out))
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "more than the 28 pairs outside the test split" in errors[0]
    assert not out.exists()
