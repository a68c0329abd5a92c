"""Chat messages: checking ``{role, content}`` lists, rendering them as text, and a shared first part.

A leaf under :mod:`marsctl.shapes` and :mod:`marsctl.judgements` (both read conversational rows).
"""

from __future__ import annotations

from typing import Any

from marsctl.errors import DataError

Messages = list[dict[str, Any]]


def render_messages(messages: Messages) -> str:
    """Render chat messages as plain text, one ``Role: content`` block per message.

    >>> render_messages([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}])
    'User: Hi\\n\\nAssistant: Hello'
    """
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def join_contents(messages: Messages) -> str:
    """A response's text: its messages' contents joined by blank lines.

    >>> join_contents([{"role": "assistant", "content": "A"}, {"role": "assistant", "content": "B"}])
    'A\\n\\nB'
    """
    return "\n\n".join(m["content"] for m in messages)


def check_messages(value: Any, where: str, field: str) -> Messages:
    """A non-empty list of ``{role, content}`` string messages, or a DataError naming the field."""
    if not isinstance(value, list) or not value:
        msg = f"{where}: field '{field}' must be a non-empty string or a non-empty list of chat messages"
        raise DataError(msg)
    for k, m in enumerate(value):
        ok = isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        if not ok:
            msg = f"{where}: field '{field}' message {k} must be an object with string 'role' and 'content'"
            raise DataError(msg)
    return value


def shared_prefix(first: Messages, second: Messages) -> int:
    """How many first messages two conversations share (each keeps at least its last message).

    >>> u = {"role": "user", "content": "Q"}
    >>> shared_prefix([u, {"role": "assistant", "content": "A"}], [u, {"role": "assistant", "content": "B"}])
    1
    """
    n = 0
    while n < min(len(first), len(second)) - 1 and first[n] == second[n]:
        n += 1
    return n


def string_field(row: dict[str, Any], field: str, where: str) -> str:
    """``row[field]``, refused unless it is a string (the one check of a text field, for every row reader)."""
    value = row[field]
    if not isinstance(value, str):
        msg = f"{where}: field '{field}' must be a string, got {type(value).__name__}"
        raise DataError(msg)
    return value
