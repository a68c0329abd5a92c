"""Checked reading of one file inside a run folder, and the schema of every field the report and the plots use.

:mod:`marsctl.rundir` knows which files a folder holds; this module reads one of them. A read stays
inside the folder it is given (a path that leads out of it, through ``..``, an absolute path or a
symlink, is refused), opens only regular files within a size bound, parses JSON strictly (no NaN, no
deep nesting) and checks the type and range of each field against a :class:`Spec`. A damaged or
hand-edited file is one ``ConfigError`` naming the file and the field (exit 2), never a traceback.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marsctl.errors import ConfigError
from marsctl.params import MAX_ROUNDS, MAX_SEEDS

MAX_JSON_BYTES = 64 << 20  # manifest.json, metrics.json, report.json, compare.json, runs.jsonl
MAX_LINE_BYTES = 16 << 20  # one line of scored.jsonl or selected.jsonl
MAX_ROUND = MAX_ROUNDS  # a round number (refine --rounds allows no more)
MAX_COUNT = 10**12  # pairs, rows
MAX_STRATEGIES = 100  # of a compare (each is a panel of its figures)
MAX_MARGIN = 1e6  # |pred_margin|, as the readers of scored files allow


# -- reading files inside a folder ------------------------------------------------------------------------
def inside_folder(path: Path, root: Path) -> Path:
    """``path`` resolved, refused unless it exists and stays inside ``root`` (symlinks and '..' followed)."""
    try:
        real = path.resolve(strict=True)
        base = root.resolve(strict=True)
    except FileNotFoundError:
        msg = f"{path}: missing"
        raise ConfigError(msg, hint="the run folder is incomplete or was edited; run the command again") from None
    except (OSError, RuntimeError) as e:
        msg = f"{path}: cannot read it ({getattr(e, 'strerror', None) or e})"
        raise ConfigError(msg) from None
    if not real.is_relative_to(base):
        msg = f"{path}: leads outside the run folder {root} (a symlink or '..'); marsctl reads only the folder's files"
        raise ConfigError(msg, hint="replace it with the file itself")
    return real


def _open_regular(path: Path, root: Path, limit: int) -> int:
    """A descriptor of the regular file ``path`` inside ``root`` of at most ``limit`` bytes."""
    real = inside_folder(path, root)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        msg = f"{path}: cannot read it ({e.strerror or e})"
        raise ConfigError(msg) from None
    st = os.fstat(fd)
    msg = ""
    if not stat.S_ISREG(st.st_mode):
        msg = f"{path}: not a regular file"
    elif st.st_size > limit:
        msg = f"{path}: {st.st_size:,} bytes, more than a run's file of this kind may hold ({limit:,})"
    if msg:
        os.close(fd)
        raise ConfigError(msg, hint="the run folder is damaged or was edited")
    return fd


def _no_huge_ints(value: Any, where: str) -> Any:
    """``value``, refused when it holds an integer a float cannot hold (the page and figures compute in floats)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool) and not -(2**63) <= item < 2**64:
            msg = f"{where}: holds the integer {str(item)[:20]}… ({len(str(item))} digits), more than any run records"
            raise ConfigError(msg, hint="the run folder is damaged or was edited")
    return value


def read_json(path: Path, root: Path) -> Any:
    """The JSON value in ``path`` (inside ``root``), parsed strictly."""
    from marsctl.errors import DataError
    from marsctl.jsonio import _parse_json_line

    fd = _open_regular(path, root, MAX_JSON_BYTES)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        msg = f"{path}: more than {MAX_JSON_BYTES:,} bytes"
        raise ConfigError(msg)
    try:
        text = data.decode("utf-8")
        if not text.strip():
            msg = f"{path}: empty"
            raise ConfigError(msg, hint="the run folder is damaged or was edited")
        return _no_huge_ints(_parse_json_line(text, str(path)), str(path))
    except UnicodeDecodeError as e:
        msg = f"{path}: not UTF-8 (byte {e.start})"
    except DataError as e:
        msg = str(e)
    raise ConfigError(msg, hint="the run folder is damaged or was edited")


def read_lines(path: Path, root: Path, limit: int = MAX_LINE_BYTES, total: int = 1 << 62) -> Iterator[tuple[int, Any]]:
    """(line number, JSON value) of each non-blank line of ``path`` (inside ``root``; at most ``total`` bytes).

    A line is read only up to ``limit`` bytes: a longer one is refused before it is held in memory.
    """
    from marsctl.errors import DataError
    from marsctl.jsonio import _parse_json_line

    fd = _open_regular(path, root, total)
    with os.fdopen(fd, "rb") as fh:
        for lineno, raw in enumerate(iter(lambda: fh.readline(limit + 1), b""), start=1):
            where = f"{path} line {lineno}"
            if len(raw) > limit:
                msg = f"{where}: longer than {limit:,} bytes"
                raise ConfigError(msg, hint="the run folder is damaged or was edited")
            try:
                text = raw.decode("utf-8")
                if text.strip():
                    yield lineno, _no_huge_ints(_parse_json_line(text, where), where)
            except UnicodeDecodeError as e:
                msg = f"{where}: not UTF-8 (byte {e.start})"
                raise ConfigError(msg) from None
            except DataError as e:
                raise ConfigError(str(e), hint="the run folder is damaged or was edited") from None


def read_columns(path: Path, root: Path, keys: tuple[str, ...]) -> dict[str, list[float]]:
    """Numeric columns ``keys`` of a round's JSONL file (scored.jsonl, selected.jsonl), every row checked."""
    spec = {"pred_margin": _num(-MAX_MARGIN, MAX_MARGIN), "budget": _int(0, MAX_COUNT)}
    out: dict[str, list[float]] = {k: [] for k in keys}
    for lineno, row in read_lines(path, root):
        where = f"{path} line {lineno}"
        if not isinstance(row, dict):
            msg = f"{where}: not a JSON object (got {value_kind(row)})"
            raise ConfigError(msg)
        for k in keys:
            out[k].append(_check(row, k, spec[k], where, k))
    return out


# -- checking values --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    """What one field may hold: a kind, bounds, whether null or absence is allowed, and nested specs."""

    kind: str  # int, num, str, bool, dict, map (any keys, values ``items``), list, scalar, any
    lo: float | None = None
    hi: float | None = None
    null: bool = False
    opt: bool = False  # may be absent
    items: Spec | None = None  # list items, map values
    fields: dict[str, Spec] = field(default_factory=dict)  # dict fields (others are allowed and unchecked)
    length: int | None = None  # exact list length
    most: int | None = None  # longest list


def _int(lo: float, hi: float, **kw: Any) -> Spec:
    return Spec("int", lo, hi, **kw)


def _num(lo: float, hi: float, **kw: Any) -> Spec:
    return Spec("num", lo, hi, **kw)


def _opt(kind: str, **kw: Any) -> Spec:
    return Spec(kind, null=True, opt=True, **kw)


def value_kind(v: Any) -> str:
    """A value's JSON kind with a short excerpt, for messages (never a dump)."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    text = repr(v) if not isinstance(v, dict | list) else ""
    return names.get(type(v), type(v).__name__) + (f" {text[:40]}{'…' if len(text) > 40 else ''}" if text else "")


def _describe(s: Spec) -> str:
    kinds = {"int": "a whole number", "num": "a number", "str": "a string", "bool": "true or false",
             "dict": "an object", "map": "an object", "list": "an array", "scalar": "a string or number"}
    text = kinds.get(s.kind, s.kind)
    if s.lo is not None or s.hi is not None:
        text += f" in [{s.lo:g}, {s.hi:g}]"
    if s.length is not None:
        text += f" of {s.length}"
    if s.most is not None:
        text += f" of at most {s.most}"
    return text + (" or null" if s.null else "")


def _ok(v: Any, s: Spec) -> bool:
    if v is None:
        return s.null
    num = isinstance(v, int | float) and not isinstance(v, bool)
    checks = {"int": isinstance(v, int) and num, "num": num and math.isfinite(v), "str": isinstance(v, str),
              "bool": isinstance(v, bool), "dict": isinstance(v, dict), "map": isinstance(v, dict),
              "list": isinstance(v, list), "scalar": isinstance(v, str | int | float | bool), "any": True}
    if not checks[s.kind]:
        return False
    if s.kind in ("int", "num") and not ((s.lo is None or v >= s.lo) and (s.hi is None or v <= s.hi)):
        return False
    return (s.length is None or len(v) == s.length) and (s.most is None or len(v) <= s.most)


def _check(d: dict[str, Any], key: str, s: Spec, where: str, name: str) -> Any:
    """``d[key]`` checked against ``s`` (recursively); a ConfigError naming ``where`` and field ``name``."""
    if key not in d:
        if s.opt:
            return None
        msg = f"{where}: field '{name}' is missing (need {_describe(s)})"
        raise ConfigError(msg, hint="the run folder is damaged or was edited")
    v = d[key]
    if not _ok(v, s):
        msg = f"{where}: field '{name}' must be {_describe(s)}; got {value_kind(v)}"
        raise ConfigError(msg, hint="the run folder is damaged or was edited")
    if isinstance(v, dict):
        for k, sub in s.fields.items():
            _check(v, k, sub, where, _join(name, k))
        if s.kind == "map" and s.items is not None:
            for k in v:
                _check(v, k, s.items, where, _join(name, k))
    elif isinstance(v, list) and s.items is not None:
        items = {str(i): x for i, x in enumerate(v)}
        for i in items:
            _check(items, i, s.items, where, f"{name}[{i}]")
    return v


def _join(name: str, key: str) -> str:
    return f"{name}.{key[:60]}" if name else key[:60]


def check_value(value: Any, s: Spec, where: str) -> Any:
    """A whole file's value checked against ``s``."""
    if not _ok(value, s):
        msg = f"{where}: must hold {_describe(s)}; got {value_kind(value)}"
        raise ConfigError(msg, hint="the run folder is damaged or was edited")
    return _check({"": value}, "", s, where, "")


PROB = _num(0, 1)
CI = Spec("list", items=PROB, length=2)
COUNT = _int(0, MAX_COUNT)
OPT_NUM = _opt("num")
OPT_SCALAR = _opt("scalar")
GUARD = _opt("dict", fields={"passed": _opt("bool"), "reasons": _opt("list", items=Spec("str")),
                             "rejected_selection": _opt("dict", fields={"strategy": OPT_SCALAR})})
EVAL = _opt("dict", fields={
    "n": _int(0, MAX_COUNT, opt=True), "accuracy": PROB, "accuracy_ci95": CI, "roc_auc": OPT_NUM,
    "margin_snr": OPT_NUM,
    "length_baseline": Spec("dict", fields={"longer": PROB, "shorter": PROB, "ties": _num(0, 1, opt=True)})})
METRICS = Spec("dict", fields={
    "train_size": COUNT, "n_synthetic": COUNT, "train_curvature_weight": _num(0, 1, null=True),
    "eval": EVAL, "eval_margins": _opt("list", items=_num(-MAX_MARGIN, MAX_MARGIN)),
    "selection": _opt("dict", fields={"strategy": OPT_SCALAR, "ess": OPT_NUM, "share_negative_margin": OPT_NUM,
                                      "pairs_selected": OPT_NUM, "equals_uniform": _opt("bool"), "guard": GUARD}),
    "noise": _opt("dict", fields={"flagged": _int(0, MAX_COUNT, null=True, opt=True)}),
    "augment": _opt("dict", fields={"provenance": _opt("dict", fields={"synonym_source": _opt("str")})}),
    "training": _opt("dict"),
})
FILE_INFO = _opt("dict", fields={"path": OPT_SCALAR, "n": _int(0, MAX_COUNT, null=True, opt=True),
                                 "sha256": OPT_SCALAR})
MANIFEST = Spec("dict", fields={
    "config": Spec("dict", fields={"rounds": _int(0, MAX_ROUND)}),
    "budget_per_round": _int(0, MAX_COUNT, null=True, opt=True), "input": FILE_INFO, "heldout": FILE_INFO,
    "plugins": _opt("map", items=Spec("dict", fields={"name": OPT_SCALAR, "version": OPT_SCALAR})),
    "libraries": _opt("map", items=OPT_SCALAR), "rounds_finished": _opt("list", items=_int(0, MAX_ROUND)),
    "timing": _opt("dict"), "created": OPT_SCALAR, "marsctl_version": OPT_SCALAR, "format_version": OPT_SCALAR,
})
PAIRED = _opt("dict", fields={"mean": _num(-1, 1), "ci95": Spec("list", items=_num(-1, 1), length=2),
                              "wins": COUNT, "losses": COUNT})
DIAGNOSTICS = _opt("dict", fields={k: OPT_NUM for k in (
    "ess", "max_budget", "pairs_selected", "share_negative_margin", "p_chosen_longer_selected",
    "test_p_chosen_longer", "novelty_corr")} | {"guard_fallbacks": _int(0, MAX_COUNT, null=True, opt=True)})
STRATEGY_ROW = Spec("dict", fields={
    "accuracy_mean": PROB, "accuracy_std": PROB, "accuracy_ci95": CI, "seeds": COUNT, "length_longer": PROB,
    "length_shorter": PROB, "vs_uniform": PAIRED, "vs_none": PAIRED, "diagnostics": DIAGNOSTICS,
    "train_curvature_weight": _num(0, 1, null=True, opt=True)})
COMPARE_REPORT = Spec("dict", fields={
    "config": Spec("dict", fields={"strategies": Spec("list", items=Spec("str"), most=MAX_STRATEGIES),
                                   "seeds": _int(0, MAX_SEEDS, opt=True),
                                   "refine": _opt("dict", fields={"guard": _opt("bool")}),
                                   "guard": _opt("bool")}),
    "protocols": Spec("map", items=Spec("map", items=STRATEGY_ROW))})
COMPARE_INFO = Spec("dict", fields={
    "config": _opt("dict"), "input": OPT_SCALAR, "input_sha256": OPT_SCALAR, "heldout": OPT_SCALAR,
    "heldout_sha256": OPT_SCALAR, "libraries": _opt("map", items=OPT_SCALAR), "started": OPT_SCALAR})
RUN_ROW = Spec("dict", fields={
    "seed": _int(0, MAX_SEEDS), "protocol": Spec("str"), "strategy": Spec("str"), "accuracy": PROB,
    "accuracy_by_round": Spec("list", items=PROB),
    "selection": _opt("list", items=Spec("dict", fields={"guard": GUARD}))})

