"""The MARS loop: R × (train → score → select → augment → merge), one folder per finished round.

Layout of a run directory::

    manifest.json            settings, seeds, input sha256s, plugin versions, finished rounds
    round-0/                 train.jsonl (base pairs), model/, scored.jsonl, metrics.json
    round-k/ (k ≥ 1)         selected.jsonl (base pairs scored by round k−1's model, with budgets),
                             synthetic.jsonl, train.jsonl (base ∪ synthetic), model/ (initialised from
                             round k−1's), scored.jsonl, metrics.json
    summary.json, summary.md

A round is built in ``round-k.partial/`` and renamed when complete, so a finished round is never
rewritten and an interrupted run loses nothing that finished; ``resume=True`` continues after the
last finished round and gives the same result as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marsctl import FORMAT_VERSION, __version__, registry, steps, ui
from marsctl.embed import encoder_stats
from marsctl.errors import ConfigError, DataError
from marsctl.metrics import curvature_trace, curvature_weight, evaluate, pairwise_accuracy
from marsctl.params import check_choice, check_interval
from marsctl.plugin import derive_seed, load_head
from marsctl.records import (
    atomic_writer,
    count_identical,
    is_identical,
    read_pairs,
    records_sha256,
    write_json,
    write_records,
)


@dataclass
class RefineConfig:
    """Settings of a refine run (all recorded in the manifest)."""

    rounds: int = 3
    budget: int | None = None
    strategy: str = "mars-abs"
    selector_params: list[str] = field(default_factory=list)
    head: str = "mlp"
    head_params: list[str] = field(default_factory=list)
    epochs: int | None = None
    backend: str = "eda"
    augment_params: list[str] = field(default_factory=list)
    merge: str = "replace"
    seed: int = 0
    cap: int | None = 25
    mix_uniform: float = 0.0
    # On by default: at equal epochs every augmented strategy lost to base-only training on HH-RLHF
    # beyond noise (over-training); at matched steps none did (README, Results).
    match_steps: bool = True
    crossfit: int = 0
    guard: bool = False
    pool_seed: int | None = None
    semantic_tries: int = 0

    def __post_init__(self) -> None:
        check_interval(self.rounds, "rounds", "refine", kind=int, low=0)
        if self.budget is not None:
            check_interval(self.budget, "budget", "refine", kind=int, low=1)
        if self.cap is not None:
            check_interval(self.cap, "cap", "refine", kind=int, low=1)
        check_interval(self.mix_uniform, "mix_uniform", "refine", low=0, high=1)
        check_choice(self.merge, "merge", "refine", ["replace", "accumulate"])
        if self.crossfit:
            check_interval(self.crossfit, "crossfit", "refine", kind=int, low=2, high=20)


NONE = "none"  # strategy name of the no-augmentation control: later rounds train on base pairs only

# A selection fails the guard when it concentrates the budget (ESS below this share of the pairs) or
# spends most of it on pairs the model ranks the wrong way (likely label noise on human data).
GUARD_MIN_ESS_SHARE = 0.25
GUARD_MAX_NEGATIVE_SHARE = 0.5


# Keys that may change on --resume (extending a run) without invalidating finished rounds.
RESUMABLE_CHANGES = {"rounds"}


class RefineRun:
    """One refine run in a directory."""

    def __init__(self, pairs: list[dict[str, Any]], out: str | Path, config: RefineConfig, *,
                 heldout: list[dict[str, Any]] | None = None, input_name: str = "<input>",
                 heldout_name: str | None = None):
        self.input_records = pairs
        # Pairs with chosen == rejected carry no preference: left out of training and selection, reported.
        self.base = [p for p in pairs if not is_identical(p)]
        self.identical = count_identical(pairs)
        self.out = Path(out)
        self.config = config
        self.heldout = heldout
        self.input_name = input_name
        self.heldout_name = heldout_name
        self.budget = config.budget or len(self.base)
        if not self.base:
            msg = f"{input_name}: every pair has chosen == rejected; there is nothing to learn from"
            raise DataError(msg)
        # Every plugin parameter is checked before anything is written (a bad value never reaches the manifest).
        registry.check_params("head", config.head, config.head_params)
        if config.strategy != NONE and config.rounds > 0:
            registry.check_params("augmenter", config.backend, config.augment_params)
            registry.check_params("selector", config.strategy, config.selector_params)
            steps.check_budget(self.budget, len(self.base), config.cap, "refine")

    # -- manifest ----------------------------------------------------------------------------------
    def _manifest(self) -> dict[str, Any]:
        plugins = {}
        for kind, name in (("head", self.config.head), ("augmenter", self.config.backend),
                           ("selector", self.config.strategy)):
            if name == NONE:
                continue
            cls = registry.load(kind, name)
            plugins[kind] = {"name": name, "version": getattr(cls, "version", "?")}
        return {
            "format_version": FORMAT_VERSION,
            "marsctl_version": __version__,
            "config": dataclasses.asdict(self.config),
            "budget_per_round": self.budget,
            "input": {"path": self.input_name, "n": len(self.input_records),
                      "sha256": records_sha256(self.input_records), "identical_pairs": self.identical},
            "heldout": None if self.heldout is None else {
                "path": self.heldout_name, "n": len(self.heldout), "sha256": records_sha256(self.heldout)},
            "plugins": plugins,
            "rounds_finished": [],
            "timing": {},
        }

    def finished_rounds(self) -> list[int]:
        """Rounds whose folders are complete."""
        done = []
        for p in self.out.glob("round-*"):
            tail = p.name.split("-", 1)[1]
            if tail.isdigit() and (p / "metrics.json").exists():
                done.append(int(tail))
        return sorted(done)

    def _check_resume(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        for key in ("input", "heldout"):
            if (old.get(key) or {}).get("sha256") != (new.get(key) or {}).get("sha256"):
                msg = f"{self.out}: the run was made from a different {key} file ({old.get(key, {}).get('path')})"
                raise ConfigError(msg, hint="resume with the same input, or start a new --out")
        changed = [k for k in new["config"] if k not in RESUMABLE_CHANGES
                   and old["config"].get(k) != new["config"][k]]
        if changed:
            diffs = ", ".join(f"{k}: {old['config'].get(k)!r} → {new['config'][k]!r}" for k in changed)
            msg = f"{self.out}: --resume with different settings ({diffs})"
            raise ConfigError(msg, hint="only --rounds may change on --resume")

    # -- the loop ----------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> dict[str, Any]:
        """Run (or continue) every round; returns the summary."""
        from marsctl.outputs import check_run_dir

        manifest = self._manifest()
        mpath = self.out / "manifest.json"
        has_run = check_run_dir(self.out)
        done = self.finished_rounds() if has_run else []
        if has_run:
            if not resume:
                msg = f"{self.out} already holds a run ({len(done)} finished rounds)"
                raise ConfigError(msg, hint="pass --resume to continue it, or choose another --out")
            old = read_manifest(mpath)
            self._check_resume(old, manifest)
            if done and max(done) > self.config.rounds:
                msg = (f"{self.out} already has rounds 0..{max(done)} finished; --rounds {self.config.rounds} "
                       f"would leave a manifest that contradicts them")
                raise ConfigError(msg, hint=f"resume with --rounds {max(done)} or more (a finished round is "
                                            f"never removed), or choose another --out")
            manifest["rounds_finished"] = old.get("rounds_finished", [])
            manifest["timing"] = old.get("timing", {})
            manifest["created"] = old.get("created")
        else:
            manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if self.identical["n"]:
            steps.report_identical(self.input_records, self.input_name, "refine", "left out of training and selection")
        if self.heldout is None:
            ui.warn("no --eval file: rounds are compared on training data only (no held-out accuracy)")
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in self.out.glob("round-*.partial"):
            shutil.rmtree(stale)
        write_json(manifest, mpath)
        start = (max(done) + 1) if done else 0
        if done:
            ui.info(f"resuming {self.out}: rounds 0..{max(done)} finished, continuing at round {start}")
        for k in range(start, self.config.rounds + 1):
            t0 = time.perf_counter()
            emb0 = encoder_stats()
            metrics = self._round(k)
            emb1 = encoder_stats()
            manifest["rounds_finished"].append(k)
            manifest["timing"][f"round-{k}"] = {
                "seconds": round(time.perf_counter() - t0, 2),
                "embed_seconds": round(emb1["embed_seconds"] - emb0["embed_seconds"], 2),
                "texts_embedded": int(emb1["misses"] - emb0["misses"]),
                "texts_from_cache": int(emb1["hits"] - emb0["hits"]),
            }
            write_json(manifest, mpath)
            self._print_round(metrics)
        summary = self.summary()
        write_json(summary, self.out / "summary.json")
        with atomic_writer(self.out / "summary.md") as fh:
            fh.write(summary_markdown(summary))
        print_summary(summary)
        return summary

    def _round(self, k: int) -> dict[str, Any]:
        cfg = self.config
        tmp = self.out / f"round-{k}.partial"
        tmp.mkdir(parents=True)
        try:
            metrics: dict[str, Any] = {"round": k}
            train_set = list(self.base)
            init = None
            if k > 0:
                prev = self.out / f"round-{k - 1}"
                init = prev / "model"
                if cfg.strategy != NONE:
                    train_set += self._augment_round(k, prev, tmp, metrics)
            write_records(train_set, tmp / "train.jsonl")
            epochs = self._epochs(train_set, k)
            head = steps.train(train_set, head=cfg.head, params=None if init else cfg.head_params,
                               epochs=epochs, seed=derive_seed(cfg.seed, "train", k), init=init,
                               warn_identical=False)
            head.save(tmp / "model")
            scored = head.score(self.base)
            write_records(scored, tmp / "scored.jsonl")
            metrics.update(self._train_metrics(head, train_set, scored))
            if self.heldout is not None:
                scored_held = head.score(self.heldout)
                metrics["eval"] = evaluate(scored_held, seed=cfg.seed)
                metrics["eval_margins"] = [r["pred_margin"] for r in scored_held]
            write_json(metrics, tmp / "metrics.json")
            tmp.rename(self.out / f"round-{k}")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return metrics

    def _epochs(self, train_set: list[dict[str, Any]], k: int) -> int | None:
        """Epochs for round k: the configured ones, or scaled so optimiser steps match base-only training."""
        cfg = self.config
        if not cfg.match_steps or k == 0:
            return cfg.epochs
        base_epochs = cfg.epochs
        if base_epochs is None:
            base_epochs = registry.load("head", cfg.head).Config().epochs
        return max(1, round(base_epochs * len(self.base) / len(train_set)))

    def _margins_for_selection(self, k: int, prev: Path) -> list[dict[str, Any]]:
        """Base pairs scored by round k−1's model, or cross-fitted: each fold by a model that never saw it."""
        cfg = self.config
        scored = read_pairs(prev / "scored.jsonl")
        if not cfg.crossfit:
            return scored
        prev_train = read_pairs(prev / "train.jsonl")
        folds = [i % cfg.crossfit for i in range(len(scored))]
        out = list(scored)
        for f in range(cfg.crossfit):
            held = {scored[i]["id"] for i in range(len(scored)) if folds[i] == f}
            rows = [r for r in prev_train if r["id"] not in held and r.get("parent_id") not in held]
            head = steps.train(rows, head=cfg.head, params=cfg.head_params, epochs=cfg.epochs,
                               seed=derive_seed(cfg.seed, "crossfit", k, f), warn_identical=False)
            idx = [i for i in range(len(scored)) if folds[i] == f]
            for i, rec in zip(idx, head.score([self.base[i] for i in idx]), strict=True):
                out[i] = {**scored[i], **{key: rec[key] for key in
                                          ("score_chosen", "score_rejected", "pred_margin", "p_chosen")}}
        return out

    def _augment_round(self, k: int, prev: Path, tmp: Path, metrics: dict[str, Any]) -> list[dict[str, Any]]:
        """Select on round k−1's margins, augment, and return this round's synthetic pairs."""
        cfg = self.config
        init = prev / "model"
        scored_prev = self._margins_for_selection(k, prev)
        sel_seed = derive_seed(cfg.seed, "select", k)
        select_args = {"budget": self.budget, "seed": sel_seed, "cap": cfg.cap, "mix": cfg.mix_uniform,
                       "name": str(prev / "scored.jsonl")}
        selected, sel = steps.select(scored_prev, strategy=cfg.strategy, params=cfg.selector_params,
                                     warn_identical=False, **select_args)
        if cfg.guard:
            reasons = guard_reasons(sel)
            if reasons:
                ui.warn(f"round {k}: the {cfg.strategy} selection failed the guard ({'; '.join(reasons)}); "
                        f"spending this round's budget uniformly instead")
                rejected = sel
                selected, sel = steps.select(scored_prev, strategy="uniform", warn_identical=False,
                                             **select_args)
                sel["guard"] = {"passed": False, "reasons": reasons, "rejected_selection": rejected}
            else:
                sel["guard"] = {"passed": True, "reasons": []}
        write_records(selected, tmp / "selected.jsonl")
        pool_seed = cfg.seed if cfg.pool_seed is None else cfg.pool_seed
        aug = steps.make_augmenter(cfg.backend, cfg.augment_params, seed=pool_seed, draw_seed=cfg.seed)
        with ui.progress(f"round {k}: augment ({cfg.backend})",
                         sum(1 for r in selected if r["budget"] > 0), "pairs") as advance:
            synthetic, aug_stats = steps.augment(selected, aug, round=k, model=init, progress=advance,
                                                 semantic_tries=cfg.semantic_tries)
        write_records(synthetic, tmp / "synthetic.jsonl")
        sel["novelty"] = novelty(selected, synthetic, load_head(init))
        metrics["selection"] = sel
        metrics["augment"] = aug_stats
        rows: list[dict[str, Any]] = []
        if cfg.merge == "accumulate":
            for j in range(1, k):
                rows += read_pairs(self.out / f"round-{j}" / "synthetic.jsonl", allow_empty=True)
        return rows + synthetic

    @staticmethod
    def _train_metrics(head: Any, train_set: list[dict[str, Any]], scored_base: list[dict[str, Any]]) -> dict:
        scored_train = head.score(train_set)
        margins = [r["pred_margin"] for r in scored_train]
        out = {
            "train_size": len(train_set),
            "n_synthetic": sum(1 for r in train_set if r.get("source") == "synthetic"),
            "train_curvature_weight": curvature_weight(margins),
            "train_accuracy": pairwise_accuracy(margins),
            "base_accuracy": pairwise_accuracy([r["pred_margin"] for r in scored_base]),
            "training": head.manifest_,
        }
        if hasattr(head, "last_hidden"):
            prompts = [r["prompt"] for r in train_set]
            hc = head.last_hidden(prompts, [r["chosen"] for r in train_set])
            hr = head.last_hidden(prompts, [r["rejected"] for r in train_set])
            out["train_curvature_trace"] = curvature_trace(margins, hc - hr)
        return out

    def _print_round(self, m: dict[str, Any]) -> None:
        ev = m.get("eval")
        acc = f", held-out accuracy {ev['accuracy']:.4f}" if ev else ""
        ui.info(f"round {m['round']} finished: {m['train_size']} training pairs "
                f"({m['n_synthetic']} synthetic){acc}")

    def summary(self) -> dict[str, Any]:
        """Per-round rows from the finished rounds' metrics."""
        rows = []
        for k in self.finished_rounds():
            m = json.loads((self.out / f"round-{k}" / "metrics.json").read_text())
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
            })
        manifest = json.loads((self.out / "manifest.json").read_text())
        return {"run_dir": str(self.out), "config": manifest["config"], "heldout": manifest["heldout"],
                "length_baseline": ((json.loads((self.out / "round-0" / "metrics.json").read_text())
                                     .get("eval") or {}).get("length_baseline")
                                    if (self.out / "round-0").exists() else None),
                "rounds": rows, "timing": manifest["timing"]}


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


def guard_reasons(sel: dict[str, Any]) -> list[str]:
    """Why a selection should not spend the budget (empty when it passes)."""
    reasons = []
    if sel["ess"] < GUARD_MIN_ESS_SHARE * sel["pairs"]:
        reasons.append(f"ESS {sel['ess']:.1f} < {GUARD_MIN_ESS_SHARE} × {sel['pairs']} pairs")
    if sel["share_negative_margin"] > GUARD_MAX_NEGATIVE_SHARE:
        reasons.append(f"{sel['share_negative_margin']:.2f} of the budget on Δ < 0 (> {GUARD_MAX_NEGATIVE_SHARE})")
    return reasons


def novelty(selected: list[dict[str, Any]], synthetic: list[dict[str, Any]], head: Any) -> dict[str, Any]:
    """Correlation between a pair's margin and its synthetic rows' mean margin (same model).

    Near 1 means the synthetic rows are near-copies in the head's eyes: selecting them mostly
    re-weights the base pairs instead of adding information.
    """
    import numpy as np

    if not synthetic:
        return {"corr": None, "pairs": 0}
    scored = head.score(synthetic)
    by_parent: dict[str, list[float]] = {}
    for r in scored:
        by_parent.setdefault(r["parent_id"], []).append(r["pred_margin"])
    base = {r["id"]: r["pred_margin"] for r in selected}
    ids = [i for i in by_parent if i in base]
    if len(ids) < 3:
        return {"corr": None, "pairs": len(ids)}
    x = np.array([base[i] for i in ids])
    y = np.array([np.mean(by_parent[i]) for i in ids])
    corr = float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else None
    return {"corr": corr, "pairs": len(ids), "mean_shift": float((y - x).mean())}


def _f(v: Any, fmt: str = ".4f") -> str:
    return "" if v is None else format(v, fmt)


def summary_table(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of the per-round summary."""
    cols = ["round", "train pairs", "synthetic", "held-out acc", "95% CI", "AUC", "SNR",
            "mean σ'(Δ) train", "ESS", "budget on Δ<0"]
    rows = []
    for r in summary["rounds"]:
        ci = r["eval_accuracy_ci95"]
        rows.append([str(r["round"]), str(r["train_size"]), str(r["n_synthetic"]), _f(r["eval_accuracy"]),
                     f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "", _f(r["eval_roc_auc"]),
                     _f(r["eval_margin_snr"]), _f(r["train_curvature_weight"]), _f(r["selection_ess"], ".1f"),
                     _f(r["selection_share_negative"], ".3f")])
    return cols, rows


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table."""
    cols, rows = summary_table(summary)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lb = summary.get("length_baseline")
    if lb:
        lines.append(f"\nBaseline on the same held-out rows: pick the longer response {lb['longer']:.4f}, "
                     f"the shorter {lb['shorter']:.4f}.")
    return "\n".join(lines) + "\n"


def print_summary(summary: dict[str, Any]) -> None:
    """The summary table on stderr."""
    cols, rows = summary_table(summary)
    held = summary.get("heldout")
    title = f"refine summary ({summary['run_dir']}; held-out: {held['path'] if held else 'none'})"
    ui.table(title, cols, rows)
    lb = summary.get("length_baseline")
    if lb:
        ui.info(f"length baseline on the same held-out rows: longer {lb['longer']:.4f}, "
                f"shorter {lb['shorter']:.4f}")


def load_run_head(run_dir: str | Path, round_: int | None = None) -> Any:
    """The model of a finished round (default: the last)."""
    run = Path(run_dir)
    rounds = sorted(int(p.name.split("-")[1]) for p in run.glob("round-*") if p.name.split("-")[1].isdigit())
    if not rounds:
        msg = f"{run}: no finished rounds"
        raise ConfigError(msg)
    return load_head(run / f"round-{rounds[-1] if round_ is None else round_}" / "model")
