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
from marsctl.errors import ConfigError
from marsctl.metrics import curvature_trace, curvature_weight, evaluate, pairwise_accuracy
from marsctl.params import check_choice, check_interval
from marsctl.plugin import derive_seed, load_head
from marsctl.records import read_pairs, records_sha256, write_json, write_records


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

    def __post_init__(self) -> None:
        check_interval(self.rounds, "rounds", "refine", kind=int, low=0)
        if self.budget is not None:
            check_interval(self.budget, "budget", "refine", kind=int, low=1)
        check_choice(self.merge, "merge", "refine", ["replace", "accumulate"])


# Keys that may change on --resume (extending a run) without invalidating finished rounds.
RESUMABLE_CHANGES = {"rounds"}


class RefineRun:
    """One refine run in a directory."""

    def __init__(self, pairs: list[dict[str, Any]], out: str | Path, config: RefineConfig, *,
                 heldout: list[dict[str, Any]] | None = None, input_name: str = "<input>",
                 heldout_name: str | None = None):
        self.base = pairs
        self.out = Path(out)
        self.config = config
        self.heldout = heldout
        self.input_name = input_name
        self.heldout_name = heldout_name
        self.budget = config.budget or len(pairs)

    # -- manifest ----------------------------------------------------------------------------------
    def _manifest(self) -> dict[str, Any]:
        plugins = {}
        for kind, name in (("head", self.config.head), ("augmenter", self.config.backend),
                           ("selector", self.config.strategy)):
            cls = registry.load(kind, name)
            plugins[kind] = {"name": name, "version": getattr(cls, "version", "?")}
        return {
            "format_version": FORMAT_VERSION,
            "marsctl_version": __version__,
            "config": dataclasses.asdict(self.config),
            "budget_per_round": self.budget,
            "input": {"path": self.input_name, "n": len(self.base), "sha256": records_sha256(self.base)},
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
        manifest = self._manifest()
        mpath = self.out / "manifest.json"
        done = self.finished_rounds() if self.out.exists() else []
        if mpath.exists() or done:
            if not resume:
                msg = f"{self.out} already holds a run ({len(done)} finished rounds)"
                raise ConfigError(msg, hint="pass --resume to continue it, or choose another --out")
            old = json.loads(mpath.read_text())
            self._check_resume(old, manifest)
            manifest["rounds_finished"] = old.get("rounds_finished", [])
            manifest["timing"] = old.get("timing", {})
            manifest["created"] = old.get("created")
        else:
            manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
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
        (self.out / "summary.md").write_text(summary_markdown(summary), encoding="utf-8")
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
                scored_prev = read_pairs(prev / "scored.jsonl")
                selected, sel = steps.select(scored_prev, strategy=cfg.strategy, budget=self.budget,
                                             params=cfg.selector_params, seed=derive_seed(cfg.seed, "select", k),
                                             name=str(prev / "scored.jsonl"))
                write_records(selected, tmp / "selected.jsonl")
                aug = steps.make_augmenter(cfg.backend, cfg.augment_params, seed=cfg.seed)
                with ui.progress(f"round {k}: augment ({cfg.backend})",
                                 sum(1 for r in selected if r["budget"] > 0), "pairs") as advance:
                    synthetic, aug_stats = steps.augment(selected, aug, round=k, model=init, progress=advance)
                write_records(synthetic, tmp / "synthetic.jsonl")
                if cfg.merge == "accumulate":
                    for j in range(1, k):
                        train_set += read_pairs(self.out / f"round-{j}" / "synthetic.jsonl", allow_empty=True)
                train_set += synthetic
                metrics["selection"] = sel
                metrics["augment"] = aug_stats
            write_records(train_set, tmp / "train.jsonl")
            head = steps.train(train_set, head=cfg.head, params=None if init else cfg.head_params,
                               epochs=cfg.epochs, seed=derive_seed(cfg.seed, "train", k), init=init)
            head.save(tmp / "model")
            scored = head.score(self.base)
            write_records(scored, tmp / "scored.jsonl")
            metrics.update(self._train_metrics(head, train_set, scored))
            if self.heldout is not None:
                metrics["eval"] = evaluate(head.score(self.heldout), seed=cfg.seed)
            write_json(metrics, tmp / "metrics.json")
            tmp.rename(self.out / f"round-{k}")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return metrics

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
