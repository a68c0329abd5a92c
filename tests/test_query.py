"""marsctl query: the K unlabeled pairs to label next, by strategy; and labeled files coming back."""

from __future__ import annotations

import csv
import json
import random

import pytest
from conftest import read_jsonl, run_cli
from labeling_helpers import LABELED, POOL, train_model

from marsctl.query import QueryContext, select
from marsctl.records import read_pairs


@pytest.fixture(scope="module")
def model(tmp_path_factory, cache_dir):
    return train_model(tmp_path_factory.mktemp("m"), cache_dir)


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory, cache_dir):
    return train_model(tmp_path_factory.mktemp("e"), cache_dir, "ensemble=3")


@pytest.fixture(scope="module")
def scored(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("s") / "scored.jsonl"
    run_cli("score", str(POOL), "-m", str(model), "-o", str(out), check=True)
    return {r["id"]: r for r in read_jsonl(out)}


def query(model, *args, pool=POOL):
    proc = run_cli("query", str(pool), "-m", str(model), *args, check=True)
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_margin_picks_the_smallest_margins_each_with_an_empty_preferred(model, scored):
    got = query(model, "-k", "7", "--strategy", "margin")
    want = sorted(scored.values(), key=lambda r: abs(r["pred_margin"]))[:7]
    assert [r["id"] for r in got] == [r["id"] for r in want]
    assert [r["query_rank"] for r in got] == list(range(1, 8))
    assert all(r["preferred"] == "" and r["query_strategy"] == "margin" for r in got)
    for r in got:  # the scores 'score' writes (to the 1e-4 scores agree to across batches: docs/guarantees.md)
        assert r["pred_margin"] == pytest.approx(scored[r["id"]]["pred_margin"], abs=1e-4)


def test_random_is_seeded_and_does_not_depend_on_the_pool_order(model, tmp_path):
    first = [r["id"] for r in query(model, "-k", "10", "--seed", "3")]
    assert first == [r["id"] for r in query(model, "-k", "10", "--seed", "3")]
    assert first != [r["id"] for r in query(model, "-k", "10", "--seed", "4")]
    rows = read_jsonl(POOL)
    random.Random(1).shuffle(rows)
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert first == [r["id"] for r in query(model, "-k", "10", "--seed", "3", pool=shuffled)]


def test_diverse_spreads_near_duplicates_that_margin_piles_up(model, tmp_path):
    rows = read_jsonl(POOL)
    copies = [{**r, "id": f"{r['id']}-{k}"} for r in rows for k in range(3)]  # each pair three times
    pool = tmp_path / "dupes.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in copies), encoding="utf-8")
    margin = query(model, "-k", "6", "--strategy", "margin", pool=pool)
    diverse = query(model, "-k", "6", "--strategy", "diverse", pool=pool)
    assert len({r["prompt"] for r in margin}) == 2  # the three copies of the two nearest ties
    assert len({r["prompt"] for r in diverse}) == 6
    assert diverse[0]["id"] == margin[0]["id"]  # still the nearest tie first


def test_uncertainty_ranks_by_the_ensemble_spread(ensemble, tmp_path):
    out = tmp_path / "scored.jsonl"
    run_cli("score", str(POOL), "-m", str(ensemble), "-o", str(out), check=True)
    want = [r["id"] for r in sorted(read_jsonl(out), key=lambda r: -r["pred_margin_std"])[:5]]
    got = query(ensemble, "-k", "5", "--strategy", "uncertainty")
    assert [r["id"] for r in got] == want


def test_fisher_picks_k_distinct_near_ties(model, scored):
    got = query(model, "-k", "5", "--strategy", "fisher")
    assert len({r["id"] for r in got}) == 5
    nearest = sorted(scored.values(), key=lambda r: abs(r["pred_margin"]))[:5 * 8]
    assert {r["id"] for r in got} <= {r["id"] for r in nearest}


@pytest.mark.parametrize(("args", "pool", "expect"), [
    (("-k", "3"), LABELED, "line 1: field 'preferred' holds a label"),
    (("-k", "31"), POOL, "-k 31 is larger than the pool (30 pairs)"),
    (("-k", "3", "--strategy", "uncertainty"), POOL, "--strategy uncertainty ranks pairs by the spread"),
    (("-k", "3", "--strategy", "nope"), POOL, "Unknown query 'nope'"),
])
def test_bad_queries_exit_2_with_one_error_and_no_output(model, tmp_path, args, pool, expect):
    out = tmp_path / "to_label.jsonl"
    proc = run_cli("query", str(pool), "-m", str(model), *args, "-o", str(out))
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and expect in errors[0]
    assert not out.exists()


def test_fisher_refuses_an_ensemble(ensemble):
    proc = run_cli("query", str(POOL), "-m", str(ensemble), "-k", "3", "--strategy", "fisher")
    assert proc.returncode == 2 and "this model is an ensemble" in proc.stderr


def test_a_labeled_spreadsheet_comes_back_as_pairs(model, tmp_path):
    sheet = tmp_path / "to_label.csv"
    run_cli("query", str(POOL), "-m", str(model), "-k", "8", "-o", str(sheet), check=True)
    with sheet.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and all(r["preferred"] == "" for r in rows)
    truth = {r["id"]: r["preferred"] for r in read_jsonl(LABELED)}
    for r in rows:  # the labeler fills the column in
        r["preferred"] = truth[r["id"]]
    filled = tmp_path / "labeled.csv"
    with filled.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    back = {p["id"]: p for p in read_pairs(filled)}
    original = {p["id"]: p for p in read_pairs(LABELED)}
    assert set(back) == {r["id"] for r in rows}
    for rid, p in back.items():
        assert (p["chosen"], p["rejected"]) == (original[rid]["chosen"], original[rid]["rejected"])


def test_select_keeps_a_bounded_heap_and_finds_the_k_smallest_keys():
    from marsctl import registry

    rng = random.Random(0)
    rows = [{"id": str(i), "pred_margin": rng.uniform(-3, 3)} for i in range(20000)]
    margin = registry.create("query", "margin")
    picked, n = select(iter(rows), margin, 25, QueryContext(), chunk=1000)
    assert n == 20000
    assert picked == sorted(rows, key=lambda r: abs(r["pred_margin"]))[:25]


def test_the_cli_default_strategy_is_the_measured_one():
    from marsctl.cli.query import DEFAULT_STRATEGY as CLI_DEFAULT
    from marsctl.query import DEFAULT_STRATEGY

    assert CLI_DEFAULT == DEFAULT_STRATEGY
