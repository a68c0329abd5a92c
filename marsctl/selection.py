"""The selection side of a refine round: which margins it selects on, the guard, and novelty.

* :func:`crossfit_margins`: base pairs re-scored out of fold (folds grouped by prompt), each fold by a head
  that never saw it;
* :func:`noise_flags` / :func:`noise_weights`: which pairs the cross-fitted margins mark as likely mislabeled,
  and the training weight each pair gets (``RefineConfig.noise``);
* :func:`select_guarded`: ``augmentation.select``, with a selection that fails the guard (:func:`guard_reasons`)
  replaced by a uniform one;
* :func:`novelty`: how far the synthetic rows move their parents' margins in the model's eyes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marsctl import augmentation, steps, ui
from marsctl.errors import DataError
from marsctl.plugin import Head
from marsctl.records import SCORE_FIELDS
from marsctl.stats import population_std, sigmoid

SPREAD_FIELD = "pred_margin_std"  # the ensemble spread of the margin (written by score with -p ensemble=K)

# A selection fails the guard when it concentrates the budget (ESS below this share of the pairs) or
# spends most of it on pairs the model ranks the wrong way (likely label noise on human data).
GUARD_MIN_ESS_SHARE = 0.25
GUARD_MAX_NEGATIVE_SHARE = 0.5


def prompt_folds(rows: list[dict[str, Any]], folds: int) -> list[int]:
    """The fold of each row: its prompt's rank of first appearance modulo ``folds`` (a prompt in one fold only).

    >>> prompt_folds([{"prompt": "a"}, {"prompt": "b"}, {"prompt": "a"}, {"prompt": "c"}], 2)
    [0, 1, 0, 0]
    """
    rank: dict[str, int] = {}
    return [rank.setdefault(r["prompt"], len(rank)) % folds for r in rows]


def crossfit_margins(scored: list[dict[str, Any]], train_rows: list[dict[str, Any]], folds: int, *,
                     head: str, params: list[str], epochs: int | None,
                     seed: Callable[[int], int]) -> list[dict[str, Any]]:
    """``scored`` with each pair's score fields from a head that never saw it.

    Folds are grouped by prompt (``prompt_folds``; with one pair per prompt, pair i is in fold ``i % folds``):
    no prompt has pairs on both sides. Fold f is scored by a new head trained on ``train_rows`` without that
    fold's pairs and their synthetic children (unweighted: a ``weight`` field is left out), seeded ``seed(f)``.
    """
    out = list(scored)
    fold_of = prompt_folds(scored, folds)
    for f in range(folds):
        idx = [i for i, g in enumerate(fold_of) if g == f]
        if not idx:
            continue
        held = {scored[i]["id"] for i in idx}
        rows = [{k: v for k, v in r.items() if k != "weight"} for r in train_rows
                if r["id"] not in held and r.get("parent_id") not in held]
        if not rows:
            msg = f"cross-fitting needs pairs with at least 2 different prompts (fold {f} holds every one)"
            raise DataError(msg)
        model = steps.train(rows, head=head, params=params, epochs=epochs, seed=seed(f), warn_identical=False)
        for i, rec in zip(idx, model.score([scored[i] for i in idx]), strict=True):
            out[i] = {**scored[i], **{key: rec[key] for key in (*SCORE_FIELDS, SPREAD_FIELD) if key in rec}}
    return out


def noise_flags(margins: list[float], threshold: float) -> tuple[float, list[bool]]:
    """std(Δ_cf) and, per pair, whether Δ_cf < −threshold·std(Δ_cf) (likely mislabeled).

    >>> noise_flags([1.0, -1.0, 3.0, -3.0], 1.0)
    (2.23606797749979, [False, False, False, True])
    """
    sd = population_std(margins)
    return sd, [sd > 0 and m < -threshold * sd for m in margins]


def noise_weights(margins: list[float], flagged: list[bool], mode: str, sd: float) -> list[float]:
    """Training weight per pair: soft σ(2·Δ_cf/std) for every pair, drop 0 for flagged pairs, else 1.

    >>> [round(w, 3) for w in noise_weights([0.0, 1.0, -2.0], [False, False, True], "soft", 1.0)]
    [0.5, 0.881, 0.018]
    >>> noise_weights([0.0, -2.0], [False, True], "drop", 1.0)
    [1.0, 0.0]
    """
    if mode == "soft":
        return [sigmoid(2.0 * m / sd) if sd > 0 else 1.0 for m in margins]
    if mode == "drop":
        return [0.0 if f else 1.0 for f in flagged]
    return [1.0] * len(margins)


def guard_reasons(sel: dict[str, Any]) -> list[str]:
    """Why a selection should not spend the budget (empty when it passes)."""
    reasons = []
    if sel["ess"] < GUARD_MIN_ESS_SHARE * sel["pairs"]:
        reasons.append(f"ESS {sel['ess']:.1f} < {GUARD_MIN_ESS_SHARE} × {sel['pairs']} pairs")
    if sel["share_negative_margin"] > GUARD_MAX_NEGATIVE_SHARE:
        reasons.append(f"{sel['share_negative_margin']:.2f} of the budget on Δ < 0 (> {GUARD_MAX_NEGATIVE_SHARE})")
    return reasons


def select_guarded(scored: list[dict[str, Any]], *, strategy: str, params: list[str], guard: bool, label: str,
                   **select_args: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``augmentation.select``; with ``guard``, a selection that fails it is replaced by a uniform one (both recorded).

    ``label`` starts the warning (``round 2``); ``select_args`` go to both selections.
    """
    selected, sel = augmentation.select(scored, strategy=strategy, params=params, warn_identical=False, **select_args)
    if not guard:
        return selected, sel
    reasons = guard_reasons(sel)
    if not reasons:
        sel["guard"] = {"passed": True, "reasons": []}
        return selected, sel
    ui.warn(f"{label}: the {strategy} selection failed the guard ({'; '.join(reasons)}); "
            f"spending this round's budget uniformly instead")
    selected, fallback = augmentation.select(scored, strategy="uniform", warn_identical=False, **select_args)
    fallback["guard"] = {"passed": False, "reasons": reasons, "rejected_selection": sel}
    return selected, fallback


def novelty(selected: list[dict[str, Any]], synthetic: list[dict[str, Any]], head: Head) -> dict[str, Any]:
    """Correlation between a pair's margin and its synthetic rows' mean margin (same model).

    Near 1 means the synthetic rows are near-copies in the head's eyes: selecting them mostly
    re-weights the base pairs instead of adding information.
    """
    import numpy as np

    if not synthetic:
        return {"corr": None, "pairs": 0}
    scored = head.score(synthetic)
    by_parent: dict[str, list[float]] = {}
    for r in scored:
        by_parent.setdefault(r["parent_id"], []).append(r["pred_margin"])
    base = {r["id"]: r["pred_margin"] for r in selected}
    ids = [i for i in by_parent if i in base]
    if len(ids) < 3:
        return {"corr": None, "pairs": len(ids)}
    x = np.array([base[i] for i in ids])
    y = np.array([np.mean(by_parent[i]) for i in ids])
    corr = float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else None
    return {"corr": corr, "pairs": len(ids), "mean_shift": float((y - x).mean())}
