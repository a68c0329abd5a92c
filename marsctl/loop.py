"""The MARS loop: R × (train → score → select → augment → merge), one folder per finished round.

The folder's layout is :mod:`marsctl.rundir`'s: a round is built in ``round-k.partial/`` and renamed
when complete (metrics.json written last), so a finished round holds every file of its round
(``rundir.finished_rounds`` checks), is never rewritten, and an interrupted run loses nothing that
finished; ``resume=True`` continues after the last finished round and gives the same result as an
uninterrupted run. The loop writes data only (the rounds, the manifest, summary.json and summary.md);
the figures and report.html are the rendering step's (:mod:`marsctl.render`; :mod:`marsctl.runs`'s
``RefineRun`` is this one with that step added).

One head object serves a round: round k−1's head scores the base pairs once, fills West-of-N pools,
judges semantic rewrites and scores novelty, then round k trains it on (``steps.train(init=head)``).
Only a resumed run loads a model from disk, once.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marsctl import augmentation, registry, report, rundir, steps, ui
from marsctl.atomic import write_json
from marsctl.checks import check_budget, report_identical
from marsctl.config import NONE, RefineConfig
from marsctl.errors import ConfigError, DataError
from marsctl.metrics import curvature_trace, curvature_weight, evaluate, pairwise_accuracy
from marsctl.modeldir import load_head
from marsctl.plugin import Head
from marsctl.provenance import library_versions
from marsctl.records import count_identical, is_identical, read_pairs, records_sha256, write_records
from marsctl.runlock import run_lock
from marsctl.selection import crossfit_margins, noise_flags, noise_weights, novelty, select_guarded
from marsctl.stats import derive_seed
from marsctl.version import FORMAT_VERSION, __version__


@dataclass
class Noise:
    """Round k's label-noise verdict on the base pairs (``RefineConfig.noise``)."""

    mode: str
    scored: list[dict[str, Any]]  # the base pairs with cross-fitted score fields: what selection runs on
    weight: dict[str, float]  # training weight by base pair id
    flagged: set[str]  # ids of likely mislabeled pairs: no budget; left out of training with drop

    def training_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``rows`` (base and synthetic) as trained on: weighted by their pair's weight (soft), or flagged left out."""
        out = []
        for r in rows:
            key = r["parent_id"] if r.get("source") == "synthetic" else r["id"]
            if self.mode == "drop" and key in self.flagged:
                continue
            # soft: the pair's weight times the row's own (a contrast row's, or one the input gave)
            out.append({**r, "weight": r.get("weight", 1.0) * self.weight.get(key, 1.0)} if self.mode == "soft" else r)
        return out

@dataclass
class Finished:
    """What round k takes from finished round k−1: its folder, its head, the base pairs that head scored."""

    dir: Path
    head: Head
    scored: list[dict[str, Any]]


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
            check_budget(self.budget, len(self.base), config.cap, "refine")

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
            "libraries": library_versions(),
            "rounds_finished": [],
            "timing": {},
            "suspects": {},  # with --noise: pairs flagged as likely mislabeled per round (round-k/suspect.jsonl)
        }

    def finished_rounds(self) -> list[int]:
        """Rounds whose folders are complete."""
        return rundir.finished_rounds(self.out)

    # -- the loop ----------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> dict[str, Any]:
        """Run (or continue) every round; returns the summary."""
        from marsctl.outputs import check_run_dir

        self.check_outputs()
        check_run_dir(self.out)  # before the lock creates the folder: a file, or a folder of something else, stays
        with run_lock(self.out):  # held to the end: a second refine on this folder is refused
            return self._run(resume)

    def check_outputs(self) -> None:
        """Before any work: refuse an output besides the folder's data that the run would replace (none here)."""

    def finish(self) -> None:
        """Last, with the folder still locked and the summary written: nothing here (``runs.RefineRun`` renders)."""

    def _run(self, resume: bool) -> dict[str, Any]:
        """``run`` with the folder locked."""
        from marsctl.embed import encoder_stats  # numpy: not at import (the CLI reads RefineConfig for --help)

        manifest, done = self._open(resume)
        mpath = self.out / rundir.MANIFEST_JSON
        start = (max(done) + 1) if done else 0
        if done:
            ui.info(f"resuming {self.out}: rounds 0..{max(done)} finished, continuing at round {start}")
        prev = self._load_finished(start - 1) if 0 < start <= self.config.rounds else None
        for k in range(start, self.config.rounds + 1):
            t0 = time.perf_counter()
            emb0 = encoder_stats()
            metrics, prev = self._round(k, prev)
            emb1 = encoder_stats()
            manifest["rounds_finished"].append(k)
            if "noise" in metrics:
                manifest["suspects"][rundir.round_name(k)] = metrics["noise"]["flagged"]
            manifest["timing"][rundir.round_name(k)] = {
                "seconds": round(time.perf_counter() - t0, 2),
                "embed_seconds": round(emb1["embed_seconds"] - emb0["embed_seconds"], 2),
                "texts_embedded": int(emb1["misses"] - emb0["misses"]),
                "texts_from_cache": int(emb1["hits"] - emb0["hits"]),
                # the precision the round's encoder ran in (fp32 or bf16; None: the head has none)
                "encoder_precision": getattr(getattr(prev.head, "encoder", None), "precision", None),
            }
            write_json(manifest, mpath)
            self._print_round(metrics)
        summary = rundir.summary(self.out)
        write_json(summary, self.out / rundir.SUMMARY_JSON)
        report.write_summary(summary, self.out / rundir.SUMMARY_MD)
        report.print_summary(summary)
        self.finish()
        return summary

    def _open(self, resume: bool) -> tuple[dict[str, Any], list[int]]:
        """Check the run directory, write the manifest; returns it and the finished rounds.

        A run already there is continued only with ``resume`` and the same settings (``rundir.check_resume``).
        Called with the folder locked (``runlock.run_lock``), so the folder is checked again here: another
        process may have written it between ``run``'s first check and the lock.
        """
        from marsctl.outputs import check_run_dir

        manifest = self._manifest()
        mpath = self.out / rundir.MANIFEST_JSON
        has_run = check_run_dir(self.out)
        done = self.finished_rounds() if has_run else []
        if has_run:
            if not resume:
                msg = f"{self.out} already holds a run ({len(done)} finished rounds)"
                raise ConfigError(msg, hint="pass --resume to continue it, or choose another --out")
            old = rundir.read_manifest(mpath)
            rundir.check_resume(self.out, old, manifest, done)
            for key, empty in (("timing", {}), ("suspects", {}), ("created", None)):
                manifest[key] = old.get(key, empty)
            manifest["rounds_finished"] = list(done)  # the folders say (a run killed before its manifest was)
        else:
            manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if self.identical["n"]:
            report_identical(self.input_records, self.input_name, "refine", "left out of training and selection")
        if self.heldout is None:
            ui.warn("no --eval file: rounds are compared on training data only (no held-out accuracy)")
        self.out.mkdir(parents=True, exist_ok=True)
        rundir.clear_partials(self.out)
        write_json(manifest, mpath)
        return manifest, done

    def _load_finished(self, k: int) -> Finished:
        """Finished round k from its folder (when resuming): its model, loaded once, and its scored pairs."""
        d = rundir.round_dir(self.out, k)
        return Finished(d, load_head(d / rundir.MODEL_DIR), read_pairs(d / rundir.SCORED_JSONL))

    def _round(self, k: int, prev: Finished | None) -> tuple[dict[str, Any], Finished]:
        """Build round k in its .partial folder from round k−1's state; returns its metrics and its state."""
        cfg = self.config
        tmp = rundir.start_round(self.out, k)
        try:
            metrics: dict[str, Any] = {"round": k}
            noise = self._noise(k, prev, tmp, metrics) if prev and cfg.noise != "off" else None
            extra = self._augment_round(k, prev, tmp, metrics, noise) if prev and cfg.strategy != NONE else []
            train_set = self.base + extra if noise is None else noise.training_rows(self.base + extra)
            write_records(train_set, tmp / rundir.TRAIN_JSONL)
            head = steps.train(train_set, head=cfg.head, params=None if prev else cfg.head_params,
                               epochs=self._epochs(train_set, k), seed=derive_seed(cfg.seed, "train", k),
                               init=prev.head if prev else None,
                               init_name=str(prev.dir / rundir.MODEL_DIR) if prev else None,
                               warn_identical=False)
            head.save(tmp / rundir.MODEL_DIR)
            scored = head.score(self.base)  # once: scored.jsonl, the metrics, and round k+1's selection
            write_records(scored, tmp / rundir.SCORED_JSONL)
            metrics.update(self._train_metrics(head, train_set, scored, extra))
            if self.heldout is not None:
                scored_held = head.score(self.heldout)
                metrics["eval"] = evaluate(scored_held, seed=cfg.seed)
                metrics["eval_margins"] = [r["pred_margin"] for r in scored_held]
            write_json(metrics, tmp / rundir.METRICS_JSON)
            done = rundir.finish_round(self.out, k)
        except BaseException:
            rundir.discard_round(self.out, k)
            raise
        # Without the input's line numbers: round k+1 names scored.jsonl in its messages, and its lines. A chat
        # row keeps its messages (``_source``): selected.jsonl and its synthetic rows are written as chat.
        return metrics, Finished(done, head, [_without_line(r) for r in scored])

    def _epochs(self, train_set: list[dict[str, Any]], k: int) -> int | None:
        """Epochs for round k: the configured ones, or scaled so optimiser steps match base-only training."""
        cfg = self.config
        if not cfg.match_steps or k == 0:
            return cfg.epochs
        base_epochs = cfg.epochs if cfg.epochs is not None else registry.load("head", cfg.head).default_epochs()
        if base_epochs is None:  # the head does not count epochs
            return None
        return max(1, round(base_epochs * len(self.base) / len(train_set)))

    def _margins_for_selection(self, k: int, prev: Finished, noise: Noise | None) -> list[dict[str, Any]]:
        """Base pairs scored by round k−1's model, or cross-fitted: each fold by a model that never saw it."""
        cfg = self.config
        if noise is not None:
            return noise.scored
        if not cfg.crossfit:
            return prev.scored
        return crossfit_margins(prev.scored, read_pairs(prev.dir / rundir.TRAIN_JSONL), cfg.crossfit, head=cfg.head,
                                params=cfg.head_params, epochs=cfg.epochs,
                                seed=lambda f: derive_seed(cfg.seed, "crossfit", k, f))

    def _noise(self, k: int, prev: Finished, tmp: Path, metrics: dict[str, Any]) -> Noise:
        """Cross-fit round k−1's training rows over prompt-grouped folds; flag, weight, write suspect.jsonl."""
        cfg = self.config
        cf = crossfit_margins(prev.scored, read_pairs(prev.dir / rundir.TRAIN_JSONL), cfg.noise_folds, head=cfg.head,
                              params=cfg.head_params, epochs=cfg.epochs,
                              seed=lambda f: derive_seed(cfg.seed, "noise", k, f))
        margins = [r["pred_margin"] for r in cf]
        sd, flags = noise_flags(margins, cfg.noise_threshold)
        weights = noise_weights(margins, flags, cfg.noise, sd)
        suspects = [self._suspect(i, m, sd, w) for i, (m, f, w) in enumerate(zip(margins, flags, weights, strict=True))
                    if f]
        write_records(suspects, tmp / rundir.SUSPECT_JSONL)
        metrics["noise"] = {"mode": cfg.noise, "threshold": cfg.noise_threshold, "folds": cfg.noise_folds,
                            "crossfit_margin_std": round(sd, 6), "flagged": len(suspects),
                            "dropped": len(suspects) if cfg.noise == "drop" else 0,
                            "mean_weight": round(sum(weights) / len(weights), 6)}
        return Noise(cfg.noise, cf, {r["id"]: w for r, w in zip(cf, weights, strict=True)},
                     {r["id"] for r, f in zip(cf, flags, strict=True) if f})

    def _suspect(self, i: int, margin: float, sd: float, weight: float) -> dict[str, Any]:
        """Base pair i as suspect.jsonl lists it: the pair, where it came from, its cross-fitted margin, why."""
        pair = self.base[i]
        z = margin / sd
        reason = (f"cross-fitted margin {margin:.4g} is {z:.2f} std: below −{self.config.noise_threshold:g} std, "
                  f"heads that never saw this pair prefer 'rejected'; check its label")
        return {**_without_line(pair), "input_line": pair.get("_line"), "crossfit_margin": margin,
                "crossfit_margin_std": sd, "crossfit_z": z, "weight": weight, "reason": reason}

    def _select(self, k: int, scored: list[dict[str, Any]], noise: Noise | None,
                select_args: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Round k's selection; flagged pairs (``noise``) take no part and get budget 0."""
        cfg = self.config
        flagged = noise.flagged if noise is not None else set()
        keep = [r for r in scored if r["id"] not in flagged]
        if not keep:
            msg = f"round {k}: --noise flagged every pair; there is nothing to spend the budget on"
            raise DataError(msg, hint="raise --noise-threshold")
        selected, sel = select_guarded(keep, strategy=cfg.strategy, params=cfg.selector_params, guard=cfg.guard,
                                       label=f"round {k}", **select_args)
        sel["suspects_excluded"] = len(scored) - len(keep)
        if not flagged:
            return selected, sel
        it = iter(selected)
        pick = selected[0]["selection"]["pick"]
        zero = {"strategy": sel["strategy"], "weight": 0.0, "pick": pick, "suspect": True}
        return [{**r, "budget": 0, "selection": zero} if r["id"] in flagged else next(it) for r in scored], sel

    def _augment_round(self, k: int, prev: Finished, tmp: Path, metrics: dict[str, Any],
                       noise: Noise | None = None) -> list[dict[str, Any]]:
        """Select on round k−1's margins, augment, and return this round's synthetic pairs."""
        cfg = self.config
        select_args = {"budget": self.budget, "seed": derive_seed(cfg.seed, "select", k), "cap": cfg.cap,
                       "mix": cfg.mix_uniform, "name": str(prev.dir / rundir.SCORED_JSONL)}
        selected, sel = self._select(k, self._margins_for_selection(k, prev, noise), noise, select_args)
        write_records(selected, tmp / rundir.SELECTED_JSONL)
        pool_seed = cfg.seed if cfg.pool_seed is None else cfg.pool_seed
        aug = augmentation.make_augmenter(cfg.backend, cfg.augment_params, seed=pool_seed, draw_seed=cfg.seed)
        with ui.progress(f"round {k}: augment ({cfg.backend})",
                         sum(1 for r in selected if r["budget"] > 0), "pairs") as advance:
            synthetic, aug_stats = augmentation.augment(selected, aug, round=k, model=prev.head, progress=advance,
                                                 semantic_tries=cfg.semantic_tries)
        write_records(synthetic, tmp / rundir.SYNTHETIC_JSONL)
        sel["novelty"] = novelty(selected, synthetic, prev.head)
        metrics["selection"] = sel
        metrics["augment"] = aug_stats
        rows: list[dict[str, Any]] = []
        if cfg.merge == "accumulate":
            for j in range(1, k):
                rows += read_pairs(rundir.round_dir(self.out, j) / rundir.SYNTHETIC_JSONL, allow_empty=True)
        return rows + synthetic

    @staticmethod
    def _train_metrics(head: Head, train_set: list[dict[str, Any]], scored_base: list[dict[str, Any]],
                       extra: list[dict[str, Any]]) -> dict[str, Any]:
        """Fit diagnostics on the training set (``train_set`` = the base pairs trained on, then ``extra``)."""
        trained = {r["id"] for r in train_set}
        extra = [r for r in extra if r["id"] in trained]
        margins = [r["pred_margin"] for r in [r for r in scored_base if r["id"] in trained]
                   + (head.score(extra) if extra else [])]
        out = {
            "train_size": len(train_set),
            "n_synthetic": sum(1 for r in train_set if r.get("source") == "synthetic"),
            "train_curvature_weight": curvature_weight(margins),
            "train_accuracy": pairwise_accuracy(margins),
            "base_accuracy": pairwise_accuracy([r["pred_margin"] for r in scored_base]),
            "training": head.manifest_,
        }
        prompts = [r["prompt"] for r in train_set]
        hc = head.last_hidden(prompts, [r["chosen"] for r in train_set])
        if hc is not None:
            hr = head.last_hidden(prompts, [r["rejected"] for r in train_set])
            out["train_curvature_trace"] = curvature_trace(margins, hc - hr)
        return out

    def _print_round(self, m: dict[str, Any]) -> None:
        ev = m.get("eval")
        acc = f", held-out accuracy {ev['accuracy']:.4f}" if ev else ""
        ui.info(f"round {m['round']} finished: {m['train_size']} training pairs "
                f"({m['n_synthetic']} synthetic){acc}")


def _without_line(rec: dict[str, Any]) -> dict[str, Any]:
    """A record without its input line (``_line``); the rest, a chat row's messages (``_source``) too, is kept."""
    return {k: v for k, v in rec.items() if k != "_line"}

