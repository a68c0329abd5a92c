"""marsctl: margin-aware reward modeling with self-refinement (MARS).

The public Python API (docs/python.md) is the names in ``__all__``; each is imported on first use,
so ``import marsctl`` (and ``marsctl --help``) loads neither torch nor numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from marsctl.version import FORMAT_VERSION, __version__

# Public name -> (module, attribute). These names are kept stable; everything else is internal.
_PUBLIC = {
    "read_pairs": ("marsctl.records", "read_pairs"),
    "iter_pairs": ("marsctl.records", "iter_pairs"),
    "write_records": ("marsctl.records", "write_records"),
    "load_model": ("marsctl.modeldir", "load_head"),
    "train": ("marsctl.steps", "train"),
    "score": ("marsctl.steps", "score"),
    "iter_score": ("marsctl.steps", "iter_score"),
    "select": ("marsctl.augmentation", "select"),
    "make_augmenter": ("marsctl.augmentation", "make_augmenter"),
    "augment": ("marsctl.augmentation", "augment"),
    "iter_augment": ("marsctl.augmentation", "iter_augment"),
    "refine": ("marsctl.runs", "refine"),
    "RefineConfig": ("marsctl.config", "RefineConfig"),
    "evaluate": ("marsctl.metrics", "evaluate"),
    "export_onnx": ("marsctl.export", "export_onnx"),
    "Head": ("marsctl.plugin", "Head"),
    "Selector": ("marsctl.plugin", "Selector"),
    "Augmenter": ("marsctl.plugin", "Augmenter"),
    "MarsError": ("marsctl.errors", "MarsError"),
    "DataError": ("marsctl.errors", "DataError"),
    "ConfigError": ("marsctl.errors", "ConfigError"),
    "PluginError": ("marsctl.errors", "PluginError"),
}

__all__ = [  # the names of _PUBLIC, and the two constants (tests/test_python_api.py checks they agree)
    "FORMAT_VERSION", "Augmenter", "ConfigError", "DataError", "Head", "MarsError", "PluginError", "RefineConfig",
    "Selector", "__version__", "augment", "evaluate", "export_onnx", "iter_augment", "iter_pairs", "iter_score",
    "load_model", "make_augmenter", "read_pairs", "refine", "score", "select", "train", "write_records",
]

if TYPE_CHECKING:
    from marsctl.augmentation import augment, iter_augment, make_augmenter, select
    from marsctl.config import RefineConfig
    from marsctl.errors import ConfigError, DataError, MarsError, PluginError
    from marsctl.export import export_onnx
    from marsctl.metrics import evaluate
    from marsctl.modeldir import load_head as load_model
    from marsctl.plugin import Augmenter, Head, Selector
    from marsctl.records import iter_pairs, read_pairs, write_records
    from marsctl.runs import refine
    from marsctl.steps import iter_score, score, train


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562)."""
    if name not in _PUBLIC:
        msg = f"module 'marsctl' has no attribute {name!r}"
        raise AttributeError(msg)
    module, attr = _PUBLIC[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
