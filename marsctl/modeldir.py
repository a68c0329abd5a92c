"""Model directories (safetensors only): the one reader and writer.

A model directory holds marsctl's metadata file (``config.json``, or ``marsctl.json`` beside a
Hugging Face ``config.json``) and the head's weights. :func:`save_head` writes one (``Head.save``
calls it): the weights, then the metadata with the versions, the training manifest and each file's
sha256. Everything read here is checked before use: the metadata's field types, the checksums
recorded when it was saved, and the tensors' names, shapes, dtypes and finiteness.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marsctl.errors import ConfigError
from marsctl.params import build_config
from marsctl.stats import file_sha256
from marsctl.version import FORMAT_VERSION, __version__

if TYPE_CHECKING:
    from marsctl.plugin import Head

EDITED_HINT = "the file is damaged or was edited: restore it, or train the model again"
DAMAGED_HINT = "the file is damaged: restore it from a copy, or train the model again with: marsctl train PAIRS -o DIR"

# Fields of a model directory's metadata file and their JSON types (the rest is informational).
_META_TYPES: dict[str, tuple[type, str]] = {
    "head": (str, "a string"), "format_version": (int, "an integer"), "config": (dict, "an object"),
    "training": (dict, "an object"), "history": (list, "an array"), "encoder": (dict, "an object"),
}
_JSON_NAMES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
               float: "a number", type(None): "null"}


def _model_config_path(p: Path) -> Path:
    return p / "marsctl.json" if (p / "marsctl.json").exists() else p / "config.json"


def _check_meta_types(cfg: dict[str, Any], cfg_path: Path) -> None:
    """Each known field of a model's metadata has its JSON type (a bool is not an integer)."""
    for key, (typ, name) in _META_TYPES.items():
        if key not in cfg:
            continue
        value = cfg[key]
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)) or value == "":
            got = "an empty string" if value == "" else _JSON_NAMES.get(type(value), type(value).__name__)
            msg = f"{cfg_path}: field {key!r} must be {name}, not {got}"
            raise ConfigError(msg, hint=EDITED_HINT)
    seed = cfg.get("training", {}).get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        msg = f"{cfg_path}: field 'training.seed' must be an integer, not {_JSON_NAMES.get(type(seed), '?')}"
        raise ConfigError(msg, hint=EDITED_HINT)


def read_model_config(path: str | Path) -> dict[str, Any]:
    """Read a model directory's config.json with clear errors (every known field type-checked)."""
    p = Path(path)
    cfg_path = _model_config_path(p)
    if not p.is_dir():
        msg = f"model dir {p}: no such directory"
        raise ConfigError(msg, hint="train one with: marsctl train PAIRS -o MODEL_DIR")
    if not cfg_path.exists():
        msg = f"model dir {p}: no config.json or marsctl.json (not a marsctl model directory)"
        raise ConfigError(msg)
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        msg = f"{cfg_path}: invalid JSON ({e.msg} at line {e.lineno})"
        raise ConfigError(msg) from None
    except (UnicodeDecodeError, OSError) as e:
        msg = f"{cfg_path}: cannot read it ({type(e).__name__}: {str(e)[:120]})"
        raise ConfigError(msg) from None
    if not isinstance(cfg, dict) or "head" not in cfg:
        msg = f"{cfg_path}: missing field 'head' (not a marsctl model directory)"
        raise ConfigError(msg)
    _check_meta_types(cfg, cfg_path)
    if cfg.get("format_version", 1) > FORMAT_VERSION:
        msg = f"{cfg_path}: format_version {cfg['format_version']} is newer than this marsctl understands"
        raise ConfigError(msg, hint="upgrade marsctl")
    return cfg


def verify_checksums(path: Path, cfg: dict[str, Any]) -> None:
    """Check the files of a model directory against the sha256s its metadata recorded when saved.

    Catches damage that still parses (a flipped bit in a weight). Directories saved before
    checksums were recorded have none and are not checked.
    """
    sums = cfg.get("sha256")
    if sums is None:
        return
    if not isinstance(sums, dict):
        msg = f"{_model_config_path(path)}: field 'sha256' must be an object of file name → sha256"
        raise ConfigError(msg)
    for name, want in sums.items():
        f = path / str(name)
        if not f.is_file():
            msg = f"model dir {path}: {name} is missing (it was saved with the model)"
            raise ConfigError(msg, hint="restore the file, or train the model again")
        if file_sha256(f) != want:
            msg = f"{f}: the file is damaged (its sha256 differs from the one recorded when it was saved)"
            raise ConfigError(msg, hint="restore the file, or train the model again")


def _head_config(cls: type[Head], path: Path, saved: dict[str, Any], overrides: Any) -> Any:
    """The saved config (its errors name the file), with ``overrides`` applied on top."""
    owner = f"the head {cls.name!r}"
    try:
        config = build_config(cls.Config, saved, owner=owner)
    except ConfigError as e:
        msg = f"{_model_config_path(path)}, field 'config': {e}"
        raise ConfigError(msg, hint=EDITED_HINT) from None
    if not overrides:
        return config
    new = dataclasses.asdict(build_config(cls.Config, overrides, owner))
    given = dict(overrides) if isinstance(overrides, dict) else dict(o.split("=", 1) for o in overrides)
    merged = {**dataclasses.asdict(config), **{k.strip(): new[k.strip()] for k in given}}
    return build_config(cls.Config, merged, owner=owner)


def load_head(path: str | Path, expect: str | None = None, overrides: Any = None) -> Head:
    """Load a head from a model directory; ``expect`` checks the head kind.

    ``overrides`` (``key=value`` list or dict) change the saved config, e.g. the learning rate
    before continuing training; a change that alters the weights' shapes is refused (by the
    head's ``load_weights``).
    """
    from marsctl import registry

    cfg = read_model_config(path)
    kind = cfg["head"]
    if expect is not None and kind != expect:
        msg = f"model dir {path} holds a {kind!r} head, not {expect!r}"
        raise ConfigError(msg, hint=f"use --head {kind}, or train a new model without --init")
    cls = registry.load("head", kind)
    config = _head_config(cls, Path(path), cfg.get("config", {}), overrides)
    verify_checksums(Path(path), cfg)
    config = cls.config_for_dir(config, cfg, Path(path))
    head = cls(config, seed=cfg.get("training", {}).get("seed", 0))
    head.load_weights(Path(path))
    head.manifest_ = cfg.get("training", {})
    head.history_ = cfg.get("history", [])
    return head


def save_head(head: Head, path: str | Path, *, overwrite: bool = False) -> Path:
    """Save ``head``'s metadata file and weights as a new model directory (what ``Head.save`` does).

    The directory is built beside ``path`` and renamed into place when complete. An existing
    ``path`` is replaced only when it is empty, or when it is a marsctl model directory holding
    nothing but marsctl's files and ``overwrite`` is true (``marsctl.outputs``).
    """
    import shutil

    from marsctl.atomic import install_dir, new_temp_dir, write_failed
    from marsctl.outputs import check_model_dir_output

    target = Path(path)
    check_model_dir_output(target, overwrite=overwrite)
    try:
        tmp = new_temp_dir(target)
    except OSError as e:
        raise write_failed(target, e) from None
    try:
        head.save_weights(tmp)
        config = {
            "format_version": FORMAT_VERSION,
            "marsctl_version": __version__,
            "head": head.name,
            "head_version": head.version,
            "config": dataclasses.asdict(head.config),
            **head.extra_config(),
            "training": head.manifest_,
            "history": head.history_,
            "files": sorted([p.name for p in tmp.iterdir()] + [head.meta_file]),
            "sha256": {p.name: file_sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()},
        }
        text = json.dumps(config, indent=2, allow_nan=False) + "\n"
        (tmp / head.meta_file).write_text(text, encoding="utf-8")
        install_dir(tmp, target)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise write_failed(target, e) from None
        raise
    return target


# ------------------------------------------------------------------------------------- safetensors
def read_safetensors(f: Path) -> dict[str, Any]:
    """The tensors of a safetensors file; a damaged file (truncated, empty, bad header) is a ConfigError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(f))
    except (SafetensorError, OSError, ValueError) as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0][:200]
        msg = f"{f}: not a readable safetensors file ({reason})"
        raise ConfigError(msg, hint=DAMAGED_HINT) from None


def check_state(f: Path, state: dict[str, Any], expected: dict[str, Any], owner: str) -> None:
    """Check loaded tensors against the model's own: the same names, shapes and dtypes, and all finite."""
    import torch

    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:
        what = f"missing tensor {missing[0]!r}" if missing else f"unexpected tensor {extra[0]!r}"
        msg = f"{f}: {what}; the weights do not fit {owner}"
        raise ConfigError(msg, hint=DAMAGED_HINT)
    for name, want in expected.items():
        got = state[name]
        if tuple(got.shape) != tuple(want.shape) or got.dtype != want.dtype:
            msg = (f"{f}: the weights do not fit {owner} (tensor {name!r} is {got.dtype} {tuple(got.shape)}; "
                   f"it needs {want.dtype} {tuple(want.shape)})")
            raise ConfigError(msg, hint="the weights and config.json do not match: " + DAMAGED_HINT)
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            bad = int((~torch.isfinite(got)).sum())
            msg = f"{f}: tensor {name!r} holds {bad} NaN or infinite values"
            raise ConfigError(msg, hint=DAMAGED_HINT)
