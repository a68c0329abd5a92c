"""Clean failures for a bad environment, seeds and sizes (issue 18), with the real CLI in a subprocess.

- Cache folders (``marsctl.store``): a bad ``MARSCTL_CACHE_DIR`` is exit 2 with one ``Error:`` line naming the
  path and the variable; an unusable default folder (read-only or missing HOME, XDG_CACHE_HOME a file) runs
  without a persistent cache after one warning; a cache file that is a folder or damaged is exit 2.
- Seeds: one range (``params.SEED_MAX``) for every command, refused while the options are parsed; every
  accepted seed works end to end.
- Sizes: every size-like option has an upper bound, refused before any work.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, run_cli

from marsctl.errors import ConfigError
from marsctl.params import MAX_BATCH_SIZE, MAX_BINS, MAX_N_BOOT, SEED_MAX, check_seed

PAIRS = 8


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """A folder with 8 pairs, a model trained on them, their scores and a selection."""
    d = tmp_path_factory.mktemp("env")
    lines = (FIXTURES / "tiny.jsonl").read_text(encoding="utf-8").splitlines()[:PAIRS]
    (d / "pairs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.copy(FIXTURES / "tiny_test.jsonl", d / "test.jsonl")
    env = {"MARSCTL_CACHE_DIR": str(cache_dir), "HOME": str(d / "home")}
    run_cli("train", str(d / "pairs.jsonl"), "-o", str(d / "model"), "--epochs", "1", "-p", "encoder_precision=fp32",
            env=env, check=True)  # fp32: vectors do not depend on the cache's state (bf16's do, within docs/guarantees.md's bound)
    scored = run_cli("score", str(d / "pairs.jsonl"), "-m", str(d / "model"), env=env, check=True).stdout
    (d / "scored.jsonl").write_text(scored, encoding="utf-8")
    sel = run_cli("select", str(d / "scored.jsonl"), "-b", "4", env=env, check=True).stdout
    (d / "selected.jsonl").write_text(sel, encoding="utf-8")
    return d


def _env_without_cache(**extra: str) -> dict[str, str]:
    """The test environment without MARSCTL_CACHE_DIR/XDG_CACHE_HOME/MPLCONFIGDIR, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MARSCTL_CACHE_DIR", "XDG_CACHE_HOME", "MPLCONFIGDIR", "XDG_CONFIG_HOME")}
    return {**env, **extra}


def _run_env(*args: str, env: dict[str, str]):
    import subprocess

    return subprocess.run([sys.executable, "-m", "marsctl", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def _one_error(proc, *needles: str) -> str:
    """Assert exit 2, no traceback, exactly one 'Error:' line holding every needle; returns that line."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, proc.stderr
    for n in needles:
        assert n in errors[0], (n, proc.stderr)
    return errors[0]


# -- cache folders ---------------------------------------------------------------------------------------------
def _bad_cache_dirs(tmp: Path) -> dict[str, Path]:
    afile = tmp / "afile"
    afile.write_text("x")
    return {"regular-file": afile, "under-a-file": afile / "sub", "unreachable": Path("/proc/marsctl-cache")}


@pytest.mark.parametrize("case", ["regular-file", "under-a-file", "unreachable"])
def test_bad_cache_dir_env_is_exit_2(work: Path, tmp_path: Path, case: str) -> None:
    path = _bad_cache_dirs(tmp_path)[case]
    proc = run_cli("score", str(work / "pairs.jsonl"), "-m", str(work / "model"),
                   env={"MARSCTL_CACHE_DIR": str(path)})
    _one_error(proc, str(path), "MARSCTL_CACHE_DIR")
    assert "Hint:" in proc.stderr and "writable folder" in proc.stderr
    assert proc.stdout == ""


def test_bad_cache_dir_env_refused_by_train_before_output(work: Path, tmp_path: Path) -> None:
    path = _bad_cache_dirs(tmp_path)["under-a-file"]
    out = tmp_path / "m"
    proc = run_cli("train", str(work / "pairs.jsonl"), "-o", str(out), "--epochs", "1",
                   env={"MARSCTL_CACHE_DIR": str(path)})
    _one_error(proc, str(path), "MARSCTL_CACHE_DIR")
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("cmd", ["refine", "compare"])
def test_bad_cache_dir_env_leaves_no_run_folder(work: Path, tmp_path: Path, cmd: str) -> None:
    path = _bad_cache_dirs(tmp_path)["regular-file"]
    proc = run_cli(cmd, str(work / "pairs.jsonl"), "-r", "1", "-b", "4", "--epochs", "1", "--out", str(tmp_path / "run"),
                   env={"MARSCTL_CACHE_DIR": str(path)})
    _one_error(proc, str(path), "MARSCTL_CACHE_DIR")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


@pytest.mark.parametrize("case", ["home-proc", "home-file", "xdg-file"])
def test_unusable_default_cache_runs_without_it(work: Path, tmp_path: Path, case: str) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    extra = {"home-proc": {"HOME": "/proc"}, "home-file": {"HOME": str(afile)},
             "xdg-file": {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(afile)}}[case]
    proc = _run_env("score", str(work / "pairs.jsonl"), "-m", str(work / "model"), env=_env_without_cache(**extra))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "cache folder" in line]
    assert len(warnings) == 1, proc.stderr
    var = "XDG_CACHE_HOME" if case == "xdg-file" else "HOME"
    assert f"(from {var})" in warnings[0] and "MARSCTL_CACHE_DIR" in proc.stderr.replace("\n", " ")
    assert proc.stdout == (work / "scored.jsonl").read_text(encoding="utf-8")  # the same scores, without a cache


def test_cache_file_that_is_a_folder_is_exit_2(work: Path, tmp_path: Path) -> None:
    (tmp_path / "c" / "embeddings.sqlite").mkdir(parents=True)
    proc = run_cli("score", str(work / "pairs.jsonl"), "-m", str(work / "model"),
                   env={"MARSCTL_CACHE_DIR": str(tmp_path / "c")})
    _one_error(proc, str(tmp_path / "c" / "embeddings.sqlite"), "folder")
    assert "MARSCTL_CACHE_DIR" in proc.stderr


def test_damaged_cache_file_is_exit_2(work: Path, tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "embeddings.sqlite").write_bytes(b"not a database at all" * 100)
    proc = run_cli("score", str(work / "pairs.jsonl"), "-m", str(work / "model"),
                   env={"MARSCTL_CACHE_DIR": str(tmp_path / "c")})
    _one_error(proc, str(tmp_path / "c" / "embeddings.sqlite"), "damaged")
    assert (tmp_path / "c" / "embeddings.sqlite").exists()  # never deleted by marsctl


def test_matplotlib_quiet_under_read_only_home(tmp_path: Path) -> None:
    import subprocess

    code = "from marsctl import plots; plt = plots._plt(); plt.figure(); print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=_env_without_cache(HOME="/proc"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert "matplotlib" not in proc.stderr.lower() and "MPLCONFIGDIR" not in proc.stderr, proc.stderr


def test_generation_cache_in_memory_without_a_cache_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    from marsctl import store
    from marsctl_plugins.augmenters.gencache import GenerationCache

    monkeypatch.delenv("MARSCTL_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", "/proc")
    monkeypatch.setattr(store, "_USABLE", {})
    cache = GenerationCache()
    assert cache.path is None
    cache.put_many([(b"k", ["a", "b"])])
    assert cache.get_many([b"k", b"x"]) == {b"k": ["a", "b"]}


def test_generation_cache_bad_env_is_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from marsctl import store
    from marsctl_plugins.augmenters.gencache import GenerationCache

    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("MARSCTL_CACHE_DIR", str(tmp_path / "afile"))
    monkeypatch.setattr(store, "_USABLE", {})
    with pytest.raises(ConfigError, match="MARSCTL_CACHE_DIR"):
        GenerationCache()


# -- seeds -----------------------------------------------------------------------------------------------------
def _seed_argv(work: Path, cmd: str, seed: str, tmp: Path) -> list[str]:
    return {
        "train": ["train", str(work / "pairs.jsonl"), "-o", str(tmp / "m"), "--epochs", "1", "--seed", seed],
        "select": ["select", str(work / "scored.jsonl"), "-b", "4", "--seed", seed],
        "augment": ["augment", str(work / "selected.jsonl"), "--seed", seed],
        "eval": ["eval", str(work / "test.jsonl"), "-m", str(work / "model"), "--calibrate", "0.5", "--seed", seed],
        "refine": ["refine", str(work / "pairs.jsonl"), "-r", "1", "-b", "4", "--epochs", "1",
                   "--eval", str(work / "test.jsonl"), "--out", str(tmp / "run"), "--seed", seed],
    }[cmd]


@pytest.mark.parametrize("cmd", ["train", "select", "augment", "eval", "refine"])
@pytest.mark.parametrize("seed", ["-1", str(SEED_MAX + 1), "1" + "0" * 40])
def test_out_of_range_seed_is_exit_2_everywhere(work: Path, tmp_path: Path, cmd: str, seed: str) -> None:
    proc = run_cli(*_seed_argv(work, cmd, seed, tmp_path))
    _one_error(proc, "'--seed'", f"[0, {SEED_MAX}]")
    assert proc.stdout == ""
    assert not (tmp_path / "m").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("seed", ["1.5", "1e3", "abc"])
def test_non_integer_seed_is_exit_2(work: Path, seed: str) -> None:
    proc = run_cli(*_seed_argv(work, "select", seed, Path("/nonexistent")))
    _one_error(proc, "'--seed'")


@pytest.mark.parametrize("cmd", ["train", "select", "augment", "eval"])
@pytest.mark.parametrize("seed", [str(2**32), str(SEED_MAX)])
def test_every_accepted_seed_works(work: Path, tmp_path: Path, cmd: str, seed: str) -> None:
    proc = run_cli(*_seed_argv(work, cmd, seed, tmp_path))
    assert proc.returncode == 0, proc.stderr
    if cmd in ("select", "augment"):
        assert read_jsonl_text(proc.stdout)


def test_largest_seed_works_in_refine(work: Path, tmp_path: Path) -> None:
    """refine seeds its training, selection, pools and held-out bootstrap from the one --seed."""
    proc = run_cli(*_seed_argv(work, "refine", str(SEED_MAX), tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run" / "round-1").is_dir()


def read_jsonl_text(text: str) -> list[dict]:
    """Rows of JSONL text."""
    import json

    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_one_seed_definition_in_the_library() -> None:
    from marsctl import augmentation
    from marsctl.config import RefineConfig
    from marsctl.stats import bootstrap_ci

    assert check_seed(SEED_MAX) == SEED_MAX
    for bad in (-1, SEED_MAX + 1, 1.0, True):
        with pytest.raises(ConfigError, match=rf"\[0, {SEED_MAX}\]"):
            check_seed(bad, "seed", "x")
        with pytest.raises(ConfigError, match="seed"):
            RefineConfig(seed=bad)
        with pytest.raises(ConfigError, match="seed"):
            bootstrap_ci([0.0, 1.0], seed=bad)
        with pytest.raises(ConfigError, match="seed"):
            augmentation.make_augmenter("eda", seed=bad)
    assert bootstrap_ci([0.0, 1.0, 1.0], seed=SEED_MAX, n_boot=200)


# -- sizes -----------------------------------------------------------------------------------------------------
def _size_argv(work: Path, tmp: Path) -> dict[str, tuple[list[str], str, str]]:
    model, pairs, test = str(work / "model"), str(work / "pairs.jsonl"), str(work / "test.jsonl")
    return {
        "eval-n-boot": (["eval", test, "-m", model, "--n-boot", "1000000000000"], "--n-boot", f"[100, {MAX_N_BOOT}]"),
        "eval-bins": (["eval", test, "-m", model, "--bins", "1000000000"], "--bins", f"[1, {MAX_BINS}]"),
        "score-batch": (["score", pairs, "-m", model, "--batch-size", str(2**40)], "--batch-size",
                        f"[1, {MAX_BATCH_SIZE}]"),
        "train-epochs": (["train", pairs, "-o", str(tmp / "m"), "--epochs", "10000001"], "--epochs", "[0, 10000]"),
        "select-cap": (["select", str(work / "scored.jsonl"), "-b", "4", "--cap", "1000000000"], "--cap",
                       "[1, 100000]"),
        "augment-round": (["augment", str(work / "selected.jsonl"), "--round", str(2**70)], "--round", "[0, 1000]"),
        "augment-tries": (["augment", str(work / "selected.jsonl"), "--refine-tries", "100000"], "--refine-tries",
                          "[1, 50]"),
        "refine-rounds": (["refine", pairs, "-r", "1000000", "--out", str(tmp / "run")], "--rounds", "[0, 1000]"),
        "refine-epochs": (["refine", pairs, "--epochs", "1000000", "--out", str(tmp / "run")], "--epochs",
                          "[0, 10000]"),
        "compare-seeds": (["compare", pairs, "--seeds", "1000000", "--out", str(tmp / "run")], "--seeds",
                          "[1, 1000]"),
        "compare-rounds": (["compare", pairs, "-r", "1000000", "--out", str(tmp / "run")], "--rounds", "[1, 1000]"),
    }


SIZE_CASES = ["eval-n-boot", "eval-bins", "score-batch", "train-epochs", "select-cap", "augment-round",
              "augment-tries", "refine-rounds", "refine-epochs", "compare-seeds", "compare-rounds"]


@pytest.mark.parametrize("case", SIZE_CASES)
def test_size_over_its_bound_is_refused_before_work(work: Path, tmp_path: Path, case: str) -> None:
    argv, flag, rng = _size_argv(work, tmp_path)[case]
    proc = run_cli(*argv)
    _one_error(proc, f"'{flag}'", rng)
    assert proc.stdout == ""
    assert not (tmp_path / "m").exists() and not (tmp_path / "run").exists()


def test_bounds_are_in_help() -> None:
    text = " ".join(run_cli("eval", "--help").stdout.split())  # unwrapped
    assert f"Range: [100, {MAX_N_BOOT}]" in text and f"Range: [0, {SEED_MAX}]" in text


def test_bootstrap_library_bound() -> None:
    from marsctl.metrics import evaluate
    from marsctl.stats import bootstrap_ci

    with pytest.raises(ConfigError, match="n_boot"):
        bootstrap_ci([0.0, 1.0], n_boot=10**12)
    with pytest.raises(ConfigError, match="n_boot"):
        evaluate([{"pred_margin": 1.0, "score_chosen": 1.0, "score_rejected": 0.0}], n_boot=10**12)
