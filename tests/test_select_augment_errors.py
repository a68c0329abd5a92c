"""select and augment inputs and budget limits: bad fields, impossible budgets, identical pairs, finite diagnostics."""

from __future__ import annotations

import json
import math
import random
from fractions import Fraction
from pathlib import Path

import pytest
from conftest import read_jsonl, run_cli

from marsctl import augmentation, checks
from marsctl.alloc import capped_allocation, effective_sample_size, largest_remainder, selection_summary, softmax
from marsctl.errors import ConfigError, DataError, PluginError
from marsctl.plugin import Selector
from marsctl.records import count_identical

NO_WORDNET = "/nonexistent/wordnet"  # forces eda's built-in fallback (and its notice on stderr)


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _scored_file(tmp_path: Path, margin_json: str) -> Path:
    return _write(tmp_path / "scored.jsonl", [
        '{"prompt": "p", "chosen": "a", "rejected": "b", "pred_margin": 0.5}',
        f'{{"prompt": "p", "chosen": "c", "rejected": "d", "pred_margin": {margin_json}}}',
    ])


def _selected_file(tmp_path: Path, extra: str) -> Path:
    return _write(tmp_path / "selected.jsonl", [
        '{"prompt": "Tell me", "chosen": "a big happy dog", "rejected": "a small sad cat", "budget": 1}',
        '{"prompt": "Tell me more", "chosen": "a quick answer", "rejected": "a slow reply", ' + extra + "}",
    ])


def _assert_one_error(proc, *parts: str, out: Path | None = None) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("Error: "), proc.stderr  # nothing (no plugin notice) before the error
    assert proc.stderr.count("Error: ") == 1 and "Traceback" not in proc.stderr
    for part in parts:
        assert part in proc.stderr, proc.stderr
    assert proc.stdout == ""
    if out is not None:
        assert not out.exists()


# ------------------------------------------------------------------------------------------- select inputs
@pytest.mark.parametrize("margin", ['"1.5"', "null", "[1]", '{"v": 1}', "1e308", "-1e7", "true", "false"])
def test_select_refuses_bad_pred_margin(tmp_path, margin):
    src = _scored_file(tmp_path, margin)
    out = tmp_path / "sel.jsonl"
    proc = run_cli("select", str(src), "--budget", "3", "-o", str(out), env={"MARSCTL_WORDNET_DIR": NO_WORDNET})
    _assert_one_error(proc, f"{src} line 2: field 'pred_margin'", out=out)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_select_refuses_non_finite_json_literals(tmp_path, literal):
    src = _scored_file(tmp_path, literal)
    proc = run_cli("select", str(src), "--budget", "3")
    _assert_one_error(proc, f"{src} line 2")


@pytest.mark.parametrize("margin", [math.nan, math.inf, -math.inf, 1e308, True, "1", None, [1.0]])
def test_select_validates_margins_from_python(margin):
    scored = [{"prompt": "p", "chosen": "a", "rejected": "b", "pred_margin": 0.1},
              {"prompt": "p", "chosen": "c", "rejected": "d", "pred_margin": margin}]
    with pytest.raises(DataError, match=r"^mine line 2: field 'pred_margin' must be a (finite )?number"):
        augmentation.select(scored, budget=3, name="mine")


def test_select_needs_only_pred_margin(tmp_path):
    src = _write(tmp_path / "scored.jsonl", [
        f'{{"prompt": "p", "chosen": "c{i}", "rejected": "r{i}", "pred_margin": {m}}}'
        for i, m in enumerate([-2.0, 0.0, 1, 1e6])
    ])
    proc = run_cli("select", str(src), "--budget", "7", "-s", "mars")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sum(r["budget"] for r in rows) == 7 and len(rows) == 4
    assert all("score_chosen" not in r for r in rows)


def test_select_unknown_strategy_after_bad_data_is_a_data_error(tmp_path):
    # Input is checked before the selector plugin is looked up.
    src = _scored_file(tmp_path, '"x"')
    proc = run_cli("select", str(src), "--budget", "3", "-s", "nope")
    _assert_one_error(proc, "field 'pred_margin'")


# --------------------------------------------------------------------------------------------- budgets
def test_select_budget_above_cap_times_pairs(tmp_path):
    src = _scored_file(tmp_path, "0.1")
    out = tmp_path / "sel.jsonl"
    proc = run_cli("select", str(src), "--budget", "5", "--cap", "2", "-o", str(out))
    _assert_one_error(proc, "a cap of 2 rows per pair over 2 pairs cannot hold a budget of 5", "Hint: raise --cap",
                      out=out)


def test_select_budget_beyond_the_limit(tmp_path):
    src = _scored_file(tmp_path, "0.1")
    proc = run_cli("select", str(src), "--budget", str(10**20))
    _assert_one_error(proc, "The 'budget' parameter of select must be an int in the range [1, 1000000]. "
                            f"Got {10**20} instead.", "Hint: ")


def test_select_refuses_a_pair_budget_augment_cannot_make(tmp_path):
    src = _scored_file(tmp_path, "-5")
    proc = run_cli("select", str(src), "--budget", "300000", "-s", "mars", "-p", "alpha=50")
    _assert_one_error(proc, "a budget of 300000", "at most 100,000 rows per pair", "--cap")
    capped = run_cli("select", str(src), "--budget", "200000", "-s", "mars", "-p", "alpha=50", "--cap", "100000")
    assert capped.returncode == 0, capped.stderr
    assert [json.loads(line)["budget"] for line in capped.stdout.splitlines()] == [100000, 100000]


def test_check_budget_for_refine():
    assert checks.check_budget(10, 5, 2, "refine") == 10
    with pytest.raises(ConfigError, match="refine: a cap of 2 rows per pair over 4 pairs cannot hold a budget of 9"):
        checks.check_budget(9, 4, 2, "refine")
    with pytest.raises(ConfigError, match=r"'budget' parameter of refine must be an int in the range \[1, inf\)"):
        checks.check_budget(0, 4, None, "refine")
    with pytest.raises(ConfigError, match=r"'cap' parameter of refine"):
        checks.check_budget(3, 4, 0, "refine")


@pytest.mark.parametrize("budget", [10**20, 10**30 + 7, 2**70 + 1, 3, 10**6 + 1])
def test_allocation_sums_exactly_for_any_int_budget(budget):
    rng = random.Random(budget % 1000)
    q = softmax([rng.gauss(0, 3) for _ in range(40)])
    b = largest_remainder(q, budget, seed=1)
    assert sum(b) == budget
    total = sum(Fraction(x) for x in q)
    for bi, qi in zip(b, q, strict=True):
        floor = math.floor(budget * Fraction(qi) / total)
        assert floor <= bi <= floor + 1
    capped = capped_allocation(q, budget, cap=-(-budget // 20))
    assert sum(capped) == budget and max(capped) <= -(-budget // 20)


@pytest.mark.parametrize("q", [[math.nan, 1.0], [math.inf, 1.0], [-0.1, 1.0], [0.0, 0.0]])
def test_allocation_refuses_bad_weights(q):
    with pytest.raises(ValueError, match="allocation weights must be finite, non-negative"):
        largest_remainder(q, 5)


# --------------------------------------------------------------------------------------------- augment inputs
@pytest.mark.parametrize("selection", ['"mars"', "[1, 2]", "5", "null", '{"pick": 5}', '{"pick": "sideways"}'])
def test_augment_refuses_bad_selection(tmp_path, selection):
    src = _selected_file(tmp_path, f'"budget": 2, "selection": {selection}')
    out = tmp_path / "aug.jsonl"
    proc = run_cli("augment", str(src), "-o", str(out), env={"MARSCTL_WORDNET_DIR": NO_WORDNET})
    _assert_one_error(proc, f"{src} line 2: field 'selection'", out=out)


@pytest.mark.parametrize("budget", ["true", "1.5", '"3"', "null", "-1", "2.0"])
def test_augment_refuses_bad_budget_before_the_plugin_speaks(tmp_path, budget):
    src = _selected_file(tmp_path, f'"budget": {budget}')
    proc = run_cli("augment", str(src), env={"MARSCTL_WORDNET_DIR": NO_WORDNET})
    _assert_one_error(proc, f"{src} line 2: field 'budget' must be a non-negative integer")
    assert "WordNet" not in proc.stderr


def test_augment_bad_budget_with_wordnet_dir_param(tmp_path):
    src = _selected_file(tmp_path, '"budget": -1')
    proc = run_cli("augment", str(src), "-p", f"wordnet_dir={tmp_path / 'none'}")
    _assert_one_error(proc, "field 'budget'")


def test_augment_refuses_huge_budgets_before_any_work(tmp_path):
    src = _selected_file(tmp_path, f'"budget": {10**7}')
    proc = run_cli("augment", str(src), env={"MARSCTL_WORDNET_DIR": NO_WORDNET})
    _assert_one_error(proc, f"{src} line 2: field 'budget' is {10**7}", "at most 100,000", "Hint: ")
    many = _write(tmp_path / "many.jsonl", [
        f'{{"prompt": "p", "chosen": "good {i}", "rejected": "bad {i}", "budget": 100000}}' for i in range(11)
    ])
    proc = run_cli("augment", str(many), env={"MARSCTL_WORDNET_DIR": NO_WORDNET})
    _assert_one_error(proc, f"{many}: the budgets sum to 1,100,000", "at most 1,000,000")


def test_augment_top_margin_without_model_is_refused_first(tmp_path):
    src = _selected_file(tmp_path, '"budget": 2, "selection": {"pick": "top-margin"}')
    proc = run_cli("augment", str(src), env={"MARSCTL_WORDNET_DIR": NO_WORDNET})
    _assert_one_error(proc, "augment needs the model")


def test_augment_falls_back_to_builtin_synonyms_without_wordnet(tmp_path):
    src = _selected_file(tmp_path, '"budget": 3, "selection": {"strategy": "uniform", "weight": 0.5, "pick": "random"}')
    out = tmp_path / "aug.jsonl"
    proc = run_cli("augment", str(src), "-o", str(out), env={"MARSCTL_WORDNET_DIR": str(tmp_path / "no-wn")})
    assert proc.returncode == 0, proc.stderr
    assert f"eda: no WordNet database in {tmp_path / 'no-wn'}; using the built-in synonym table" in proc.stderr
    rows = read_jsonl(out)
    assert len(rows) == 4 and all(r["source"] == "synthetic" for r in rows)
    assert all(r["chosen"] != r["rejected"] for r in rows)
    originals = {("a big happy dog", "a small sad cat"), ("a quick answer", "a slow reply")}
    assert all((r["chosen"], r["rejected"]) not in originals for r in rows)


# --------------------------------------------------------------------------------------------- identical pairs
def test_count_identical():
    recs = [{"chosen": "a", "rejected": "b", "_line": 1}, {"chosen": "x  y\n", "rejected": "x y", "_line": 4},
            {"chosen": "z", "rejected": "z", "_line": 9}]
    assert count_identical(recs) == {"n": 2, "first_line": 4}
    assert count_identical(recs[:1]) == {"n": 0, "first_line": None}


def test_select_reports_and_keeps_identical_pairs(tmp_path):
    src = _write(tmp_path / "scored.jsonl", [
        '{"prompt": "p", "chosen": "a", "rejected": "b", "pred_margin": 0.5}',
        '{"prompt": "p", "chosen": "same  text", "rejected": "same text", "pred_margin": 0.0}',
        '{"prompt": "p", "chosen": "c", "rejected": "c", "pred_margin": 0.0}',
    ])
    proc = run_cli("select", str(src), "--budget", "6")
    assert proc.returncode == 0, proc.stderr
    assert f"Warning: select: 2 pairs with chosen == rejected (first: {src} line 2)" in proc.stderr
    assert len(proc.stdout.splitlines()) == 3
    _, summary = augmentation.select(read_jsonl(src), budget=6)
    assert summary["identical_pairs"] == 2


def test_train_drops_identical_pairs_and_score_keeps_them(tmp_path):
    src = _write(tmp_path / "pairs.jsonl", [
        '{"prompt": "What is 2+2?", "chosen": "It is 4.", "rejected": "It is 5."}',
        '{"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Blue."}',
        '{"prompt": "Say hi.", "chosen": "Hello there!", "rejected": "Go away."}',
    ])
    model = tmp_path / "model"
    proc = run_cli("train", str(src), "-o", str(model), "--epochs", "2")
    assert proc.returncode == 0, proc.stderr
    assert "Warning: train: 1 pair with chosen == rejected" in proc.stderr and "line 2" in proc.stderr
    training = json.loads((model / "config.json").read_text())["training"]
    assert training["n_pairs"] == 2 and training["n_identical_dropped"] == 1
    proc = run_cli("score", str(src), "-m", str(model))
    assert proc.returncode == 0, proc.stderr
    assert "Warning: score: 1 pair with chosen == rejected" in proc.stderr and "line 2" in proc.stderr
    assert len(proc.stdout.splitlines()) == 3


def test_train_refuses_when_every_pair_is_identical(tmp_path):
    src = _write(tmp_path / "pairs.jsonl", ['{"prompt": "q", "chosen": "same", "rejected": "same"}'])
    proc = run_cli("train", str(src), "-o", str(tmp_path / "model"))
    assert proc.returncode == 2 and "every pair has chosen == rejected" in proc.stderr
    assert not (tmp_path / "model").exists()


# --------------------------------------------------------------------------------------------- diagnostics
def _all_finite(summary: dict) -> None:
    json.dumps(summary, allow_nan=False)  # raises on NaN/Infinity


def test_selection_summary_is_finite_on_edge_cases():
    for margins, q, budgets in [([0.3], [1.0], [4]), ([0.0, 0.0], [0.0, 0.0], [0, 0]),
                                ([1e6, -1e6], [0.5, 0.5], [1, 1]), ([math.nan, 1.0], [0.5, 0.5], [1, 1]),
                                ([1e308, 1e308], [1.0, 0.0], [1, 0])]:
        _all_finite(selection_summary(margins, q, budgets))
    assert effective_sample_size([0.0, 0.0]) == 0.0
    assert effective_sample_size([1e-300, 1e-300]) == pytest.approx(2.0)


@pytest.mark.parametrize(("strategy", "params", "margins"), [
    ("mars-abs", {}, [0.3]),
    ("mars", {"alpha_scale": "std"}, [0.0, 5e-324]),
    ("mars-robust", {}, [0.0, 0.0, 0.0]),
    ("mars", {"alpha": 1e308}, [-1.0, 0.0, 2.0]),
    ("mars-abs", {"alpha_scale": "std"}, [1e6, -1e6, 0.0]),
])
def test_select_diagnostics_are_finite(strategy, params, margins):
    scored = [{"prompt": "p", "chosen": f"c{i}", "rejected": f"r{i}", "pred_margin": m} for i, m in enumerate(margins)]
    rows, summary = augmentation.select(scored, strategy=strategy, params=params, budget=5)
    assert sum(r["budget"] for r in rows) == 5
    _all_finite(summary)
    _all_finite([r["selection"] for r in rows])


def test_selector_returning_bad_weights_is_a_plugin_error(fake_plugin):
    class Zero(Selector):
        def weights(self, margins):
            return [0.0] * len(margins)

    fake_plugin("selector", "zero", Zero)
    scored = [{"prompt": "p", "chosen": "a", "rejected": "b", "pred_margin": 0.1}]
    with pytest.raises(PluginError, match="the selector 'zero' returned invalid weights"):
        augmentation.select(scored, strategy="zero", budget=2)
