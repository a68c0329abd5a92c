"""Unlabeled pairs: ``{"prompt", "response_a", "response_b", "id"?}`` rows read, scored and written back.

``score`` writes ``reward_a``, ``reward_b``, ``pred_margin`` (a − b), ``p_a`` and, for an ensemble head,
``pred_margin_std`` into each row (:func:`score_unlabeled`); ``query`` reads a pool of such rows
(:func:`iter_unlabeled`). A labeled row in a pool is refused, naming its file, line and field.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from typing import Any

from marsctl.errors import DataError
from marsctl.judgements import has_responses, is_unlabeled, label_field, pair_texts
from marsctl.shapes import content_id

FIELDS = ("reward_a", "reward_b", "pred_margin", "p_a")  # what scoring an unlabeled pair writes
SPREAD = "pred_margin_std"  # and, for an ensemble head, the spread of its members' margins
CHUNK = 4096  # pairs scored at once (memory is bounded by a chunk)


def first_row_unlabeled(path: str | os.PathLike, name: str | None = None) -> bool:
    """Whether the first row of a rereadable input is an unlabeled pair (it decides how ``score`` reads the file)."""
    from marsctl.formats import iter_rows

    for _, value, _, _ in iter_rows(path, name=name):
        return is_unlabeled(value)
    return False


def unlabeled_record(row: Any, where: str) -> dict[str, Any]:
    """One row as an unlabeled record ``{"id", "prompt", "response_a", "response_b", ...extra keys}``.

    A row with a label (``preferred`` a/b/tie, ``winner``, or chosen/rejected) is a DataError naming the field.

    >>> unlabeled_record({"prompt": "Q", "response_a": "x", "response_b": "y", "n": 1}, "f line 1")["id"]
    'h-ae0e96de6236a5cd'
    """
    if not isinstance(row, dict):
        msg = f"{where}: expected a JSON object, got {type(row).__name__}"
        raise DataError(msg)
    labeled = label_field(row) or next((k for k in ("chosen", "rejected") if k in row), None)
    if labeled is not None:
        msg = (f"{where}: field '{labeled}' holds a label: this input must hold unlabeled pairs only "
               "(prompt, response_a, response_b, and 'preferred' empty or absent)")
        raise DataError(msg, hint="drop the labeled rows (they are training pairs: 'marsctl train' reads them)")
    if not has_responses(row):
        fields = ", ".join(sorted(row)[:8]) or "none"
        msg = (f"{where}: missing field 'response_a' (an unlabeled pair is prompt, response_a, response_b; "
               f"fields: {fields})")
        raise DataError(msg)
    prompt, a, b = pair_texts(row, where)
    for field, value in (("prompt", prompt), ("response_a", a), ("response_b", b)):
        if not value.strip():
            msg = f"{where}: field '{field}' is empty"
            raise DataError(msg)
    rid = row.get("id")
    if rid is None:
        rid = content_id(prompt, a, b)
    elif not isinstance(rid, str | int) or isinstance(rid, bool) or rid == "":
        msg = f"{where}: field 'id' must be a non-empty string or an integer"
        raise DataError(msg)
    dropped = ("conversation_a", "conversation_b", "preferred", "id", "prompt", "response_a", "response_b")
    extras = {k: v for k, v in row.items() if k not in dropped}
    return {"id": str(rid), "prompt": prompt, "response_a": a, "response_b": b, **extras}


def iter_unlabeled(path: str | os.PathLike, *, name: str | None = None,
                   split: str | None = None) -> Iterator[dict[str, Any]]:
    """Read unlabeled pairs from any readable input one at a time, each with ``_line``; ids must be unique.

    Memory is bounded by the set of ids seen (the duplicate check), not by the records.
    """
    from marsctl.formats import iter_rows
    from marsctl.inputs import display_name

    seen: dict[str, int] = {}
    label = name or display_name(path)
    for lineno, value, shown, unit in iter_rows(path, split=split, name=label):
        label = shown
        rec = unlabeled_record(value, f"{shown} {unit} {lineno}")
        if rec["id"] in seen:
            msg = f"{shown} {unit} {lineno}: duplicate id {rec['id']!r} (first seen on {unit} {seen[rec['id']]})"
            raise DataError(msg, hint="ids must be unique; drop the 'id' field to get content hashes")
        seen[rec["id"]] = lineno
        rec["_line"] = lineno
        yield rec
    if not seen:
        msg = f"{label}: no records (the file is empty)"
        raise DataError(msg)


def as_pair(rec: dict[str, Any]) -> dict[str, Any]:
    """The pair a head scores: response a as ``chosen``, b as ``rejected`` (so pred_margin is a − b)."""
    return {"id": rec["id"], "prompt": rec["prompt"], "chosen": rec["response_a"], "rejected": rec["response_b"]}


def is_ensemble(head: Any) -> bool:
    """Whether a head averages several networks (it then has a meaningful ``pred_margin_std``)."""
    return int(getattr(getattr(head, "config", None), "ensemble", 1) or 1) > 1


def unlabeled_fields(scored: dict[str, Any], ensemble: bool) -> dict[str, Any]:
    """reward_a, reward_b, pred_margin, p_a (and pred_margin_std) from a head's score fields of ``as_pair``.

    >>> unlabeled_fields({"score_chosen": 1.0, "score_rejected": 0.5, "pred_margin": 0.5, "p_chosen": 0.622459}, False)
    {'reward_a': 1.0, 'reward_b': 0.5, 'pred_margin': 0.5, 'p_a': 0.622459}
    """
    out = {"reward_a": scored["score_chosen"], "reward_b": scored["score_rejected"],
           "pred_margin": scored["pred_margin"], "p_a": scored["p_chosen"]}
    if ensemble:
        out[SPREAD] = scored.get(SPREAD, 0.0)
    return out


def with_fields(rec: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """``rec`` with the score ``fields``; a field the input already held is kept as ``input_<field>``.

    Fields marsctl wrote before (re-scoring a scored pool: all of them present) are replaced.
    """
    clash = [k for k in fields if k in rec]
    if not clash or all(k in rec for k in FIELDS):
        return {**rec, **fields}
    out = dict(rec)
    for k in clash:
        kept = "input_" + k
        if kept in out:
            msg = f"line {rec.get('_line', '?')}: the input holds both '{k}' and '{kept}'; scoring would overwrite one"
            raise DataError(msg, hint=f"rename '{k}' in the input (marsctl writes its own '{k}')")
        out[kept] = out.pop(k)
    return {**out, **fields}


def score_unlabeled(records: Iterable[dict[str, Any]], head: Any, batch_size: int | None = None,
                    chunk: int = CHUNK, length_free: bool = False) -> Iterator[dict[str, Any]]:
    """Score a stream of unlabeled records ``chunk`` at a time: each comes back with :data:`FIELDS` (and the spread).

    The scores do not depend on ``chunk`` (``Head.score`` scores each pair alone).
    """
    ensemble = is_ensemble(head)
    it = iter(records)
    while part := list(itertools.islice(it, chunk)):
        scored = head.score([as_pair(r) for r in part], batch_size=batch_size, length_free=length_free)
        for rec, s in zip(part, scored, strict=True):
            yield with_fields(rec, unlabeled_fields(s, ensemble))
