"""Semantic refinement (MARS v2): rewrite low-contrast pairs so their responses differ more.

Contrast is d = 1 − cos(e(chosen), e(rejected)) on the response texts (the shared sentence encoder).
Pairs with d below the mean d of the set are *low-contrast*. For each, a generator rewrites the
rejected response to be more different from the chosen one while staying worse; the first of up to
``tries`` candidates that raises d is accepted. Pairs still unrefined then get the same treatment on
the chosen response (more different, still better). A pair no candidate improves is kept as it was.
Labels never change: a rewrite of the rejected response stays rejected.

The generator is anything with a ``rewrite`` method (:class:`Generator`); the ``rewrite`` and
``openai`` augmenters implement it. This module imports no plugin.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from marsctl.params import check_interval

REJECTED_INSTRUCTION = (
    "Below are a request, a good answer, and a weaker answer. Rewrite the weaker answer so that it "
    "says things differently from the good answer and differs from it in content, while it stays a "
    "worse answer than the good one (keep its weaknesses). Reply with the rewritten weaker answer only."
    "\n\nRequest:\n{prompt}\n\nGood answer:\n{other}\n\nWeaker answer:\n{text}\n\nRewritten weaker answer:"
)
CHOSEN_INSTRUCTION = (
    "Below are a request, a good answer, and a weaker answer. Rewrite the good answer so that it says "
    "things differently from the weaker answer and differs from it in content, while it stays the "
    "better answer (keep everything that makes it good). Reply with the rewritten good answer only."
    "\n\nRequest:\n{prompt}\n\nWeaker answer:\n{other}\n\nGood answer:\n{text}\n\nRewritten good answer:"
)
CONTEXT_CHARS = 1500
OTHER = {"chosen": "rejected", "rejected": "chosen"}  # the response a rewrite of one side must differ from


@runtime_checkable
class Generator(Protocol):
    """What semantic refinement needs from a generator backend."""

    def rewrite(self, texts: list[str], instruction: str | list[str], n: int) -> list[list[str]]:
        """Up to ``n`` rewrites of each text following ``instruction`` (one, or one per text)."""
        ...


class TextEncoder(Protocol):
    """What semantic refinement needs from an encoder (:class:`marsctl.embed.Encoder`)."""

    def encode(self, texts: list[str], side: str = "response") -> np.ndarray:
        """L2-normalised embeddings, one row per text."""
        ...


def _clip(text: str, keep_end: bool) -> str:
    text = text.replace("{text}", "{ text }")
    if len(text) <= CONTEXT_CHARS:
        return text
    return "…" + text[-CONTEXT_CHARS:] if keep_end else text[:CONTEXT_CHARS] + "…"


def instruction_for(pair: dict[str, Any], side: str) -> str:
    """The rewrite instruction for one side of one pair, with the request and the other response."""
    template = REJECTED_INSTRUCTION if side == "rejected" else CHOSEN_INSTRUCTION
    return template.replace("{prompt}", _clip(pair["prompt"], keep_end=True)).replace(
        "{other}", _clip(pair[OTHER[side]], keep_end=False))


def contrast(encoder: TextEncoder, chosen: list[str], rejected: list[str]) -> np.ndarray:
    """d = 1 − cos(e(chosen), e(rejected)) for aligned lists of responses.

    >>> class Fake:
    ...     def encode(self, texts, side="response"):
    ...         return np.array([[1.0, 0.0] if t == "a" else [0.0, 1.0] for t in texts])
    >>> contrast(Fake(), ["a", "a"], ["a", "b"]).tolist()
    [0.0, 1.0]
    """
    if not chosen:
        return np.zeros(0, dtype=np.float64)
    e_c = np.asarray(encoder.encode(list(chosen), side="response"), dtype=np.float64)
    e_r = np.asarray(encoder.encode(list(rejected), side="response"), dtype=np.float64)
    return 1.0 - np.sum(e_c * e_r, axis=1)


def _try_side(pairs: list[dict[str, Any]], todo: list[int], side: str, d: np.ndarray,
              generator: Generator, encoder: TextEncoder, tries: int,
              judge: Callable[[list[dict[str, Any]]], list[float]] | None,
              report: dict[str, Any]) -> dict[int, tuple[str, float, int]]:
    """Accepted (text, new d, try number) per pair index, for rewrites of ``side``."""
    if not todo:
        return {}
    other = OTHER[side]
    cands = generator.rewrite([pairs[i][side] for i in todo], [instruction_for(pairs[i], side) for i in todo],
                              tries)
    flat = [(i, k, c) for i, cs in zip(todo, cands, strict=True) for k, c in enumerate(cs[:tries])]
    report["candidates"] += len(flat)
    if not flat:
        return {}
    e_new = np.asarray(encoder.encode([c for _, _, c in flat], side="response"), dtype=np.float64)
    e_other = np.asarray(encoder.encode([pairs[i][other] for i, _, _ in flat], side="response"),
                         dtype=np.float64)
    d_new = 1.0 - np.sum(e_new * e_other, axis=1)
    ok = [bool(d_new[j] > d[i]) and c.strip() != pairs[i][other].strip() for j, (i, _, c) in enumerate(flat)]
    if judge is not None:
        sel = [j for j, good in enumerate(ok) if good]
        recs = [{**pairs[flat[j][0]], side: flat[j][2]} for j in sel]
        margins = judge(recs) if recs else []
        for j, m in zip(sel, margins, strict=True):
            if not m > 0:
                ok[j] = False
                report["rejected_by_judge"] += 1
    accepted: dict[int, tuple[str, float, int]] = {}
    for j, (i, k, c) in enumerate(flat):
        if ok[j] and i not in accepted:
            accepted[i] = (c, float(d_new[j]), k + 1)
    return accepted


def semantic_refine(
    pairs: list[dict[str, Any]],
    generator: Generator,
    encoder: TextEncoder,
    tries: int = 5,
    *,
    threshold: float | None = None,
    judge: Callable[[list[dict[str, Any]]], list[float]] | None = None,
    d: np.ndarray | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rewrite the low-contrast pairs of a set, rejected side first, then chosen.

    Parameters
    ----------
    pairs : list of dict
        Records with ``prompt``, ``chosen`` and ``rejected``.
    generator : Generator
        Makes candidate rewrites (``rewrite(texts, instruction, n)``).
    encoder : TextEncoder
        Embeds responses (normalised) for d.
    tries : int
        Candidates per side per pair; the first that raises d is accepted.
    threshold : float, optional
        Pairs with d below it are refined; default: the mean d of ``pairs``.
    judge : callable, optional
        Predicted margins (chosen − rejected) for candidate pairs; a candidate is accepted only if
        its margin is > 0, so "still worse" / "still better" is checked, not only asked for.
    d : array, optional
        The pairs' contrast (:func:`contrast`), when the caller has it already.

    Returns
    -------
    refined : list of dict
        Copies of ``pairs`` (same order, same labels) with a ``semantic`` field: ``d_before``,
        ``d_after``, ``refined`` (``"rejected"``, ``"chosen"`` or None), ``low_contrast``, and for a
        refined pair ``tries`` and ``original`` (the replaced text).
    report : dict
        Counts and mean d before and after, for stderr and the run manifest.
    """
    check_interval(tries, "tries", "semantic refinement", kind=int, low=1, high=50)
    t0 = time.perf_counter()
    if d is None:
        d = contrast(encoder, [p["chosen"] for p in pairs], [p["rejected"] for p in pairs])
    thr = float(d.mean()) if threshold is None and len(d) else float(threshold or 0.0)
    low = [i for i in range(len(pairs)) if d[i] < thr]
    report: dict[str, Any] = {"pairs": len(pairs), "threshold": round(thr, 6), "low_contrast": len(low),
                              "refined_rejected": 0, "refined_chosen": 0, "kept": len(low),
                              "candidates": 0, "rejected_by_judge": 0}
    done_r = _try_side(pairs, low, "rejected", d, generator, encoder, tries, judge, report)
    rest = [i for i in low if i not in done_r]
    done_c = _try_side(pairs, rest, "chosen", d, generator, encoder, tries, judge, report)
    out = []
    d_after = d.copy()
    for i, pair in enumerate(pairs):
        new = dict(pair)
        info: dict[str, Any] = {"d_before": round(float(d[i]), 6), "low_contrast": i in set(low), "refined": None}
        for side, done in (("rejected", done_r), ("chosen", done_c)):
            if i in done:
                text, d_new, k = done[i]
                info.update(refined=side, tries=k, original=pair[side])
                new[side] = text
                d_after[i] = d_new
        info["d_after"] = round(float(d_after[i]), 6)
        new["semantic"] = info
        out.append(new)
    report["refined_rejected"] = len(done_r)
    report["refined_chosen"] = len(done_c)
    report["kept"] = len(low) - len(done_r) - len(done_c)
    report["mean_d_before"] = round(float(d.mean()), 6) if len(d) else 0.0
    report["mean_d_after"] = round(float(d_after.mean()), 6) if len(d) else 0.0
    if low:
        report["mean_d_low_before"] = round(float(d[low].mean()), 6)
        report["mean_d_low_after"] = round(float(d_after[low].mean()), 6)
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return out, report


def refine_selected(selected: list[dict[str, Any]], generator: Any, counts: list[int], tries: int, *,
                    judge: Callable[[list[dict[str, Any]]], list[float]] | None = None,
                    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Semantic refinement of the selected pairs that will be augmented (``counts[i] > 0``).

    The threshold is the mean d of all the selected pairs; d is computed once, with the shared
    sentence encoder. Returns the rows (refined ones replaced) and the report.
    """
    from marsctl.embed import get_encoder
    from marsctl.errors import ConfigError

    if not isinstance(generator, Generator):
        msg = f"semantic refinement needs a generative augmenter (rewrite, openai); {generator.name!r} is not one"
        raise ConfigError(msg, hint="use --backend rewrite or --backend openai, or drop --semantic-refine")
    encoder = get_encoder()
    d = contrast(encoder, [r["chosen"] for r in selected], [r["rejected"] for r in selected])
    todo = [i for i, b in enumerate(counts) if b > 0]
    refined, report = semantic_refine([selected[i] for i in todo], generator, encoder, tries,
                                      threshold=float(d.mean()), judge=judge, d=d[todo])
    out = list(selected)
    for i, rec in zip(todo, refined, strict=True):
        out[i] = rec
    report["threshold_over"] = f"all {len(selected)} pairs"
    return out, report
