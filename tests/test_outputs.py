"""Nothing a user had is deleted or replaced; failed writes leave nothing; outputs never alias inputs.

Every case builds the situation with real files and runs the real CLI in a subprocess, then checks
that every byte that existed before is still there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, read_jsonl, run_cli

TINY = FIXTURES / "tiny.jsonl"


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under root."""
    out: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = None if p.is_dir() else p.read_bytes()
    return out


def assert_refused(proc: subprocess.CompletedProcess, message: str, code: int = 2) -> None:
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.startswith("Error: "), proc.stderr
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, cache_dir) -> Path:
    out = tmp_path_factory.mktemp("outputs") / "model"
    run_cli("train", str(TINY), "-o", str(out), "--epochs", "2", "-p", "encoder_precision=fp32",
            env={"MARSCTL_CACHE_DIR": str(cache_dir)}, check=True)  # fp32: vectors do not depend on the cache's state (bf16's do, within docs/guarantees.md's bound)
    return out


@pytest.fixture
def user_dir(tmp_path) -> Path:
    """A user's folder holding their pairs and other files."""
    d = tmp_path / "d"
    d.mkdir()
    shutil.copy(TINY, d / "pairs.jsonl")
    (d / "notes.txt").write_text("my notes\n")
    (d / "sub").mkdir()
    (d / "sub" / "keep.bin").write_bytes(os.urandom(64))
    return d


def test_train_into_a_folder_holding_the_input_is_refused(tmp_path, user_dir):
    before = snapshot(tmp_path)
    proc = run_cli("train", str(user_dir / "pairs.jsonl"), "-o", str(user_dir), "--epochs", "1")
    assert_refused(proc, f"-o {user_dir} holds the input")
    assert "Hint: choose a new -o" in proc.stderr
    assert snapshot(tmp_path) == before


def test_train_onto_the_input_file_is_refused(tmp_path, user_dir):
    before = snapshot(tmp_path)
    proc = run_cli("train", str(user_dir / "pairs.jsonl"), "-o", str(user_dir / "pairs.jsonl"))
    assert_refused(proc, "is also an input of this command")
    assert snapshot(tmp_path) == before


def test_train_into_a_foreign_folder_is_refused_even_with_overwrite(tmp_path, user_dir):
    other = tmp_path / "other"
    other.mkdir()
    (other / "results.csv").write_text("a,b\n")
    before = snapshot(tmp_path)
    for extra in ([], ["--overwrite"]):
        proc = run_cli("train", str(user_dir / "pairs.jsonl"), "-o", str(other), "--epochs", "1", *extra)
        assert_refused(proc, "is not a marsctl model directory")
    assert snapshot(tmp_path) == before


def test_a_marsctl_model_is_replaced_only_with_overwrite(tmp_path, model_dir):
    target = tmp_path / "m"
    shutil.copytree(model_dir, target)
    before = snapshot(tmp_path)
    proc = run_cli("train", str(TINY), "-o", str(target), "--epochs", "1", "--seed", "5")
    assert_refused(proc, "already holds a marsctl model")
    assert "--overwrite" in proc.stderr
    assert snapshot(tmp_path) == before
    run_cli("train", str(TINY), "-o", str(target), "--epochs", "1", "--seed", "5", "--overwrite", check=True)
    cfg = json.loads((target / "config.json").read_text())
    assert cfg["training"]["seed"] == 5 and cfg["training"]["epochs"] == 1
    assert sorted(p.name for p in target.iterdir()) == sorted(cfg["files"])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no debris


def test_a_model_dir_with_a_users_file_is_never_replaced(tmp_path, model_dir):
    target = tmp_path / "m"
    shutil.copytree(model_dir, target)
    (target / "README.md").write_text("my notes on this model\n")
    before = snapshot(tmp_path)
    proc = run_cli("train", str(TINY), "-o", str(target), "--epochs", "1", "--overwrite")
    assert_refused(proc, "holds files marsctl did not write (README.md)")
    assert snapshot(tmp_path) == before


def test_head_save_from_python_refuses_too(tmp_path, model_dir):
    from marsctl.errors import ConfigError
    from marsctl.modeldir import load_head

    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "data.txt").write_text("mine")
    head = load_head(model_dir)
    with pytest.raises(ConfigError, match="not a marsctl model directory"):
        head.save(tmp_path / "x")
    assert (tmp_path / "x" / "data.txt").read_text() == "mine"
    head.save(tmp_path / "empty-is-fine")
    assert (tmp_path / "empty-is-fine" / "model.safetensors").exists()


@pytest.mark.parametrize("command", ["score", "select", "augment", "eval"])
def test_output_equal_to_an_input_is_refused(tmp_path, model_dir, command):
    scored = tmp_path / "in.jsonl"
    rows = [json.loads(x) for x in run_cli("score", str(TINY), "-m", str(model_dir), check=True).stdout.splitlines()]
    for r in rows:
        r["budget"] = 1
    scored.write_text("".join(json.dumps(r) + "\n" for r in rows))
    link = tmp_path / "link.jsonl"
    link.symlink_to(scored)
    before = snapshot(tmp_path)
    for out in (scored, link):
        argv = {"score": ["score", str(scored), "-m", str(model_dir), "-o", str(out)],
                "select": ["select", str(scored), "--budget", "3", "-o", str(out)],
                "augment": ["augment", str(scored), "-o", str(out)],
                "eval": ["eval", str(scored), "-m", str(model_dir), "--scored", str(out)]}[command]
        assert_refused(run_cli(*argv), "is also an input of this command")
    assert snapshot(tmp_path) == before


def test_output_inside_the_model_directory_is_refused(tmp_path, model_dir):
    target = tmp_path / "m"
    shutil.copytree(model_dir, target)
    before = snapshot(tmp_path)
    proc = run_cli("score", str(TINY), "-m", str(target), "-o", str(target / "model.safetensors"))
    assert_refused(proc, "is inside the input directory")
    assert snapshot(tmp_path) == before


def test_output_that_is_a_directory_or_under_a_file(tmp_path, model_dir):
    (tmp_path / "a-dir").mkdir()
    (tmp_path / "a-file").write_text("x")
    before = snapshot(tmp_path)
    proc = run_cli("score", str(TINY), "-m", str(model_dir), "-o", str(tmp_path / "a-dir"))
    assert_refused(proc, "is a directory; give a file name")
    proc = run_cli("score", str(TINY), "-m", str(model_dir), "-o", str(tmp_path / "a-file" / "out.jsonl"))
    assert_refused(proc, "is a file, so nothing can be written under it")
    proc = run_cli("train", str(TINY), "-o", str(tmp_path / "a-file"))
    assert_refused(proc, "exists and is not a directory")
    assert snapshot(tmp_path) == before


def test_refine_out_must_be_new_empty_or_a_run(tmp_path, user_dir):
    (tmp_path / "f").write_text("x")
    before = snapshot(tmp_path)
    pairs = str(user_dir / "pairs.jsonl")
    assert_refused(run_cli("refine", pairs, "--rounds", "0", "--out", str(tmp_path / "f")),
                   "exists and is not a directory")
    assert_refused(run_cli("refine", pairs, "--rounds", "0", "--out", str(user_dir)), "holds the input")
    assert_refused(run_cli("refine", pairs, "--rounds", "0", "--out", str(user_dir / "sub")),
                   "does not hold a marsctl run (1 entry, e.g. 'keep.bin')")
    assert_refused(run_cli("compare", pairs, "--seeds", "1", "--out", str(user_dir / "sub")),
                   "does not hold a marsctl run")
    assert snapshot(tmp_path) == before


def test_resume_with_fewer_rounds_is_refused_and_changes_nothing(tmp_path):
    out = tmp_path / "run"
    args = ["refine", str(TINY), "--budget", "10", "--epochs", "1", "--out", str(out)]
    run_cli(*args, "--rounds", "1", check=True)
    before = snapshot(tmp_path)
    proc = run_cli(*args, "--rounds", "0", "--resume")
    assert_refused(proc, "already has rounds 0..1 finished; --rounds 0")
    assert "Warning" not in proc.stderr  # validated before any notice
    assert snapshot(tmp_path) == before
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rounds_finished"] == [0, 1] and manifest["config"]["rounds"] == 1


def test_full_disk_is_exit_1_with_a_message(model_dir):
    proc = run_cli("score", str(TINY), "-m", str(model_dir), "-o", "/dev/full")
    assert_refused(proc, "could not write /dev/full: No space left on device", code=1)
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "marsctl", "score", str(TINY), "-m", str(model_dir)],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("Error: could not write stdout: No space left on device")
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr


def test_a_device_output_is_written_in_place_not_replaced(model_dir):
    proc = run_cli("score", str(TINY), "-m", str(model_dir), "-o", "/dev/null", check=True)
    assert proc.stdout == "" and Path("/dev/null").is_char_device()


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path, model_dir):
    out = tmp_path / "scored.jsonl"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".scored.jsonl.marsctl-{dead}-abcd.tmp"
    stale.write_text("half a file")
    live = tmp_path / f".scored.jsonl.marsctl-{os.getpid()}-efgh.tmp"  # this test process is alive
    live.write_text("being written")
    other = tmp_path / ".notes.txt.marsctl-1-x.tmp"  # another target's: not ours to touch here
    other.write_text("x")
    run_cli("score", str(TINY), "-m", str(model_dir), "-o", str(out), check=True)
    assert not stale.exists() and live.exists() and other.exists()
    assert len(read_jsonl(out)) == 40


def test_no_nan_in_eval_json_when_every_margin_is_equal(tmp_path, model_dir):
    same = tmp_path / "same.jsonl"
    rows = [json.loads(x) for x in TINY.read_text().splitlines()][:5]
    same.write_text("".join(json.dumps({**r, "rejected": r["chosen"]}) + "\n" for r in rows))
    proc = run_cli("eval", str(same), "-m", str(model_dir), "--json", check=True)

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in eval --json")

    m = json.loads(proc.stdout, parse_constant=refuse)
    assert m["margin_snr"] is None and m["accuracy"] == 0.0
    assert "undefined (all margins equal)" in proc.stderr


def _assert_close_rows(a: str, b: str, tol: float) -> None:
    """The same rows with the same fields; floats within tol, everything else equal."""
    ra, rb = [json.loads(x) for x in a.splitlines()], [json.loads(x) for x in b.splitlines()]
    assert len(ra) == len(rb)
    for x, y in zip(ra, rb, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], float):
                assert abs(x[k] - y[k]) <= tol, (x.get("id"), k, x[k], y[k])
            else:
                assert x[k] == y[k], (x.get("id"), k)


def test_scores_are_identical_for_the_same_settings_and_close_across_batch_size_and_cache_order(
        tmp_path, model_dir):
    """Byte-identical for the same input and settings; within 1e-4 across --batch-size and cache order.

    A text embedded in other company may differ in its last float bits (embed.BATCH_TOLERANCE), and
    scores are written to 6 decimals, so the last written digit may differ across batch sizes.
    """
    full = TINY.read_text()
    subset = "".join(reversed(full.splitlines(keepends=True)[::3]))
    outs = []
    for k, (warmup, batch) in enumerate([(None, "1"), (None, "1"), (None, "256"), (subset, "7")]):
        env = {"MARSCTL_CACHE_DIR": str(tmp_path / f"cache-{k}")}  # each starts cold
        if warmup is not None:  # fill the cache with other texts first, in another order
            run_cli("score", "-", "-m", str(model_dir), input=warmup, env=env, check=True)
        outs.append(run_cli("score", str(TINY), "-m", str(model_dir), "--batch-size", batch, env=env,
                            check=True).stdout)
    assert outs[0] == outs[1]
    assert len(outs[0].splitlines()) == 40
    _assert_close_rows(outs[0], outs[2], 1e-4)
    _assert_close_rows(outs[0], outs[3], 1e-4)


def test_outputs_get_the_mode_of_a_plain_open_not_mkstemps(tmp_path):
    """A written file is 0666 less the umask (mkstemp alone would leave 0600); a new folder 0777 less it."""
    import stat

    from marsctl.atomic import new_temp_dir
    from marsctl.records import write_records

    old = os.umask(0o022)
    try:
        write_records([{"a": 1}], tmp_path / "out.jsonl")
        folder = new_temp_dir(tmp_path / "model")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.jsonl").stat().st_mode) == 0o644
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
