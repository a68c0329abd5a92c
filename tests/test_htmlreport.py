"""htmlreport and `marsctl report`: one self-contained page per run folder, escaped, written safely, and checked
in headless chromium when it is installed."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT, read_jsonl, run_cli

from marsctl import htmlreport, verdict
from marsctl.config import RefineConfig
from marsctl.errors import ConfigError
from marsctl.records import read_pairs
from marsctl.runs import RefineRun

EVIL = "<script>alert('x')</script>"
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)
CHECKER = ROOT / "scripts" / "check_report.py"
SAVED = ROOT / "benchmarks" / "results" / "compare" / "pandalm_testset"


@pytest.fixture(scope="module")
def refine_dir(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """A small refine run whose held-out rows carry a <script> in their prompt and subset."""
    root = tmp_path_factory.mktemp("html")
    with pytest.MonkeyPatch.context() as mp:  # the autouse isolation is per test; this runs once for the module
        mp.setenv("MARSCTL_CACHE_DIR", str(cache_dir))
        mp.setenv("HOME", str(root / "home"))
        return _refine(root)


def _refine(root: Path) -> Path:
    held = [{**r, "prompt": EVIL + r["prompt"], "subset": EVIL} for r in read_jsonl(FIXTURES / "tiny_test.jsonl")]
    path = root / "held.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in held), encoding="utf-8")
    out = root / "r"
    RefineRun(read_pairs(FIXTURES / "tiny.jsonl"), out, RefineConfig(rounds=1, budget=20, epochs=2, guard=True),
              heldout=read_pairs(path), input_name=f"tiny{EVIL}.jsonl", heldout_name=str(path)).run()
    return out


@pytest.fixture(scope="module")
def compare_dir(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """A small compare run (2 seeds, both protocols, 1 round) with a fixed held-out file."""
    out = tmp_path_factory.mktemp("html") / "cmp"
    run_cli("compare", str(FIXTURES / "tiny.jsonl"), "--eval", str(FIXTURES / "tiny_test.jsonl"), "--seeds", "2",
            "--rounds", "1", "--strategies", "none,uniform,mars-abs", "--epochs", "2", "--budget", "20", "--guard",
            "--out", str(out), env={"MARSCTL_CACHE_DIR": str(cache_dir)}, check=True)
    return out


def assert_self_contained(page: str) -> None:
    """No external src/href, no script, and every inline image decodes to a PNG."""
    assert not EXTERNAL.search(page)
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    srcs = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert srcs
    for src in srcs:
        head, _, payload = src.partition(",")
        assert head == "data:image/png;base64"
        assert base64.b64decode(payload, validate=True).startswith(b"\x89PNG\r\n\x1a\n")


def test_refine_report_is_self_contained_and_escaped(refine_dir):
    page = (refine_dir / "report.html").read_text(encoding="utf-8")
    assert_self_contained(page)
    assert EVIL not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page  # subset and file name
    assert len(re.findall("<img ", page)) == 3
    for text in ("Verdict", "Round 1 vs round 0: Δ", "Picking the longer response scores", "sha256",
                 "Synonym source:", "torch"):
        assert text in page, text
    guard = json.loads((refine_dir / "round-1" / "metrics.json").read_text())["selection"]["guard"]
    if guard["passed"]:
        assert "<td>passed</td>" in page
    else:  # the guard's decision, its reasons, and the verdict's count of fallbacks
        assert f"<td>failed ({htmlreport.html.escape('; '.join(guard['reasons']))}): mars-abs replaced by uniform" in page
        assert "The guard replaced 1 selection by uniform." in page
    manifest = json.loads((refine_dir / "manifest.json").read_text())
    assert manifest["input"]["sha256"] in page and manifest["libraries"]["torch"] in page


def test_refine_records_the_synonym_source(refine_dir):
    aug = json.loads((refine_dir / "round-1" / "metrics.json").read_text())["augment"]
    assert aug["provenance"]["synonym_source"] in ("wordnet", "builtin")


def test_compare_report_verdict_and_tables(compare_dir):
    page = (compare_dir / "report.html").read_text(encoding="utf-8")
    assert_self_contained(page)
    assert len(re.findall("<img ", page)) == 5
    rep = json.loads((compare_dir / "report.json").read_text())
    lines, _ = verdict.compare_verdict(rep)
    assert len(lines) == 2 and lines[0].startswith("same epochs: the best strategy is ")
    assert all(("within noise" in line) or ("beyond noise" in line) for line in lines)
    for line in lines:
        assert htmlreport.html.escape(line, quote=True) in page
    assert "same epochs per round (the paper&#x27;s protocol)" in page and "Δ vs none [CI] (wins/losses)" in page
    info = json.loads((compare_dir / "compare.json").read_text())
    assert info["input_sha256"] in page and info["heldout_sha256"] in page
    assert "The guard&#x27;s decisions" in page and "passed" in page


def test_compare_verdict_says_when_a_difference_is_beyond_noise():
    row = {"accuracy_mean": 0.6, "seeds": 5}
    rep = {"protocols": {"steps": {
        "none": {**row, "accuracy_mean": 0.55},
        "uniform": {**row, "accuracy_mean": 0.57},
        "mars": {**row, "vs_none": {"mean": 0.05, "ci95": [0.01, 0.09], "wins": 5, "losses": 0},
                 "vs_uniform": {"mean": 0.03, "ci95": [-0.01, 0.07], "wins": 4, "losses": 1}}}}}
    (line,), warn = verdict.compare_verdict(rep)
    assert line.startswith("matched steps: the best strategy is mars (60.0 % mean held-out accuracy over 5 seeds)")
    assert "Against none: +5.0 [+1.0, +9.0] (5/0) points (wins/losses over seeds), better, beyond noise" in line
    assert "Against uniform: +3.0 [-1.0, +7.0] (4/1) points (wins/losses over seeds), within noise" in line
    assert not warn


def test_marsctl_report_rewrites_its_own_page_only(compare_dir, tmp_path):
    target = compare_dir / "report.html"
    before = target.read_text(encoding="utf-8")
    run_cli("report", str(compare_dir), check=True)
    assert target.read_text(encoding="utf-8") != before  # its own report is replaced (a new time stamp)
    foreign = tmp_path / "mine.html"
    foreign.write_text("<html>my notes</html>", encoding="utf-8")
    proc = run_cli("report", str(compare_dir), "-o", str(foreign))
    assert proc.returncode == 2 and proc.stderr.count("Error:") == 1 and "not a report marsctl wrote" in proc.stderr
    assert foreign.read_text(encoding="utf-8") == "<html>my notes</html>"


def test_marsctl_report_refuses_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    proc = run_cli("report", str(tmp_path))
    assert proc.returncode == 2 and "not a marsctl run folder" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_refine_refuses_to_start_over_a_foreign_report(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "report.html").write_text("mine", encoding="utf-8")
    with pytest.raises(ConfigError, match="not a report marsctl wrote"):
        RefineRun(read_pairs(FIXTURES / "tiny.jsonl"), out, RefineConfig(rounds=0, epochs=1)).run()
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]


def test_report_of_a_saved_compare_only_reads_it(tmp_path):
    before = sorted(p.name for p in SAVED.iterdir())
    out = tmp_path / "saved.html"
    run_cli("report", str(SAVED), "-o", str(out), check=True)
    page = out.read_text(encoding="utf-8")
    assert_self_contained(page)
    assert len(re.findall("<img ", page)) == 2 and "not there" in page
    assert sorted(p.name for p in SAVED.iterdir()) == before


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return name
    return None


needs_chromium = pytest.mark.skipif(_chromium() is None, reason="no chromium binary on PATH "
                                                                "(Debian: apt-get install -y chromium)")


@needs_chromium
@pytest.mark.parametrize("which", ["refine_dir", "compare_dir"])
def test_report_renders_in_headless_chromium(which, request, tmp_path):
    folder = request.getfixturevalue(which)
    shot = tmp_path / "shot.png"
    proc = subprocess.run([sys.executable, str(CHECKER), str(folder / "report.html"), "--screenshot", str(shot)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("OK ") and "images loaded" in proc.stdout
    assert shot.read_bytes().startswith(b"\x89PNG")


@needs_chromium
def test_the_checker_fails_on_a_broken_page(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
                    '<img alt="cut" src="data:image/png;base64,iVBORw0KGgo="><script>throw new Error("boom")</script>'
                    "</body></html>", encoding="utf-8")
    proc = subprocess.run([sys.executable, str(CHECKER), str(page)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "image 'cut' did not load" in proc.stderr and "boom" in proc.stderr and "<script>" in proc.stderr
