"""Checks of the loop verbs' inputs and of what plugins hand back, done before any work.

Each check raises a typed error (``DataError`` for a bad row, ``ConfigError`` for a bad setting,
``PluginError`` for a plugin's bad answer) that names the file and line.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any

from marsctl import ui
from marsctl.errors import ConfigError, DataError, PluginError
from marsctl.params import MAX_PAIR_BUDGET, check_interval
from marsctl.plugin import PICKS, Head, pick_needs_model
from marsctl.records import count_identical, require_fields

SCORE_NEEDED = ("pred_margin",)
SCORE_HINT = "score the pairs first: marsctl score PAIRS -m MODEL"
# Input limits (also in the select/check_budget/check_selected docstrings). |pred_margin| beyond MAX_MARGIN
# is a broken score, not a preference; augment holds every synthetic row in memory (≈0.3 kB plus the texts),
# so one call makes at most MAX_TOTAL_BUDGET rows and at most MAX_PAIR_BUDGET for one pair (its pool has
# n_variants² ≤ 2500 distinct rows).
MAX_MARGIN = 1e6
MAX_TOTAL_BUDGET = 1_000_000


def check_budget(budget: Any, n_pairs: int, cap: Any = None, owner: str = "select") -> int:
    """Refuse, before any work, a budget that cannot be honoured; returns it.

    ``budget`` must be an int in [1, ``MAX_TOTAL_BUDGET``] (augment holds every synthetic row in
    memory), ``cap`` (if given) an int ≥ 1 with ``cap * n_pairs >= budget``. ``owner`` names the
    command in messages (``select``, ``refine``).
    """
    check_interval(budget, "budget", owner, kind=int, low=1)
    if budget > MAX_TOTAL_BUDGET:
        hint = (f"augment holds every synthetic row in memory, so one call makes at most {MAX_TOTAL_BUDGET:,} "
                "rows; split the pairs into several files and select each")
        try:
            check_interval(budget, "budget", owner, kind=int, low=1, high=MAX_TOTAL_BUDGET)
        except ConfigError as e:
            raise ConfigError(str(e), hint=hint) from None
    if cap is not None:
        check_interval(cap, "cap", owner, kind=int, low=1)
        if cap * n_pairs < budget:
            msg = f"{owner}: a cap of {cap} rows per pair over {n_pairs} pairs cannot hold a budget of {budget}"
            raise ConfigError(msg, hint=f"raise --cap to at least {-(-budget // max(n_pairs, 1))} or lower --budget")
    return budget


def check_margins(scored: list[dict[str, Any]], name: str = "<input>") -> list[float]:
    """Each record's ``pred_margin`` as a float; a DataError names the first that is not a sane number."""
    if not scored:
        msg = f"{name}: no pairs to select from"
        raise DataError(msg)
    texts = [r for r in scored if "_len_chosen" not in r]  # a slim row (lengths.slim_row) had its texts read
    require_fields(texts, ("chosen", "rejected"), name, "need prompt, chosen, rejected")
    require_fields(scored, SCORE_NEEDED, name, SCORE_HINT)
    margins = []
    for i, rec in enumerate(scored):
        m = rec["pred_margin"]
        where = f"{name} line {rec.get('_line', i + 1)}"
        if not isinstance(m, numbers.Real) or isinstance(m, bool):
            msg = f"{where}: field 'pred_margin' must be a number, got {_json_kind(m)}"
            raise DataError(msg, hint=SCORE_HINT)
        if not abs(float(m)) <= MAX_MARGIN:  # also NaN
            msg = (f"{where}: field 'pred_margin' must be a finite number in [-{MAX_MARGIN:.0f}, {MAX_MARGIN:.0f}], "
                   f"got {_shown(m)}")
            raise DataError(msg, hint="a predicted reward gap that large is a broken score; re-score the pairs: "
                                      "marsctl score PAIRS -m MODEL")
        margins.append(float(m))
    return margins


def _json_kind(value: Any) -> str:
    """How a JSON value's type reads in a message."""
    kinds = {type(None): "null", bool: "a boolean", str: "a string", list: "a list", dict: "an object",
             int: "a number", float: "a number"}
    return kinds.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    """A number as written (shortened), anything else by its JSON kind."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        text = repr(value)
        return text if len(text) <= 24 else text[:20] + "..."
    return _json_kind(value)


def report_identical(records: list[dict[str, Any]], name: str | None, owner: str, fate: str) -> dict[str, Any]:
    """Warn on stderr about pairs with chosen == rejected; returns ``records.count_identical(records)``.

    ``fate`` says what happens to them (``left out of training``, ``kept in the output``).
    """
    return warn_identical(count_identical(records), name, owner, fate)


def warn_identical(info: dict[str, Any], name: str | None, owner: str, fate: str) -> dict[str, Any]:
    """Warn on stderr about pairs counted by ``records.count_identical`` (or a streaming pass); returns ``info``."""
    n = info["n"]
    if n:
        where = f"{name} line {info['first_line']}" if name else f"line {info['first_line']}"
        ui.warn(f"{owner}: {n} pair{'s' if n != 1 else ''} with chosen == rejected (first: {where}) "
                f"{'carry' if n != 1 else 'carries'} no preference signal; {fate}")
    return info


def check_needs(selector: Any, scored: list[dict[str, Any]], name: str = "<input>") -> None:
    """Refuse rows that lack a finite number in a field the selector reads (``Selector.needs``)."""
    for i, rec in enumerate(scored):
        for key in selector.needs:
            v = rec.get(key)
            if not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v):
                got = "no such field" if key not in rec else f"got {_shown(v)}"
                msg = (f"{name} line {rec.get('_line', i + 1)}: the {selector.name} selector needs a number in "
                       f"field {key!r} ({got})")
                raise DataError(msg, hint=selector.needs_hint or None)


def check_weights(selector: Any, margins: list[float], rows: list[dict[str, Any]] | None = None) -> list[float]:
    """The selector's q (from ``rows`` when given), checked: one finite, non-negative weight per pair, positive sum."""
    q = list(selector.weights(margins) if rows is None else selector.weights_for(rows, margins))
    ok = len(q) == len(margins) and all(isinstance(x, numbers.Real) and 0 <= float(x) < math.inf for x in q)
    if not ok or not sum(q) > 0:
        msg = (f"the selector {selector.name!r} returned invalid weights (need {len(margins)} finite, "
               "non-negative numbers with a positive sum)")
        raise PluginError(msg)
    return [float(x) for x in q]


def check_pair_budgets(budgets: list[int], scored: list[dict[str, Any]], name: str, strategy: str) -> None:
    """Refuse a selection that gives one pair more rows than augment makes for a pair."""
    top = max(budgets)
    if top > MAX_PAIR_BUDGET:
        i = budgets.index(top)
        msg = (f"select: the {strategy} selection gives {name} line {scored[i].get('_line', i + 1)} a budget of "
               f"{top}; augment makes at most {MAX_PAIR_BUDGET:,} rows per pair")
        raise ConfigError(msg, hint=f"pass --cap (at most {MAX_PAIR_BUDGET}) or lower --budget")


def check_selected(selected: list[dict[str, Any]], name: str = "<input>",
                   model: Head | str | Path | None = None) -> tuple[list[int], list[str]]:
    """Check selected rows before any work (no plugin loaded); returns (budgets, picks).

    Each row needs ``budget``: an int in [0, ``MAX_PAIR_BUDGET``], summing to at most
    ``MAX_TOTAL_BUDGET``; ``selection``, if present, must be an object whose ``pick`` is one of
    ``plugin.PICKS``. Rows whose pick scores the pool (``top-margin``) need ``model``.
    """
    counts = _budgets(selected, name)
    picks = [_pick(rec, f"{name} line {rec.get('_line', i + 1)}") for i, rec in enumerate(selected)]
    if model is None and any(pick_needs_model(p) for p in picks):
        msg = "this selection (won) keeps each pool's highest-margin rows, so augment needs the model"
        raise ConfigError(msg, hint="pass -m MODEL_DIR (the model that scored the pairs)")
    return counts, picks


def _pick(rec: dict[str, Any], where: str) -> str:
    """How augment draws from this row's pool: ``selection.pick`` (default ``random``)."""
    if "selection" not in rec:
        return "random"
    sel = rec["selection"]
    if not isinstance(sel, dict):
        msg = f"{where}: field 'selection' must be an object (as 'marsctl select' writes it), got {_json_kind(sel)}"
        raise DataError(msg)
    pick = sel.get("pick", "random")
    if not isinstance(pick, str) or pick not in PICKS:
        msg = f"{where}: field 'selection' has pick {pick!r}; allowed: {', '.join(PICKS)}"
        raise DataError(msg)
    return pick


def _budgets(selected: list[dict[str, Any]], name: str) -> list[int]:
    require_fields(selected, ("budget",), name, "select first: marsctl select SCORED --budget B")
    counts = []
    for i, rec in enumerate(selected):
        b = rec["budget"]
        where = f"{name} line {rec.get('_line', i + 1)}"
        if not isinstance(b, int) or isinstance(b, bool) or b < 0:
            msg = f"{where}: field 'budget' must be a non-negative integer, got {_shown(b)}"
            raise DataError(msg)
        if b > MAX_PAIR_BUDGET:
            msg = f"{where}: field 'budget' is {b}; augment makes at most {MAX_PAIR_BUDGET:,} synthetic rows per pair"
            raise DataError(msg, hint="select again with --cap, or a smaller --budget")
        counts.append(b)
    total = sum(counts)
    if total > MAX_TOTAL_BUDGET:
        msg = (f"{name}: the budgets sum to {total:,}; augment makes at most {MAX_TOTAL_BUDGET:,} synthetic rows "
               "per call")
        raise DataError(msg, hint="split the selected file into several parts and augment each")
    return counts
