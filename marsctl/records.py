"""The record schema and JSONL I/O: read any supported preference format, write atomically."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from marsctl.errors import DataError

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


def normalize_row(row: Any, where: str) -> dict[str, Any]:
    """Validate one parsed JSON value and return it as a flat ``prompt/chosen/rejected`` record.

    ``where`` names the place for error messages (``file line N``). Extra keys are kept.
    """
    if not isinstance(row, dict):
        msg = f"{where}: expected a JSON object, got {type(row).__name__}"
        raise DataError(msg)
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


def _open_text(path: str | os.PathLike) -> tuple[io.TextIOBase, str]:
    if str(path) == "-":
        return sys.stdin, "<stdin>"
    p = Path(path)
    if not p.exists():
        msg = f"{p}: no such file"
        raise DataError(msg)
    if p.is_dir():
        msg = f"{p}: is a directory, expected a JSONL file"
        raise DataError(msg)
    return p.open(encoding="utf-8"), str(p)


def iter_json_lines(path: str | os.PathLike) -> Iterator[tuple[int, Any, str]]:
    """Yield ``(line number, parsed value, file name)`` for each non-blank line of a JSONL file."""
    fh, name = _open_text(path)
    try:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line), name
            except json.JSONDecodeError as e:
                msg = f"{name} line {lineno}: invalid JSON ({e.msg} at column {e.colno})"
                raise DataError(msg) from None
            except UnicodeDecodeError:
                msg = f"{name} line {lineno}: not valid UTF-8"
                raise DataError(msg) from None
    finally:
        if fh is not sys.stdin:
            fh.close()


def read_pairs(path: str | os.PathLike, *, allow_empty: bool = False) -> list[dict[str, Any]]:
    """Read and validate preference pairs from a JSONL file or ``-``; ids must be unique."""
    records: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    name = "<stdin>" if str(path) == "-" else str(path)
    for lineno, value, name in iter_json_lines(path):
        where = f"{name} line {lineno}"
        rec = normalize_row(value, where)
        if rec["id"] in seen:
            msg = f"{where}: duplicate id {rec['id']!r} (first seen on line {seen[rec['id']]})"
            raise DataError(msg, hint="ids must be unique; drop the 'id' field to get content hashes")
        seen[rec["id"]] = lineno
        rec["_line"] = lineno
        records.append(rec)
    if not records and not allow_empty:
        msg = f"{name}: no records (the file is empty)"
        raise DataError(msg)
    return records


def require_fields(records: list[dict[str, Any]], fields: Iterable[str], name: str, why: str) -> None:
    """Raise a DataError naming the first record that lacks one of ``fields``."""
    for rec in records:
        for field in fields:
            if field not in rec:
                line = rec.get("_line", "?")
                msg = f"{name} line {line}: missing field '{field}' ({why})"
                raise DataError(msg)


def strip_private(rec: dict[str, Any]) -> dict[str, Any]:
    """Drop bookkeeping keys (leading underscore) before writing."""
    return {k: v for k, v in rec.items() if not k.startswith("_")}


def dumps(rec: dict[str, Any]) -> str:
    """One record as a JSON line (no trailing newline)."""
    return json.dumps(strip_private(rec), ensure_ascii=False)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[io.TextIOBase]:
    """Write text to a temporary file beside ``path`` and ``os.replace`` it in on success.

    Nothing is left at ``path`` when the block raises.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yield fh
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_records(records: Iterable[dict[str, Any]], path: str | os.PathLike) -> int:
    """Write records as JSONL to ``path`` (atomically) or to stdout for ``-``; return the count."""
    lines = [dumps(r) + "\n" for r in records]
    if str(path) == "-":
        sys.stdout.write("".join(lines))
        sys.stdout.flush()
    else:
        with atomic_writer(path) as fh:
            fh.writelines(lines)
    return len(lines)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write one JSON document atomically."""
    with atomic_writer(path) as fh:
        json.dump(obj, fh, indent=2, ensure_ascii=False, sort_keys=False)
        fh.write("\n")


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
