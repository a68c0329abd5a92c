"""marsctl compare: every strategy on the same split, pool and seeds, with paired statistics.

For each seed: one split grouped by prompt (or a fixed held-out file), then one refine run per
(protocol, strategy) in ``DIR/runs/PROTOCOL/STRATEGY/seed-S`` (resumable). Protocols:

- ``epochs``: every round trains the same number of epochs (the paper's protocol: augmented runs
  take more optimiser steps);
- ``steps``: augmented rounds train fewer epochs so optimiser steps match base-only training.

The synthetic pool is the same for every strategy of a seed (the augmenter's variants are seeded
by text, not by strategy), so strategies differ only in which pool rows they spend the budget on.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from marsctl import registry, ui
from marsctl.errors import ConfigError
from marsctl.loop import NONE, RefineConfig, RefineRun
from marsctl.params import check_choice, check_interval
from marsctl.records import atomic_writer, write_json
from marsctl.split import grouped_split

PROTOCOLS = ["epochs", "steps"]


@dataclass
class CompareConfig:
    """Settings of a compare run."""

    strategies: list[str] = field(default_factory=lambda: ["none", "uniform", "won", "mars", "mars-abs"])
    seeds: int = 5
    budget: int | None = None
    rounds: int = 1
    head: str = "mlp"
    head_params: list[str] = field(default_factory=list)
    epochs: int | None = None
    backend: str = "eda"
    augment_params: list[str] = field(default_factory=list)
    selector_params: list[str] = field(default_factory=list)
    protocols: list[str] = field(default_factory=lambda: list(PROTOCOLS))
    test_frac: float = 0.3
    cap: int | None = 25
    crossfit: int = 0
    guard: bool = False
    mix_uniform: float = 0.0
    n_boot: int = 2000
    pool_seed: int = 0  # one synthetic pool for every seed and strategy (variants embedded once)

    def __post_init__(self) -> None:
        check_interval(self.seeds, "seeds", "compare", kind=int, low=1)
        check_interval(self.rounds, "rounds", "compare", kind=int, low=1)
        check_interval(self.test_frac, "test_frac", "compare", low=0, high=1, closed="neither")
        for p in self.protocols:
            check_choice(p, "protocol", "compare", PROTOCOLS)
        if not self.strategies:
            raise ConfigError("compare needs at least one strategy")
        from marsctl import registry

        for s in self.strategies:
            if s != NONE:
                registry.load("selector", s)


def paired_difference(a: list[np.ndarray], b: list[np.ndarray], *, n_boot: int = 2000,
                      seed: int = 0) -> dict[str, Any]:
    """Mean accuracy difference a − b over seeds, with a 95% CI from a two-level bootstrap.

    ``a[s]`` and ``b[s]`` are 0/1 correctness vectors over the same test pairs of seed s. Each
    resample draws seeds with replacement, then test pairs with replacement inside each seed
    (the same pairs for both strategies, which is what makes the comparison paired).
    """
    rng = np.random.default_rng(seed)
    diffs_by_seed = [np.asarray(x, dtype=float) - np.asarray(y, dtype=float) for x, y in zip(a, b, strict=True)]
    per_seed = np.array([d.mean() for d in diffs_by_seed])
    boots = np.empty(n_boot)
    for i in range(n_boot):
        seeds = rng.integers(0, len(diffs_by_seed), len(diffs_by_seed))
        total = 0.0
        for s in seeds:
            d = diffs_by_seed[s]
            total += d[rng.integers(0, len(d), len(d))].mean()
        boots[i] = total / len(seeds)
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return {"mean": float(per_seed.mean()), "ci95": [float(lo), float(hi)],
            "wins": int((per_seed > 0).sum()), "losses": int((per_seed < 0).sum()),
            "ties": int((per_seed == 0).sum())}


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
        """Run every (seed, protocol, strategy); write runs.jsonl/csv, table.md, plots; return results."""
        from marsctl.outputs import check_run_dir

        cfg = self.config
        check_run_dir(self.out, marker="compare.json")
        registry.check_params("head", cfg.head, cfg.head_params)
        registry.check_params("augmenter", cfg.backend, cfg.augment_params)
        self.out.mkdir(parents=True, exist_ok=True)
        write_json({"config": asdict(cfg), "input": self.input_name, "heldout": self.heldout_name,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, self.out / "compare.json")
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
        write_json(report, self.out / "report.json")
        with atomic_writer(self.out / "table.md") as fh:
            fh.write(report_markdown(report, self.command_line()))
        self._write_runs(results)
        print_report(report)
        try:
            from marsctl import plots

            report["plots"] = plots.compare_plots(self.out, results, report)
        except ImportError:
            ui.warn("matplotlib is not installed: no plots (pip install 'marsctl[plot]')")
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
        rc = RefineConfig(rounds=cfg.rounds, budget=cfg.budget or len(train), strategy=strategy,
                          selector_params=[] if strategy in (NONE, "uniform", "won") else list(cfg.selector_params),
                          head=cfg.head, head_params=list(cfg.head_params), epochs=cfg.epochs, backend=cfg.backend,
                          augment_params=list(cfg.augment_params), seed=seed, cap=cfg.cap,
                          match_steps=protocol == "steps", crossfit=cfg.crossfit, guard=cfg.guard,
                          pool_seed=cfg.pool_seed, mix_uniform=cfg.mix_uniform)
        run_dir = self.out / "runs" / protocol / strategy / f"seed-{seed}"
        with _quiet():
            summary = RefineRun(train, run_dir, rc, heldout=test, input_name=self.input_name,
                                heldout_name=test_name).run(resume=run_dir.exists())
        last = summary["rounds"][-1]
        per_round = []
        for k in range(cfg.rounds + 1):
            m = json.loads((run_dir / f"round-{k}" / "metrics.json").read_text())
            per_round.append(m)
        final = per_round[-1]
        sel = [m.get("selection") or {} for m in per_round[1:]]
        lb = final["eval"]["length_baseline"]
        test_longer = sum(1 for r in test if len(r["chosen"]) > len(r["rejected"])) / len(test)
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
                                                  "p_chosen_longer_selected", "novelty", "guard")} for s in sel],
            "test_p_chosen_longer": test_longer,
        }

    def report(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """Per protocol and strategy: accuracy mean ± std, bootstrap CI, paired Δ vs uniform and none."""
        cfg = self.config
        out: dict[str, Any] = {"config": asdict(cfg), "protocols": {}}
        for protocol in cfg.protocols:
            rows = {}
            by = {st: sorted((r for r in results if r["protocol"] == protocol and r["strategy"] == st),
                             key=lambda r: r["seed"]) for st in cfg.strategies}
            for st, runs in by.items():
                accs = np.array([r["accuracy"] for r in runs])
                zeros = [np.zeros(len(r["correct"])) for r in runs]
                own = paired_difference([np.array(r["correct"]) for r in runs], zeros, n_boot=cfg.n_boot)
                row: dict[str, Any] = {
                    "accuracy_mean": float(accs.mean()), "accuracy_std": float(accs.std()),
                    "accuracy_ci95": own["ci95"], "seeds": len(runs),
                    "length_longer": float(np.mean([r["length_longer"] for r in runs])),
                    "length_shorter": float(np.mean([r["length_shorter"] for r in runs])),
                }
                for ref in ("uniform", NONE):
                    if ref in by and ref != st:
                        row[f"vs_{ref}"] = paired_difference([np.array(r["correct"]) for r in runs],
                                                             [np.array(r["correct"]) for r in by[ref]],
                                                             n_boot=cfg.n_boot)
                sels = [s for r in runs for s in r["selection"]]
                if sels:
                    row["diagnostics"] = _mean_diagnostics(sels)
                    row["diagnostics"]["test_p_chosen_longer"] = float(np.mean([r["test_p_chosen_longer"]
                                                                                for r in runs]))
                row["train_curvature_weight"] = float(np.mean([r["train_curvature_weight"] for r in runs]))
                rows[st] = row
            out["protocols"][protocol] = rows
        return out

    def _write_runs(self, results: list[dict[str, Any]]) -> None:
        with atomic_writer(self.out / "runs.jsonl") as fh:
            for r in results:
                fh.write(json.dumps({k: v for k, v in r.items() if k != "correct"}, allow_nan=False) + "\n")
        cols = ["seed", "protocol", "strategy", "n_train", "n_test", "budget", "accuracy", "roc_auc",
                "margin_snr", "length_longer", "train_curvature_weight"]
        with atomic_writer(self.out / "runs.csv") as fh:
            w = csv.writer(fh)
            w.writerow(cols)
            for r in results:
                w.writerow([r[c] for c in cols])


def _mean_diagnostics(sels: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(key: str) -> float | None:
        vals = [s[key] for s in sels if s.get(key) is not None]
        return float(np.mean(vals)) if vals else None

    nov = [s["novelty"]["corr"] for s in sels if s.get("novelty") and s["novelty"].get("corr") is not None]
    guard_failed = sum(1 for s in sels if s.get("guard") and not s["guard"]["passed"])
    return {"ess": mean("ess"), "max_budget": mean("max_budget"), "pairs_selected": mean("pairs_selected"),
            "share_negative_margin": mean("share_negative_margin"),
            "p_chosen_longer_selected": mean("p_chosen_longer_selected"),
            "novelty_corr": float(np.mean(nov)) if nov else None, "guard_fallbacks": guard_failed}


def _pm(d: dict[str, Any] | None) -> str:
    if not d:
        return ""
    lo, hi = d["ci95"]
    return f"{100 * d['mean']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] ({d['wins']}/{d['losses']})"


def report_rows(report: dict[str, Any], protocol: str) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of one protocol's table (accuracies in %)."""
    cols = ["strategy", "accuracy % (mean ± std)", "95% CI", "Δ vs uniform [CI] (wins/losses)",
            "Δ vs none [CI] (wins/losses)", "length baseline (longer)"]
    rows = []
    for st, r in report["protocols"][protocol].items():
        lo, hi = r["accuracy_ci95"]
        rows.append([st, f"{100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_std']:.1f}",
                     f"[{100 * lo:.1f}, {100 * hi:.1f}]", _pm(r.get("vs_uniform")), _pm(r.get("vs_none")),
                     f"{100 * r['length_longer']:.1f}"])
    return cols, rows


def diagnostics_rows(report: dict[str, Any], protocol: str) -> tuple[list[str], list[list[str]]]:
    """Selection diagnostics per strategy (means over seeds and rounds)."""
    cols = ["strategy", "ESS", "max b_i", "pairs with b_i>0", "budget on Δ<0", "P(chosen longer) selected",
            "P(chosen longer) test", "mean σ'(Δ) train", "novelty corr", "guard fallbacks"]
    rows = []
    for st, r in report["protocols"][protocol].items():
        d = r.get("diagnostics")
        if not d:
            continue

        def f(v: Any, fmt: str = ".3f") -> str:
            return "" if v is None else format(v, fmt)

        rows.append([st, f(d["ess"], ".1f"), f(d["max_budget"], ".1f"), f(d["pairs_selected"], ".1f"),
                     f(d["share_negative_margin"]), f(d["p_chosen_longer_selected"]), f(d["test_p_chosen_longer"]),
                     f(r["train_curvature_weight"], ".4f"), f(d["novelty_corr"]), str(d["guard_fallbacks"])])
    return cols, rows


def report_markdown(report: dict[str, Any], command: str = "") -> str:
    """table.md."""
    cfg = report["config"]
    lines = [f"# compare: {', '.join(cfg['strategies'])}", ""]
    if command:
        lines += ["```", command, "```", ""]
    lines += [f"{cfg['seeds']} seeds; head {cfg['head']}; backend {cfg['backend']}; rounds {cfg['rounds']}; "
              f"budget {cfg['budget'] or 'as many as training pairs'} per round; cap {cfg['cap']} rows per pair. "
              "Δ are paired differences in accuracy points with a 95% CI from a bootstrap over seeds and "
              "test pairs; wins/losses count seeds.", ""]
    for protocol in report["protocols"]:
        what = ("same epochs per round (the paper's protocol)" if protocol == "epochs"
                else "matched optimiser steps (augmented rounds train fewer epochs)")
        lines += [f"## {what}", ""]
        for maker in (report_rows, diagnostics_rows):
            cols, rows = maker(report, protocol)
            lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
            lines.append("")
    return "\n".join(lines)


def print_report(report: dict[str, Any]) -> None:
    """Compact tables on stderr (table.md has every column)."""
    for protocol in report["protocols"]:
        rows = []
        for st, r in report["protocols"][protocol].items():
            rows.append([st, f"{100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_std']:.1f}",
                         _pm(r.get("vs_uniform")), _pm(r.get("vs_none")), f"{100 * r['length_longer']:.1f}"])
        ui.table(f"compare, {protocol} protocol (accuracy %, Δ in points [95% CI] (seeds won/lost))",
                 ["strategy", "accuracy", "Δ vs uniform", "Δ vs none", "longer"], rows)


class _quiet:
    """Silence per-run logs of the inner refine runs (compare prints one line per run)."""

    def __enter__(self) -> None:
        import io
        import os

        from rich.console import Console

        self._saved = ui._console
        self._env = os.environ.get("MARSCTL_NO_PROGRESS")
        os.environ["MARSCTL_NO_PROGRESS"] = "1"
        ui._console = Console(file=io.StringIO())

    def __exit__(self, *exc: object) -> None:
        import os

        ui._console = self._saved
        if self._env is None:
            os.environ.pop("MARSCTL_NO_PROGRESS", None)
        else:
            os.environ["MARSCTL_NO_PROGRESS"] = self._env
