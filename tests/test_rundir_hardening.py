"""Run folders under stress: one writer at a time (a lock), complete rounds only, and a report of a damaged,
hand-edited or hostile folder that ends in one `Error:` line (exit 2) without reading anything outside it.

The folders are real: one tiny refine and one tiny compare per module, copied and damaged per test; the
report runs as the real CLI in a subprocess, under a memory limit and a timeout.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, run_cli

from marsctl import plots, render
from marsctl.config import RefineConfig
from marsctl.errors import MarsError
from marsctl.records import read_pairs
from marsctl.runs import RefineRun

TINY = FIXTURES / "tiny.jsonl"
TEST = FIXTURES / "tiny_test.jsonl"
REFINE_ARGS = ["--eval", str(TEST), "--budget", "10", "--epochs", "1", "--seed", "1"]
CANARY = "canary-outside-the-run-folder-7f3a"
MEMORY = 3 << 30  # bytes of address space a report may use


@pytest.fixture(scope="module")
def refine_dir(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """A finished tiny refine run (round 0 and one augmented round, held-out pairs)."""
    root = tmp_path_factory.mktemp("hard")
    with pytest.MonkeyPatch.context() as mp:  # the autouse isolation is per test; this runs once for the module
        mp.setenv("MARSCTL_CACHE_DIR", str(cache_dir))
        mp.setenv("HOME", str(root / "home"))
        out = root / "r"
        RefineRun(read_pairs(TINY), out, RefineConfig(rounds=1, budget=10, epochs=1, guard=True),
                  heldout=read_pairs(TEST), input_name=str(TINY), heldout_name=str(TEST)).run()
    return out


@pytest.fixture(scope="module")
def compare_dir(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """A finished tiny compare run (one seed, one protocol, two strategies)."""
    out = tmp_path_factory.mktemp("hard") / "c"
    run_cli("compare", str(TINY), "--eval", str(TEST), "--seeds", "1", "--rounds", "1", "--protocols", "steps",
            "--strategies", "none,uniform", "--epochs", "1", "--budget", "10", "--guard", "--out", str(out),
            env={"MARSCTL_CACHE_DIR": str(cache_dir)}, check=True)
    return out


# -- helpers ---------------------------------------------------------------------------------------------
def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def report_cli(folder: Path, out: Path) -> subprocess.CompletedProcess:
    """`marsctl report FOLDER -o OUT` in a subprocess with bounded memory and time."""
    return subprocess.run([sys.executable, "-m", "marsctl", "report", str(folder), "-o", str(out)],
                          capture_output=True, text=True, timeout=120, preexec_fn=_limit_memory,
                          env={**os.environ, "NO_COLOR": "1"})


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _dump(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value), encoding="utf-8")


def _edit(rel: str, change: Callable[[Any], Any]) -> Callable[[Path, Path], str]:
    """A damage: load the JSON file ``rel``, change it (``change`` returns the new value), write it back."""
    def damage(folder: Path, canary: Path) -> str:
        _dump(folder / rel, change(_load(folder / rel)))
        return rel
    return damage


def _set(rel: str, dotted: str, value: Any) -> Callable[[Path, Path], str]:
    """Set (or with ``DELETE``, remove) one field of a JSON file; a dotted path, list indices as numbers."""
    def change(doc: Any) -> Any:
        *parents, last = dotted.split(".")
        node = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        key = int(last) if isinstance(node, list) else last
        if value is DELETE:
            del node[key]
        else:
            node[key] = value
        return doc
    return _edit(rel, change)


def _set_line(rel: str, dotted: str, value: Any, line: int = 0) -> Callable[[Path, Path], str]:
    """Like ``_set`` on one line of a JSONL file."""
    def damage(folder: Path, canary: Path) -> str:
        path = folder / rel
        rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        *parents, last = dotted.split(".")
        node = rows[line]
        for key in parents:
            node = node[key]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return rel
    return damage


def _raw(rel: str, make: Callable[[bytes], bytes]) -> Callable[[Path, Path], str]:
    def damage(folder: Path, canary: Path) -> str:
        path = folder / rel
        path.write_bytes(make(path.read_bytes()))
        return rel
    return damage


def _truncate(rel: str) -> Callable[[Path, Path], str]:
    """Cut the file in the middle of a line."""
    def cut(b: bytes) -> bytes:
        n = len(b) // 2
        while b[n - 1 : n] in (b"\n", b" ", b"}", b"]"):
            n -= 1
        return b[:n]
    return _raw(rel, cut)


def _append(rel: str, line: bytes) -> Callable[[Path, Path], str]:
    return _raw(rel, lambda b: b + line)


def _symlink_out(rel: str) -> Callable[[Path, Path], str]:
    """Replace ``rel`` (a file or a folder) with a symlink to the canary outside the folder."""
    def damage(folder: Path, canary: Path) -> str:
        path = folder / rel
        if path.is_dir():
            outside = canary.parent / f"outside-{path.name}"
            shutil.copytree(path, outside, symlinks=True)
            shutil.rmtree(path)
            path.symlink_to(outside, target_is_directory=True)
        else:
            path.unlink()
            path.symlink_to(canary)
        return rel
    return damage


def _huge_sparse(rel: str) -> Callable[[Path, Path], str]:
    def damage(folder: Path, canary: Path) -> str:
        with open(folder / rel, "r+b") as fh:
            fh.truncate(1 << 40)  # sparse: no disk used, 1 TiB by its size
        return rel
    return damage


def _long_line(rel: str) -> Callable[[Path, Path], str]:
    return _raw(rel, lambda b: b + b"[" + b"1," * (10 << 20))  # a 20 MiB line with no end


def _fifo(rel: str) -> Callable[[Path, Path], str]:
    def damage(folder: Path, canary: Path) -> str:
        (folder / rel).unlink()
        os.mkfifo(folder / rel)
        return rel
    return damage


def _extra_round(name: str, source: str = "round-1") -> Callable[[Path, Path], str]:
    def damage(folder: Path, canary: Path) -> str:
        shutil.copytree(folder / source, folder / name)
        return name
    return damage


def _remove(rel: str) -> Callable[[Path, Path], str]:
    def damage(folder: Path, canary: Path) -> str:
        (folder / rel).unlink()
        return rel.rsplit("/", 1)[0]
    return damage


DELETE = object()
M1 = "round-1/metrics.json"
M0 = "round-0/metrics.json"
MAN = "manifest.json"

REFINE_CASES = {
    # every key the report reads, deleted
    **{f"del-{k}": _set(M1, k, DELETE) for k in (
        "train_size", "n_synthetic", "train_curvature_weight", "eval.accuracy", "eval.accuracy_ci95",
        "eval.length_baseline", "eval.length_baseline.longer")},
    "del-r0-eval-length_baseline": _set(M0, "eval.length_baseline", DELETE),
    "del-config": _set(MAN, "config", DELETE),
    "del-config-rounds": _set(MAN, "config.rounds", DELETE),
    # wrong types
    **{f"type-{k}-{type(v).__name__}": _set(M1, k, v) for k, v in (
        ("train_size", "40"), ("n_synthetic", 2.5), ("train_curvature_weight", "x"), ("eval", []),
        ("eval.accuracy", "0.6"), ("eval.accuracy", True), ("eval.accuracy_ci95", [0.1]),
        ("eval.accuracy_ci95", "[0.1, 0.2]"), ("eval.accuracy_ci95", [0.1, "x"]), ("eval.roc_auc", {}),
        ("eval.length_baseline", 0.5), ("eval.length_baseline.longer", None), ("eval_margins", {}),
        ("eval_margins", [0.1, "x"]), ("selection", "uniform"), ("selection.ess", "many"),
        ("selection.guard", "passed"), ("selection.guard.reasons", "too flat"),
        ("selection.guard.reasons", [1, 2]), ("augment.provenance.synonym_source", ["wordnet"]),
        ("noise", 3))},
    **{f"manifest-{k}-{type(v).__name__}": _set(MAN, k, v) for k, v in (
        ("config", "x"), ("config.rounds", "3"), ("config.rounds", 10**12), ("config.rounds", -1),
        ("libraries", ["torch"]), ("libraries.torch", {"v": 1}), ("plugins", "eda"), ("plugins.head", "mlp"),
        ("input", "tiny.jsonl"), ("heldout", 3), ("rounds_finished", [0, 10**12]), ("rounds_finished", "0,1"),
        ("budget_per_round", -5))},
    # negative and absurd numbers
    "negative-train_size": _set(M1, "train_size", -1),
    "negative-accuracy": _set(M1, "eval.accuracy", -0.5),
    "huge-margin": _set(M1, "eval_margins.0", 1e300),
    "big-int": _raw(M1, lambda b: b.replace(b'"train_size": ', b'"train_size": ' + b"9" * 5000 + b", \"x\": ", 1)),
    "huge-int-anywhere": _set(M1, "eval.custom", 10**400),
    "margins-length": _edit(M1, lambda m: {**m, "eval_margins": m["eval_margins"][:-1]}),
    "round-99999999999": _extra_round("round-99999999999"),
    "round-gap": _extra_round("round-5"),
    "round-leading-zero": _extra_round("round-01"),
    "round-without-metrics": _remove(M1),
    "round-incomplete": _remove("round-1/train.jsonl"),
    "round-without-selected": _remove("round-1/selected.jsonl"),
    # not JSON, not an object, truncated, bad lines
    "metrics-not-dict": _edit(M1, lambda m: [m]),
    "metrics-null": _raw(M1, lambda b: b"null"),
    "metrics-empty": _raw(M1, lambda b: b""),
    "metrics-nan": _raw(M1, lambda b: b.replace(b'"train_size": ', b'"train_size": NaN, "x": ', 1)),
    "metrics-not-utf8": _raw(M1, lambda b: b"\xff\xfe" + b),
    "metrics-deep": _raw(M1, lambda b: b.rstrip()[:-1] + b', "deep": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    "manifest-not-dict": _raw(MAN, lambda b: b'"a run"'),
    "truncated-metrics": _truncate(M1),
    "truncated-manifest": _truncate(MAN),
    "truncated-scored": _truncate("round-1/scored.jsonl"),
    "truncated-selected": _truncate("round-1/selected.jsonl"),
    "scored-bad-line": _append("round-0/scored.jsonl", b"{not json\n"),
    "scored-array-line": _append("round-0/scored.jsonl", b"[1, 2]\n"),
    "scored-no-margin": _append("round-0/scored.jsonl", b'{"id": "x"}\n'),
    "scored-string-margin": _set_line("round-1/scored.jsonl", "pred_margin", "0.5"),
    "scored-huge-margin": _set_line("round-1/scored.jsonl", "pred_margin", 1e308),
    "selected-negative-budget": _set_line("round-1/selected.jsonl", "budget", -3),
    "selected-float-budget": _set_line("round-1/selected.jsonl", "budget", 1.5),
    "selected-no-budget": _set_line("round-1/selected.jsonl", "budget", DELETE),
    # huge files
    "huge-metrics": _huge_sparse(M1),
    "huge-manifest": _huge_sparse(MAN),
    "long-line-scored": _long_line("round-0/scored.jsonl"),
    "fifo-scored": _fifo("round-1/scored.jsonl"),
    "fifo-metrics": _fifo(M1),
    # leading outside the folder
    "symlink-scored": _symlink_out("round-1/scored.jsonl"),
    "symlink-selected": _symlink_out("round-1/selected.jsonl"),
    "symlink-metrics": _symlink_out(M1),
    "symlink-manifest": _symlink_out(MAN),
    "symlink-round": _symlink_out("round-1"),
}

C_REP = "report.json"
C_RUNS = "runs.jsonl"
C_INFO = "compare.json"
C_RUN = "runs/steps/uniform/seed-0"
COMPARE_CASES = {
    **{f"del-{k}": _set(C_REP, k, DELETE) for k in (
        "protocols", "config", "config.strategies", "protocols.steps.none", "protocols.steps.none.accuracy_mean",
        "protocols.steps.none.accuracy_std", "protocols.steps.none.accuracy_ci95", "protocols.steps.none.seeds",
        "protocols.steps.none.length_longer", "protocols.steps.uniform.length_shorter",
        "protocols.steps.uniform.vs_none.ci95", "protocols.steps.uniform.vs_none.wins")},
    **{f"type-{k}-{type(v).__name__}": _set(C_REP, k, v) for k, v in (
        ("protocols", []), ("protocols.steps", "x"), ("protocols.steps.none", 0.5),
        ("protocols.steps.none.accuracy_mean", "0.6"), ("protocols.steps.none.accuracy_ci95", [0.5]),
        ("protocols.steps.uniform.vs_none", [0.1]), ("protocols.steps.uniform.vs_none.mean", None),
        ("protocols.steps.uniform.diagnostics", "x"), ("protocols.steps.uniform.diagnostics.ess", "x"),
        ("config.strategies", "none,uniform"), ("config.strategies", [1, 2]), ("config.refine", "x"),
        ("config.refine.guard", "yes"), ("protocols.steps.none.seeds", -1),
        ("protocols.steps.none.accuracy_mean", 7.0))},
    "protocols-empty": _set(C_REP, "protocols", {}),
    "strategies-none": _edit(C_REP, lambda r: {**r, "config": {**r["config"], "strategies": []},
                                               "protocols": {"steps": {}}}),
    "strategies-too-many": _set(C_REP, "config.strategies", [f"s{i}" for i in range(101)]),
    "protocol-unknown": _edit(C_REP, lambda r: {**r, "protocols": {"weird": r["protocols"]["steps"]}}),
    "strategy-not-in-config": _set(C_REP, "config.strategies", ["none"]),
    "strategy-path": _set(C_REP, "config.strategies", ["../../../../etc", "none"]),
    "report-not-dict": _raw(C_REP, lambda b: b"[]"),
    "truncated-report": _truncate(C_REP),
    "truncated-runs": _truncate(C_RUNS),
    "truncated-compare-json": _truncate(C_INFO),
    "huge-report": _huge_sparse(C_REP),
    "huge-runs": _huge_sparse(C_RUNS),
    "runs-bad-line": _append(C_RUNS, b"oops\n"),
    "runs-array-line": _append(C_RUNS, b"[]\n"),
    **{f"runs-{k}-{v!r}"[:60]: _set_line(C_RUNS, k, v) for k, v in (
        ("seed", "0"), ("seed", -1), ("seed", 10**15), ("protocol", "../../../.."), ("protocol", "/etc"),
        ("strategy", "../../../../outside"), ("strategy", 3), ("accuracy", "x"), ("accuracy_by_round", [0.5]),
        ("accuracy_by_round", "x"), ("selection", "x"), ("selection", [{"guard": "x"}]))},
    **{f"runs-del-{k}": _set_line(C_RUNS, k, DELETE) for k in ("seed", "protocol", "strategy", "accuracy",
                                                               "accuracy_by_round")},
    "compare-json-not-dict": _raw(C_INFO, lambda b: b"3"),
    "compare-json-libraries": _set(C_INFO, "libraries", ["torch"]),
    "run-metrics-missing-key": _set(f"{C_RUN}/round-1/metrics.json", "train_size", DELETE),
    "run-metrics-eval-type": _set(f"{C_RUN}/round-1/metrics.json", "eval", "x"),
    "run-manifest-plugins": _set(f"{C_RUN}/manifest.json", "plugins", ["mlp"]),
    "run-round-absurd": _extra_round(f"{C_RUN}/round-99999999999", f"{C_RUN}/round-1"),
    "run-metrics-huge-int": _set(f"{C_RUN}/round-1/metrics.json", "eval.custom", 10**400),
    "run-scored-bad": _append(f"{C_RUN}/round-0/scored.jsonl", b"{\n"),
    "run-selected-string-budget": _set_line(f"{C_RUN}/round-1/selected.jsonl", "budget", "1"),
    "symlink-report": _symlink_out(C_REP),
    "symlink-runs": _symlink_out(C_RUNS),
    "symlink-run-folder": _symlink_out(C_RUN),
    "symlink-run-scored": _symlink_out(f"{C_RUN}/round-0/scored.jsonl"),
    "symlink-run-selected": _symlink_out(f"{C_RUN}/round-1/selected.jsonl"),
}


def _canary(tmp_path: Path) -> Path:
    """A file outside the folder whose contents must never be read: its atime is set before its mtime."""
    canary = tmp_path / "canary.jsonl"
    canary.write_text(json.dumps({"pred_margin": 0.5, "budget": 1, "secret": CANARY}) + "\n", encoding="utf-8")
    st = canary.stat()
    os.utime(canary, ns=(st.st_mtime_ns - 10**12, st.st_mtime_ns))  # a read would move atime (relatime)
    return canary


def _assert_refused(folder: Path, damaged: str, canary: Path, out: Path) -> None:
    atime = canary.stat().st_atime_ns
    t0 = time.monotonic()
    proc = report_cli(folder, out)
    assert time.monotonic() - t0 < 100
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(errors) == 1, proc.stderr[-2000:]
    assert str(folder / damaged) in errors[0] or str(folder / Path(damaged).parent) in errors[0], errors[0]
    assert CANARY not in proc.stderr + proc.stdout
    assert canary.stat().st_atime_ns == atime  # never opened
    assert not out.exists()


@pytest.mark.parametrize("case", sorted(REFINE_CASES))
def test_report_refuses_a_damaged_refine_folder(case, refine_dir, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(refine_dir, folder, symlinks=True)
    canary = _canary(tmp_path)
    damaged = REFINE_CASES[case](folder, canary)
    _assert_refused(folder, damaged, canary, tmp_path / "page.html")


@pytest.mark.parametrize("case", sorted(COMPARE_CASES))
def test_report_refuses_a_damaged_compare_folder(case, compare_dir, tmp_path):
    folder = tmp_path / "cmp"
    shutil.copytree(compare_dir, folder, symlinks=True)
    canary = _canary(tmp_path)
    damaged = COMPARE_CASES[case](folder, canary)
    _assert_refused(folder, damaged, canary, tmp_path / "page.html")


def test_paths_recorded_in_the_manifest_are_shown_never_read(refine_dir, tmp_path):
    """input.path and heldout.path say where the run's inputs were: text on the page, never opened."""
    folder = tmp_path / "run"
    shutil.copytree(refine_dir, folder, symlinks=True)
    canary = _canary(tmp_path)
    manifest = _load(folder / MAN)
    manifest["input"]["path"] = str(canary)
    manifest["heldout"]["path"] = "../../../../../../etc/passwd"
    _dump(folder / MAN, manifest)
    atime = canary.stat().st_atime_ns
    out = tmp_path / "page.html"
    proc = report_cli(folder, out)
    assert proc.returncode == 0, proc.stderr
    page = out.read_text(encoding="utf-8")
    assert str(canary) in page and CANARY not in page and "root:" not in page
    assert canary.stat().st_atime_ns == atime


def test_a_report_html_that_leads_outside_is_not_followed(refine_dir, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(refine_dir, folder, symlinks=True)
    canary = _canary(tmp_path)
    (folder / "report.html").unlink()
    (folder / "report.html").symlink_to(canary)
    atime = canary.stat().st_atime_ns
    proc = run_cli("report", str(folder))
    assert proc.returncode == 2 and proc.stderr.count("Error:") == 1 and "Traceback" not in proc.stderr
    assert f"{folder / 'report.html'}: leads outside the run folder" in proc.stderr
    assert canary.stat().st_atime_ns == atime and (folder / "report.html").is_symlink()


def test_undamaged_folders_still_report(refine_dir, compare_dir, tmp_path):
    for folder in (refine_dir, compare_dir):
        proc = report_cli(folder, tmp_path / f"{folder.name}.html")
        assert proc.returncode == 0, proc.stderr
        assert "<img " in (tmp_path / f"{folder.name}.html").read_text(encoding="utf-8")


# -- every field, in-process: a damaged value renders or is one MarsError naming its file ------------------
def _leaves(value: Any, prefix: tuple = ()) -> list[tuple]:
    if isinstance(value, dict):
        out = [prefix] if prefix else []
        for k, v in value.items():
            out += _leaves(v, (*prefix, k))
        return out
    if isinstance(value, list) and value and len(value) <= 3:
        return [prefix, *(p for i, v in enumerate(value) for p in _leaves(v, (*prefix, i)))]
    return [prefix]


def _apply(doc: Any, path: tuple, value: Any) -> Any:
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


def _fuzz_targets(folder: Path, files: list[str], values: tuple) -> list[tuple[str, tuple, Any]]:
    out = []
    for rel in files:
        path = folder / rel
        doc = _load(path) if rel.endswith(".json") else json.loads(path.read_text(encoding="utf-8").splitlines()[0])
        for leaf in _leaves(doc):
            for value in values:
                out.append((rel, leaf, value))
    return out


def _plotted(rel: str, leaf: tuple) -> bool:
    """Whether the figures read this field (the rest of the page is drawn without figures, which is faster)."""
    if rel in (MAN, C_INFO):
        return False
    if rel == M1:
        return leaf[:1] in (("eval_margins",), ()) or leaf[:2] in (
            ("eval",), ("eval", "accuracy"), ("eval", "accuracy_ci95"), ("eval", "length_baseline"))
    if rel == C_RUNS:
        return leaf[:1] in (("seed",), ("protocol",), ("strategy",), ("accuracy",), ("accuracy_by_round",))
    return len(leaf) < 3 or leaf[:2] == ("config", "strategies") or leaf[3:4] in (
        ("accuracy_mean",), ("accuracy_ci95",), ("length_longer",), ("length_shorter",), ("vs_none",), ("vs_uniform",))


def _fuzz(folder: Path, files: list[str], values: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """Every field of ``files`` deleted or replaced in turn; the report renders or raises one MarsError naming it."""
    monkeypatch.setattr(plots, "png_bytes", lambda fig: plots._plt().close(fig) or b"")  # draw, skip the PNG
    refused = 0
    work = tmp_path / "w"
    shutil.copytree(folder, work, symlinks=True)
    for rel, leaf, value in _fuzz_targets(folder, files, values):
        path = work / rel
        for other in files:  # undo the last damage
            (work / other).write_bytes((folder / other).read_bytes())
        if rel.endswith(".json"):
            _dump(path, _apply(_load(path), leaf, value))
        else:
            lines = path.read_text(encoding="utf-8").splitlines()
            lines[0] = json.dumps(_apply(json.loads(lines[0]), leaf, value))
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            render.build_report(work, pngs=None if _plotted(rel, leaf) else {})
        except MarsError as e:
            assert str(work) in str(e), (rel, leaf, value, str(e))
            refused += 1
        except Exception as e:  # the point: nothing else may leave the report
            pytest.fail(f"{rel} {'.'.join(map(str, leaf))} = {value!r}: {type(e).__name__}: {e}")
    return refused


VALUES = [pytest.param((DELETE, "x"), id="missing-or-string"),
          pytest.param((None, -1, [1e300]), id="null-negative-list", marks=pytest.mark.slow)]


@pytest.mark.parametrize("values", VALUES)
def test_every_field_of_a_refine_folder(values, refine_dir, tmp_path, monkeypatch):
    assert _fuzz(refine_dir, [M1, MAN], values, tmp_path, monkeypatch) > 0


@pytest.mark.parametrize("values", VALUES)
def test_every_field_of_a_compare_folder(values, compare_dir, tmp_path, monkeypatch):
    assert _fuzz(compare_dir, [C_REP, C_RUNS, C_INFO], values, tmp_path, monkeypatch) > 0


# -- one writer per run folder ---------------------------------------------------------------------------------
def _refine_proc(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "marsctl", "refine", str(TINY), *REFINE_ARGS, "--out", str(out),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NO_COLOR": "1"})


def _wait_for(cond: Callable[[], bool], proc: subprocess.Popen, what: str, timeout: float = 300) -> None:
    t0 = time.monotonic()
    while not cond():
        if proc.poll() is not None:
            pytest.fail(f"the first refine ended ({proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}")
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)


def _holds_lock(out: Path, pid: int) -> Callable[[], bool]:
    def cond() -> bool:
        try:
            return (out / ".marsctl.lock").read_text().strip() == str(pid)
        except OSError:
            return False
    return cond


def _assert_complete(out: Path, rounds: int) -> None:
    summary = _load(out / "summary.json")
    assert [r["round"] for r in summary["rounds"]] == list(range(rounds + 1))
    for k in range(rounds + 1):
        names = {p.name for p in (out / f"round-{k}").iterdir()}
        need = {"metrics.json", "train.jsonl", "scored.jsonl", "model"} | (
            {"selected.jsonl", "synthetic.jsonl"} if k else set())
        assert need <= names, (k, names)
    assert not list(out.glob("round-*.partial"))
    assert _load(out / MAN)["rounds_finished"] == list(range(rounds + 1))


def test_a_second_writer_is_refused_while_the_first_finishes(tmp_path):
    out = tmp_path / "run"
    first = _refine_proc(out, "--rounds", "1")
    _wait_for(_holds_lock(out, first.pid), first, "it held the lock")
    for args in (["--rounds", "1", "--resume"], ["--rounds", "2", "--resume"], ["--rounds", "1"]):
        second = run_cli("refine", str(TINY), *REFINE_ARGS, "--out", str(out), *args)
        assert second.returncode == 2, second.stderr
        assert f"Error: {out} is in use by another marsctl process (pid {first.pid})" in second.stderr
        assert "Traceback" not in second.stderr and second.stderr.count("Error:") == 1
    report = run_cli("report", str(out))  # writing report.html into it is refused too
    assert report.returncode == 2 and "Traceback" not in report.stderr and report.stderr.count("Error:") == 1
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    _assert_complete(out, 1)


def test_compare_folder_is_locked(tmp_path):
    from marsctl.runlock import run_lock

    out = tmp_path / "cmp"
    with run_lock(out):
        proc = run_cli("compare", str(TINY), "--seeds", "1", "--rounds", "1", "--out", str(out))
    assert proc.returncode == 2 and f"{out} is in use by another marsctl process (pid {os.getpid()})" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [".marsctl.lock"]


def test_a_killed_run_does_not_block_the_next(tmp_path):
    out = tmp_path / "run"
    first = _refine_proc(out, "--rounds", "2")
    _wait_for(lambda: (out / "round-0" / "metrics.json").exists(), first, "round 0 finished")  # killed in round 1
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL
    resumed = run_cli("refine", str(TINY), *REFINE_ARGS, "--out", str(out), "--rounds", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stderr
    _assert_complete(out, 2)


def test_a_run_killed_before_its_manifest_leaves_a_folder_marsctl_takes_again(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".marsctl.lock").write_text("999999999\n")  # the lock file alone: unlocked, left by a dead process
    proc = run_cli("refine", str(TINY), *REFINE_ARGS, "--out", str(out), "--rounds", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_complete(out, 0)


def test_rounds_come_in_number_order_and_must_be_complete(tmp_path):
    from marsctl import rundir
    from marsctl.errors import ConfigError

    for k in range(12):
        d = tmp_path / f"round-{k}"
        (d / "model").mkdir(parents=True)
        for name in ("train.jsonl", "scored.jsonl"):
            (d / name).write_text("")
        _dump(d / "metrics.json", {"train_size": 1, "n_synthetic": 0, "train_curvature_weight": 0.2})
    (tmp_path / "round-12.partial").mkdir()  # being built: not a round
    assert rundir.finished_rounds(tmp_path) == list(range(12))
    assert list(rundir.round_metrics(tmp_path)) == list(range(12))
    (tmp_path / "round-11" / "train.jsonl").unlink()
    with pytest.raises(ConfigError, match=r"round-11: the round is incomplete \(no train.jsonl\)"):
        rundir.finished_rounds(tmp_path)
