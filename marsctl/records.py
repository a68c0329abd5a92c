"""The record schema: preference rows in any supported shape as flat prompt/chosen/rejected records, ids, hashes.

The bytes of JSONL files (strict reading, atomic writing) are :mod:`marsctl.jsonio`'s job.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from typing import Any

from marsctl.errors import DataError
from marsctl.jsonio import check_values, dumps, iter_json_lines

REQUIRED = ("prompt", "chosen", "rejected")
SCORE_FIELDS = ("score_chosen", "score_rejected", "pred_margin", "p_chosen")
HH_SPLIT = "\n\nAssistant:"


def content_id(prompt: str, chosen: str, rejected: str) -> str:
    """A stable id from a pair's content: ``h-`` and the first 16 hex digits of its sha256.

    >>> content_id("p", "a", "b")
    'h-292f6f51c4df81f9'
    """
    digest = hashlib.sha256("\x1f".join((prompt, chosen, rejected)).encode("utf-8")).hexdigest()
    return "h-" + digest[:16]


def _render_messages(messages: list[dict[str, Any]]) -> str:
    """Render chat messages as plain text, one ``Role: content`` block per message."""
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def _check_messages(value: Any, where: str, field: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        msg = f"{where}: field '{field}' must be a non-empty string or a non-empty list of chat messages"
        raise DataError(msg)
    for k, m in enumerate(value):
        ok = isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        if not ok:
            msg = f"{where}: field '{field}' message {k} must be an object with string 'role' and 'content'"
            raise DataError(msg)
    return value


def _split_chat(row: dict[str, Any], where: str) -> tuple[str, str, str]:
    """Chat rows: the prompt is the shared prefix of messages, the response the rest."""
    chosen = _check_messages(row["chosen"], where, "chosen")
    rejected = _check_messages(row["rejected"], where, "rejected")
    if "prompt" in row:
        prompt_msgs = _check_messages(row["prompt"], where, "prompt") if row["prompt"] != [] else []
    else:
        n = 0
        while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
            n += 1
        prompt_msgs, chosen, rejected = chosen[:n], chosen[n:], rejected[n:]
    return (
        _render_messages(prompt_msgs),
        "\n\n".join(m["content"] for m in chosen),
        "\n\n".join(m["content"] for m in rejected),
    )


def _split_hh(chosen: str, rejected: str, where: str) -> tuple[str, str, str]:
    """Anthropic HH rows: split the shared dialogue up to the last ``\\n\\nAssistant:``."""
    common = os.path.commonprefix([chosen, rejected])  # noqa: RUF071 (character prefix is what we want)
    cut = common.rfind(HH_SPLIT)
    if cut < 0:
        msg = (
            f"{where}: no 'prompt' field, and 'chosen' and 'rejected' share no dialogue ending in "
            f"'\\n\\nAssistant:' (need prompt, chosen, rejected, or HH-style full dialogues)"
        )
        raise DataError(msg)
    end = cut + len(HH_SPLIT)
    return chosen[:end], chosen[end:], rejected[end:]


def _split_plain(row: dict[str, Any], where: str) -> tuple[str, str, str]:
    """String rows: TRL's prompt/chosen/rejected, or HH-style full dialogues without a prompt."""
    for field in ("chosen", "rejected"):
        if not isinstance(row[field], str):
            kind = type(row[field]).__name__
            msg = f"{where}: field '{field}' must be a string or a list of chat messages, got {kind}"
            raise DataError(msg)
    if "prompt" not in row:
        return _split_hh(row["chosen"], row["rejected"], where)
    if not isinstance(row["prompt"], str):
        msg = f"{where}: field 'prompt' must be a string, got {type(row['prompt']).__name__}"
        raise DataError(msg)
    return row["prompt"], row["chosen"], row["rejected"]


def normalize_row(row: Any, where: str, *, checked: bool = False) -> dict[str, Any]:
    """Validate one parsed JSON value and return it as a flat ``prompt/chosen/rejected`` record.

    ``where`` names the place for error messages (``file line N``). Extra keys are kept. Every string
    (keys included, at any depth) must be valid Unicode, and values nest at most ``jsonio.MAX_DEPTH`` levels;
    ``checked=True`` skips that walk for values from ``iter_json_lines``, which has done it.
    """
    if not isinstance(row, dict):
        msg = f"{where}: expected a JSON object, got {type(row).__name__}"
        raise DataError(msg)
    if not checked:
        check_values(row, where)
    for field in ("chosen", "rejected"):
        if field not in row:
            msg = f"{where}: missing field '{field}' (need prompt, chosen, rejected)"
            raise DataError(msg)
    if isinstance(row["chosen"], list) or isinstance(row["rejected"], list):
        prompt, chosen, rejected = _split_chat(row, where)
    else:
        prompt, chosen, rejected = _split_plain(row, where)
    for field, value in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)):
        if not value.strip():
            msg = f"{where}: field '{field}' is empty"
            raise DataError(msg)
    if "id" in row:
        rid = row["id"]
        if not isinstance(rid, str | int) or isinstance(rid, bool) or rid == "":
            msg = f"{where}: field 'id' must be a non-empty string or an integer"
            raise DataError(msg)
        rid = str(rid)
    else:
        rid = content_id(prompt, chosen, rejected)
    out = {"id": rid, "prompt": prompt, "chosen": chosen, "rejected": rejected}
    out.update((k, v) for k, v in row.items() if k not in out)
    return out


def iter_pairs(path: str | os.PathLike, *, allow_empty: bool = False) -> Iterator[dict[str, Any]]:
    """Read and validate preference pairs from a file or ``-`` one at a time; ids must be unique.

    Every record carries ``_line`` (its line or row number) for messages. Memory is bounded by the
    set of ids seen (the duplicate check), not by the records.
    """
    seen: dict[str, int] = {}
    name = "<stdin>" if str(path) == "-" else str(path)
    for lineno, value, name in iter_json_lines(path):
        where = f"{name} line {lineno}"
        rec = normalize_row(value, where, checked=True)
        if rec["id"] in seen:
            msg = f"{where}: duplicate id {rec['id']!r} (first seen on line {seen[rec['id']]})"
            raise DataError(msg, hint="ids must be unique; drop the 'id' field to get content hashes")
        seen[rec["id"]] = lineno
        rec["_line"] = lineno
        yield rec
    if not seen and not allow_empty:
        msg = f"{name}: no records (the file is empty)"
        raise DataError(msg)


def read_pairs(path: str | os.PathLike, *, allow_empty: bool = False) -> list[dict[str, Any]]:
    """Read and validate preference pairs from a file or ``-`` into a list (:func:`iter_pairs`)."""
    return list(iter_pairs(path, allow_empty=allow_empty))


def require_fields(records: list[dict[str, Any]], fields: Iterable[str], name: str, why: str) -> None:
    """Raise a DataError naming the first record that lacks one of ``fields``."""
    for rec in records:
        for field in fields:
            if field not in rec:
                line = rec.get("_line", "?")
                msg = f"{name} line {line}: missing field '{field}' ({why})"
                raise DataError(msg)


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def records_sha256(records: Iterable[dict[str, Any]]) -> str:
    """The sha256 of records as marsctl would write them (order matters)."""
    h = hashlib.sha256()
    for r in records:
        h.update((dumps(r) + "\n").encode("utf-8"))
    return h.hexdigest()


def is_identical(rec: dict[str, Any]) -> bool:
    """Whether a pair's chosen and rejected are the same text once runs of whitespace are collapsed."""
    chosen, rejected = rec.get("chosen"), rec.get("rejected")
    return isinstance(chosen, str) and isinstance(rejected, str) and chosen.split() == rejected.split()


def count_identical(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Pairs with chosen == rejected (they carry no preference): ``{"n": count, "first_line": line or None}``.

    The line is the record's ``_line`` (set by :func:`read_pairs`), else its 1-based position.

    >>> count_identical([{"chosen": "a", "rejected": "b"}, {"chosen": "a  b", "rejected": " a b", "_line": 7}])
    {'n': 1, 'first_line': 7}
    """
    n, first = 0, None
    for i, rec in enumerate(records):
        if is_identical(rec):
            n += 1
            if first is None:
                first = rec.get("_line", i + 1)
    return {"n": n, "first_line": first}
