"""marsctl compare: every strategy on the same split, pool and seeds, with paired statistics.

For each seed: one split grouped by prompt (or a fixed held-out file), then one refine run per
(protocol, strategy) in ``DIR/runs/PROTOCOL/STRATEGY/seed-S`` (resumable; the folder's layout is
:mod:`marsctl.rundir`'s). Protocols:

- ``epochs``: every round trains the same number of epochs (the paper's protocol: augmented runs
  take more optimiser steps);
- ``steps``: augmented rounds train fewer epochs so optimiser steps match base-only training.

The synthetic pool is the same for every strategy of a seed (the augmenter's variants are seeded
by text, not by strategy), so strategies differ only in which pool rows they spend the budget on.

The runner writes data and tables only; the figures and report.html are the rendering step's
(:mod:`marsctl.render`; :mod:`marsctl.runs`'s ``Compare`` is this one with that step added).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from marsctl import registry, rundir, ui
from marsctl.atomic import atomic_writer, write_json
from marsctl.comparestats import compare_statistics
from marsctl.config import NONE, REFERENCES, CompareConfig
from marsctl.lengths import length_baseline
from marsctl.loop import RefineRun
from marsctl.provenance import library_versions
from marsctl.records import records_sha256
from marsctl.report import print_compare, write_compare
from marsctl.runlock import run_lock
from marsctl.split import grouped_split


class Compare:
    """One compare run in a directory."""

    def __init__(self, pairs: list[dict[str, Any]], out: str | Path, config: CompareConfig, *,
                 heldout: list[dict[str, Any]] | None = None, input_name: str = "<input>",
                 heldout_name: str | None = None):
        self.pairs = pairs
        self.out = Path(out)
        self.config = config
        self.heldout = heldout
        self.input_name = input_name
        self.heldout_name = heldout_name

    def split(self, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
        """The training and test pairs of one seed."""
        if self.heldout is not None:
            return self.pairs, self.heldout, str(self.heldout_name)
        train, test = grouped_split(self.pairs, self.config.test_frac, seed=seed)
        name = f"{self.input_name} (grouped-by-prompt split, test_frac={self.config.test_frac}, seed={seed})"
        return train, test, name

    def run(self) -> dict[str, Any]:
        """Run every (seed, protocol, strategy); write runs.jsonl/csv, table.md; return the report."""
        from marsctl.outputs import check_run_dir

        cfg = self.config
        check_run_dir(self.out, marker=rundir.COMPARE_JSON)
        self.check_outputs()
        registry.check_params("head", cfg.refine.head, cfg.refine.head_params)
        registry.check_params("augmenter", cfg.refine.backend, cfg.refine.augment_params)
        for st in cfg.strategies:
            if st != NONE:
                registry.check_params("selector", st, cfg.selector_params(st))
        with run_lock(self.out):  # held to the end: a second compare on this folder is refused
            check_run_dir(self.out, marker=rundir.COMPARE_JSON)  # again: another process may have written it meanwhile
            return self._run()

    def check_outputs(self) -> None:
        """Before any work: refuse an output besides the folder's data that the run would replace (none here)."""

    def finish(self, results: list[dict[str, Any]], report: dict[str, Any]) -> None:
        """Last, with the folder still locked and the tables written: nothing here (``runs.Compare`` renders)."""

    def _run(self) -> dict[str, Any]:
        """``run`` with the folder locked."""
        cfg = self.config
        write_json({"config": asdict(cfg), "input": self.input_name, "heldout": self.heldout_name,
                    "input_sha256": records_sha256(self.pairs),
                    "heldout_sha256": None if self.heldout is None else records_sha256(self.heldout),
                    "libraries": library_versions(),
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, self.out / rundir.COMPARE_JSON)
        jobs = [(s, p, st) for s in range(cfg.seeds) for p in cfg.protocols for st in cfg.strategies]
        results: list[dict[str, Any]] = []
        t0 = time.perf_counter()
        with ui.progress("compare runs", len(jobs), "runs") as advance:
            for seed, protocol, strategy in jobs:
                train, test, test_name = self.split(seed)
                if protocol == cfg.protocols[0] and strategy == cfg.strategies[0]:
                    self._leak_check(train, test, seed)
                results.append(self._one(seed, protocol, strategy, train, test, test_name))
                r = results[-1]
                ui.info(f"seed {seed} {protocol:>6} {strategy:<11} held-out accuracy {r['accuracy']:.4f} "
                        f"[{r['accuracy_ci95'][0]:.3f}, {r['accuracy_ci95'][1]:.3f}]  "
                        f"(length baseline {r['length_longer']:.3f})")
                advance(1)
        report = self.report(results)
        report["seconds"] = round(time.perf_counter() - t0, 1)
        write_json(report, self.out / rundir.REPORT_JSON)
        write_compare(report, self.out / rundir.TABLE_MD, self.command_line())
        self._write_runs(results)
        print_compare(report)
        self.finish(results, report)
        return report

    def command_line(self) -> str:
        """The command that reproduces this run (for the table)."""
        import shlex
        import sys

        return "marsctl " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else ""

    def _leak_check(self, train: list[dict[str, Any]], test: list[dict[str, Any]], seed: int) -> None:
        prompts = {r["prompt"] for r in train}
        responses = {r["chosen"] for r in train} | {r["rejected"] for r in train}
        p = sum(1 for r in test if r["prompt"] in prompts)
        resp = sum(1 for r in test if r["chosen"] in responses or r["rejected"] in responses)
        if p or resp:
            ui.warn(f"seed {seed}: {p} test prompts and {resp} test pairs' responses also occur in training "
                    f"(synthetic rows are made from training pairs only)")

    def _one(self, seed: int, protocol: str, strategy: str, train: list[dict[str, Any]],
             test: list[dict[str, Any]], test_name: str) -> dict[str, Any]:
        cfg = self.config
        rc = dataclasses.replace(cfg.refine, strategy=strategy, seed=seed, match_steps=protocol == "steps",
                                 budget=cfg.refine.budget or len(train), selector_params=cfg.selector_params(strategy))
        run_dir = rundir.compare_run_dir(self.out, protocol, strategy, seed)
        with ui.quiet():
            summary = RefineRun(train, run_dir, rc, heldout=test, input_name=self.input_name,
                                heldout_name=test_name).run(resume=run_dir.exists())
        last = summary["rounds"][-1]
        per_round = []
        for k in range(rc.rounds + 1):
            m = json.loads((rundir.round_dir(run_dir, k) / rundir.METRICS_JSON).read_text())
            per_round.append(m)
        final = per_round[-1]
        sel = [m.get("selection") or {} for m in per_round[1:]]
        lb = final["eval"]["length_baseline"]
        test_longer = length_baseline(test)["longer"]
        return {
            "seed": seed, "protocol": protocol, "strategy": strategy, "run_dir": str(run_dir),
            "n_train": len(train), "n_test": len(test), "budget": rc.budget,
            "accuracy": last["eval_accuracy"], "accuracy_ci95": last["eval_accuracy_ci95"],
            "roc_auc": last["eval_roc_auc"], "margin_snr": last["eval_margin_snr"],
            "accuracy_by_round": [r["eval_accuracy"] for r in summary["rounds"]],
            "length_longer": lb["longer"], "length_shorter": lb["shorter"],
            "correct": [1 if m > 0 else 0 for m in final["eval_margins"]],
            "train_curvature_weight": final["train_curvature_weight"],
            "epochs_by_round": [m["training"].get("epochs") for m in per_round],
            "steps_by_round": [m["training"].get("steps") for m in per_round],
            "selection": [{k: s.get(k) for k in ("ess", "max_budget", "pairs_selected", "share_negative_margin",
                                                  "p_chosen_longer_selected", "novelty", "guard", "equals_uniform",
                                                  "suspects_excluded")} for s in sel],
            "noise": [m.get("noise") for m in per_round[1:]],
            "test_p_chosen_longer": test_longer,
        }

    def report(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """The settings and, per protocol and strategy, the statistics (``comparestats.compare_statistics``)."""
        cfg = self.config
        return {"config": asdict(cfg),
                "protocols": compare_statistics(results, cfg.strategies, cfg.protocols, refs=REFERENCES,
                                                n_boot=cfg.n_boot)}

    def _write_runs(self, results: list[dict[str, Any]]) -> None:
        with atomic_writer(self.out / rundir.RUNS_JSONL) as fh:
            for r in results:
                fh.write(json.dumps({k: v for k, v in r.items() if k != "correct"}, allow_nan=False) + "\n")
        cols = ["seed", "protocol", "strategy", "n_train", "n_test", "budget", "accuracy", "roc_auc",
                "margin_snr", "length_longer", "train_curvature_weight"]
        with atomic_writer(self.out / rundir.RUNS_CSV) as fh:
            w = csv.writer(fh)
            w.writerow(cols)
            for r in results:
                w.writerow([r[c] for c in cols])
