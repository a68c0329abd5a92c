"""The augmentation verbs as library functions: select (spread the budget) and augment (fill it).

:func:`select` allocates an integer augmentation budget over scored base pairs by a selector plugin's
weights; :func:`augment` makes each selected pair's budget of synthetic pairs with an augmenter plugin.
Every CLI command is a thin wrapper over one of these; their inputs are checked before any work
(:mod:`marsctl.checks`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from marsctl import registry
from marsctl.alloc import capped_allocation, largest_remainder, mix_uniform, selection_summary
from marsctl.checks import (
    check_budget,
    check_margins,
    check_needs,
    check_pair_budgets,
    check_selected,
    check_weights,
    report_identical,
)
from marsctl.errors import ConfigError, DataError
from marsctl.lengths import SLIM_FIELDS, response_lengths
from marsctl.modeldir import load_head
from marsctl.params import check_interval
from marsctl.plugin import Augmenter, Head, keep_picked, pick_needs_model, pool_request
from marsctl.records import count_identical
from marsctl.stats import derive_seed


def select(
    scored: list[dict[str, Any]],
    *,
    strategy: str = "mars-abs",
    budget: int,
    params: list[str] | dict[str, Any] | None = None,
    seed: int = 0,
    cap: int | None = None,
    mix: float = 0.0,
    name: str = "<input>",
    warn_identical: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Allocate an integer budget over scored base pairs; returns (rows with ``budget``, summary).

    ``cap`` bounds rows per pair (overflow is re-spread); ``mix`` blends q with uniform. Only
    ``pred_margin`` (a finite number, |Δ| ≤ ``checks.MAX_MARGIN``) is needed besides the pair itself. Every
    input is checked before the selector plugin loads; pairs with chosen == rejected are kept and
    reported (``summary["identical_pairs"]``; a warning on stderr unless ``warn_identical`` is false).
    """
    from marsctl.params import check_seed

    check_seed(seed, "seed", "select")
    check_budget(budget, len(scored), cap, "select")
    check_interval(mix, "mix_uniform", "select", low=0, high=1)
    margins = check_margins(scored, name)
    selector = registry.create("selector", strategy, params)
    check_needs(selector, scored, name)
    q = check_weights(selector, margins, scored)
    if mix:
        q = mix_uniform(q, mix)
    budgets = _allocate(q, budget, cap, derive_seed(seed, "select"))
    # Whether the tilt changed anything: at budget n, flat margins round every pair to uniform's one row.
    same_as_uniform = budgets == _allocate([1.0] * len(q), budget, cap, derive_seed(seed, "select"))
    check_pair_budgets(budgets, scored, name, selector.name)
    identical = (report_identical(scored, name, "select", "kept in the output") if warn_identical  # all checks passed
                 else count_identical(scored))
    out = []
    for rec, b, w in zip(scored, budgets, q, strict=True):
        new = dict(rec)
        new["budget"] = b
        new["selection"] = {"strategy": selector.name, "weight": round(w, 8), "pick": selector.pick}
        out.append(new)
    summary = _selection_report(selector, scored, margins, q, budgets)
    summary["cap"], summary["mix_uniform"] = cap, mix
    summary["equals_uniform"] = same_as_uniform
    summary["identical_pairs"] = identical["n"]
    return out, summary


def with_texts(row: dict[str, Any], full: dict[str, Any]) -> dict[str, Any]:
    """A row that :func:`select` gave a slim input (``lengths.slim_row``), with the texts of ``full`` put back.

    >>> with_texts({"id": "a", "_len_chosen": 1, "_len_rejected": 1, "_identical": False, "budget": 2},
    ...            {"id": "a", "prompt": "p", "chosen": "x", "rejected": "y"})
    {'id': 'a', 'prompt': 'p', 'chosen': 'x', 'rejected': 'y', 'budget': 2}
    """
    new = dict(full)
    new.update((k, v) for k, v in row.items() if k not in SLIM_FIELDS)
    return new


def _selection_report(selector: Any, scored: list[dict[str, Any]], margins: list[float], q: list[float],
                      budgets: list[int]) -> dict[str, Any]:
    """The selection's diagnostics (``alloc.selection_summary``), its length bias and the selector's settings."""
    summary = selection_summary(margins, q, budgets)
    longer = [c > r for c, r in map(response_lengths, scored)]
    summary["p_chosen_longer_selected"] = round(sum(b for b, x in zip(budgets, longer, strict=True) if x)
                                                / sum(budgets), 4)
    summary["p_chosen_longer_all"] = round(sum(longer) / len(longer), 4)
    summary["strategy"] = selector.name
    summary["params"] = dict(selector.config.__dict__)
    a = selector.alpha_eff(margins)
    if a is not None:
        a = float(a)
        summary["alpha_eff"] = round(a, 6) if math.isfinite(a) else None
    return summary


def _allocate(q: list[float], budget: int, cap: int | None, seed: int) -> list[int]:
    """Integer budgets from q (capped when ``cap`` is given)."""
    if cap is None:
        return largest_remainder(q, budget, seed=seed)
    try:
        return capped_allocation(q, budget, cap, seed=seed)
    except ValueError as e:
        raise ConfigError(f"select: {e}", hint="raise --cap or lower --budget") from None


def make_augmenter(backend: str, params: list[str] | dict[str, Any] | None = None, seed: int = 0,
                   draw_seed: int | None = None) -> Augmenter:
    """Build an augmenter plugin by name (``seed`` seeds the variants, ``draw_seed`` the draws)."""
    from marsctl.params import check_seed

    check_seed(seed, "seed", "augment")
    if draw_seed is not None:
        check_seed(draw_seed, "draw_seed", "augment")
    aug = registry.create("augmenter", backend, params, seed=seed)
    if draw_seed is not None:
        aug.draw_seed = draw_seed
    return aug


def augment(
    selected: list[dict[str, Any]],
    augmenter: Augmenter,
    *,
    round: int = 1,
    model: Head | str | Path | None = None,
    name: str = "<input>",
    progress: Any = None,
    semantic_tries: int = 0,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Synthetic pairs for selected rows with ``budget > 0``; returns (rows, stats).

    Each row's budget is filled from its pool by its ``selection.pick`` (``plugin.keep_picked``): rows
    selected with ``pick: top-margin`` (West-of-N) keep the pool rows that ``model`` gives the highest
    predicted margin, so the model is required for them. With ``semantic_tries`` > 0, low-contrast
    pairs are first rewritten by the (generative) augmenter (MARS v2 semantic refinement, judged by
    ``model`` when given) and the pools are made from the refined texts. ``model`` is a head object or
    a model directory (loaded once, and only when needed). The rows are checked first
    (``checks.check_selected``).
    """
    counts, picks = check_selected(selected, name, model)
    head = _head_for(model, semantic_tries > 0 or any(pick_needs_model(p) for p in picks))
    report = None
    if semantic_tries:
        from marsctl.semantic import refine_selected

        selected, report = refine_selected(selected, augmenter, counts, semantic_tries, judge=_judge(head))
    request = [pool_request(p, b) for p, b in zip(picks, counts, strict=True)]
    try:
        made = augmenter.augment(selected, request, round=round, progress=progress)
    except DataError as e:  # an augmenter does not know the input's name: a check of the whole set names it here
        raise DataError(f"{name}: {e}", hint=e.hint) from None
    rows = [row for p, b, pool in zip(picks, counts, made, strict=True) for row in keep_picked(p, pool, b, head)]
    return rows, _augment_stats(augmenter, rows, selected, report)


AUGMENT_CHUNK = 512  # selected pairs a streaming augment holds at once


def iter_augment(selected: Iterable[dict[str, Any]], augmenter: Augmenter, *, round: int = 1,
                 model: Head | str | Path | None = None, name: str = "<input>", progress: Any = None,
                 semantic_tries: int = 0, chunk: int = AUGMENT_CHUNK,
                 ) -> Iterator[tuple[list[dict[str, Any]], dict[str, Any]]]:
    """:func:`augment` over a stream, ``chunk`` selected rows at a time: yields (rows, stats so far) per chunk.

    The rows are the same as one :func:`augment` call makes (pools and draws are seeded per pair).
    A directory ``model`` is loaded once. Semantic refinement needs every row's contrast (its threshold
    is their mean), and an augmenter with ``reads_all_pairs`` draws on every row given, so with either the
    stream is read whole, as one chunk. At least one (possibly empty) chunk is yielded, so the last stats
    are always there.
    """
    it = iter(selected)
    size = None if semantic_tries or augmenter.reads_all_pairs else chunk
    first = True
    while (part := list(itertools.islice(it, size))) or first:
        first = False
        if model is not None and not isinstance(model, Head):
            _, picks = check_selected(part, name, model)
            if semantic_tries or any(pick_needs_model(p) for p in picks):
                model = load_head(model)  # once: the next chunks get the head object
        yield augment(part, augmenter, round=round, model=model, name=name, progress=progress,
                      semantic_tries=semantic_tries)
        if size is None:
            return


def _head_for(model: Head | str | Path | None, needed: bool) -> Head | None:
    """``model`` as a head object (a directory is loaded), when it is given and needed."""
    if model is None or not needed:
        return None
    return model if isinstance(model, Head) else load_head(model)


def _judge(head: Head | None) -> Callable[[list[dict[str, Any]]], list[float]] | None:
    """Predicted margins of candidate pairs by ``head``: semantic refinement checks that labels still hold."""
    if head is None:
        return None

    def judge(recs: list[dict[str, Any]]) -> list[float]:
        return [r["pred_margin"] for r in head.score(recs)]

    return judge


def _augment_stats(augmenter: Augmenter, rows: list[dict[str, Any]], selected: list[dict[str, Any]],
                   report: dict[str, Any] | None) -> dict[str, Any]:
    """The augmenter's counters and name; after semantic refinement its report, marked on each row too."""
    stats: dict[str, Any] = dict(augmenter.stats_)
    stats["backend"] = augmenter.name
    provenance = getattr(augmenter, "provenance_", None)  # an augmenter written before the attribute has none
    if provenance:
        stats["provenance"] = dict(provenance)
    if report is not None:
        stats["semantic"] = report
        _mark_semantic(rows, selected)
    return stats


def _mark_semantic(rows: list[dict[str, Any]], selected: list[dict[str, Any]]) -> None:
    """Record on each synthetic row whether (and how) its parent was semantically refined."""
    info = {r["id"]: r["semantic"] for r in selected if "semantic" in r}
    for row in rows:
        sem = info.get(row["parent_id"])
        if sem is not None:
            row["semantic"] = {k: sem[k] for k in ("d_before", "d_after", "refined")}
