"""A run folder's layout: the one place that names its files, and their one reader.

A refine run folder (:mod:`marsctl.loop` writes it)::

    manifest.json            settings, seeds, input sha256s, plugin versions, finished rounds
    round-0/                 train.jsonl (base pairs), model/, scored.jsonl, metrics.json
    round-k/ (k ≥ 1)         suspect.jsonl (with --noise: pairs the cross-fitted margins flag as likely
                             mislabeled, with those margins and the reason),
                             selected.jsonl (base pairs scored by round k−1's model, with budgets),
                             synthetic.jsonl, train.jsonl (base ∪ synthetic), model/ (initialised from
                             round k−1's), scored.jsonl, metrics.json
    summary.json, summary.md
    report.html, *.png       the rendering step's (:mod:`marsctl.render`)
    .marsctl.lock            flock'ed by the process writing the folder (``runlock.run_lock``): a second is refused

A compare folder (:mod:`marsctl.compare`): compare.json (settings, inputs), report.json, table.md,
runs.jsonl, runs.csv, ``runs/PROTOCOL/STRATEGY/seed-S/`` (one refine folder each), report.html, *.png.

A round is built in ``round-k.partial/`` (:func:`start_round`) and renamed to ``round-k/`` only when
complete (:func:`finish_round`), so a finished round is a ``round-k/`` folder holding ``metrics.json``
and every file its round writes (:func:`round_files`); :func:`finished_rounds` checks that they are all there.

Reading a folder (the summary, ``marsctl report``, the plots) goes through :func:`refine_data`,
:func:`compare_data` and :mod:`marsctl.runcheck`'s checked reader only: nothing outside the folder,
every field the report and the plots use checked, a damaged folder one ``ConfigError`` naming the file
and the field.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marsctl.config import PROTOCOLS
from marsctl.errors import ConfigError
from marsctl.runcheck import (
    COMPARE_INFO,
    COMPARE_REPORT,
    MANIFEST,
    MAX_JSON_BYTES,
    MAX_ROUND,
    METRICS,
    RUN_ROW,
    check_value,
    inside_folder,
    read_json,
    read_lines,
    value_kind,
)

# The names of a run folder's files.
MANIFEST_JSON = "manifest.json"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
REPORT_HTML = "report.html"
COMPARE_JSON = "compare.json"
REPORT_JSON = "report.json"
TABLE_MD = "table.md"
RUNS_JSONL = "runs.jsonl"
RUNS_CSV = "runs.csv"
RUNS_DIR = "runs"
# A round's files.
TRAIN_JSONL = "train.jsonl"
SCORED_JSONL = "scored.jsonl"
SELECTED_JSONL = "selected.jsonl"
SYNTHETIC_JSONL = "synthetic.jsonl"
SUSPECT_JSONL = "suspect.jsonl"
MODEL_DIR = "model"
METRICS_JSON = "metrics.json"

# Keys that may change on --resume (extending a run) without invalidating finished rounds.
RESUMABLE_CHANGES = {"rounds"}
_ROUND = re.compile(r"round-([0-9]+)")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")  # a strategy or protocol: one safe path component


# -- paths -------------------------------------------------------------------------------------------------
def round_name(k: int) -> str:
    """Round k's folder name, also its key in the manifest's ``timing`` and ``suspects``."""
    return f"round-{k}"


def round_dir(out: Path, k: int) -> Path:
    """Finished round k's folder."""
    return out / round_name(k)


def compare_run_dir(out: Path, protocol: str, strategy: str, seed: int) -> Path:
    """The refine folder of one compare run."""
    return out / RUNS_DIR / protocol / strategy / f"seed-{seed}"


def round_paths(out: Path, name: str, first: int = 0,
                rounds: Sequence[int] | None = None) -> Iterator[tuple[int, Path]]:
    """(round, path) of each finished round's file ``name`` (those that hold one), in round order."""
    for k in finished_rounds(out) if rounds is None else rounds:
        p = round_dir(out, k) / name
        if k >= first and os.path.lexists(p):
            yield k, p


# -- writing rounds ------------------------------------------------------------------------------------------
def clear_partials(out: Path) -> None:
    """Remove the ``round-k.partial`` folders an interrupted run left."""
    for stale in out.glob("round-*.partial"):
        shutil.rmtree(stale)


def start_round(out: Path, k: int) -> Path:
    """Create round k's ``.partial`` folder, where the round is built; returns it."""
    tmp = out / f"{round_name(k)}.partial"
    tmp.mkdir(parents=True)
    return tmp


def finish_round(out: Path, k: int) -> Path:
    """Rename round k's complete ``.partial`` folder to ``round-k`` (metrics.json written last); returns it."""
    return (out / f"{round_name(k)}.partial").rename(round_dir(out, k))


def discard_round(out: Path, k: int) -> None:
    """Remove round k's ``.partial`` folder (a round that failed leaves nothing)."""
    shutil.rmtree(out / f"{round_name(k)}.partial", ignore_errors=True)


# -- which folder ----------------------------------------------------------------------------------------
def run_kind(run_dir: Path) -> str:
    """'compare' or 'refine' for a run folder; a ConfigError for anything else."""
    if not run_dir.is_dir():
        msg = f"{run_dir}: not a directory (give a refine or compare run folder)"
        raise ConfigError(msg)
    if (run_dir / COMPARE_JSON).is_file() or (run_dir / REPORT_JSON).is_file():
        if not (run_dir / REPORT_JSON).is_file():
            msg = f"{run_dir}: the compare run has not finished (no report.json)"
            raise ConfigError(msg, hint="run the same marsctl compare again to finish it (it resumes)")
        return "compare"  # a saved compare summary (report.json alone) too
    if (run_dir / MANIFEST_JSON).is_file():
        return "refine"
    msg = f"{run_dir}: not a marsctl run folder (no manifest.json or compare.json)"
    raise ConfigError(msg, hint="give the --out folder of a refine or compare run")


# -- refine folders ----------------------------------------------------------------------------------------
def round_files(metrics: dict[str, Any]) -> list[str]:
    """The files a finished round holds, by what its metrics say it did (metrics.json last)."""
    files = [TRAIN_JSONL, SCORED_JSONL, MODEL_DIR]
    if metrics.get("selection") is not None:
        files += [SELECTED_JSONL, SYNTHETIC_JSONL]
    if metrics.get("noise") is not None:
        files.append(SUSPECT_JSONL)
    return [*files, METRICS_JSON]


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
        m = check_value(read_json(d / METRICS_JSON, root), METRICS, str(d / METRICS_JSON))
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
    manifest = read_manifest(out / MANIFEST_JSON, root)
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
            msg = (f"{round_dir(out, k) / METRICS_JSON}: field 'eval_margins' holds {len(margins)} margins; "
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

    @property
    def runs_dir(self) -> Path:
        """The folder that holds the runs' refine folders."""
        return self.dir / RUNS_DIR


def compare_report(out: Path) -> dict[str, Any]:
    """report.json of a compare folder, checked (protocols and strategies agree with its config)."""
    path = out / REPORT_JSON
    rep = check_value(read_json(path, out), COMPARE_REPORT, str(path))
    strategies = rep["config"]["strategies"]
    if not strategies:
        msg = f"{path}: field 'config.strategies' is empty"
        raise ConfigError(msg, hint="the run folder is damaged or was edited")
    for st in strategies:
        if not _NAME.fullmatch(st):
            msg = f"{path}: field 'config.strategies' holds {value_kind(st)}, not a strategy name"
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
    path = out / RUNS_JSONL
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
        r["run_dir"] = str(compare_run_dir(out, r["protocol"], r["strategy"], r["seed"]))
        rows.append(r)
    return rows


def compare_data(out: Path) -> CompareData:
    """A compare folder, read and checked: report.json, compare.json, runs.jsonl, and every run folder there."""
    rep = compare_report(out)
    info_path = out / COMPARE_JSON
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
        mpath = d / MANIFEST_JSON
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
