"""The front door cannot drift: README's size and first commands, every relative link in README.md and docs/,
the demo table against its committed summary, and the size of the benchmark results kept in git. No marsctl import,
< 1 s."""

from __future__ import annotations

import re
import shlex
import subprocess
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
DEMO_SUMMARY = ROOT / "benchmarks" / "results" / "demo" / "summary.md"

README_MAX_BYTES = 12 * 1024
RESULTS_MAX_BYTES = 2 * 1024 * 1024
INSTALL_AND_DEMO = "python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 && .venv/bin/pip install -e '.[test]' && "
TEST_COMMAND = "HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q"

LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def prose(text: str, inline_code: bool = False) -> str:
    """The text outside fenced code blocks, and outside inline code unless asked (links there are examples)."""
    out, in_fence = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            out.append(line if inline_code else re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, markup and punctuation dropped, spaces to hyphens.

    >>> slug("Label noise (`--noise`)")
    'label-noise---noise'
    >>> slug("The length term, ensembles, per-pair weights")
    'the-length-term-ensembles-per-pair-weights'
    >>> slug("Why the default is `mars-abs`")
    'why-the-default-is-mars-abs'
    """
    text = re.sub(r"[`*]|<[^>]+>", "", heading.strip()).lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, with GitHub's -1, -2 suffixes for repeated headings."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose(path.read_text(encoding="utf-8"), inline_code=True).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        s = slug(m.group(1))
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out


def links(path: Path) -> list[str]:
    """The relative link targets of a Markdown file (web and mail links left out)."""
    found = LINK.findall(prose(path.read_text(encoding="utf-8")))
    return [t for t in found if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]


def test_readme_is_short():
    size = README.stat().st_size
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move detail to docs/ (limit {README_MAX_BYTES})"


def test_readme_opens_with_the_two_commands():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert lines[2] == "```bash"
    assert lines[3].startswith(INSTALL_AND_DEMO), lines[3]
    assert " && HF_HUB_OFFLINE=1 .venv/bin/marsctl refine " in lines[3] and lines[3].endswith(" --out runs/demo")
    assert lines[4] == TEST_COMMAND
    assert lines[5] == "```"
    demo = shlex.split(lines[3].split(" && HF_HUB_OFFLINE=1 ", 1)[1])
    inputs = [demo[2], demo[demo.index("--eval") + 1]]
    for name in inputs:
        assert (ROOT / name).is_file(), f"the demo reads {name}, which is not in the repository"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path: Path):
    broken = []
    for target in links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading with that anchor)")
    assert not broken, f"{path.name}: " + "; ".join(broken)


def test_every_doc_is_reachable_from_the_readme():
    reached, todo = set(), [README]
    while todo:
        page = todo.pop()
        for target in links(page):
            dest = (page.parent / target.partition("#")[0]).resolve() if target.partition("#")[0] else page
            if dest.suffix == ".md" and dest.is_file() and dest not in reached:
                reached.add(dest)
                todo.append(dest)
    missing = [d.name for d in DOCS if d.resolve() not in reached]
    assert not missing, f"docs not reachable by links from README.md: {missing}"


def test_readme_demo_table_is_the_committed_demo_summary():
    readme = README.read_text(encoding="utf-8")
    section = readme.split("## What the demo prints", 1)[1].split("\n## ", 1)[0]
    summary = DEMO_SUMMARY.read_text(encoding="utf-8")
    table = [line for line in summary.splitlines() if line.startswith("|")]
    assert len(table) >= 3
    assert [line for line in section.splitlines() if line.startswith("|")] == table
    assert summary.strip() in section, "README's demo block differs from benchmarks/results/demo/summary.md"


def test_every_fixture_file_names_its_licence():
    """Each bundled sample of real data (the demo's included) is listed in one dataset's licences/*/FILES."""
    listed: dict[str, list[str]] = {}
    for files in sorted((ROOT / "fixtures" / "licenses").glob("*/FILES")):
        for name in files.read_text(encoding="utf-8").split():
            listed.setdefault(name, []).append(files.parent.name)
    missing = [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "fixtures").glob("*.jsonl"))
               if p.relative_to(ROOT).as_posix() not in listed]
    assert not missing, f"fixtures without a licence entry (fixtures/licenses/DATASET/FILES): {missing}"
    twice = {name: where for name, where in listed.items() if len(where) > 1}
    assert not twice, f"fixtures listed under more than one dataset: {twice}"
    gone = [name for name in listed if not (ROOT / name).is_file()]
    assert not gone, f"fixtures/licenses/*/FILES names files that are not there: {gone}"
    demo = shlex.split(README.read_text(encoding="utf-8").splitlines()[3].split(" && HF_HUB_OFFLINE=1 ", 1)[1])
    assert {demo[2], demo[demo.index("--eval") + 1]} <= set(listed)


def kept_results() -> list[Path]:
    """The files under benchmarks/results that git tracks (every file there outside a git checkout)."""
    results = ROOT / "benchmarks" / "results"
    try:
        proc = subprocess.run(["git", "ls-files", "-z", "--", "benchmarks/results"], cwd=ROOT, capture_output=True,
                              timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return [p for p in results.rglob("*") if p.is_file()]
    return [ROOT / name for name in proc.stdout.decode().split("\0") if name and (ROOT / name).is_file()]


def test_kept_benchmark_results_stay_small():
    files = kept_results()
    total = sum(p.stat().st_size for p in files)
    assert total <= RESULTS_MAX_BYTES, f"benchmarks/results holds {total} bytes; keep summaries, not per-run dumps"
    dumps = [p.relative_to(ROOT).as_posix() for p in files if p.name in ("report.html", "runs.jsonl")]
    assert not dumps, f"regenerable per-run files under benchmarks/results: {dumps[:5]}"
