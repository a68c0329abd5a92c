"""The loop's verbs as library functions: train, score, select, augment.

Every CLI command is a thin wrapper over one of these; they work from Python without Typer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from marsctl import registry
from marsctl.alloc import capped_allocation, largest_remainder, mix_uniform, selection_summary
from marsctl.errors import ConfigError, DataError
from marsctl.params import check_interval
from marsctl.plugin import Augmenter, Head, derive_seed, load_head
from marsctl.records import records_sha256, require_fields

SCORE_NEEDED = ("pred_margin",)


def train(
    pairs: list[dict[str, Any]],
    *,
    head: str | None = None,
    params: list[str] | dict[str, Any] | None = None,
    epochs: int | None = None,
    seed: int = 0,
    init: str | Path | None = None,
) -> Head:
    """Train a reward head on pairs; with ``init``, continue from a saved model directory.

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
    model.history_ = list(model.history_)
    previous = dict(model.manifest_) if init is not None else {}
    model.manifest_ = {}
    model.fit(pairs, epochs=epochs)
    model.manifest_.update({
        "seed": seed,
        "data_sha256": records_sha256(pairs),
        "n_pairs": len(pairs),
        "n_synthetic": sum(1 for p in pairs if p.get("source") == "synthetic"),
        "init": str(init) if init is not None else None,
    })
    if previous:
        model.manifest_["init_training"] = {k: previous.get(k) for k in ("seed", "data_sha256", "n_pairs",
                                                                        "epochs")}
    return model


def score(records: list[dict[str, Any]], model: Head | str | Path,
          batch_size: int | None = None) -> list[dict[str, Any]]:
    """Score records with a head (or a model directory): adds score fields and pred_margin."""
    head = model if isinstance(model, Head) else load_head(model)
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
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Allocate an integer budget over scored base pairs; returns (rows with ``budget``, summary).

    ``cap`` bounds rows per pair (overflow is re-spread); ``mix`` blends q with uniform.
    """
    check_interval(budget, "budget", "select", kind=int, low=1)
    require_fields(scored, SCORE_NEEDED, name, "score the pairs first: marsctl score PAIRS -m MODEL")
    selector = registry.create("selector", strategy, params)
    margins = [float(r["pred_margin"]) for r in scored]
    q = selector.weights(margins)
    if mix:
        q = mix_uniform(q, mix)
    tie_seed = derive_seed(seed, "select")
    if cap is not None:
        try:
            budgets = capped_allocation(q, budget, cap, seed=tie_seed)
        except ValueError as e:
            raise ConfigError(f"select: {e}", hint="raise --cap or lower --budget") from None
    else:
        budgets = largest_remainder(q, budget, seed=tie_seed)
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
    if hasattr(selector, "alpha_eff"):
        summary["alpha_eff"] = round(selector.alpha_eff(margins), 6)
    return out, summary


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
    refinement) and the pools are made from the refined texts.
    """
    counts = _budgets(selected, name)
    top = [(rec.get("selection") or {}).get("pick") == "top-margin" for rec in selected]
    if any(top) and model is None:
        msg = "this selection (won) keeps each pool's highest-margin rows, so augment needs the model"
        raise ConfigError(msg, hint="pass -m MODEL_DIR (the model that scored the pairs)")
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


def _budgets(selected: list[dict[str, Any]], name: str) -> list[int]:
    require_fields(selected, ("budget",), name, "select first: marsctl select SCORED --budget B")
    counts = []
    for rec in selected:
        b = rec["budget"]
        if not isinstance(b, int) or isinstance(b, bool) or b < 0:
            msg = f"{name} line {rec.get('_line', '?')}: field 'budget' must be a non-negative integer"
            raise DataError(msg)
        counts.append(b)
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
