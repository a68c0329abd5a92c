"""marsctl eval through real subprocesses on a real tiny model: the calibration, RewardBench and best-of-N fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FIXTURES, read_jsonl, run_cli

# Real held-out rows; only their subset and group labels are set here, to RewardBench names and groups of 3.
SUBSETS = ("alpacaeval-easy", "mt-bench-hard", "donotanswer", "math-prm", "hep-go")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, cache_dir) -> Path:
    out = tmp_path_factory.mktemp("eval") / "model"
    run_cli("train", str(FIXTURES / "tiny.jsonl"), "-o", str(out), "--epochs", "5", "--seed", "1",
            env={"MARSCTL_CACHE_DIR": str(cache_dir)}, check=True)
    return out


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    rows = read_jsonl(FIXTURES / "tiny_test.jsonl")
    for i, r in enumerate(rows):
        r["subset"], r["group_id"] = SUBSETS[(i // 3) % len(SUBSETS)], f"g{i // 3}"
    path = tmp_path_factory.mktemp("eval-data") / "heldout.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_eval_json_carries_calibration_sections_best_of_n_and_length(model_dir, heldout):
    proc = run_cli("eval", str(heldout), "-m", str(model_dir), "--json", "--calibrate", "0.4", "--bins", "5",
                   check=True)
    m = json.loads(proc.stdout)
    c = m["calibration"]
    assert (c["binning"], c["n_bins"], c["event"]) == ("equal-mass", 5, "chosen is better")
    assert sum(b["n"] for b in c["reliability"]) == 30 and 0 < c["brier"] < 1 and c["log_loss"] > 0
    assert 0 <= c["ece"] <= 1 and 0 < c["p_range"][0] <= c["p_range"][1] < 1
    ts = m["temperature_scaling"]
    # 10 groups of 3: a 0.4 fraction is 4 groups, 12 rows, whose line numbers are listed
    assert ts["fit"]["n"] == 12 and ts["eval"]["n"] == 18 and len(set(ts["fit"]["lines"])) == 12
    assert ts["temperature"] > 0 and set(ts["calibrated"]) == set(ts["raw"])
    assert set(m["rewardbench"]["sections"]) == {"Chat", "Chat Hard", "Safety", "Reasoning"}
    assert m["rewardbench"]["score"] == pytest.approx(sum(m["rewardbench"]["sections"].values()) / 4)
    bon = m["best_of_n"]
    assert bon["groups"] == 10 and bon["pairs"] == 30 and bon["chance"] == pytest.approx(0.25)
    assert set(m["margin_quantiles"]) == {"5", "25", "50", "75", "95"} and len(m["accuracy_by_margin"]) == 4
    assert {"reward_vs_length", "chosen_longer", "chosen_shorter"} <= set(m["length"])
    assert m["mean_chosen_reward"] is not None and m["mean_rejected_reward"] is not None
    sub = m["subsets"]["math-prm"]
    assert sub["n"] == 6 and len(sub["accuracy_ci95"]) == 2 and "brier" in sub["calibration"]
    for text in ("calibration (equal-mass, 5 bins)", "temperature T", "best-of-N accuracy",
                 "RewardBench v1 sections", "reliability", "reward vs length"):
        assert text in proc.stderr


def test_eval_calibration_split_file(model_dir, heldout):
    calib = FIXTURES / "tiny.jsonl"
    proc = run_cli("eval", str(heldout), "-m", str(model_dir), "--json", "--calibration-split", str(calib),
                   check=True)
    ts = json.loads(proc.stdout)["temperature_scaling"]
    assert ts["fit"]["path"] == str(calib) and len(ts["fit"]["sha256"]) == 64
    assert ts["fit"]["n"] == 40 and ts["fit"]["lines"] == list(range(1, 41)) and ts["eval"]["n"] == 30


@pytest.mark.parametrize(("args", "message"), [
    (["--calibrate", "0.5", "--calibration-split", "X"], "not both"),
    (["--calibrate", "1.5"], "The 'calibrate' parameter of eval must be a float in the range (0, 1)"),
    (["--bins", "0"], "Invalid value for '--bins': must be an int in the range [1, 1000]. Got 0 instead."),
    (["--calibration-split", "HELDOUT"], "must be a file other than the held-out pairs"),
])
def test_eval_calibration_option_errors(heldout, tmp_path, args, message):
    args = [str(heldout) if a == "HELDOUT" else a for a in args]
    proc = run_cli("eval", str(heldout), "-m", str(tmp_path / "no-model"), "--json", *args)
    assert proc.returncode == 2 and proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in proc.stderr  # an option's range: Click's usage form


def test_bad_calibration_file_fails_before_any_output(model_dir, heldout, tmp_path):
    bad = tmp_path / "calib.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "a"}\n', encoding="utf-8")
    out = tmp_path / "scored.jsonl"
    proc = run_cli("eval", str(heldout), "-m", str(model_dir), "--calibration-split", str(bad), "--scored", str(out))
    assert proc.returncode == 2 and f"{bad} line 1" in proc.stderr and "rejected" in proc.stderr
    assert not out.exists() and proc.stdout == ""
