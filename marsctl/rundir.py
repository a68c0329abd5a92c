"""A refine run's directory: which rounds are finished, the manifest, the resume rules, the summary.

See :mod:`marsctl.loop` for the layout; a round's folder is finished when it holds ``metrics.json``
(a round is renamed into place only when complete).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from marsctl.errors import ConfigError

# Keys that may change on --resume (extending a run) without invalidating finished rounds.
RESUMABLE_CHANGES = {"rounds"}


def finished_rounds(out: Path) -> list[int]:
    """Rounds whose folders are complete."""
    done = []
    for p in out.glob("round-*"):
        tail = p.name.split("-", 1)[1]
        if tail.isdigit() and (p / "metrics.json").exists():
            done.append(int(tail))
    return sorted(done)


def read_manifest(path: Path) -> dict[str, Any]:
    """A run's manifest.json, with a clear error when it is damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        msg = f"{path}: cannot read the run's manifest ({e})"
        raise ConfigError(msg, hint="choose a new --out; the finished rounds' folders are untouched") from None
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        msg = f"{path}: not a marsctl run manifest (no 'config' object)"
        raise ConfigError(msg, hint="choose a new --out")
    return data


def check_resume(out: Path, old: dict[str, Any], new: dict[str, Any], done: list[int]) -> None:
    """Refuse to continue the run in ``out`` (manifest ``old``, rounds ``done``) with the settings ``new``.

    The input and held-out files must be the same, and every setting but those in
    ``RESUMABLE_CHANGES``; ``rounds`` may not drop below a finished round.
    """
    for key in ("input", "heldout"):
        if (old.get(key) or {}).get("sha256") != (new.get(key) or {}).get("sha256"):
            msg = f"{out}: the run was made from a different {key} file ({old.get(key, {}).get('path')})"
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


def summary(out: Path) -> dict[str, Any]:
    """Per-round rows from the finished rounds' metrics, with the run's settings and timing."""
    rows = []
    for k in finished_rounds(out):
        m = json.loads((out / f"round-{k}" / "metrics.json").read_text())
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
    manifest = json.loads((out / "manifest.json").read_text())
    return {"run_dir": str(out), "config": manifest["config"], "heldout": manifest["heldout"],
            "length_baseline": ((json.loads((out / "round-0" / "metrics.json").read_text())
                                 .get("eval") or {}).get("length_baseline")
                                if (out / "round-0").exists() else None),
            "rounds": rows, "timing": manifest["timing"]}
