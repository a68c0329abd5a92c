"""How outputs are written safely: a file is built in a temporary beside it and renamed into place, so a failed
write leaves nothing; a device, pipe or ``/dev/stdout`` is written in place and never replaced.

Temporary files and folders are named ``.NAME.marsctl-PID-XXXX.tmp`` beside their target, so a
write killed by SIGKILL leaves debris that the next write to the same target removes.
An OSError while writing (a full disk, a read-only folder, a closed stdout) becomes an :class:`OutputError` naming
the output. Text, JSON documents and bytes are written here (:func:`atomic_writer`, :func:`write_json`,
:func:`write_bytes`, :func:`write_stdout`); records, in every format, by :mod:`marsctl.records`.
Where an output may go is :mod:`marsctl.outputs`'s job.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from marsctl.errors import MarsError
from marsctl.outputs import is_special

TMP_TAG = "marsctl"


class OutputError(MarsError):
    """An output could not be written (a full disk, a read-only folder): exit 1, nothing partial left."""

    exit_code = 1


def write_failed(target: str | os.PathLike, err: OSError) -> OutputError:
    """The error for an OSError while writing ``target``."""
    reason = err.strerror or str(err)
    in_place = str(target) == "stdout" or is_special(Path(target))
    return OutputError(f"could not write {target}: {reason}",
                       hint=None if in_place else "nothing partial was left behind")


# ------------------------------------------------------------------------------------------- temporaries
def temp_prefix(target: Path) -> str:
    """The name prefix of this process's temporaries for ``target``."""
    return f".{target.name}.{TMP_TAG}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(target: Path) -> int:
    """Remove temporaries of ``target`` left by marsctl processes that no longer run; return how many."""
    removed = 0
    with contextlib.suppress(OSError):
        for p in target.parent.glob(f".{glob_escape(target.name)}.{TMP_TAG}-*"):
            pid_text = p.name[len(target.name) + len(TMP_TAG) + 3 :].split("-", 1)[0]
            if not pid_text.isdigit() or _pid_alive(int(pid_text)):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            removed += 1
    return removed


def glob_escape(name: str) -> str:
    """Escape glob metacharacters in a file name.

    >>> glob_escape("a[1]*.jsonl")
    'a[[]1[]][*].jsonl'
    """
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


# -------------------------------------------------------------------------------------------- directories
def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_temp_file(target: Path) -> tuple[int, str]:
    """A fresh temporary file beside ``target``: (open descriptor, path).

    It gets the mode a plain ``open`` would give (0666 less the umask), not mkstemp's 0600, so the
    file renamed into place is readable as the user's other files are.
    """
    fd, name = tempfile.mkstemp(prefix=temp_prefix(target), suffix=".tmp", dir=target.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    return fd, name


def new_temp_dir(target: Path) -> Path:
    """A fresh temporary directory beside ``target`` (stale ones of dead processes are removed first).

    Its mode is what ``mkdir`` would give (0777 less the umask), not mkdtemp's 0700.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target), suffix=".tmp", dir=target.parent))
    tmp.chmod(0o777 & ~_umask())
    return tmp


def install_dir(tmp: Path, target: Path) -> None:
    """Move the complete directory ``tmp`` to ``target``; an existing target (already checked) goes last."""
    if not target.exists():
        tmp.rename(target)
        return
    old = Path(tempfile.mkdtemp(prefix=temp_prefix(target), suffix=".old", dir=target.parent))
    old.rmdir()
    target.rename(old)
    try:
        tmp.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------------------------- files
def _through_links(target: Path) -> Path:
    """The file a symlink leads to (written there, as a shell ``>`` would), or ``target`` itself; the link stays."""
    return Path(os.path.realpath(target)) if target.is_symlink() else target


def scratch_file(target: str | os.PathLike) -> tuple[int, str]:
    """A fresh temporary file for building ``target``'s bytes: (open descriptor, path).

    Beside a regular target (to be renamed into place, stale temporaries of dead processes removed first);
    in ``$TMPDIR`` for a device or pipe (copied into it when complete), never beside it (``/dev``).
    """
    t = Path(target)
    if is_special(t):
        return tempfile.mkstemp(prefix="marsctl-out-", suffix=".tmp")
    t = _through_links(t)
    t.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(t)
    return new_temp_file(t)


@contextlib.contextmanager
def binary_output(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary stream whose bytes end up at ``path`` (a file, not ``-``).

    A regular file gets a temporary beside it, renamed into place when the block ends without an error
    (nothing is left at ``path`` otherwise); a symlink to one is followed, and stays a symlink. A device,
    pipe or ``/dev/stdout`` is opened in place, for appending (``> file`` and ``>> file`` behind
    ``/dev/stdout`` both keep what is there), and never replaced. An OSError (a full disk) becomes an
    :class:`OutputError` naming the file.
    """
    target = Path(path)
    if is_special(target):
        try:
            with target.open("ab") as fh:
                yield fh
        except OSError as e:
            raise write_failed(target, e) from None
        return
    try:
        fd, tmp = scratch_file(target)
    except OSError as e:
        raise write_failed(target, e) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, _through_links(target))
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise write_failed(target, e) from None
        raise


@contextlib.contextmanager
def held_output(path: str | os.PathLike, hold: bool = True) -> Iterator[BinaryIO]:
    """:func:`binary_output`, but a device or pipe (``/dev/null`` aside) gets the bytes only when the block ends
    without an error: they are spooled to ``$TMPDIR`` meanwhile. A regular file is atomic anyway."""
    if not (hold and is_special(Path(path)) and str(path) != os.devnull):
        with binary_output(path) as fh:
            yield fh
        return
    try:
        spool = tempfile.TemporaryFile(prefix="marsctl-out-")  # noqa: SIM115 (closed below)
    except OSError as e:
        raise write_failed("a temporary copy of the output", e) from None
    with spool:
        try:
            yield spool
        except OSError as e:
            raise write_failed("a temporary copy of the output", e) from None
        deliver(spool, path)


def deliver(src: str | BinaryIO, target: str | os.PathLike) -> None:
    """Put a complete temporary file (a path or an open file) at ``target``: renamed over a regular file (a path
    is then gone), copied into a device or pipe (a path is then removed)."""
    if not isinstance(src, str):
        try:
            src.seek(0)
        except OSError as e:
            raise write_failed("a temporary copy of the output", e) from None
        with binary_output(target) as fh:
            shutil.copyfileobj(src, fh, 1 << 20)
        return
    try:
        if is_special(Path(target)):
            with open(src, "rb") as fin, binary_output(target) as fh:
                shutil.copyfileobj(fin, fh, 1 << 20)
        else:
            try:
                os.replace(src, _through_links(Path(target)))
            except OSError as e:
                raise write_failed(target, e) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(src)


# -------------------------------------------------------------------------------------------- text, stdout
@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[io.TextIOBase]:
    """Write text to a temporary file beside ``path`` and ``os.replace`` it in on success.

    Nothing is left at ``path`` when the block raises; temporaries are named
    ``.NAME.marsctl-PID-XXXX.tmp``, and stale ones of dead processes are removed first. A device,
    pipe or ``/dev/stdout`` is written in place and never replaced (:func:`binary_output`).
    An OSError (a full disk) becomes an ``OutputError`` naming the file.
    """
    with binary_output(path) as raw:
        fh = io.TextIOWrapper(raw, encoding="utf-8")
        try:
            yield fh
            fh.flush()
        finally:
            fh.detach()


def write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write bytes (a PNG) atomically, as :func:`atomic_writer` writes text; a device or pipe is written in place."""
    with binary_output(path) as fh:
        fh.write(data)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write one JSON document atomically (NaN and Infinity are refused, never written)."""
    text = json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False, allow_nan=False)
    with atomic_writer(path) as fh:
        fh.write(text + "\n")


def write_stdout(text: str) -> None:
    """Write to stdout; a failed write (a full disk, a closed pipe) becomes a clear error."""
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
