"""The loop's verbs as library functions: train, score, select, augment.

Every CLI command is a thin wrapper over one of these; they work from Python without Typer.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any

from marsctl import registry, ui
from marsctl.alloc import capped_allocation, largest_remainder, mix_uniform, selection_summary
from marsctl.errors import ConfigError, DataError, PluginError
from marsctl.params import check_interval
from marsctl.plugin import Augmenter, Head, derive_seed, load_head
from marsctl.records import count_identical, is_identical, records_sha256, require_fields

SCORE_NEEDED = ("pred_margin",)
SCORE_HINT = "score the pairs first: marsctl score PAIRS -m MODEL"
# Input limits (also in the select/check_budget/check_selected docstrings). |pred_margin| beyond MAX_MARGIN
# is a broken score, not a preference; augment holds every synthetic row in memory (≈0.3 kB plus the texts),
# so one call makes at most MAX_TOTAL_BUDGET rows and at most MAX_PAIR_BUDGET for one pair (its pool has
# n_variants² ≤ 2500 distinct rows).
MAX_MARGIN = 1e6
MAX_PAIR_BUDGET = 100_000
MAX_TOTAL_BUDGET = 1_000_000
PICKS = ("random", "top-margin")


def train(
    pairs: list[dict[str, Any]],
    *,
    head: str | None = None,
    params: list[str] | dict[str, Any] | None = None,
    epochs: int | None = None,
    seed: int = 0,
    init: str | Path | None = None,
    name: str | None = None,
    warn_identical: bool = True,
) -> Head:
    """Train a reward head on pairs; with ``init``, continue from a saved model directory.

    Pairs with chosen == rejected carry no preference signal: they are left out of training, with a
    warning on stderr (unless ``warn_identical`` is false) and ``n_identical_dropped`` in the manifest.

    Parameters
    ----------
    pairs : list of dict
        Records with prompt, chosen, rejected.
    head : str, optional
        Plugin name (default ``mlp``; with ``init``, the saved head's kind).
    params : list of ``key=value`` or dict, optional
        Head configuration (see ``marsctl plugins show head NAME``).
    epochs : int, optional
        Override the head's default number of epochs.
    seed : int
        Seed for initialisation and shuffling.
    init : path, optional
        A model directory to continue from (weights carry forward).
    name : str, optional
        The input's name for messages (a file name).
    warn_identical : bool
        Warn about pairs with chosen == rejected (refine warns once per run instead).

    Returns
    -------
    Head
        The fitted head; ``head.save(dir)`` writes it.
    """
    if epochs is not None:
        check_interval(epochs, "epochs", "train", kind=int, low=0)
    if init is not None:
        model = load_head(init, expect=head, overrides=params)
        model.seed = seed
    else:
        model = registry.create("head", head or "mlp", params, seed=seed)
    given = pairs
    pairs, n_identical = _trainable(pairs, name, warn_identical)  # after the head is known good: no stray warning
    model.history_ = list(model.history_)
    previous = dict(model.manifest_) if init is not None else {}
    model.manifest_ = {}
    model.fit(pairs, epochs=epochs)
    model.manifest_.update({
        "seed": seed,
        "data_sha256": records_sha256(given),
        "n_pairs": len(pairs),
        "n_identical_dropped": n_identical,
        "n_synthetic": sum(1 for p in pairs if p.get("source") == "synthetic"),
        "init": str(init) if init is not None else None,
    })
    if previous:
        model.manifest_["init_training"] = {k: previous.get(k) for k in ("seed", "data_sha256", "n_pairs",
                                                                        "epochs")}
    return model


def _trainable(pairs: list[dict[str, Any]], name: str | None, warn: bool) -> tuple[list[dict[str, Any]], int]:
    """The pairs to train on (chosen != rejected) and how many were left out."""
    n = (report_identical(pairs, name, "train", "left out of training") if warn else count_identical(pairs))["n"]
    if not n:
        return pairs, 0
    kept = [p for p in pairs if not is_identical(p)]
    if not kept:
        msg = f"{name or 'train'}: every pair has chosen == rejected; there is nothing to learn a preference from"
        raise DataError(msg)
    return kept, n


def score(records: list[dict[str, Any]], model: Head | str | Path,
          batch_size: int | None = None, name: str | None = None) -> list[dict[str, Any]]:
    """Score records with a head (or a model directory): adds score fields and pred_margin.

    Pairs with chosen == rejected are scored and kept, with a warning on stderr.
    """
    head = model if isinstance(model, Head) else load_head(model)
    report_identical(records, name, "score", "kept in the output")
    return head.score(records, batch_size=batch_size)


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
    ``pred_margin`` (a finite number, |Δ| ≤ ``MAX_MARGIN``) is needed besides the pair itself. Every
    input is checked before the selector plugin loads; pairs with chosen == rejected are kept and
    reported (``summary["identical_pairs"]``; a warning on stderr unless ``warn_identical`` is false).
    """
    check_budget(budget, len(scored), cap, "select")
    check_interval(mix, "mix_uniform", "select", low=0, high=1)
    margins = check_margins(scored, name)
    selector = registry.create("selector", strategy, params)
    q = _selector_weights(selector, margins)
    if mix:
        q = mix_uniform(q, mix)
    budgets = _allocate(q, budget, cap, derive_seed(seed, "select"))
    _check_pair_budgets(budgets, scored, name, selector.name)
    identical = (report_identical(scored, name, "select", "kept in the output") if warn_identical  # all checks passed
                 else count_identical(scored))
    out = []
    for rec, b, w in zip(scored, budgets, q, strict=True):
        new = dict(rec)
        new["budget"] = b
        new["selection"] = {"strategy": selector.name, "weight": round(w, 8), "pick": selector.pick}
        out.append(new)
    summary = selection_summary(margins, q, budgets)
    longer = [len(r["chosen"]) > len(r["rejected"]) for r in scored]
    summary["p_chosen_longer_selected"] = round(sum(b for b, x in zip(budgets, longer, strict=True) if x) / budget, 4)
    summary["p_chosen_longer_all"] = round(sum(longer) / len(longer), 4)
    summary["cap"], summary["mix_uniform"] = cap, mix
    summary["strategy"] = selector.name
    summary["params"] = dict(selector.config.__dict__)
    summary["identical_pairs"] = identical["n"]
    if hasattr(selector, "alpha_eff"):
        a = float(selector.alpha_eff(margins))
        summary["alpha_eff"] = round(a, 6) if math.isfinite(a) else None
    return out, summary


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
    require_fields(scored, ("chosen", "rejected"), name, "need prompt, chosen, rejected")
    require_fields(scored, SCORE_NEEDED, name, SCORE_HINT)
    margins = []
    for i, rec in enumerate(scored):
        m = rec["pred_margin"]
        where = f"{name} line {rec.get('_line', i + 1)}"
        if not isinstance(m, numbers.Real) or isinstance(m, bool):
            msg = f"{where}: field 'pred_margin' must be a number, got {_json_kind(m)}"
            raise DataError(msg, hint=SCORE_HINT)
        if not abs(m) <= MAX_MARGIN:  # also NaN
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
    info = count_identical(records)
    n = info["n"]
    if n:
        where = f"{name} line {info['first_line']}" if name else f"line {info['first_line']}"
        ui.warn(f"{owner}: {n} pair{'s' if n != 1 else ''} with chosen == rejected (first: {where}) "
                f"{'carry' if n != 1 else 'carries'} no preference signal; {fate}")
    return info


def _selector_weights(selector: Any, margins: list[float]) -> list[float]:
    """The selector's q, checked: one finite, non-negative weight per pair with a positive sum."""
    q = list(selector.weights(margins))
    ok = len(q) == len(margins) and all(isinstance(x, numbers.Real) and 0 <= x < math.inf for x in q)
    if not ok or not sum(q) > 0:
        msg = (f"the selector {selector.name!r} returned invalid weights (need {len(margins)} finite, "
               "non-negative numbers with a positive sum)")
        raise PluginError(msg)
    return [float(x) for x in q]


def _allocate(q: list[float], budget: int, cap: int | None, seed: int) -> list[int]:
    """Integer budgets from q (capped when ``cap`` is given)."""
    if cap is None:
        return largest_remainder(q, budget, seed=seed)
    try:
        return capped_allocation(q, budget, cap, seed=seed)
    except ValueError as e:
        raise ConfigError(f"select: {e}", hint="raise --cap or lower --budget") from None


def _check_pair_budgets(budgets: list[int], scored: list[dict[str, Any]], name: str, strategy: str) -> None:
    """Refuse a selection that gives one pair more rows than augment makes for a pair."""
    top = max(budgets)
    if top > MAX_PAIR_BUDGET:
        i = budgets.index(top)
        msg = (f"select: the {strategy} selection gives {name} line {scored[i].get('_line', i + 1)} a budget of "
               f"{top}; augment makes at most {MAX_PAIR_BUDGET:,} rows per pair")
        raise ConfigError(msg, hint=f"pass --cap (at most {MAX_PAIR_BUDGET}) or lower --budget")


def make_augmenter(backend: str, params: list[str] | dict[str, Any] | None = None, seed: int = 0,
                   draw_seed: int | None = None) -> Augmenter:
    """Build an augmenter plugin by name (``seed`` seeds the variants, ``draw_seed`` the draws)."""
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

    Rows selected with ``pick: top-margin`` (West-of-N) keep the pool rows that ``model`` gives the
    highest predicted margin, so the model is required for them. With ``semantic_tries`` > 0,
    low-contrast pairs are first rewritten by the (generative) augmenter (MARS v2 semantic
    refinement) and the pools are made from the refined texts. The rows are checked first
    (:func:`check_selected`).
    """
    counts, top = check_selected(selected, name, model)
    semantic_report = None
    if semantic_tries:
        selected, semantic_report = refine_contrast(selected, augmenter, counts, semantic_tries, model)
    # Top-margin rows need the whole pool; random picks draw b_i rows.
    request = [-1 if (t and b > 0) else b for t, b in zip(top, counts, strict=True)]
    made = augmenter.augment(selected, request, round=round, progress=progress)
    head = None
    if any(top):
        head = model if isinstance(model, Head) else load_head(model)  # type: ignore[arg-type]
    rows: list[dict[str, Any]] = []
    for t, b, pool in zip(top, counts, made, strict=True):
        if t and pool:
            assert head is not None
            scored = head.score(pool)
            order = sorted(range(len(scored)), key=lambda i: -scored[i]["pred_margin"])
            pool = [pool[i] for i in order[:b]]
        rows += pool
    stats = dict(augmenter.stats_)
    stats["backend"] = augmenter.name
    if semantic_report is not None:
        stats["semantic"] = semantic_report
        _mark_semantic(rows, selected)
    return rows, stats


def check_selected(selected: list[dict[str, Any]], name: str = "<input>",
                   model: Head | str | Path | None = None) -> tuple[list[int], list[bool]]:
    """Check selected rows before any work (no plugin loaded); returns (budgets, top-margin flags).

    Each row needs ``budget``: an int in [0, ``MAX_PAIR_BUDGET``], summing to at most
    ``MAX_TOTAL_BUDGET``; ``selection``, if present, must be an object whose ``pick`` is ``random`` or
    ``top-margin``. Top-margin rows need ``model``.
    """
    counts = _budgets(selected, name)
    top = [_pick(rec, f"{name} line {rec.get('_line', i + 1)}") == "top-margin" for i, rec in enumerate(selected)]
    if any(top) and model is None:
        msg = "this selection (won) keeps each pool's highest-margin rows, so augment needs the model"
        raise ConfigError(msg, hint="pass -m MODEL_DIR (the model that scored the pairs)")
    return counts, top


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


def _mark_semantic(rows: list[dict[str, Any]], selected: list[dict[str, Any]]) -> None:
    """Record on each synthetic row whether (and how) its parent was semantically refined."""
    info = {r["id"]: r["semantic"] for r in selected if "semantic" in r}
    for row in rows:
        sem = info.get(row["parent_id"])
        if sem is not None:
            row["semantic"] = {k: sem[k] for k in ("d_before", "d_after", "refined")}


def refine_contrast(selected: list[dict[str, Any]], augmenter: Augmenter, counts: list[int], tries: int,
                    model: Head | str | Path | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Semantic refinement of the pairs that will be augmented; the threshold is the mean d of all pairs."""
    from marsctl.embed import get_encoder
    from marsctl.semantic import Generator, contrast, semantic_refine

    if not isinstance(augmenter, Generator):
        msg = f"semantic refinement needs a generative augmenter (rewrite, openai); {augmenter.name!r} is not one"
        raise ConfigError(msg, hint="use --backend rewrite or --backend openai, or drop --semantic-refine")
    encoder = get_encoder()
    d = contrast(encoder, [r["chosen"] for r in selected], [r["rejected"] for r in selected])
    todo = [i for i, b in enumerate(counts) if b > 0]
    judge = None
    if model is not None:
        head = model if isinstance(model, Head) else load_head(model)

        def judge(recs: list[dict[str, Any]]) -> list[float]:
            return [r["pred_margin"] for r in head.score(recs)]

    refined, report = semantic_refine([selected[i] for i in todo], augmenter, encoder, tries,
                                      threshold=float(d.mean()), judge=judge)
    out = list(selected)
    for i, rec in zip(todo, refined, strict=True):
        out[i] = rec
    report["threshold_over"] = f"all {len(selected)} pairs"
    return out, report
