"""The layout of the core holds: small modules, imports one way, nothing fetched from the package face.

Read from the source with ``ast`` (imports inside functions count; those under ``if TYPE_CHECKING:`` do not).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"marsctl": ROOT / "marsctl", "marsctl_plugins": ROOT / "plugins" / "marsctl_plugins"}
MAX_LINES = 400


def _modules(pkg: str) -> dict[str, Path]:
    base = PACKAGES[pkg]
    out = {}
    for path in sorted(base.rglob("*.py")):
        parts = [pkg, *path.relative_to(base).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The modules of ``known`` that module ``name`` imports (a name imported from a package that is itself a
    module counts as that module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = {id(n) for top in ast.walk(tree) if _type_checking(top) for n in ast.walk(top)}
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                pkg_parts = name.split(".") if is_pkg else name.split(".")[:-1]
                base = ".".join(pkg_parts[: len(pkg_parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in known:
                    found.add(sub)
                elif base in known:
                    found.add(base)
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    mods = {**_modules("marsctl"), **_modules("marsctl_plugins")}
    known = set(mods)
    return {name: _imports(path, name, known) for name, path in mods.items()}


def test_no_core_module_is_over_the_line_limit():
    long = {name: n for name, path in _modules("marsctl").items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


@pytest.mark.parametrize("pkg", ["marsctl", "marsctl_plugins"])
def test_nothing_imports_the_package_face(pkg: str):
    """Submodules are imported by their own names; the package's ``__init__`` re-exports only for users."""
    graph = _graph()
    faces = {n: sorted(m for m in deps if m in PACKAGES) for n, deps in graph.items() if n.startswith(pkg)}
    assert {n: f for n, f in faces.items() if f and n not in PACKAGES} == {}


def test_imports_go_one_way():
    """No circle among the modules of marsctl and its first-party plugins (graphlib finds one if there is)."""
    from graphlib import CycleError, TopologicalSorter

    graph = {n: {m for m in deps if m not in PACKAGES} for n, deps in _graph().items()}  # the face: checked above
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as e:
        pytest.fail(f"import circle: {' -> '.join(e.args[1])}")


def test_the_checks_see_imports_inside_functions(tmp_path: Path):
    """The reader counts a function-level import and skips one under TYPE_CHECKING (so the checks can fail)."""
    src = tmp_path / "m.py"
    src.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from marsctl import loop\n"
                   "def f():\n    from marsctl import stats\n    import marsctl.version\n", encoding="utf-8")
    assert _imports(src, "x.m", {"marsctl.loop", "marsctl.stats", "marsctl.version"}) == {
        "marsctl.stats", "marsctl.version"}
