"""Where input bytes come from: a file, a pipe or FIFO, or stdin (``-``), opened once and sniffed from that handle.

Compressed input (gzip, zstd, xz) is found by its first bytes and read through a decompressor. A command that
reads its input twice gets a copy of a read-once input (:func:`rereadable`, :func:`spool`). What the bytes hold
is read by :mod:`marsctl.jsonio` (JSONL), :mod:`marsctl.jsonarray` and :mod:`marsctl.formats`.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from marsctl.errors import DataError

_STDIN_HINT = "give a JSONL file, or pipe records in: ... | marsctl COMMAND -"
PIECE = 1 << 20  # input is read in pieces of at most this many bytes, so NULs and over-long lines are caught early
# compressed input is read through a decompressor (gzip, zstd, xz), found by these first bytes
COMPRESSION = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd", b"\xfd7zXZ\x00": "xz"}


def display_name(path: str | os.PathLike) -> str:
    """The name messages use for an input.

    >>> display_name("-"), display_name("a/b.jsonl")
    ('<stdin>', 'a/b.jsonl')
    """
    return "<stdin>" if str(path) == "-" else str(path)


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


def read_error(e: BaseException, name: str) -> DataError:
    """A failed read of ``name`` (stdin, a file, a damaged compressed stream) as a DataError."""
    reason = getattr(e, "strerror", None) or e or "the compressed stream ends early"
    if name == "<stdin>":
        return DataError(f"no input: stdin cannot be read ({reason})", hint=_STDIN_HINT)
    return DataError(f"{name}: cannot read ({reason})")


def read_exactly(fh: BinaryIO, n: int, name: str) -> bytes:
    """Up to ``n`` bytes: fewer only at the end of the input (a pipe's short reads are read on from)."""
    import lzma

    parts: list[bytes] = []
    size = 0
    try:
        while size < n and (piece := fh.read(n - size)):
            parts.append(piece)
            size += len(piece)
    except (OSError, ValueError, EOFError, lzma.LZMAError) as e:
        raise read_error(e, name) from None
    return b"".join(parts)


def sniff(fh: BinaryIO, n: int, name: str, stack: contextlib.ExitStack) -> tuple[BinaryIO, bytes]:
    """``(the same bytes as fh, its first n bytes)``: read from ``fh`` once, never by opening the input again."""
    head = read_exactly(fh, n, name)
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
        raise read_error(e, name) from None


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
                from marsctl.atomic import write_failed

                raise write_failed(f"a copy of {name} ({tmp})", e) from None
    return tmp


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _read_stdin(src: BinaryIO, name: str = "<stdin>") -> bytes:
    """The next piece of a read-once input's bytes (empty at the end); a failed read is a DataError."""
    try:
        return src.read(PIECE)
    except (OSError, ValueError) as e:
        raise read_error(e, name) from None
