"""The CLI through real subprocesses: pipes, stdin, determinism, errors, no partial output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT, read_jsonl, run_cli

TINY = str(FIXTURES / "tiny.jsonl")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, cache_dir) -> Path:
    out = tmp_path_factory.mktemp("cli") / "model"
    run_cli("train", TINY, "-o", str(out), "--epochs", "5", "--seed", "1",
            env={"MARSCTL_CACHE_DIR": str(cache_dir)}, check=True)
    return out


def test_pipe_score_select_augment_train(model_dir, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    m = [sys.executable, "-m", "marsctl"]
    cmd = (f"{' '.join(m)} score {TINY} -m {model_dir} | {' '.join(m)} select --strategy mars --budget 30 "
           f"| {' '.join(m)} augment --backend eda | {' '.join(m)} train - -o {tmp_path / 'model2'} "
           f"--init {model_dir} --epochs 2")
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    cfg = json.loads((tmp_path / "model2" / "config.json").read_text())
    assert cfg["training"]["n_pairs"] == 30 and cfg["training"]["n_synthetic"] == 30
    assert cfg["training"]["init"] == str(model_dir)
    assert "select mars" in proc.stderr and "augment eda: 30 synthetic pairs" in proc.stderr


@pytest.mark.parametrize("how", ["argument", "file-output", "stdin"])
def test_score_input_and_output_forms(model_dir, tmp_path, how):
    if how == "argument":
        proc = run_cli("score", TINY, "-m", str(model_dir), check=True)
        rows = [json.loads(x) for x in proc.stdout.splitlines()]
    elif how == "file-output":
        proc = run_cli("score", TINY, "-m", str(model_dir), "-o", str(tmp_path / "s.jsonl"), check=True)
        assert proc.stdout == ""
        rows = read_jsonl(tmp_path / "s.jsonl")
    else:
        proc = run_cli("score", "-", "-m", str(model_dir), input=Path(TINY).read_text(), check=True)
        rows = [json.loads(x) for x in proc.stdout.splitlines()]
    assert len(rows) == 40
    for r in rows:
        assert r["pred_margin"] == pytest.approx(r["score_chosen"] - r["score_rejected"], abs=2e-6)
        assert 0 < r["p_chosen"] < 1 and "margin" not in r


def test_select_and_augment_are_byte_identical_for_a_seed(model_dir, tmp_path):
    scored = run_cli("score", TINY, "-m", str(model_dir), check=True).stdout
    outs = []
    for _ in range(2):
        sel = run_cli("select", "-", "--strategy", "mars-abs", "--budget", "25", "--seed", "3", input=scored,
                      check=True).stdout
        aug = run_cli("augment", "-", "--seed", "3", input=sel, check=True).stdout
        outs.append((sel, aug))
    assert outs[0] == outs[1]
    other = run_cli("augment", "-", "--seed", "4", input=outs[0][0], check=True).stdout
    assert other != outs[0][1]
    sel_rows = [json.loads(x) for x in outs[0][0].splitlines()]
    assert sum(r["budget"] for r in sel_rows) == 25
    aug_rows = [json.loads(x) for x in outs[0][1].splitlines()]
    assert len(aug_rows) == 25
    by_parent = {r["id"]: r["budget"] for r in sel_rows}
    for row in aug_rows:
        assert row["source"] == "synthetic" and row["augmenter"]["name"] == "eda"
        assert row["parent_id"] in by_parent and row["round"] == 1
    assert len({r["id"] for r in aug_rows}) == 25


def test_won_needs_the_model_and_keeps_highest_margin_rows(model_dir):
    scored = run_cli("score", TINY, "-m", str(model_dir), check=True).stdout
    sel = run_cli("select", "-", "--strategy", "won", "--budget", "20", input=scored, check=True).stdout
    proc = run_cli("augment", "-", input=sel)
    assert proc.returncode == 2 and "Hint: pass -m MODEL_DIR" in proc.stderr
    rows = [json.loads(x) for x in run_cli("augment", "-", "-m", str(model_dir), input=sel, check=True).stdout.splitlines()]
    assert len(rows) == 20
    # Each kept row must score at least as high as every dropped pool row of its parent.
    pool = run_cli("augment", "-", "-m", str(model_dir), "-p", "n_variants=5", input=sel.replace(
        '"pick": "top-margin"', '"pick": "random"').replace('"budget": 1,', '"budget": 25,'), check=True).stdout
    rescored = [json.loads(x) for x in run_cli("score", "-", "-m", str(model_dir), input=pool,
                                                check=True).stdout.splitlines()]
    kept = {(r["prompt"], r["chosen"], r["rejected"]) for r in rows}
    parent = rows[0]["parent_id"]
    mine = [r for r in rescored if r["parent_id"] == parent]
    kept_m = [r["pred_margin"] for r in mine if (r["prompt"], r["chosen"], r["rejected"]) in kept]
    drop_m = [r["pred_margin"] for r in mine if (r["prompt"], r["chosen"], r["rejected"]) not in kept]
    assert kept_m and drop_m and min(kept_m) >= max(drop_m) - 1e-5


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        pytest.param(["select", "-", "--budget", "0"], '{"prompt":"p","chosen":"a","rejected":"b","pred_margin":1}',
                     "The 'budget' parameter of select must be an int in the range [1, inf). Got 0 instead.",
                     id="budget-zero"),
        pytest.param(["select", "-", "--budget", "5", "--strategy", "marz"],
                     '{"prompt":"p","chosen":"a","rejected":"b","pred_margin":1}', "Unknown selector 'marz'",
                     id="unknown-selector"),
        pytest.param(["select", "-", "--budget", "5"], '{"prompt":"p","chosen":"a","rejected":"b"}',
                     "<stdin> line 1: missing field 'pred_margin'", id="unscored"),
        pytest.param(["augment", "-", "--backend", "edaa"], '{"prompt":"p","chosen":"a","rejected":"b","budget":1}',
                     "Unknown augmenter 'edaa'", id="unknown-backend"),
        pytest.param(["augment", "-"], '{"prompt":"p","chosen":"a","rejected":"b","budget":-1}',
                     "field 'budget' must be a non-negative integer", id="bad-budget"),
        pytest.param(["train", "-", "-o", "OUT", "--head", "mpl"], '{"prompt":"p","chosen":"a","rejected":"b"}',
                     "Did you mean 'mlp'?", id="unknown-head"),
        pytest.param(["train", "-", "-o", "OUT", "-p", "hiden=3"], '{"prompt":"p","chosen":"a","rejected":"b"}',
                     "Unknown parameter 'hiden'", id="unknown-param"),
        pytest.param(["score", "-", "-m", "NOPE"], '{"prompt":"p","chosen":"a","rejected":"b"}',
                     "model dir NOPE: no such directory", id="missing-model"),
        pytest.param(["train", "-", "-o", "OUT"], '{"prompt":"p","chosen":"a","rejected":"b"}\n{oops',
                     "<stdin> line 2: invalid JSON", id="malformed-json"),
    ],
)
def test_errors_exit_2_with_one_clear_message(tmp_path, args, stdin, message):
    args = [str(tmp_path / a) if a in ("OUT", "NOPE") else a for a in args]
    message = message.replace("NOPE", str(tmp_path / "NOPE"))
    proc = run_cli(*args, input=stdin, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("Error: ") and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert not (tmp_path / "OUT").exists()


def test_no_partial_output_file_on_bad_input(model_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    lines = Path(TINY).read_text().splitlines()
    lines[17] = lines[17].replace('"rejected"', '"rejekted"')
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "scored.jsonl"
    proc = run_cli("score", str(bad), "-m", str(model_dir), "-o", str(out))
    assert proc.returncode == 2
    assert f"{bad} line 18: missing field 'rejected'" in proc.stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]


def test_model_dir_from_another_head(tmp_path, model_dir):
    proc = run_cli("train", TINY, "-o", str(tmp_path / "m2"), "--head", "linear", "--init", str(model_dir))
    assert proc.returncode == 2 and "holds a 'mlp' head, not 'linear'" in proc.stderr
    assert not (tmp_path / "m2").exists()


def test_help_lists_the_loop_verbs():
    out = run_cli("--help", check=True).stdout
    for verb in ("score", "select", "augment", "train", "refine", "eval", "plugins"):
        assert verb in out


def test_eval_json(model_dir):
    proc = run_cli("eval", str(FIXTURES / "llmbar_sample.jsonl"), "-m", str(model_dir), "--json", check=True)
    m = json.loads(proc.stdout)
    assert m["n"] == 60 and 0 <= m["accuracy"] <= 1
    lo, hi = m["accuracy_ci95"]
    assert lo <= m["accuracy"] <= hi
    assert set(m["length_baseline"]) == {"longer", "shorter", "ties"}
    assert len(m["subsets"]) == 12 and set(m["sections"]) == {"CaseStudy", "LLMBar", "Processed"}
    assert "eval_accuracy" in proc.stderr and m["heldout"]["sha256"]


def test_docs_cli_is_current():
    """docs/cli.md is generated from --help; regenerate with scripts/gen_cli_docs.py."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_cli_docs.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
