"""The plugin registry: entry-point groups, loaded lazily by name."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from marsctl.errors import PluginError

GROUPS = {"head": "marsctl.heads", "augmenter": "marsctl.augmenters", "selector": "marsctl.selectors",
          "query": "marsctl.queries"}  # query: which unlabeled pairs to label next (marsctl.query, issue 22)

# In-process registrations (tests, notebooks): kind -> name -> class.
_EXTRA: dict[str, dict[str, type]] = {kind: {} for kind in GROUPS}


@dataclass(frozen=True)
class PluginInfo:
    """What is known about an installed plugin without importing it."""

    kind: str
    name: str
    value: str
    distribution: str
    version: str


def _allowed() -> set[str] | None:
    raw = os.environ.get("MARSCTL_LOAD_PLUGINS")
    if raw is None:
        return None
    return {x.strip() for x in raw.split(",") if x.strip()}


def _check_kind(kind: str) -> str:
    if kind not in GROUPS:
        msg = f"Unknown plugin kind {kind!r}. Kinds: {', '.join(GROUPS)}."
        raise PluginError(msg)
    return GROUPS[kind]


def _entry_points(kind: str) -> dict[str, EntryPoint]:
    group = _check_kind(kind)
    allowed = _allowed()
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        if allowed is None or ep.name in allowed:
            found.setdefault(ep.name, ep)
    return found


def names(kind: str) -> list[str]:
    """Names of the installed plugins of one kind, sorted."""
    return sorted(set(_entry_points(kind)) | set(_EXTRA[kind]))


def list_plugins() -> list[PluginInfo]:
    """Every installed plugin of every kind, without importing any of them."""
    out = []
    for kind in GROUPS:
        for name, ep in sorted(_entry_points(kind).items()):
            dist = ep.dist
            out.append(
                PluginInfo(kind, name, ep.value, dist.name if dist else "?", dist.version if dist else "?")
            )
        for name, cls in sorted(_EXTRA[kind].items()):
            version = str(getattr(cls, "version", "?"))
            out.append(PluginInfo(kind, name, f"{cls.__module__}:{cls.__qualname__}", "(registered)", version))
    return out


def load(kind: str, name: str) -> Any:
    """Import and return the plugin class ``name`` of ``kind``; only that entry point is loaded."""
    if name in _EXTRA.get(kind, {}):
        return _EXTRA[kind][name]
    eps = _entry_points(kind)
    if name not in eps:
        installed = names(kind)
        msg = f"Unknown {kind} {name!r}. Installed: {', '.join(installed) or '(none)'}."
        close = difflib.get_close_matches(name, installed, n=1)
        hint = f"Did you mean {close[0]!r}?" if close else None
        if os.environ.get("MARSCTL_LOAD_PLUGINS") is not None:
            hint = (hint + " " if hint else "") + "MARSCTL_LOAD_PLUGINS restricts which plugins load."
        raise PluginError(msg, hint=hint)
    ep = eps[name]
    try:
        cls = ep.load()
    except ImportError as e:
        msg = f"The {kind} plugin {name!r} ({ep.value}) failed to import: {e}"
        raise PluginError(msg) from e
    if getattr(cls, "name", None) != name:
        # Entry-point names are authoritative; keep the class in step.
        cls.name = name
    return cls


def create(kind: str, name: str, params: Any = None, **kwargs: Any) -> Any:
    """Load plugin ``name`` and build it with its Config from ``params`` (key=value list or dict)."""
    from marsctl.params import build_config

    cls = load(kind, name)
    config = build_config(cls.Config, params, owner=f"the {kind} {name!r}")
    return cls(config, **kwargs)


def check_params(kind: str, name: str, params: Any = None) -> Any:
    """Build (and so validate) plugin ``name``'s Config from ``params`` without creating the plugin."""
    from marsctl.params import build_config

    return build_config(load(kind, name).Config, params, owner=f"the {kind} {name!r}")


def register(kind: str, name: str, cls: Any) -> None:
    """Register a plugin class in this process (for tests and notebooks)."""
    _check_kind(kind)
    cls.name = name
    _EXTRA[kind][name] = cls


def unregister(kind: str, name: str) -> None:
    """Remove an in-process registration."""
    _EXTRA[kind].pop(name, None)
