"""Pairwise judgements: two responses ``a`` and ``b`` to one prompt, and which one won (or nothing yet).

Three row layouts hold them, read here as flat ``prompt/chosen/rejected`` pairs for :mod:`marsctl.shapes`
(``pairwise`` and ``arena``; it imports this module when it meets such a row) or as unlabeled pairs for
:mod:`marsctl.unlabeled`:

- ``{"prompt", "response_a", "response_b", "id"?}``: an unlabeled pair (what ``score`` and ``query`` read);
- the same with ``"preferred": "a" | "b" | "tie"``: a labeled pair (``query`` writes ``preferred`` empty);
- the pairwise-judgement layout of arena data: ``winner: model_a | model_b | tie`` (``tie (bothbad)`` too),
  with ``conversation_a``/``conversation_b`` message lists (their shared first messages are the prompt)
  or ``prompt`` with ``response_a``/``response_b``.

A tie states no preference: its row reads as no pair (``records.iter_pairs`` counts and skips it).
"""

from __future__ import annotations

from typing import Any

from marsctl.errors import DataError
from marsctl.messages import check_messages, join_contents, render_messages, shared_prefix, string_field

PREFERRED = {"a": "a", "b": "b", "tie": None}  # the labels a labeler writes (case and spaces ignored)
WINNER = {"model_a": "a", "model_b": "b", "tie": None, "tie (bothbad)": None}  # arena's winner field
LABEL_FIELDS = ("preferred", "winner")
LABEL_HINT = "label each pair with preferred: a, b or tie ('marsctl query' writes the pairs to label)"


def has_responses(row: dict[str, Any]) -> bool:
    """Whether a row holds two responses a and b (strings or conversations).

    >>> has_responses({"prompt": "p", "response_a": "x", "response_b": "y"})
    True
    """
    return ("response_a" in row and "response_b" in row) or ("conversation_a" in row and "conversation_b" in row)


def is_unlabeled(row: Any) -> bool:
    """Whether a row is an unlabeled pair: two responses, no chosen/rejected, no winner, ``preferred`` absent or empty.

    >>> is_unlabeled({"prompt": "p", "response_a": "x", "response_b": "y", "preferred": ""})
    True
    >>> is_unlabeled({"prompt": "p", "response_a": "x", "response_b": "y", "preferred": "a"})
    False
    """
    if not isinstance(row, dict) or not has_responses(row) or "chosen" in row or "rejected" in row:
        return False
    return "winner" not in row and row.get("preferred") in (None, "")


def label_field(row: dict[str, Any]) -> str | None:
    """The field a labeled row's label is in (``preferred`` or ``winner``), or None.

    >>> label_field({"winner": "model_a"}), label_field({"preferred": ""})
    ('winner', None)
    """
    if row.get("preferred") not in (None, ""):
        return "preferred"
    return "winner" if "winner" in row else None


def pair_texts(row: dict[str, Any], where: str) -> tuple[str, str, str]:
    """A judgement row's (prompt, response a, response b) texts; a DataError names a missing or bad field."""
    if "response_a" in row and "response_b" in row:
        if "prompt" not in row:
            msg = f"{where}: missing field 'prompt' (a pair of response_a and response_b needs the prompt they answer)"
            raise DataError(msg)
        prompt, a, b = (string_field(row, f, where) for f in ("prompt", "response_a", "response_b"))
        return prompt, a, b
    if "conversation_a" not in row or "conversation_b" not in row:
        msg = f"{where}: missing field 'response_b' (a pairwise judgement needs response_a and response_b, " \
              "or conversation_a and conversation_b)"
        raise DataError(msg)
    conv_a = check_messages(row["conversation_a"], where, "conversation_a")
    conv_b = check_messages(row["conversation_b"], where, "conversation_b")
    n = shared_prefix(conv_a, conv_b)
    if n == 0:
        msg = f"{where}: fields 'conversation_a' and 'conversation_b' share no first message (the prompt)"
        raise DataError(msg)
    return render_messages(conv_a[:n]), join_contents(conv_a[n:]), join_contents(conv_b[n:])


def winner_of(row: dict[str, Any], where: str) -> str | None:
    """``"a"``, ``"b"`` or None (a tie) from a labeled row; a DataError names a missing, empty or unknown label.

    >>> winner_of({"preferred": " B "}, "f line 1"), winner_of({"winner": "tie (bothbad)"}, "f line 2")
    ('b', None)
    """
    field = label_field(row)
    if field is None:
        if "preferred" in row:
            msg = f"{where}: field 'preferred' is empty: this pair is not labeled yet"
        else:
            msg = f"{where}: missing field 'preferred': an unlabeled pair (prompt, response_a, response_b) states no " \
                  "preference to learn from"
        raise DataError(msg, hint=LABEL_HINT + "; 'marsctl score' and 'marsctl query' read unlabeled pairs")
    value = row[field]
    table = PREFERRED if field == "preferred" else WINNER
    key = value.strip().lower() if isinstance(value, str) else value
    if not isinstance(key, str) or key not in table:
        msg = f"{where}: field '{field}' must be one of {', '.join(table)}; got {value!r}"
        raise DataError(msg, hint=LABEL_HINT if field == "preferred" else None)
    return table[key]


def parse_judgement(row: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """A labeled judgement row as one flat pair (``chosen`` the winner), or none for a tie."""
    texts = pair_texts(row, where)
    won = winner_of(row, where)
    if won is None:
        return []
    prompt, a, b = texts
    chosen, rejected = (a, b) if won == "a" else (b, a)
    return [{"prompt": prompt, "chosen": chosen, "rejected": rejected}]
