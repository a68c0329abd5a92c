"""Parameter validation helpers and dataclass configs driven by one declaration."""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any

from marsctl.errors import ConfigError


def _fmt_bound(x: float, inf: str) -> str:
    return inf if math.isinf(x) else repr(x)


def check_interval(
    value: Any,
    name: str,
    owner: str,
    *,
    kind: type = float,
    low: float = -math.inf,
    high: float = math.inf,
    closed: str = "both",
) -> Any:
    """Check that ``value`` is a ``kind`` in an interval; raise a ConfigError in the house style.

    >>> check_interval(5, "budget", "select", kind=int, low=1)
    5
    >>> check_interval(0, "budget", "select", kind=int, low=1)
    Traceback (most recent call last):
    ...
    marsctl.errors.ConfigError: The 'budget' parameter of select must be an int in the range [1, inf). Got 0 instead.
    """
    left = "[" if closed in ("both", "left") and not math.isinf(low) else "("
    right = "]" if closed in ("both", "right") and not math.isinf(high) else ")"
    rng = f"{left}{_fmt_bound(low, '-inf')}, {_fmt_bound(high, 'inf')}{right}"
    ok_type = isinstance(value, kind) and not isinstance(value, bool)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok_type = True
    ok = ok_type and not (isinstance(value, float) and math.isnan(value))
    if ok:
        lo_ok = value >= low if left == "[" else value > low
        hi_ok = value <= high if right == "]" else value < high
        ok = lo_ok and hi_ok
    if not ok:
        article = "an" if kind.__name__[0] in "aeiou" else "a"
        msg = (
            f"The '{name}' parameter of {owner} must be {article} {kind.__name__} in the range {rng}. "
            f"Got {value!r} instead."
        )
        raise ConfigError(msg)
    return value


# The one definition of a valid seed: an int in [0, SEED_MAX = 2**63 - 1], the range of plugin.derive_seed
# (whose seeds are passed on to steps.train and the plugins) and of a signed 64-bit column (JSON readers,
# Parquet, CSV). random.Random, numpy's default_rng and torch.manual_seed (up to 2**64 - 1) take such a seed
# as it is; where a library's range is narrower, the seed is reduced first (torch.manual_seed(derive_seed(...)
# % 2**31) in the embedding heads, the openai backend's `seed % 2**31`). A negative seed is refused rather than
# aliased: random.Random(-1) draws as random.Random(1) does, and numpy's default_rng(-1) raises.
SEED_MAX = 2**63 - 1

# Size limits of options that protect the machine (with checks.MAX_* and the heads' MAX_*), refused before any
# work. The CLI's options carry them as min/max, so --help shows each range.
MIN_N_BOOT = 100  # fewer resamples give no usable 95% interval
MAX_N_BOOT = 100_000  # bootstrap resamples (eval --n-boot): ≈0.8 MB of means, seconds per figure
MAX_BINS = 1_000  # ECE / reliability bins (eval --bins)
MAX_BATCH_SIZE = 65_536  # pairs per scoring batch (score --batch-size)
MAX_EPOCHS = 10_000  # epochs (train/refine/compare --epochs; the heads' own bound)
MAX_ROUNDS = 1_000  # augmentation rounds (refine/compare --rounds, augment --round)
MAX_SEEDS = 1_000  # seeds of compare (--seeds): each is a full set of runs
MAX_TRIES = 50  # candidates per side of --semantic-refine (--refine-tries)
MAX_PAIR_BUDGET = 100_000  # synthetic rows for one pair (select/refine/compare --cap; checks: a budget field)


def check_seed(value: Any, name: str = "seed", owner: str = "marsctl") -> int:
    """Check a seed against the one definition (an int in [0, ``SEED_MAX``]); returns it.

    >>> check_seed(2**63 - 1, "seed", "train")
    9223372036854775807
    >>> check_seed(-1, "seed", "train")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    marsctl.errors.ConfigError: The 'seed' parameter of train must be an int in the range [0, 9223372036854775807]...
    """
    return check_interval(value, name, owner, kind=int, low=0, high=SEED_MAX)


def check_choice(value: str, name: str, owner: str, choices: list[str]) -> str:
    """Check that ``value`` is one of ``choices``; suggest the closest one otherwise."""
    if value in choices:
        return value
    msg = f"The '{name}' parameter of {owner} must be one of {', '.join(choices)}. Got {value!r} instead."
    close = difflib.get_close_matches(str(value), choices, n=1)
    raise ConfigError(msg, hint=f"Did you mean {close[0]!r}?" if close else None)


def _coerce(text: str, typ: Any, key: str, owner: str) -> Any:
    typ = typ if isinstance(typ, type) else {"int": int, "float": float, "bool": bool, "str": str}.get(
        str(typ), str
    )
    try:
        if typ is bool:
            low = text.lower()
            if low not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(text)
            return low in ("1", "true", "yes")
        return typ(text)
    except ValueError:
        article = "an" if typ.__name__[0] in "aeiou" else "a"
        msg = f"The '{key}' parameter of {owner} must be {article} {typ.__name__}. Got {text!r} instead."
        raise ConfigError(msg) from None


_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def _check_type(value: Any, typ: Any, key: str, owner: str) -> Any:
    """Check a typed value (from a dict, e.g. a saved config.json) against a field's type.

    An int is fine for a float field; a bool is not an int; other field types are not checked here.
    """
    typ = typ if isinstance(typ, type) else _TYPES.get(str(typ))
    if typ not in (int, float, bool, str):
        return value
    ok = isinstance(value, typ) and (typ is bool or not isinstance(value, bool))
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        article = "an" if typ.__name__[0] in "aeiou" else "a"
        msg = f"The '{key}' parameter of {owner} must be {article} {typ.__name__}. Got {value!r} instead."
        raise ConfigError(msg)
    return value


def build_config(cls: type, pairs: list[str] | dict[str, Any] | None, owner: str) -> Any:
    """Build dataclass ``cls`` from ``key=value`` strings (or a dict); unknown keys are rejected.

    Strings are parsed to the field's type; a dict's values must already have the field's type.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    if pairs is not None and not isinstance(pairs, (dict, list, tuple)):
        msg = f"Parameters for {owner} must be key=value strings or a mapping. Got {type(pairs).__name__} instead."
        raise ConfigError(msg)
    from_dict = isinstance(pairs, dict)
    items: list[tuple[str, Any]] = (list(pairs.items()) if isinstance(pairs, dict)
                                    else [_split_kv(p, owner) for p in pairs or []])
    for key, raw in items:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            msg = f"Unknown parameter {key!r} for {owner}. Allowed: {', '.join(fields) or '(none)'}."
            raise ConfigError(msg, hint=f"Did you mean {close[0]!r}?" if close else None)
        if from_dict:
            values[key] = _check_type(raw, fields[key].type, key, owner)
        else:
            values[key] = _coerce(raw, fields[key].type, key, owner) if isinstance(raw, str) else raw
    return cls(**values)


def _split_kv(text: str, owner: str) -> tuple[str, str]:
    if "=" not in text:
        msg = f"Parameters for {owner} are given as key=value. Got {text!r} instead."
        raise ConfigError(msg)
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def describe_config(cls: type) -> list[tuple[str, str, Any, str]]:
    """Rows of (name, type, default, help) for a config dataclass."""
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        typ = f.type if isinstance(f.type, str) else f.type.__name__
        rows.append((f.name, typ, default, f.metadata.get("help", "")))
    return rows


# Convert a pickled Hugging Face directory once, in place (run it only on files you trust): the class
# named in its config.json, else ``{auto}``; save_pretrained writes model.safetensors.
HF_CONVERT = ("python -c \"import transformers as t; d='{dir}'; a=t.AutoConfig.from_pretrained(d).architectures; "
              "m=getattr(t, a[0]) if a else t.{auto}; m.from_pretrained(d).save_pretrained(d)\"")


def _pickled_weights(d: Any) -> list[str]:
    return sorted(f.name for f in d.iterdir()
                  if f.name.startswith("pytorch_model") and f.name.endswith((".bin", ".bin.index.json")))


def _module_dirs(root: Any) -> list[Any]:
    """The root and the sentence-transformers module folders that modules.json names."""
    import json

    dirs = [root]
    try:
        modules = json.loads((root / "modules.json").read_text(encoding="utf-8"))
        dirs += [root / m["path"] for m in modules if isinstance(m, dict) and isinstance(m.get("path"), str)
                 and m["path"] not in ("", ".") and (root / m["path"]).is_dir()]
    except (OSError, ValueError, TypeError):
        pass
    return dirs


def check_safetensors_dir(path: Any, what: str, convert: str = HF_CONVERT, auto: str = "AutoModel") -> None:
    """Refuse, before anything is loaded, a model directory whose weights are not safetensors.

    Pickled weights (``pytorch_model.bin``) can run code when unpickled, so marsctl never loads them;
    ``convert`` is a shell command template (``{dir}``, ``{auto}``: the Auto class used when config.json
    names no architecture) that the hint offers for converting them.
    """
    from pathlib import Path

    root = Path(path)
    for d in _module_dirs(root):
        has_safe = any(d.glob("*.safetensors")) or any(d.glob("*.safetensors.index.json"))
        pickled = _pickled_weights(d)
        if has_safe:
            continue
        if pickled:
            msg = (f"{what} {root}: {d / pickled[0]} holds pickled weights; marsctl loads only safetensors "
                   "(unpickling a file can run code)")
            hint = f"if you trust the file, convert it once with: {convert.format(dir=root, auto=auto)}"
            raise ConfigError(msg, hint=hint)
        if d == root:
            msg = f"{what} {root}: no model.safetensors (the model's weights)"
            raise ConfigError(msg, hint="pass a Hugging Face model directory saved with save_pretrained")


@dataclasses.dataclass
class NoConfig:
    """A plugin without parameters."""
