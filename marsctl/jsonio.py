"""The JSONL codec: lines of bytes <-> JSON values, with strict errors that name the line.

Lines are read in bounded pieces (:func:`read_line`, capped by :func:`max_line_bytes`) and decoded as strict
UTF-8; values are parsed by orjson first and by ``json`` for the messages, and NaN, Infinity, over-long ints,
deep nesting and lone surrogates are refused, so every value read can be written back (:func:`dump_line`).
Where the bytes come from is :mod:`marsctl.inputs`'s job, row shapes :mod:`marsctl.shapes`'s, and reading and
writing records in every format :mod:`marsctl.records`'s.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

import orjson

from marsctl.errors import DataError
from marsctl.inputs import PIECE, read_error

MAX_DEPTH = 100  # JSON nesting below a row; deeper values are refused so they can always be written back
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # in strictly decoded text, the only way to a surrogate


def _field_name(path: tuple[Any, ...]) -> str:
    """``('meta', 'tags', 2)`` as ``meta.tags[2]``, with lone surrogates shown as ``\\udXXX`` escapes."""
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path[1:])
    return (str(path[0]) + text).encode("utf-8", "backslashreplace").decode("utf-8")


def _check_text(text: str, path: tuple[Any, ...], where: str, *, key: bool = False) -> None:
    """Refuse a string holding a lone surrogate (it is not Unicode text and cannot be written as UTF-8)."""
    bad = _SURROGATE.search(text)
    if bad:
        if key:
            subject = f"a key in field '{_field_name(path)}'" if path else "a field name"
        else:
            subject = f"field '{_field_name(path)}'"
        code = f"\\u{ord(bad.group()):04x}"
        msg = (f"{where}: {subject} holds a lone surrogate ({code} at character {bad.start()}), "
               "which is not valid Unicode and cannot be written as UTF-8")
        raise DataError(msg)


def check_values(row: dict[str, Any] | list[Any], where: str) -> None:
    """Check every key and string below ``row`` is valid Unicode and nesting stays within ``MAX_DEPTH``."""
    stack: list[tuple[tuple[Any, ...], Any]] = [((), row)]
    while stack:
        path, value = stack.pop()
        if len(path) > MAX_DEPTH:
            msg = f"{where}: field '{_field_name(path[:3])}' is nested more than {MAX_DEPTH} levels deep"
            raise DataError(msg)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str):
                _check_text(key, path, where, key=True)
            if isinstance(item, str):
                _check_text(item, (*path, key), where)
            elif isinstance(item, dict | list):
                stack.append(((*path, key), item))



_BOM = b"\xef\xbb\xbf"
_MAGIC = (  # what a file that is not JSONL text often starts with
    (b"PAR1", "a Parquet file", "give its path instead (marsctl reads Parquet files, not Parquet on a pipe)"),
    (b"PK\x03\x04", "a zip file", "unzip it first"),
    (b"\xff\xfe", "UTF-16 text", "save it as UTF-8, e.g. iconv -f utf-16 -t utf-8 FILE > FILE.utf8"),
    (b"\xfe\xff", "UTF-16 text", "save it as UTF-8, e.g. iconv -f utf-16 -t utf-8 FILE > FILE.utf8"),
)
UTF8_HINT = "marsctl reads UTF-8; convert the file, e.g. iconv -f cp1252 -t utf-8 FILE > FILE.utf8"


class BadNumber(Exception):
    """Raised inside json.loads by the number hooks; becomes a DataError naming the line."""


def _refuse_constant(text: str) -> Any:
    msg = f"{text} is not valid JSON (NaN and Infinity are not numbers; use null or a finite number)"
    raise BadNumber(msg)


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        msg = f"the number {text[:40]} is too large for a float"
        raise BadNumber(msg)
    return value


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        msg = f"an integer with {len(text.lstrip('-'))} digits (at most {sys.get_int_max_str_digits()} allowed)"
        raise BadNumber(msg) from None


DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_parse_float, parse_int=_parse_int)
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)  # built once: dumps runs per record
_MISSING = object()
_HUGE = float(2**63)  # orjson reads an int outside [-2**63, 2**64) as a float: at least this large


def _has_huge_float(value: Any) -> bool:
    """Whether a parsed value holds a float of magnitude at least ``2**63`` (at any depth)."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is float:
            if not -_HUGE < item < _HUGE:
                return True
        elif kind is dict:
            stack.extend(v for v in item.values() if type(v) is not str)
        elif kind is list:
            stack.extend(item)
    return False


def _parse_json_line(text: str, where: str) -> Any:
    """Parse one JSON line; NaN, Infinity, a huge int, deep nesting or a lone surrogate is a DataError.

    orjson parses first (fast); whatever it refuses (NaN, 1e400, a huge int, a lone surrogate, deep
    nesting, bad JSON) is parsed again by ``json``, which accepts it or gives the message.
    """
    value = _MISSING
    with contextlib.suppress(orjson.JSONDecodeError):
        value = orjson.loads(text)
    if value is not _MISSING and _has_huge_float(value):  # maybe an int past 64 bits, which orjson makes a float
        value = _MISSING
    try:
        if value is _MISSING:
            value = DECODER.decode(text)
        if isinstance(value, dict | list) and (
                _SURROGATE_ESCAPE.search(text) or text.count("[") + text.count("{") > MAX_DEPTH):
            check_values(value, where)
        return value
    except BadNumber as e:
        msg = f"{where}: {e}"
    except json.JSONDecodeError as e:
        msg = f"{where}: invalid JSON ({e.msg} at column {e.colno})"
    except RecursionError:
        msg = f"{where}: invalid JSON (nested too deeply; rows may nest {MAX_DEPTH} levels)"
    except ValueError as e:
        msg = f"{where}: invalid JSON ({e})"
    raise DataError(msg)


MAX_LINE_ENV = "MARSCTL_MAX_LINE_BYTES"
_MAX_LINE = 64 << 20


def max_line_bytes() -> int:
    """The most bytes one input line may hold: 64 MiB, or ``$MARSCTL_MAX_LINE_BYTES``.

    The same cap bounds a CSV row and a JSON-array element, after decompression. A line is read in
    pieces of at most 1 MiB, so refusing a longer one costs at most the cap plus one piece of memory,
    however much a few compressed bytes expand to (a 99 KB ``.zst`` can hold a 4 GB line). Why 64 MiB:
    a real row is far smaller (a 128k-token conversation is about 0.5 MB of text; the largest rows of
    the preference sets marsctl reads are under 1 MB), while parsing a 64 MiB line costs a few hundred
    MB at most, well inside any machine that runs marsctl. A larger (or smaller) cap is a number of
    bytes in ``MARSCTL_MAX_LINE_BYTES``.
    """
    raw = os.environ.get(MAX_LINE_ENV, "").strip()
    if not raw:
        return _MAX_LINE
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        from marsctl.errors import ConfigError

        msg = f"{MAX_LINE_ENV}={raw[:40]!r}: must be a whole number of bytes, at least 1 (default {_MAX_LINE})"
        raise ConfigError(msg)
    return value


def _size(n: int) -> str:
    """``67108864`` as ``64 MiB``; other sizes in bytes.

    >>> _size(64 << 20), _size(1000)
    ('64 MiB', '1000 bytes')
    """
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n} bytes"


def too_long(where: str, what: str, cap: int) -> DataError:
    """The DataError for a line (row, element) longer than ``cap`` bytes, with the hint that raises the cap."""
    msg = (f"{where}: {what} is longer than {_size(cap)}, the most marsctl reads "
           "(a decompression bomb, or a file that is not line-delimited?)")
    return DataError(msg, hint=f"to read longer lines, set {MAX_LINE_ENV} to a number of bytes")


def _read_piece(fh: BinaryIO, name: str) -> bytes:
    import lzma

    try:
        return fh.readline(PIECE)
    except (OSError, ValueError, EOFError, lzma.LZMAError) as e:
        raise read_error(e, name) from None


def _check_start(piece: bytes, name: str) -> None:
    """Refuse a file whose first bytes say it is compressed, Parquet or UTF-16 rather than JSONL."""
    for magic, what, hint in _MAGIC:
        if piece.startswith(magic):
            msg = f"{name} line 1: looks like {what}; marsctl reads plain JSONL"
            raise DataError(msg, hint=hint)


def read_line(fh: BinaryIO, name: str, lineno: int, offset: int, cap: int | None = None) -> bytes:
    """The next line's bytes (newline included; empty at the end); a NUL byte or a line over ``cap`` is a DataError.

    The line is read in pieces of at most 1 MiB, so memory stays within ``cap`` (:func:`max_line_bytes`)
    plus one piece, whatever the line's length.
    """
    cap = max_line_bytes() if cap is None else cap
    parts: list[bytes] = []
    size = 0
    while piece := _read_piece(fh, name):
        if lineno == 1 and not parts:
            _check_start(piece, name)
        nul = piece.find(b"\0")
        if nul >= 0:
            msg = (f"{name} line {lineno}: NUL byte at byte offset {offset + size + nul} "
                   "(a binary file? marsctl reads UTF-8 JSONL)")
            raise DataError(msg)
        parts.append(piece)
        size += len(piece)
        if size > cap + (piece.endswith(b"\n")):  # the newline is not counted
            raise too_long(f"{name} line {lineno}", "the line", cap)
        if piece.endswith(b"\n"):
            break
    return b"".join(parts)


def decode_line(raw: bytes, name: str, lineno: int, offset: int) -> str:
    """Strict UTF-8, naming the byte offset of the first bad byte; a BOM on line 1 is dropped."""
    skip = len(_BOM) if lineno == 1 and raw.startswith(_BOM) else 0
    if not skip and raw.startswith(_BOM):
        msg = (f"{name} line {lineno}: a UTF-8 byte-order mark (BOM) starts the line; only line 1 may have one "
               "(were files joined with cat?)")
        raise DataError(msg)
    try:
        return raw[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        col = skip + e.start
        msg = (f"{name} line {lineno}: not valid UTF-8 at byte offset {offset + col} "
               f"(byte 0x{raw[col]:02x}, byte {col + 1} of the line)")
        raise DataError(msg, hint=UTF8_HINT) from None


def json_lines(fh: BinaryIO, name: str) -> Iterator[tuple[int, Any, str]]:
    """Yield ``(line number, parsed value, name)`` for each non-blank line of an open (already decompressed) stream.

    ``name`` is the input's name in messages. Lines end at ``\\n`` (``\\r\\n`` is fine) and are decoded as strict
    UTF-8; a BOM on line 1 is dropped. Invalid UTF-8, NUL bytes, a compressed or Parquet file, and JSON that
    Python would turn into NaN, Infinity, an over-long int or a RecursionError are DataErrors naming the line,
    as are lone surrogates (``"\\ud800"``), nesting deeper than ``MAX_DEPTH`` and a line longer than
    :func:`max_line_bytes`: every value yielded can be written back as UTF-8.
    """
    cap = max_line_bytes()
    lineno, offset = 1, 0
    while raw := read_line(fh, name, lineno, offset, cap):
        text = decode_line(raw, name, lineno, offset)
        if text.strip():
            yield lineno, _parse_json_line(text, f"{name} line {lineno}"), name
        lineno, offset = lineno + 1, offset + len(raw)


def strip_private(rec: dict[str, Any]) -> dict[str, Any]:
    """Drop bookkeeping keys (leading underscore) before writing."""
    return {k: v for k, v in rec.items() if not k.startswith("_")}


def dump_line(rec: dict[str, Any]) -> str:
    """One row as a JSON line (no trailing newline, private keys dropped); NaN and Infinity are refused, never written.

    Records are written through :func:`marsctl.records.dumps`, which first puts conversational messages back.
    """
    try:
        return _ENCODER.encode(strip_private(rec))  # what json.dumps(ensure_ascii=False, allow_nan=False) gives
    except ValueError:
        where = f"line {rec['_line']}" if "_line" in rec else f"record {rec.get('id', '?')!r}"
        bad = [k for k, v in rec.items() if isinstance(v, float) and not math.isfinite(v)]
        field = f" field {bad[0]!r}" if bad else ""
        msg = f"{where}:{field} holds NaN or Infinity, which JSON cannot carry; nothing was written"
        raise DataError(msg) from None
