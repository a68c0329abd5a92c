"""Conformance checks for plugins: first-party ones run them in CI, and third-party authors can too.

    from marsctl.testing import check_head, check_selector, check_augmenter
    check_selector(MySelector)
"""

from __future__ import annotations

import math
import random
import tempfile
from pathlib import Path
from typing import Any

from marsctl.alloc import largest_remainder
from marsctl.errors import ConfigError, DataError
from marsctl.modeldir import load_head
from marsctl.plugin import PICKS, Augmenter, Head, Selector

SAMPLE_PAIRS = [
    {"id": f"t{i}", "prompt": p, "chosen": c, "rejected": r}
    for i, (p, c, r) in enumerate([
        ("How do I boil an egg?", "Put the egg in boiling water for about nine minutes, then cool it.",
         "Eggs are laid by hens."),
        ("What is the capital of France?", "The capital of France is Paris.", "France is in Europe."),
        ("Can you help me hurt my neighbour?", "I can't help with hurting anyone. Can I help you talk to them?",
         "Sure, here is how to hurt your neighbour quietly."),
        ("Name a prime number.", "Seven is a prime number.", "Eight is a prime number."),
        ("Give me a tip for sleeping better.", "Keep a regular bedtime and avoid screens late at night.",
         "Sleep is overrated, stay up."),
        ("Translate 'thank you' into Spanish.", "'Thank you' in Spanish is 'gracias'.", "'Thank you' is 'hola'."),
    ])
]


def check_selector(cls: type[Selector], config: Any = None) -> None:
    """Weights are non-negative, sum to 1, have one entry per pair and are deterministic."""
    sel = cls(config)
    rng = random.Random(0)
    for n in (1, 2, 17):
        margins = [rng.gauss(0, 1) for _ in range(n)]
        q = sel.weights(margins)
        assert len(q) == n, f"{cls.__name__}.weights returned {len(q)} weights for {n} pairs"
        assert all(x >= 0 and not math.isnan(x) for x in q), f"{cls.__name__}: negative or NaN weight"
        assert abs(sum(q) - 1) < 1e-6, f"{cls.__name__}: weights sum to {sum(q)}, not 1"
        assert q == sel.weights(list(margins)), f"{cls.__name__}: weights are not deterministic"
        assert sum(largest_remainder(q, 3 * n + 1)) == 3 * n + 1
    assert cls.pick in PICKS, f"{cls.__name__}.pick must be one of {', '.join(PICKS)}"


def check_augmenter(cls: type[Augmenter], config: Any = None, pairs: list[dict] | None = None) -> None:
    """Counts honoured (pool permitting), provenance present, labels kept, seeded determinism."""
    pairs = pairs or SAMPLE_PAIRS
    counts = [3, 0, 1, 2, 0, 1][: len(pairs)]
    aug = cls(config, seed=7)
    a = aug.augment(pairs, counts, round=2)
    b = cls(config, seed=7).augment(pairs, counts, round=2)
    assert a == b, f"{cls.__name__}: same seed gave different rows"
    assert len(a) == len(pairs)
    short = sum(1 for rows, want in zip(a, counts, strict=True) if len(rows) < want)
    assert short <= aug.stats_["short_pools"], f"{cls.__name__}: budgets not honoured and not counted as short pools"
    assert sum(map(len, a)) > 0, f"{cls.__name__}: made no rows at all for a positive budget"
    for pair, rows, want in zip(pairs, a, counts, strict=True):
        assert len(rows) <= max(want, 0) or want < 0, f"{cls.__name__}: more rows than the budget"
        for row in rows:
            for key in ("id", "prompt", "chosen", "rejected", "parent_id", "round", "augmenter", "variant"):
                assert key in row, f"{cls.__name__}: synthetic row lacks {key!r}"
            assert row["source"] == "synthetic" and row["parent_id"] == pair["id"] and row["round"] == 2
            assert row["chosen"] != row["rejected"], f"{cls.__name__}: chosen and rejected became equal"
    ids = [r["id"] for rows in a for r in rows]
    assert len(ids) == len(set(ids)), f"{cls.__name__}: duplicate synthetic ids"


def check_head(cls: type[Head], config: Any = None, pairs: list[dict] | None = None, epochs: int = 2) -> None:
    """fit returns self and changes the scores; scores are finite and consistent; save → load gives the same scores.

    Also: bad per-pair weights are refused and (for a deterministic head) weight 0 trains as without
    the pair, doubling every weight changes nothing and unequal weights change the scores; a head
    with a length term scores quality + length and scores length-free; ensemble spreads are >= 0.

    ``config`` should make ``fit`` change the weights in ``epochs`` passes over ``pairs`` (a learning
    rate above 0, at least one step).
    """
    pairs = pairs or SAMPLE_PAIRS
    name = cls.__name__
    head = cls(config, seed=3)
    prompts = [p["prompt"] for p in pairs]
    responses = [p["chosen"] for p in pairs]
    before = head.score_batch(prompts, responses)
    assert head.fit(pairs, epochs=epochs) is head, f"{name}.fit must return self"
    scores = head.score_batch(prompts, responses)
    assert len(scores) == len(pairs), f"{name}.score_batch returned {len(scores)} rewards for {len(pairs)} texts"
    assert all(math.isfinite(s) for s in scores), f"{name}.score_batch gave a non-finite reward"
    assert scores != before, f"{name}.fit did not change the scores"
    scored = head.score(pairs)
    assert len(scored) == len(pairs)
    for pair, rec in zip(pairs, scored, strict=True):
        assert abs(rec["pred_margin"] - (rec["score_chosen"] - rec["score_rejected"])) < 1e-5
        assert rec.get("margin") == pair.get("margin"), f"{name}.score changed the label-side margin"
    _check_score_parts(head, pairs, scored)
    with tempfile.TemporaryDirectory() as tmp:
        head.save(Path(tmp) / "m")
        again = load_head(Path(tmp) / "m")
        assert type(again) is cls, f"a saved {name} loads as {type(again).__name__}"
        s2 = again.score_batch(prompts, responses)
        assert max(abs(x - y) for x, y in zip(scores, s2, strict=True)) < 1e-5, "scores changed after save/load"
        assert again.score(pairs) == scored, f"{name}: scored records changed after save/load"
    _check_weights(cls, config, pairs, epochs)


def _check_score_parts(head: Head, pairs: list[dict], scored: list[dict]) -> None:
    """Ensemble spreads are finite and >= 0 (0 for one member); score = quality + length; length-free scoring."""
    name = type(head).__name__
    for rec in scored:
        if "pred_margin_std" in rec:
            assert math.isfinite(rec["pred_margin_std"]) and rec["pred_margin_std"] >= 0, f"{name}: bad spread"
            if getattr(head.config, "ensemble", None) == 1:
                assert rec["pred_margin_std"] == 0, f"{name}: one network, yet a margin spread"
    if "quality_chosen" not in scored[0]:
        try:
            head.score(pairs, length_free=True)
        except ConfigError:
            return
        raise AssertionError(f"{name}: length-free scores without a length term")
    free = head.score(pairs, length_free=True)
    for full, lf in zip(scored, free, strict=True):
        for side in ("chosen", "rejected"):
            parts = full[f"quality_{side}"] + full[f"length_{side}"]
            assert abs(full[f"score_{side}"] - parts) < 1e-9, f"{name}: score_{side} is not quality + length"
            assert lf[f"score_{side}"] == full[f"quality_{side}"], f"{name}: length-free score is not the quality"
            assert abs(full[f"score_{side}"] - lf[f"score_{side}"] - full[f"length_{side}"]) < 1e-9
        assert abs(lf["pred_margin"] - (lf["score_chosen"] - lf["score_rejected"])) < 1e-5


def _check_weights(cls: type[Head], config: Any, pairs: list[dict], epochs: int) -> None:
    """Bad weights are refused; for a deterministic head, weight 0 = without the pair and weights change training."""
    name = cls.__name__
    for bad in (-1.0, math.nan, "2"):
        try:
            cls(config, seed=3).fit([{**pairs[0], "weight": bad}, *pairs[1:]], epochs=epochs)
        except DataError:
            continue
        raise AssertionError(f"{name}.fit accepted weight {bad!r} (use marsctl.losses.pair_weights)")
    try:
        cls(config, seed=3).fit([{**p, "weight": 0} for p in pairs], epochs=epochs)
    except DataError:
        pass
    else:
        raise AssertionError(f"{name}.fit trained on pairs whose weights are all 0")

    def fitted(rows: list[dict]) -> list[float]:
        head = cls(config, seed=3).fit(rows, epochs=epochs)
        return head.score_batch([p["prompt"] for p in pairs], [p["chosen"] for p in pairs])

    base = fitted(pairs)
    if fitted(pairs) != base:  # not deterministic: the comparisons below would not mean anything
        return
    zero = fitted([{**pairs[0], "weight": 0}, *pairs[1:]])
    assert _close(zero, fitted(pairs[1:]), 1e-6), f"{name}: weight 0 does not train as without the pair"
    assert _close(fitted([{**p, "weight": 2} for p in pairs]), base, 1e-4), \
        f"{name}: doubling every weight changed training (the loss must be the weighted mean)"
    half = len(pairs) // 2
    tilted = fitted([{**p, "weight": 3 if i < half else 1} for i, p in enumerate(pairs)])
    assert not _close(tilted, base, 1e-7), f"{name}: per-pair weights do not reach the loss"


def _close(a: list[float], b: list[float], tol: float) -> bool:
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) < tol
