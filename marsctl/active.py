"""The labeling simulation: hide a labeled set's labels, query K pairs a round by each strategy, reveal them,
retrain, and evaluate on a fixed prompt-grouped test split (``marsctl active``).

Per seed, every strategy starts from the same random labeled seed and trains with the same seeds, so the
strategies' curves are paired. The labels stay hidden: strategies see unlabeled pairs (response a and b in a
seeded random order) and the model's scores; a label is read from the hidden set only when its pair is
picked (:func:`reveal`). Embeddings are computed once (the encoder's cache) and every round retrains the
head from scratch on the labels revealed so far. Statistics and files: :mod:`marsctl.activereport`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from marsctl.errors import ConfigError
from marsctl.stats import derive_seed

DEFAULT_STRATEGIES = ("random", "margin", "diverse")


@dataclass
class ActiveConfig:
    """The simulation's protocol."""

    seed_labels: int = 50
    per_round: int = 50
    rounds: int = 8
    strategies: list[str] = field(default_factory=lambda: list(DEFAULT_STRATEGIES))
    seeds: int = 5
    test_frac: float = 0.3
    split_seed: int = 0
    head: str = "mlp"
    head_params: list[str] = field(default_factory=list)

    def budgets(self) -> list[int]:
        """Labels after each round: the seed, then + per_round each round.

        >>> ActiveConfig(seed_labels=50, per_round=50, rounds=2).budgets()
        [50, 100, 150]
        """
        return [self.seed_labels + r * self.per_round for r in range(self.rounds + 1)]


def check_config(config: ActiveConfig, pool_size: int) -> None:
    """Refuse a protocol the labeled set cannot carry, before any work."""
    from marsctl.params import check_interval

    for name, low in (("seed_labels", 2), ("per_round", 1), ("rounds", 1), ("seeds", 1)):
        check_interval(getattr(config, name), name, "active", kind=int, low=low)
    check_interval(config.test_frac, "test_frac", "active", low=0, high=1, closed="neither")
    if not config.strategies or len(set(config.strategies)) != len(config.strategies):
        msg = f"--strategies {','.join(config.strategies)}: name each strategy once"
        raise ConfigError(msg)
    need = config.budgets()[-1]
    if need > pool_size:
        msg = (f"--seed-labels {config.seed_labels} + --rounds {config.rounds} × --per-round {config.per_round} = "
               f"{need} labels, more than the {pool_size} pairs outside the test split")
        raise ConfigError(msg, hint="use fewer rounds or labels per round, or a larger labeled set")


def hide(pairs: list[dict[str, Any]], seed: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Unlabeled copies of labeled pairs (a and b in a seeded coin order) and the hidden labels, id -> "a" | "b".

    >>> pool, hidden = hide([{"id": "x", "prompt": "p", "chosen": "good", "rejected": "bad"}], 0)
    >>> pool[0]["response_" + hidden["x"]]
    'good'
    """
    pool, hidden = [], {}
    for p in pairs:
        flip = derive_seed(seed, "hide", p["id"]) % 2 == 1
        a, b = (p["rejected"], p["chosen"]) if flip else (p["chosen"], p["rejected"])
        pool.append({"id": p["id"], "prompt": p["prompt"], "response_a": a, "response_b": b})
        hidden[p["id"]] = "b" if flip else "a"
    return pool, hidden


def reveal(row: dict[str, Any], hidden: dict[str, str]) -> dict[str, Any]:
    """A picked unlabeled pair as a labeled one, its label read from the hidden set.

    >>> reveal({"id": "x", "prompt": "p", "response_a": "bad", "response_b": "good"}, {"x": "b"})["chosen"]
    'good'
    """
    won = hidden[row["id"]]
    a, b = row["response_a"], row["response_b"]
    chosen, rejected = (a, b) if won == "a" else (b, a)
    return {"id": row["id"], "prompt": row["prompt"], "chosen": chosen, "rejected": rejected}


def accuracy(head: Any, test: list[dict[str, Any]]) -> float:
    """Share of test pairs with pred_margin > 0 (a tie at 0 counts half)."""
    scored = head.score(test)
    return sum(1.0 if s["pred_margin"] > 0 else 0.5 if s["pred_margin"] == 0 else 0.0 for s in scored) / len(test)


def run_curve(pool: list[dict[str, Any]], hidden: dict[str, str], test: list[dict[str, Any]], strategy: str,
              seed: int, config: ActiveConfig, on_round: Callable[[], None] | None = None) -> dict[str, Any]:
    """One learning curve: ``{"strategy", "seed", "labels": [...], "accuracy": [...], "picked": [[ids], ...]}``."""
    from marsctl import registry, steps
    from marsctl.query import QueryContext, check_strategy, prompt_embedder, select
    from marsctl.unlabeled import is_ensemble, score_unlabeled

    chooser = registry.create("query", strategy)
    start = random.Random(derive_seed(seed, "seed-labels")).sample(range(len(pool)), config.seed_labels)
    labeled = [reveal(pool[i], hidden) for i in sorted(start)]
    taken = {p["id"] for p in labeled}
    curve: dict[str, Any] = {"strategy": strategy, "seed": seed, "labels": [], "accuracy": [], "picked": []}
    for r in range(config.rounds + 1):
        head = steps.train(labeled, head=config.head, params=list(config.head_params),
                           seed=derive_seed(seed, "train", r) % (2**31), warn_identical=False)
        curve["labels"].append(len(labeled))
        curve["accuracy"].append(accuracy(head, test))
        if on_round:
            on_round()
        if r == config.rounds:
            break
        context = QueryContext(seed=derive_seed(seed, "query", r) % (2**31), ensemble=is_ensemble(head),
                               embed_prompts=prompt_embedder(head), last_hidden=getattr(head, "last_hidden", None))
        check_strategy(chooser, context.ensemble)
        rest = [row for row in pool if row["id"] not in taken]
        rows = score_unlabeled(rest, head) if chooser.needs_scores else iter(rest)
        picked, _ = select(rows, chooser, config.per_round, context)
        curve["picked"].append([row["id"] for row in picked])
        for row in picked:
            labeled.append(reveal(row, hidden))
            taken.add(row["id"])
    return curve


def simulate(pairs: list[dict[str, Any]], config: ActiveConfig, *, name: str = "pairs") -> dict[str, Any]:
    """Run every strategy × seed on ``pairs``; returns ``{"config", "split", "curves"}`` (see :func:`run_curve`)."""
    from marsctl import registry, steps, ui
    from marsctl.split import grouped_split

    for st in config.strategies:
        registry.load("query", st)  # an unknown strategy fails before any work
    train_side, test = grouped_split(pairs, config.test_frac, seed=config.split_seed)
    check_config(config, len(train_side))
    pool, hidden = hide(train_side, config.split_seed)
    ui.info(f"active: {len(train_side)} pairs to label from (labels hidden), {len(test)} held-out test pairs of "
            f"{name} (prompt-grouped, test_frac={config.test_frac}, split seed {config.split_seed})")
    steps.train(pairs, head=config.head, params=list(config.head_params), epochs=0, warn_identical=False)  # embed once
    curves = []
    total = config.seeds * len(config.strategies) * (config.rounds + 1)
    with ui.progress("simulating", total, "trainings") as advance, ui.quiet():
        for seed in range(config.seeds):
            for st in config.strategies:
                curves.append(run_curve(pool, hidden, test, st, seed, config, on_round=advance))
    split = {"pool": len(train_side), "test": len(test), "test_frac": config.test_frac, "seed": config.split_seed,
             "test_ids_sha": _ids_sha([p["id"] for p in test])}
    return {"config": config.__dict__, "split": split, "curves": curves}


def _ids_sha(ids: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()[:16]
