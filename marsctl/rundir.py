"""A run folder: its lock, which rounds are finished, the manifest, the resume rules, and its one checked reader.

See :mod:`marsctl.loop` for a refine run's layout and :mod:`marsctl.compare` for a compare run's. A
round is built in ``round-k.partial/`` and renamed to ``round-k/`` only when complete, so a finished
round is a ``round-k/`` folder holding ``metrics.json`` and every file its round writes
(:func:`round_files`); :func:`finished_rounds` checks that they are all there.

Reading a folder (the summary, ``marsctl report``, the plots) goes through :func:`refine_data`,
:func:`compare_data` and :func:`read_columns` only. They read nothing outside the folder they are
given (a path that leads out of it, through ``..``, an absolute path or a symlink, is refused), only
regular files, and only files within a size bound; they parse JSON strictly (no NaN, no deep
nesting) and check the type and range of every field the report and the plots use. A damaged or
hand-edited folder is one ``ConfigError`` naming the file and the field (exit 2), never a traceback.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marsctl.config import PROTOCOLS
from marsctl.errors import ConfigError
from marsctl.outputs import LOCK_NAME
from marsctl.params import MAX_ROUNDS, MAX_SEEDS

# Keys that may change on --resume (extending a run) without invalidating finished rounds.
RESUMABLE_CHANGES = {"rounds"}
MAX_JSON_BYTES = 64 << 20  # manifest.json, metrics.json, report.json, compare.json, runs.jsonl
MAX_LINE_BYTES = 16 << 20  # one line of scored.jsonl or selected.jsonl
MAX_ROUND = MAX_ROUNDS  # a round number (refine --rounds allows no more)
MAX_COUNT = 10**12  # pairs, rows
MAX_STRATEGIES = 100  # of a compare (each is a panel of its figures)
MAX_MARGIN = 1e6  # |pred_margin|, as the readers of scored files allow
_ROUND = re.compile(r"round-([0-9]+)")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")  # a strategy or protocol: one safe path component


# -- the lock ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold run folder ``out`` (created when missing) for this process; a second writer is refused.

    The lock is an exclusive ``fcntl.flock`` on ``out/.marsctl.lock``, taken without waiting and held
    until the block ends; the holder writes its pid into the file for the message the next one gets,
    and empties it when the block ends.
    The kernel drops a flock when its last descriptor closes, which happens when the process exits in
    any way, SIGKILL included: a killed run never blocks the next one (the file stays, unlocked, and
    the next run locks it again). The file is never removed, so two processes always lock the same
    file; it is opened close-on-exec so no child process keeps the lock alive.
    """
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as e:
        msg = f"{path}: cannot open the run's lock file ({e.strerror or e})"
        raise ConfigError(msg, hint="remove it if it is not a regular file, or choose another --out") from None
    held = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            pid = f"pid {holder}" if holder.isdigit() else "pid unknown"
            msg = f"{out} is in use by another marsctl process ({pid})"
            raise ConfigError(msg, hint="wait for it to finish, or choose another --out") from None
        except OSError as e:  # a file system without locks (some network mounts): go on, unguarded
            from marsctl import ui

            ui.warn(f"{out}: cannot lock the run folder ({e.strerror or e}); make sure no other marsctl writes it")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        held = True
        yield
    finally:
        if held:  # emptied on the way out, so a finished or refused run leaves the folder as it found it
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
        os.close(fd)


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
            msg = f"{where}: not a JSON object (got {_kind(row)})"
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


def _kind(v: Any) -> str:
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
        msg = f"{where}: field '{name}' must be {_describe(s)}; got {_kind(v)}"
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
        msg = f"{where}: must hold {_describe(s)}; got {_kind(value)}"
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


# -- refine folders ----------------------------------------------------------------------------------------
def round_files(metrics: dict[str, Any]) -> list[str]:
    """The files a finished round holds, by what its metrics say it did (metrics.json last)."""
    files = ["train.jsonl", "scored.jsonl", "model"]
    if metrics.get("selection") is not None:
        files += ["selected.jsonl", "synthetic.jsonl"]
    if metrics.get("noise") is not None:
        files.append("suspect.jsonl")
    return [*files, "metrics.json"]


def round_metrics(out: Path, root: Path | None = None) -> dict[int, dict[str, Any]]:
    """Every finished round's checked metrics by round: round-0 … round-N, each complete.

    A ``round-K`` folder that is incomplete, out of sequence (a gap) or not a folder is a ConfigError
    naming it; ``round-K.partial`` (a round being built, or left by an interrupted run) is not a round.
    """
    root = out if root is None else root
    found: dict[int, Path] = {}
    try:
        entries = sorted(os.scandir(out), key=lambda e: e.name)
    except OSError as e:
        msg = f"{out}: cannot list it ({e.strerror or e})"
        raise ConfigError(msg) from None
    for entry in entries:
        m = _ROUND.fullmatch(entry.name)
        if not m:
            continue
        k = int(m.group(1))
        if k > MAX_ROUND or m.group(1) != str(k):
            msg = f"{out / entry.name}: not a round marsctl writes (rounds are round-0 … round-{MAX_ROUND})"
            raise ConfigError(msg, hint="move it out of the run folder")
        found[k] = out / entry.name
    rounds = sorted(found)
    if rounds and rounds != list(range(len(rounds))):
        gap = next(i for i, k in enumerate(rounds) if i != k)
        msg = f"{found[rounds[gap]]}: round-{gap} is missing (rounds are numbered 0, 1, 2, … without a gap)"
        raise ConfigError(msg, hint="the run folder is damaged or was edited")
    metrics = {}
    for k in rounds:  # in round order (round-10 sorts before round-2 by name)
        d = found[k]
        m = check_value(read_json(d / "metrics.json", root), METRICS, str(d / "metrics.json"))
        for name in round_files(m):
            p = d / name
            if not os.path.lexists(p):
                msg = f"{d}: the round is incomplete (no {name})"
                raise ConfigError(msg, hint="move this round's folder (and later ones) away and --resume to "
                                            "make it again")
            inside_folder(p, root)
        metrics[k] = m
    return metrics


def finished_rounds(out: Path) -> list[int]:
    """Rounds whose folders are complete (checked: see :func:`round_metrics`)."""
    return sorted(round_metrics(out)) if out.is_dir() else []


def read_manifest(path: Path, root: Path | None = None) -> dict[str, Any]:
    """A run's manifest.json, checked, with a clear error when it is damaged."""
    data = read_json(path, path.parent if root is None else root)
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        msg = f"{path}: not a marsctl run manifest (no 'config' object)"
        raise ConfigError(msg, hint="choose a new --out")
    return check_value(data, MANIFEST, str(path))


@dataclass
class RefineData:
    """A refine folder's checked contents: its manifest and each finished round's metrics."""

    dir: Path
    manifest: dict[str, Any]
    metrics: dict[int, dict[str, Any]]


def refine_data(out: Path, root: Path | None = None) -> RefineData:
    """A refine run folder, read and checked (``root``: the folder nothing may lead out of; default ``out``)."""
    root = out if root is None else root
    manifest = read_manifest(out / "manifest.json", root)
    metrics = round_metrics(out, root)
    _check_margins(out, metrics)
    return RefineData(out, manifest, metrics)


def _check_margins(out: Path, metrics: dict[int, dict[str, Any]]) -> None:
    """Every round's eval_margins is one per held-out pair: as many as eval.n, the same in every round."""
    sizes: dict[int, int] = {}
    for k, m in metrics.items():
        margins, ev = m.get("eval_margins"), m.get("eval") or {}
        if margins is None:
            continue
        n = ev.get("n", len(margins))
        if len(margins) != n or len(margins) != next(iter(sizes.values()), n):
            msg = (f"{out / f'round-{k}' / 'metrics.json'}: field 'eval_margins' holds {len(margins)} margins; "
                   f"eval.n and the other rounds say {n if len(margins) != n else next(iter(sizes.values()))}")
            raise ConfigError(msg, hint="the run folder is damaged or was edited")
        sizes[k] = n


def summary(out: Path, data: RefineData | None = None) -> dict[str, Any]:
    """Per-round rows from the finished rounds' metrics, with the run's settings and timing."""
    data = refine_data(out) if data is None else data
    rows = []
    for k, m in data.metrics.items():
        ev = m.get("eval") or {}
        sel = m.get("selection") or {}
        rows.append({
            "round": k,
            "train_size": m["train_size"],
            "n_synthetic": m["n_synthetic"],
            "eval_accuracy": ev.get("accuracy"),
            "eval_accuracy_ci95": ev.get("accuracy_ci95"),
            "eval_roc_auc": ev.get("roc_auc"),
            "eval_margin_snr": ev.get("margin_snr"),
            "train_curvature_weight": m["train_curvature_weight"],
            "train_curvature_trace": m.get("train_curvature_trace"),
            "selection_ess": sel.get("ess"),
            "selection_share_negative": sel.get("share_negative_margin"),
            "selection_equals_uniform": sel.get("equals_uniform"),
            "suspects": (m.get("noise") or {}).get("flagged"),
        })
    manifest = data.manifest
    first = data.metrics.get(0)
    return {"run_dir": str(out), "config": manifest["config"], "heldout": manifest.get("heldout"),
            "length_baseline": ((first.get("eval") or {}).get("length_baseline") if first else None),
            "rounds": rows, "timing": manifest.get("timing") or {}}


# -- compare folders ---------------------------------------------------------------------------------------
@dataclass
class CompareData:
    """A compare folder's checked contents; ``runs`` holds the rows of runs.jsonl whose run folder is there."""

    dir: Path
    info: dict[str, Any]
    report: dict[str, Any]
    results: list[dict[str, Any]]
    runs: list[tuple[dict[str, Any], RefineData | None]] = field(default_factory=list)


def compare_report(out: Path) -> dict[str, Any]:
    """report.json of a compare folder, checked (protocols and strategies agree with its config)."""
    path = out / "report.json"
    rep = check_value(read_json(path, out), COMPARE_REPORT, str(path))
    strategies = rep["config"]["strategies"]
    if not strategies:
        msg = f"{path}: field 'config.strategies' is empty"
        raise ConfigError(msg, hint="the run folder is damaged or was edited")
    for st in strategies:
        if not _NAME.fullmatch(st):
            msg = f"{path}: field 'config.strategies' holds {_kind(st)}, not a strategy name"
            raise ConfigError(msg, hint="the run folder is damaged or was edited")
    if not rep["protocols"]:
        msg = f"{path}: field 'protocols' is empty"
        raise ConfigError(msg, hint="the run folder is damaged or was edited")
    for protocol, rows in rep["protocols"].items():
        if protocol not in PROTOCOLS:
            msg = f"{path}: field 'protocols.{protocol[:40]}' is not a protocol ({', '.join(PROTOCOLS)})"
            raise ConfigError(msg, hint="the run folder is damaged or was edited")
        if sorted(rows) != sorted(set(strategies)):
            msg = (f"{path}: field 'protocols.{protocol}' holds the strategies {', '.join(sorted(rows))[:200]}; "
                   f"config.strategies says {', '.join(strategies)[:200]}")
            raise ConfigError(msg, hint="the run folder is damaged or was edited")
    return rep


def compare_results(out: Path, rep: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """runs.jsonl's rows, checked, each pointed at its run folder under ``out`` (wherever compare was run from)."""
    path = out / "runs.jsonl"
    if not os.path.lexists(path):
        return []
    rep = compare_report(out) if rep is None else rep
    rows = []
    rounds: int | None = None
    for lineno, row in read_lines(path, out, total=MAX_JSON_BYTES):
        where = f"{path} line {lineno}"
        r = check_value(row, RUN_ROW, where)
        if r["protocol"] not in rep["protocols"] or r["strategy"] not in rep["config"]["strategies"]:
            msg = f"{where}: field 'protocol' or 'strategy' names a run report.json does not hold"
            raise ConfigError(msg, hint="the run folder is damaged or was edited")
        if rounds is not None and len(r["accuracy_by_round"]) != rounds:
            msg = f"{where}: field 'accuracy_by_round' holds {len(r['accuracy_by_round'])} rounds, not {rounds}"
            raise ConfigError(msg, hint="the run folder is damaged or was edited")
        rounds = len(r["accuracy_by_round"])
        r["run_dir"] = str(out / "runs" / r["protocol"] / r["strategy"] / f"seed-{r['seed']}")
        rows.append(r)
    return rows


def compare_data(out: Path) -> CompareData:
    """A compare folder, read and checked: report.json, compare.json, runs.jsonl, and every run folder there."""
    rep = compare_report(out)
    info_path = out / "compare.json"
    info = check_value(read_json(info_path, out), COMPARE_INFO, str(info_path)) if os.path.lexists(
        info_path) else {}
    results = compare_results(out, rep)
    runs: list[tuple[dict[str, Any], RefineData | None]] = []
    for r in results:
        d = Path(r["run_dir"])
        if not os.path.lexists(d):
            runs.append((r, None))
            continue
        if not inside_folder(d, out).is_dir():
            msg = f"{d}: not a directory"
            raise ConfigError(msg, hint="the run folder is damaged or was edited")
        mpath = d / "manifest.json"
        manifest = read_manifest(mpath, out) if os.path.lexists(mpath) else {}
        metrics = round_metrics(d, out)
        _check_margins(d, metrics)
        runs.append((r, RefineData(d, manifest, metrics)))
    return CompareData(out, info, rep, results, runs)


# -- resume -------------------------------------------------------------------------------------------------
def check_resume(out: Path, old: dict[str, Any], new: dict[str, Any], done: list[int]) -> None:
    """Refuse to continue the run in ``out`` (manifest ``old``, rounds ``done``) with the settings ``new``.

    The input and held-out files must be the same, and every setting but those in
    ``RESUMABLE_CHANGES``; ``rounds`` may not drop below a finished round.
    """
    for key in ("input", "heldout"):
        if (old.get(key) or {}).get("sha256") != (new.get(key) or {}).get("sha256"):
            msg = f"{out}: the run was made from a different {key} file ({(old.get(key) or {}).get('path')})"
            raise ConfigError(msg, hint="resume with the same input, or start a new --out")
    changed = [k for k in new["config"] if k not in RESUMABLE_CHANGES and old["config"].get(k) != new["config"][k]]
    if changed:
        diffs = ", ".join(f"{k}: {old['config'].get(k)!r} → {new['config'][k]!r}" for k in changed)
        msg = f"{out}: --resume with different settings ({diffs})"
        raise ConfigError(msg, hint="only --rounds may change on --resume")
    rounds = new["config"]["rounds"]
    if done and max(done) > rounds:
        msg = (f"{out} already has rounds 0..{max(done)} finished; --rounds {rounds} "
               f"would leave a manifest that contradicts them")
        raise ConfigError(msg, hint=f"resume with --rounds {max(done)} or more (a finished round is "
                                    f"never removed), or choose another --out")
