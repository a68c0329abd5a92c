"""How many epochs should the mlp and linear heads train by default? Held-out accuracy by epochs.

Same protocol as benchmarks/features.py (grouped 70/30 split by prompt, shared embedding cache), next
to the length baselines (pick the longer / the shorter response) on the same test pairs. The first
table (3 seeds, before the length term existed, so as ``length=off``) continued one network from 2 to
5, 10 and 20 epochs; with ``--fresh`` each epochs value trains a network from scratch, as
``train --epochs N`` does.

    HF_HUB_OFFLINE=1 python benchmarks/epochs.py [--shared ../shared] [--out benchmarks/results]
    HF_HUB_OFFLINE=1 MARSCTL_CACHE_DIR=DIR python benchmarks/epochs.py -p length=term --fresh --seeds 5 \
        --epochs 2 3 4 5 8 --linear-epochs 10 20 40 --name epochs_term

Each run writes NAME.jsonl; epochs.md is rendered from epochs.jsonl (length=off) and, when present,
epochs_term.jsonl (length=term) with the default rule for the latter (``--render``: only that).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from common import DATASETS, HEADS

from marsctl import steps
from marsctl.lengths import length_baseline
from marsctl.metrics import pairwise_accuracy
from marsctl.records import read_pairs
from marsctl.report import mean_std_markdown
from marsctl.split import grouped_split
from marsctl_plugins.heads.embedding import LinearConfig, MLPConfig

EPOCHS = [2, 5, 10, 20]
BASELINES = ("longer", "shorter")
DEFAULTS = {"mlp": MLPConfig, "linear": LinearConfig}
SECTIONS = {  # jsonl name: heading in epochs.md
    "epochs_term": "length=term (the default since issue #13)",
    "epochs": "length=off (measured before the length term existed)",
}


def accuracy(model: Any, test: list[dict[str, Any]]) -> float:
    """Held-out pairwise accuracy of a trained head."""
    return pairwise_accuracy([r["pred_margin"] for r in steps.score(test, model)])


def by_epochs(train: list[dict[str, Any]], test: list[dict[str, Any]], head: str, epochs: list[int],
              seed: int, params: list[str], fresh: bool) -> dict[int, float]:
    """Accuracy after each epochs value: a new network per value (fresh) or one network trained on."""
    out, model, done = {}, None, 0
    for ep in epochs:
        if fresh or model is None:
            model = steps.train(train, head=head, params=params, seed=seed, epochs=ep, warn_identical=False)
        else:
            model.fit(train, epochs=ep - done)
        done = ep
        out[ep] = accuracy(model, test)
    return out


def run(shared: Path, plan: dict[str, list[int]], params: list[str], seeds: int, fresh: bool) -> list[dict[str, Any]]:
    """One row per dataset, seed, head and epochs value, and one per length baseline."""
    rows = []
    for ds in DATASETS:
        pairs = read_pairs(shared / "data" / ds / "pairs.jsonl")
        for seed in range(seeds):
            train, test = grouped_split(pairs, 0.3, seed=seed)
            base = length_baseline(test)
            rows += [{"dataset": ds, "seed": seed, "baseline": b, "accuracy": base[b]} for b in BASELINES]
            for head, epochs in plan.items():
                for ep, acc in by_epochs(train, test, head, epochs, seed, params, fresh).items():
                    rows.append({"dataset": ds, "seed": seed, "head": head, "epochs": ep, "accuracy": acc,
                                 "params": params, "fresh": fresh})
                    print(json.dumps(rows[-1]), flush=True)
    return rows


def mean(rows: list[dict[str, Any]], ds: str, **key: Any) -> float:
    """Mean accuracy over seeds of the rows of ``ds`` matching ``key``."""
    return statistics.fmean(r["accuracy"] for r in rows if r["dataset"] == ds and all(r.get(k) == v
                                                                                        for k, v in key.items()))


def head_epochs(rows: list[dict[str, Any]], head: str) -> list[int]:
    """The epochs values measured for ``head``, ascending."""
    return sorted({r["epochs"] for r in rows if r.get("head") == head})


def seeds_above(rows: list[dict[str, Any]], ds: str, head: str, ep: int) -> str:
    """'k/n': the seeds on which ``head`` at ``ep`` epochs beats the better (on average) length baseline of ``ds``."""
    better = max(BASELINES, key=lambda b: mean(rows, ds, baseline=b))
    base = {r["seed"]: r["accuracy"] for r in rows if r["dataset"] == ds and r.get("baseline") == better}
    accs = [(r["seed"], r["accuracy"]) for r in rows if r["dataset"] == ds and r.get("head") == head
            and r["epochs"] == ep]
    return f"{sum(a > base[s] for s, a in accs)}/{len(accs)} seeds"


def rule(rows: list[dict[str, Any]], head: str) -> tuple[int, list[str]]:
    """The epochs value above the better length baseline on the most sets (ties: mean accuracy); its lines."""
    lines, score = [], {}
    for ep in head_epochs(rows, head):
        gaps = {ds: mean(rows, ds, head=head, epochs=ep) - max(mean(rows, ds, baseline=b) for b in BASELINES)
                for ds in DATASETS}
        wins = sum(g > 0 for g in gaps.values())
        avg = statistics.fmean(mean(rows, ds, head=head, epochs=ep) for ds in DATASETS)
        score[ep] = (wins, avg)
        shown = ", ".join(f"{ds} {100 * g:+.1f} ({seeds_above(rows, ds, head, ep)})" for ds, g in gaps.items())
        lines.append(f"- {head}, {ep} epochs: {shown} points vs the better length baseline → above it on "
                     f"{wins} of {len(DATASETS)}; mean accuracy {avg:.3f}")
    return max(score, key=lambda ep: score[ep]), lines


def term_section(rows: list[dict[str, Any]]) -> str:
    """Tables per head (baselines first) and the default rule."""
    seeds = len({r["seed"] for r in rows})
    parts = [f"Parameters `{' '.join(rows[-1]['params'])}`, {seeds} seeds, each epochs value trained from "
             "scratch; `longer`/`shorter`: the length baselines on the same test pairs (ties wrong).\n"]
    for head in HEADS:
        eps = head_epochs(rows, head)
        if not eps:
            continue
        tagged = [{**r, "col": r["baseline"], "head": head} for r in rows if "baseline" in r]
        tagged += [{**r, "col": r["epochs"]} for r in rows if r.get("head") == head]
        labels = [*BASELINES, *(f"{e} epochs" for e in eps)]
        parts.append(mean_std_markdown(tagged, {"dataset": DATASETS, "head": (head,)}, "col", [*BASELINES, *eps],
                                       labels))
    parts.append("Default rule: the setting above the better length baseline on the most sets, ties broken by "
                 "mean accuracy over the three sets (gaps of the means over seeds; in brackets the seeds on which "
                 "the head beat that baseline on the same test pairs).\n")
    for head in HEADS:
        if head_epochs(rows, head):
            best, lines = rule(rows, head)
            now = DEFAULTS[head]().epochs
            parts += [*lines, f"\nRule's pick for {head}: **{best} epochs** (its default now: {now}).\n"]
    return "\n".join(parts)


def off_section(rows: list[dict[str, Any]]) -> str:
    """The first measurement: one network per head trained on through 2, 5, 10, 20 epochs, 3 seeds."""
    note = ("3 seeds, one network per head trained on through the epochs values. To measure it again with "
            "today's heads: `-p length=off`.\n\n")
    rows = [r for r in rows if "head" in r]
    return note + mean_std_markdown(rows, {"dataset": DATASETS, "head": HEADS}, "epochs", EPOCHS,
                                    [f"{e} epochs" for e in EPOCHS])


def render(out: Path, commands: dict[str, str]) -> str:
    """epochs.md from the jsonl files present, newest protocol first."""
    md = ["# Held-out accuracy by epochs (benchmarks/epochs.py)\n"]
    for name, heading in SECTIONS.items():
        path = out / f"{name}.jsonl"
        if not path.exists():
            continue
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        body = term_section(rows) if name == "epochs_term" else off_section(rows)
        md.append(f"## {heading}\n\n    {commands.get(name, 'HF_HUB_OFFLINE=1 python benchmarks/epochs.py')}\n\n{body}")
    text = "\n".join(md)
    (out / "epochs.md").write_text(text)
    return text


COMMANDS = {"epochs_term": "HF_HUB_OFFLINE=1 MARSCTL_CACHE_DIR=/tmp/enc10/cache python benchmarks/epochs.py "
                           "-p length=term --fresh --seeds 5 --epochs 2 3 4 5 8 --linear-epochs 10 20 40 "
                           "--name epochs_term"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("-p", "--param", action="append", default=[], help="Head parameter k=v for every run.")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, nargs="+", default=EPOCHS, help="Epochs values of the mlp head.")
    ap.add_argument("--linear-epochs", type=int, nargs="+", help="Epochs values of the linear head (default --epochs).")
    ap.add_argument("--fresh", action="store_true", help="Train each epochs value from scratch.")
    ap.add_argument("--name", default="epochs", choices=list(SECTIONS), help="The jsonl to write.")
    ap.add_argument("--render", action="store_true", help="Only write epochs.md again from the jsonl files.")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    commands = dict(COMMANDS)
    if not args.render:
        plan = {"mlp": args.epochs, "linear": args.linear_epochs or args.epochs}
        rows = run(Path(args.shared), plan, args.param, args.seeds, args.fresh)
        (out / f"{args.name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        cache = os.environ.get("MARSCTL_CACHE_DIR", "")
        commands[args.name] = (f"HF_HUB_OFFLINE=1 MARSCTL_CACHE_DIR={cache} python benchmarks/epochs.py "
                               f"{' '.join(sys.argv[1:])}")
    print(render(out, commands))


if __name__ == "__main__":
    main()
