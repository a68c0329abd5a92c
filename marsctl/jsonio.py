"""JSONL at the byte level: read lines strictly (UTF-8 with offsets, format sniffing, safe values), write atomically.

Row shapes (prompt/chosen/rejected, ids) are :mod:`marsctl.records`'s job.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from marsctl.errors import DataError

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


_STDIN_HINT = "give a JSONL file, or pipe records in: ... | marsctl COMMAND -"
_BOM = b"\xef\xbb\xbf"
_PIECE = 1 << 20  # lines are read in pieces of at most this many bytes, so NULs are caught early
# compressed JSONL is read through a decompressor (gzip, zstd, xz), found by these first bytes
COMPRESSION = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd", b"\xfd7zXZ\x00": "xz"}
_MAGIC = (  # what a file that is not JSONL text often starts with
    (b"PAR1", "a Parquet file", "give its path instead (marsctl reads Parquet files, not Parquet on a pipe)"),
    (b"PK\x03\x04", "a zip file", "unzip it first"),
    (b"\xff\xfe", "UTF-16 text", "save it as UTF-8, e.g. iconv -f utf-16 -t utf-8 FILE > FILE.utf8"),
    (b"\xfe\xff", "UTF-16 text", "save it as UTF-8, e.g. iconv -f utf-16 -t utf-8 FILE > FILE.utf8"),
)
_UTF8_HINT = "marsctl reads UTF-8; convert the file, e.g. iconv -f cp1252 -t utf-8 FILE > FILE.utf8"


class _BadNumber(Exception):
    """Raised inside json.loads by the number hooks; becomes a DataError naming the line."""


def _refuse_constant(text: str) -> Any:
    msg = f"{text} is not valid JSON (NaN and Infinity are not numbers; use null or a finite number)"
    raise _BadNumber(msg)


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        msg = f"the number {text[:40]} is too large for a float"
        raise _BadNumber(msg)
    return value


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        msg = f"an integer with {len(text.lstrip('-'))} digits (at most {sys.get_int_max_str_digits()} allowed)"
        raise _BadNumber(msg) from None


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_parse_float, parse_int=_parse_int)
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
            value = _DECODER.decode(text)
        if isinstance(value, dict | list) and (
                _SURROGATE_ESCAPE.search(text) or text.count("[") + text.count("{") > MAX_DEPTH):
            check_values(value, where)
        return value
    except _BadNumber as e:
        msg = f"{where}: {e}"
    except json.JSONDecodeError as e:
        msg = f"{where}: invalid JSON ({e.msg} at column {e.colno})"
    except RecursionError:
        msg = f"{where}: invalid JSON (nested too deeply; rows may nest {MAX_DEPTH} levels)"
    except ValueError as e:
        msg = f"{where}: invalid JSON ({e})"
    raise DataError(msg)


def _stdin_bytes() -> BinaryIO:
    """The binary stdin; a closed stdin (``<&-``) is a DataError."""
    stdin = sys.stdin
    if stdin is None or getattr(stdin, "closed", False):
        msg = "no input: stdin is closed"
        raise DataError(msg, hint=_STDIN_HINT)
    buffer = getattr(stdin, "buffer", None)
    if buffer is not None:
        return buffer
    return io.BytesIO(stdin.read().encode("utf-8", "surrogatepass"))  # a text-only stream, e.g. io.StringIO


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


def compression_of(head: bytes) -> str | None:
    r"""The compression a file's first bytes announce (gzip, zstd, xz), or None.

    >>> compression_of(b"\x1f\x8b\x08"), compression_of(b'{"a": 1}')
    ('gzip', None)
    """
    return next((kind for magic, kind in COMPRESSION.items() if head.startswith(magic)), None)


def decompressing(src: BinaryIO | Path, kind: str) -> BinaryIO:
    """A binary stream of decompressed bytes: of a path (which it opens and owns) or of an open stream (left open)."""
    import gzip
    import lzma

    if kind == "gzip" and isinstance(src, Path):
        raw: Any = gzip.open(src, "rb")  # noqa: SIM115 (the returned stream owns it; the caller closes that)
    elif kind == "gzip":
        raw = gzip.GzipFile(fileobj=src, mode="rb")  # type: ignore[arg-type]
    elif kind == "xz":
        raw = lzma.open(src, "rb")  # noqa: SIM115
    else:
        import zstandard

        raw = (zstandard.open(src, "rb") if isinstance(src, Path)
               else zstandard.ZstdDecompressor().stream_reader(src, read_across_frames=True, closefd=False))
    return io.BufferedReader(raw)


def read_once(path: str | os.PathLike) -> bool:
    """Whether an input's bytes can be read only once: stdin (``-``), a pipe or FIFO (``<(...)``), a device.

    Such an input is opened once and sniffed from that same handle (:func:`open_input`); a command that
    reads its input twice copies it first (:func:`rereadable`). A regular file or folder can be reopened.
    """
    if str(path) == "-":
        return True
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISBLK(mode))


class _Prefixed(io.RawIOBase):
    """A stream whose first bytes were already read (``head``), with them put back in front; ``src`` is left open."""

    def __init__(self, head: bytes, src: BinaryIO) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._src = src
        self._read = getattr(src, "read1", src.read)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if len(self._head):
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._read(len(view))
        view[:len(data)] = data
        return len(data)


def _read_error(e: BaseException, name: str) -> DataError:
    """A failed read of ``name`` (stdin, a file, a damaged compressed stream) as a DataError."""
    reason = getattr(e, "strerror", None) or e or "the compressed stream ends early"
    if name == "<stdin>":
        return DataError(f"no input: stdin cannot be read ({reason})", hint=_STDIN_HINT)
    return DataError(f"{name}: cannot read ({reason})")


def _read_exactly(fh: BinaryIO, n: int, name: str) -> bytes:
    """Up to ``n`` bytes: fewer only at the end of the input (a pipe's short reads are read on from)."""
    import lzma

    parts: list[bytes] = []
    size = 0
    try:
        while size < n and (piece := fh.read(n - size)):
            parts.append(piece)
            size += len(piece)
    except (OSError, ValueError, EOFError, lzma.LZMAError) as e:
        raise _read_error(e, name) from None
    return b"".join(parts)


def sniff(fh: BinaryIO, n: int, name: str, stack: contextlib.ExitStack) -> tuple[BinaryIO, bytes]:
    """``(the same bytes as fh, its first n bytes)``: read from ``fh`` once, never by opening the input again."""
    head = _read_exactly(fh, n, name)
    return stack.enter_context(io.BufferedReader(_Prefixed(head, fh), buffer_size=1 << 16)), head


def open_input(path: str | os.PathLike, stack: contextlib.ExitStack) -> tuple[BinaryIO, bytes, str]:
    """Open an input once (a file, a pipe, or stdin for ``-``): ``(its bytes, their first 6, its name)``.

    The first bytes (for format sniffing) are read from the same handle and given back in front of the
    stream, so a pipe or FIFO loses nothing. ``stack`` closes what was opened (never stdin).
    """
    if str(path) == "-":
        return (*sniff(_stdin_bytes(), 6, "<stdin>", stack), "<stdin>")
    p = Path(path)
    try:
        fh = stack.enter_context(p.open("rb"))
    except FileNotFoundError:
        msg = f"{p}: no such file"
    except IsADirectoryError:
        msg = f"{p}: is a directory, expected a JSONL file"
    except (OSError, ValueError) as e:
        msg = f"{p}: cannot open ({getattr(e, 'strerror', None) or e})"
    else:
        return (*sniff(fh, 6, str(p), stack), str(p))
    raise DataError(msg)


def decompressed(fh: BinaryIO, head: bytes, name: str, stack: contextlib.ExitStack) -> BinaryIO:
    """``fh``, or its decompressed bytes when ``head`` starts with a gzip, zstd or xz header (same handle)."""
    import lzma

    kind = compression_of(head)
    if kind is None:
        return fh
    try:
        return stack.enter_context(decompressing(fh, kind))
    except (OSError, ValueError, EOFError, lzma.LZMAError) as e:
        raise _read_error(e, name) from None


def _read_piece(fh: BinaryIO, name: str) -> bytes:
    import lzma

    try:
        return fh.readline(_PIECE)
    except (OSError, ValueError, EOFError, lzma.LZMAError) as e:
        raise _read_error(e, name) from None


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


_read_line = read_line


def _decode_line(raw: bytes, name: str, lineno: int, offset: int) -> str:
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
        raise DataError(msg, hint=_UTF8_HINT) from None


decode_line = _decode_line


def iter_json_lines(path: str | os.PathLike, name: str | None = None) -> Iterator[tuple[int, Any, str]]:
    """Yield ``(line number, parsed value, file name)`` for each non-blank line of a JSONL file.

    ``name`` replaces the file's name in messages (a spooled copy of stdin reads as ``<stdin>``).

    Lines end at ``\\n`` (``\\r\\n`` is fine) and are decoded as strict UTF-8; a BOM on line 1 is dropped.
    Invalid UTF-8, NUL bytes, a compressed or Parquet file, and JSON that Python would turn into NaN,
    Infinity, an over-long int or a RecursionError are DataErrors naming the line, as are lone surrogates
    (``"\\ud800"``), nesting deeper than ``MAX_DEPTH`` and a line longer than :func:`max_line_bytes`:
    every value yielded can be written back as UTF-8. The input is opened once (a pipe loses nothing).
    """
    with contextlib.ExitStack() as stack:
        fh, head, opened = open_input(path, stack)
        name = name or opened
        yield from json_lines(decompressed(fh, head, name, stack), name)


def json_lines(fh: BinaryIO, name: str) -> Iterator[tuple[int, Any, str]]:
    """:func:`iter_json_lines` of an open (already decompressed) stream."""
    cap = max_line_bytes()
    lineno, offset = 1, 0
    while raw := read_line(fh, name, lineno, offset, cap):
        text = _decode_line(raw, name, lineno, offset)
        if text.strip():
            yield lineno, _parse_json_line(text, f"{name} line {lineno}"), name
        lineno, offset = lineno + 1, offset + len(raw)


def iter_json_array(fh: BinaryIO, name: str) -> Iterator[tuple[int, Any]]:
    """Yield ``(row number, value)`` for each element of a JSON array (``[{...}, ...]``), read in bounded pieces.

    Memory stays within :func:`max_line_bytes` per element (plus a piece): a longer element is a DataError,
    as are invalid UTF-8, a NUL byte, invalid JSON, NaN, Infinity, an over-long int, deep nesting and lone
    surrogates (checked as JSONL lines are), and anything after the closing ``]``.
    """
    reader = _ArrayReader(fh, name, max_line_bytes())
    yield from reader.elements()


class _ArrayReader:
    """The elements of a JSON array, decoded incrementally: at most one element (and one piece) is held."""

    _WS = " \t\r\n"

    def __init__(self, fh: BinaryIO, name: str, cap: int) -> None:
        import codecs

        self.fh, self.name, self.cap = fh, name, cap
        self.text = ""  # decoded, not yet parsed (from self.pos)
        self.pos = 0
        self.pending: list[str] = []  # decoded pieces after self.text, joined to it only when parsed
        self.pending_chars = 0
        self.held = 0  # UTF-8 bytes of self.text and self.pending
        self.done = 0  # bytes read before self.text
        self.line = 1  # line number at the start of self.text
        self.eof = False
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.first = True

    def _join(self) -> None:
        """Append the pending pieces to the text (once per parse, not once per piece: linear time)."""
        if self.pending:
            self.text = "".join([self.text, *self.pending])
            self.pending.clear()
            self.pending_chars = 0

    def _trim(self) -> None:
        """Drop the text already parsed, keeping the byte and line counts."""
        if self.pos:
            gone = self.text[:self.pos]
            size = len(gone.encode("utf-8", "surrogatepass"))
            self.done += size
            self.held -= size
            self.line += gone.count("\n")
            self.text, self.pos = self.text[self.pos:], 0

    def _more(self, row: int | None = None) -> bool:
        """Read one more piece; False at the end of the input. With ``row``, the text held (from the start of
        that row's element, which is not complete) must not pass the cap."""
        if self.eof:
            return False
        self._trim()
        if row is not None and self.held > self.cap:
            raise too_long(f"{self.name} row {row}", "the array element", self.cap)
        raw = _read_exactly(self.fh, _PIECE, self.name)
        nul = raw.find(b"\0")
        if nul >= 0:
            msg = f"{self.name}: NUL byte at byte offset {self.done + self.held + nul} (a binary file?)"
            raise DataError(msg)
        try:
            piece = self.decoder.decode(raw, final=not raw)
        except UnicodeDecodeError as e:
            msg = f"{self.name}: not valid UTF-8 at byte offset {self.done + self.held + e.start}"
            raise DataError(msg, hint=_UTF8_HINT) from None
        if self.first:
            piece = piece.removeprefix("\ufeff")
            self.first = False
        self.eof = not raw
        self.held += len(piece.encode("utf-8", "surrogatepass"))
        self.pending.append(piece)
        self.pending_chars += len(piece)
        return bool(raw)

    def _skip_ws(self) -> str:
        """The next character that is not white space ('' at the end), not consumed."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in self._WS:
                self.pos += 1
            if self.pos < len(self.text):
                return self.text[self.pos]
            more = self._more()
            self._join()
            if not more:
                return ""

    def _expect(self, allowed: str, row: int) -> str:
        char = self._skip_ws()
        if not char or char not in allowed:
            found = repr(char) if char else "the end of the file"
            want = " or ".join(repr(c) for c in allowed)
            msg = f"{self.name} row {row}: invalid JSON array (expected {want}, found {found})"
            raise DataError(msg)
        self.pos += 1
        return char

    def elements(self) -> Iterator[tuple[int, Any]]:
        self._expect("[", 1)
        row = 1
        if self._skip_ws() == "]":
            self.pos += 1
        else:
            while True:
                yield row, self._element(row)
                if self._expect(",]", row + 1) == "]":
                    break
                row += 1
        if self._skip_ws():
            msg = f"{self.name} row {row}: text after the JSON array's closing ']'"
            raise DataError(msg)

    def _element(self, row: int) -> Any:
        self._skip_ws()
        tried = 0
        while True:
            pending = len(self.text) - self.pos + self.pending_chars
            if pending >= 2 * tried or self.eof:  # parse again only when the text has doubled: linear time
                self._join()
                tried = max(pending, 1)
                value = self._decode(row)
                if value is not _MISSING:
                    return value
            self._more(row)

    def _decode(self, row: int) -> Any:
        """The element at ``pos`` (moving past it), or _MISSING when more text may complete it."""
        where = f"{self.name} row {row}"
        start = self.pos
        try:
            value, end = _DECODER.raw_decode(self.text, start)
        except json.JSONDecodeError as e:
            if self.eof or (e.pos < len(self.text) - 64 and not e.msg.startswith("Unterminated string")):
                line = self.line + self.text.count("\n", 0, e.pos)
                msg = f"{where}: invalid JSON ({e.msg} at line {line})"
                raise DataError(msg) from None
            return _MISSING
        except _BadNumber as e:
            raise DataError(f"{where}: {e}") from None
        except RecursionError:
            msg = f"{where}: invalid JSON (nested too deeply; rows may nest {MAX_DEPTH} levels)"
            raise DataError(msg) from None
        except ValueError as e:
            raise DataError(f"{where}: invalid JSON ({e})") from None
        if end == len(self.text) and not self.eof:
            return _MISSING  # a number or literal may go on in the next piece
        if (end - start) * 4 > self.cap and len(self.text[start:end].encode("utf-8", "surrogatepass")) > self.cap:
            raise too_long(where, "the array element", self.cap)
        if isinstance(value, dict | list):
            check_values(value, where)
        self.pos = end
        return value


@contextlib.contextmanager
def rereadable(path: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """Yield ``(a file that can be read more than once, its name for messages)`` for any input.

    A command that checks its whole input before its first output reads it twice. An input that can be
    read only once (stdin, a pipe or FIFO, a device: :func:`read_once`) is first copied to a temporary
    file in ``$TMPDIR`` that keeps its extensions (``pairs.csv.gz`` stays CSV), removed afterwards.
    A failed read is a DataError, so a short copy never passes for the whole input.
    """
    if not read_once(path):
        yield str(path), str(path)
        return
    name = "<stdin>" if str(path) == "-" else str(path)
    suffix = "".join(s for s in Path(path).suffixes if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", s)) or ".jsonl"
    with contextlib.ExitStack() as stack:
        if str(path) == "-":
            src = _stdin_bytes()
        else:
            src, _, _ = open_input(path, stack)
        tmp = spool(src, name, suffix, stack, prefix="marsctl-stdin-" if name == "<stdin>" else "marsctl-input-")
        yield tmp, name


def spool(src: BinaryIO, name: str, suffix: str, stack: contextlib.ExitStack, *,
          prefix: str = "marsctl-input-") -> str:
    """Copy the rest of the read-once stream ``src`` into a new temporary file in ``$TMPDIR``; its path.

    The file is removed when ``stack`` closes. A failed read is a DataError and a failed write an
    OutputError, so a short copy never passes for the whole input.
    """
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix)
    stack.callback(_unlink_quietly, tmp)
    with os.fdopen(fd, "wb") as fh:
        while piece := _read_stdin(src, name):
            try:
                fh.write(piece)
            except OSError as e:
                from marsctl.outputs import write_failed

                raise write_failed(f"a copy of {name} ({tmp})", e) from None
    return tmp


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _read_stdin(src: BinaryIO, name: str = "<stdin>") -> bytes:
    """The next piece of a read-once input's bytes (empty at the end); a failed read is a DataError."""
    try:
        return src.read(_PIECE)
    except (OSError, ValueError) as e:
        raise _read_error(e, name) from None


def strip_private(rec: dict[str, Any]) -> dict[str, Any]:
    """Drop bookkeeping keys (leading underscore) before writing."""
    return {k: v for k, v in rec.items() if not k.startswith("_")}


def dumps(rec: dict[str, Any]) -> str:
    """One record as a JSON line (no trailing newline); NaN and Infinity are refused, never written.

    A record read from conversational rows is written with its messages (:func:`marsctl.shapes.restore`).
    """
    out = rec
    if "_source" in rec:
        from marsctl.shapes import restore

        out = restore(rec)
    try:
        return _ENCODER.encode(strip_private(out))  # what json.dumps(ensure_ascii=False, allow_nan=False) gives
    except ValueError:
        where = f"line {rec['_line']}" if "_line" in rec else f"record {rec.get('id', '?')!r}"
        bad = [k for k, v in rec.items() if isinstance(v, float) and not math.isfinite(v)]
        field = f" field {bad[0]!r}" if bad else ""
        msg = f"{where}:{field} holds NaN or Infinity, which JSON cannot carry; nothing was written"
        raise DataError(msg) from None


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[io.TextIOBase]:
    """Write text to a temporary file beside ``path`` and ``os.replace`` it in on success.

    Nothing is left at ``path`` when the block raises; temporaries are named
    ``.NAME.marsctl-PID-XXXX.tmp``, and stale ones of dead processes are removed first. A device,
    pipe or ``/dev/stdout`` is written in place and never replaced (:func:`marsctl.outputs.binary_output`).
    An OSError (a full disk) becomes an ``OutputError`` naming the file.
    """
    from marsctl.outputs import binary_output

    with binary_output(path) as raw:
        fh = io.TextIOWrapper(raw, encoding="utf-8")
        try:
            yield fh
            fh.flush()
        finally:
            fh.detach()


def write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write bytes (a PNG) atomically, as :func:`atomic_writer` writes text; a device or pipe is written in place."""
    from marsctl.outputs import binary_output

    with binary_output(path) as fh:
        fh.write(data)


def write_records(records: Iterable[dict[str, Any]], path: str | os.PathLike) -> int:
    """Write records as JSONL to ``path`` (atomically) or to stdout for ``-``; return the count.

    Records are streamed (memory does not grow with their number); a bad record still leaves no
    partial output: a file is renamed into place at the end, and stdout, a device or a pipe gets the
    records only once all were encoded (spooled to ``$TMPDIR`` meanwhile). A file named ``.parquet``,
    ``.csv``, ``.jsonl.gz`` or ``.jsonl.zst`` is written in that format (:func:`marsctl.formats.record_writer`).
    """
    n = 0
    with record_writer(path, hold=True) as write:
        for r in records:
            write(r)
            n += 1
    return n


@contextlib.contextmanager
def record_writer(path: str | os.PathLike, *, hold: bool = False) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Stream records to ``path`` (atomically: nothing is left there when the block raises) or to stdout for ``-``.

    Yields ``write(record)``. On stdout each record is written as it comes, so a caller that must not
    leave partial output on bad input checks its input before the first write, or passes ``hold``:
    then stdout (or a device or pipe other than ``/dev/null``) gets the records only when the block
    ends without an error, from a temporary file in ``$TMPDIR``. A file named for another format
    (``.parquet``, ``.csv``, ``.jsonl.gz``, ``.jsonl.zst``) is written in it, streamed as well
    (:func:`marsctl.formats.record_writer`).
    """
    if str(path) == "-":
        if hold:
            with _held(path) as write:
                yield write
        else:
            yield lambda rec: write_stdout(dumps(rec) + "\n")
        return
    from marsctl import formats

    with formats.record_writer(path, hold=hold) as write:
        yield write


@contextlib.contextmanager
def _held(path: str | os.PathLike) -> Iterator[Callable[[dict[str, Any]], None]]:
    """``write(record)`` into a temporary file, copied to stdout at the end (devices and pipes:
    :func:`marsctl.outputs.held_output`)."""
    import tempfile

    from marsctl.outputs import write_failed

    try:
        spool = tempfile.TemporaryFile("w+", encoding="utf-8", prefix="marsctl-out-")  # noqa: SIM115 (closed below)
    except OSError as e:
        raise write_failed("a temporary copy of the output", e) from None
    with spool:

        def write(rec: dict[str, Any]) -> None:
            line = dumps(rec) + "\n"
            try:
                spool.write(line)
            except OSError as e:
                raise write_failed("a temporary copy of the output", e) from None

        yield write
        try:
            spool.seek(0)
        except OSError as e:
            raise write_failed("a temporary copy of the output", e) from None
        while piece := spool.read(_PIECE):
            write_stdout(piece)


def write_stdout(text: str) -> None:
    """Write to stdout; a failed write (a full disk, a closed pipe) becomes a clear error."""
    from marsctl.outputs import write_failed

    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        _detach_stdout()
        raise write_failed("stdout", e) from None


def _detach_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's exit flush cannot fail a second time."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write one JSON document atomically (NaN and Infinity are refused, never written)."""
    text = json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False, allow_nan=False)
    with atomic_writer(path) as fh:
        fh.write(text + "\n")
