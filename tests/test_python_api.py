"""The public Python API: names exported lazily from marsctl, and docs/python.md run as a doctest."""

from __future__ import annotations

import doctest
import subprocess
import sys

import pytest
from conftest import ROOT

import marsctl


def test_import_marsctl_loads_neither_torch_nor_numpy():
    code = ("import sys, marsctl; assert marsctl.__all__; "
            "print(sorted(m for m in ('torch', 'numpy', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", sorted(set(marsctl.__all__) - {"__version__", "FORMAT_VERSION"}))
def test_every_public_name_resolves_and_is_documented(name):
    obj = getattr(marsctl, name)
    assert callable(obj) and (obj.__doc__ or "").strip(), name
    assert name in dir(marsctl)
    assert f"`{name}" in (ROOT / "docs" / "python.md").read_text(encoding="utf-8")


def test_all_lists_exactly_the_lazy_names():
    assert set(marsctl.__all__) == set(marsctl._PUBLIC) | {"__version__", "FORMAT_VERSION"}
    assert len(marsctl.__all__) == len(set(marsctl.__all__))


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        marsctl.trian  # noqa: B018
    from marsctl import steps  # a submodule still imports as one

    assert steps.train is marsctl.train


def test_docs_python_md_runs(monkeypatch):
    """Every example of docs/python.md, from the repository root (its fixtures paths are relative)."""
    monkeypatch.chdir(ROOT)
    result = doctest.testfile(str(ROOT / "docs" / "python.md"), module_relative=False, report=True,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 20
    assert result.failed == 0
