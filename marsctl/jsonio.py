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


def _peek(fh: BinaryIO, n: int) -> bytes:
    if hasattr(fh, "peek"):
        return fh.peek(n)[:n]
    pos = fh.tell()
    head = fh.read(n)
    fh.seek(pos)
    return head


def _maybe_decompress(fh: BinaryIO, path: Path | None) -> BinaryIO:
    """``fh``, or its decompressed bytes when it starts with a gzip, zstd or xz header."""
    kind = compression_of(_peek(fh, 6))
    if kind is None:
        return fh
    if path is None:
        return decompressing(fh, kind)
    fh.close()
    return decompressing(path, kind)


def _open_bytes(path: str | os.PathLike) -> tuple[BinaryIO, str]:
    """Open a JSONL file (or stdin for ``-``) for reading bytes, decompressing gzip, zstd and xz; return it with
    its display name."""
    if str(path) == "-":
        return _maybe_decompress(_stdin_bytes(), None), "<stdin>"
    p = Path(path)
    try:
        return _maybe_decompress(p.open("rb"), p), str(p)
    except FileNotFoundError:
        msg = f"{p}: no such file"
    except IsADirectoryError:
        msg = f"{p}: is a directory, expected a JSONL file"
    except (OSError, ValueError) as e:
        msg = f"{p}: cannot open ({getattr(e, 'strerror', None) or e})"
    raise DataError(msg)


def _read_piece(fh: BinaryIO, name: str) -> bytes:
    import lzma

    try:
        return fh.readline(_PIECE)
    except (OSError, ValueError, EOFError, lzma.LZMAError) as e:
        reason = getattr(e, "strerror", None) or e or "the compressed stream ends early"
        msg = f"no input: stdin cannot be read ({reason})" if name == "<stdin>" else f"{name}: cannot read ({reason})"
        raise DataError(msg, hint=_STDIN_HINT if name == "<stdin>" else None) from None


def _check_start(piece: bytes, name: str) -> None:
    """Refuse a file whose first bytes say it is compressed, Parquet or UTF-16 rather than JSONL."""
    for magic, what, hint in _MAGIC:
        if piece.startswith(magic):
            msg = f"{name} line 1: looks like {what}; marsctl reads plain JSONL"
            raise DataError(msg, hint=hint)


def _read_line(fh: BinaryIO, name: str, lineno: int, offset: int) -> bytes:
    """The next line's bytes (newline included; empty at the end); a NUL byte is a DataError."""
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
        if piece.endswith(b"\n"):
            break
    return b"".join(parts)


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


def iter_json_lines(path: str | os.PathLike, name: str | None = None) -> Iterator[tuple[int, Any, str]]:
    """Yield ``(line number, parsed value, file name)`` for each non-blank line of a JSONL file.

    ``name`` replaces the file's name in messages (a spooled copy of stdin reads as ``<stdin>``).

    Lines end at ``\\n`` (``\\r\\n`` is fine) and are decoded as strict UTF-8; a BOM on line 1 is dropped.
    Invalid UTF-8, NUL bytes, a compressed or Parquet file, and JSON that Python would turn into NaN,
    Infinity, an over-long int or a RecursionError are DataErrors naming the line, as are lone surrogates
    (``"\\ud800"``) and nesting deeper than ``MAX_DEPTH``: every value yielded can be written back as UTF-8.
    """
    fh, opened = _open_bytes(path)
    name = name or opened
    try:
        lineno, offset = 1, 0
        while raw := _read_line(fh, name, lineno, offset):
            text = _decode_line(raw, name, lineno, offset)
            if text.strip():
                yield lineno, _parse_json_line(text, f"{name} line {lineno}"), name
            lineno, offset = lineno + 1, offset + len(raw)
    finally:
        if str(path) != "-":
            fh.close()


@contextlib.contextmanager
def rereadable(path: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """Yield ``(a file that can be read more than once, its name for messages)`` for a file or ``-``.

    A command that checks its whole input before its first output reads it twice; stdin can be read
    only once, so its bytes are first copied to a temporary file (in ``$TMPDIR``), removed afterwards.
    """
    if str(path) != "-":
        yield str(path), str(path)
        return
    import tempfile

    src = _stdin_bytes()
    fd, tmp = tempfile.mkstemp(prefix="marsctl-stdin-", suffix=".jsonl")
    try:
        with os.fdopen(fd, "wb") as fh:
            while piece := _read_stdin(src):
                try:
                    fh.write(piece)
                except OSError as e:
                    from marsctl.outputs import write_failed

                    raise write_failed(f"a copy of stdin ({tmp})", e) from None
        yield tmp, "<stdin>"
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _read_stdin(src: BinaryIO) -> bytes:
    """The next piece of stdin's bytes (empty at the end); a failed read is a DataError."""
    try:
        return src.read(_PIECE)
    except (OSError, ValueError) as e:
        msg = f"no input: stdin cannot be read ({getattr(e, 'strerror', None) or e})"
        raise DataError(msg, hint=_STDIN_HINT) from None


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
    ``.NAME.marsctl-PID-XXXX.tmp``, and stale ones of dead processes are removed first. A device or
    pipe (``/dev/null``, ``/dev/stdout``) is written in place. An OSError (a full disk) becomes an
    ``OutputError`` naming the file.
    """
    from marsctl.outputs import is_special, new_temp_file, remove_stale, write_failed

    target = Path(path)
    if is_special(target):
        try:
            with target.open("w", encoding="utf-8") as fh:
                yield fh
        except OSError as e:
            raise write_failed(target, e) from None
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(target)
        fd, tmp = new_temp_file(target)
    except OSError as e:
        raise write_failed(target, e) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yield fh
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise write_failed(target, e) from None
        raise


def write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write bytes (a PNG) atomically, as :func:`atomic_writer` writes text (a temporary beside ``path``)."""
    from marsctl.outputs import new_temp_file, remove_stale, write_failed

    target = Path(path)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(target)
        fd, tmp = new_temp_file(target)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except OSError as e:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise write_failed(target, e) from None


def write_records(records: Iterable[dict[str, Any]], path: str | os.PathLike) -> int:
    """Write records as JSONL to ``path`` (atomically) or to stdout for ``-``; return the count.

    Every line is encoded before anything is written, so a bad record leaves no partial output. A file
    named ``.parquet``, ``.csv``, ``.jsonl.gz`` or ``.jsonl.zst`` is written in that format
    (:func:`marsctl.formats.record_writer`).
    """
    if _other_format(path):
        from marsctl import formats

        n = 0
        with formats.record_writer(path) as write:
            for r in records:
                write(r)
                n += 1
        return n
    lines = [dumps(r) + "\n" for r in records]
    if str(path) == "-":
        write_stdout("".join(lines))
    else:
        with atomic_writer(path) as fh:
            fh.writelines(lines)
    return len(lines)


@contextlib.contextmanager
def record_writer(path: str | os.PathLike, *, hold: bool = False) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Stream records to ``path`` (atomically: nothing is left there when the block raises) or to stdout for ``-``.

    Yields ``write(record)``. On stdout each record is written as it comes, so a caller that must not
    leave partial output on bad input checks its input before the first write, or passes ``hold``:
    then stdout (or a device other than ``/dev/null``) gets the records only when the block ends
    without an error, from a temporary file in ``$TMPDIR``. A file named for another format
    (``.parquet``, ``.csv``, ``.jsonl.gz``) is written in it, at the end of the block.
    """
    if hold and _is_stream(path):
        with _held(path) as write:
            yield write
        return
    if str(path) == "-":
        yield lambda rec: write_stdout(dumps(rec) + "\n")
        return
    if _other_format(path):
        from marsctl import formats

        with formats.record_writer(path) as write:
            yield write
        return
    with atomic_writer(path) as fh:

        def write(rec: dict[str, Any]) -> None:
            fh.write(dumps(rec) + "\n")

        yield write


def _is_stream(path: str | os.PathLike) -> bool:
    """Whether ``path`` is stdout (``-``) or a device or pipe written in place, ``/dev/null`` aside."""
    from marsctl.outputs import is_special

    return str(path) == "-" or (is_special(Path(path)) and str(path) != os.devnull)


@contextlib.contextmanager
def _held(path: str | os.PathLike) -> Iterator[Callable[[dict[str, Any]], None]]:
    """``write(record)`` into a temporary file, copied to stdout (``-``) or the device ``path`` at the end."""
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
        if str(path) == "-":
            while piece := spool.read(_PIECE):
                write_stdout(piece)
            return
        with atomic_writer(path) as fh:
            while piece := spool.read(_PIECE):
                fh.write(piece)


def _other_format(path: str | os.PathLike) -> bool:
    """Whether ``path``'s extension names a format other than plain JSONL (:mod:`marsctl.formats`)."""
    if str(path) == "-" or Path(path).suffix.lower() in (".jsonl", ".json", ""):
        return False
    from marsctl.formats import output_format

    return output_format(path) != "jsonl"


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
