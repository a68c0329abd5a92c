"""Where outputs may go: marsctl never deletes or replaces what a user had, and a failed write leaves nothing.

Every command checks its outputs before any work starts:

- ``-o FILE`` may replace an existing regular file that is not one of the command's inputs. It is
  refused when it is a directory, an input (the same path, a symlink or a hard link to it), or sits
  under a file. Devices and pipes (``/dev/null``, ``/dev/stdout``, a FIFO) are written in place, whatever
  the format: marsctl never renames over or unlinks them. A block device (a disk) or a socket is refused.
- A model directory (``train -o DIR``) is created new. An existing one is replaced only when it is
  empty, or when it is a marsctl model directory that holds nothing but the files marsctl wrote and
  ``--overwrite`` is given; the new directory is complete before the old one is removed.
- A run directory (``refine --out``, ``compare --out``) is created new or continued; marsctl never
  writes into a directory that holds anything but one of its own runs.

Temporary files and folders are named ``.NAME.marsctl-PID-XXXX.tmp`` beside their target, so a
write killed by SIGKILL leaves debris that the next write to the same target removes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from marsctl.errors import ConfigError, MarsError

TMP_TAG = "marsctl"


LOCK_NAME = ".marsctl.lock"  # in a run folder: held (flock) by the marsctl process writing the folder


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


# /dev/stdout, /dev/fd/3, /proc/self/fd/1: names of a file descriptor, written in place whatever they lead to
_FD_NAME = re.compile(r"/dev/(stdout|stderr|fd/\d+)|/proc/(self|thread-self|\d+)(/task/\d+)?/fd/\d+")


def _fd_name(path: Path) -> bool:
    """Whether ``path`` (or a symlink chain from it) names an open file descriptor, such as ``/dev/stdout``."""
    p = os.path.abspath(path)
    for _ in range(40):
        if _FD_NAME.fullmatch(p):
            return True
        try:
            link = os.readlink(p)
        except OSError:
            return False
        p = os.path.normpath(os.path.join(os.path.dirname(p), link))
    return False


def is_special(path: str | os.PathLike) -> bool:
    """True for a device, pipe or socket, or a file descriptor's name (``/dev/stdout``): written in place, never
    replaced."""
    if str(path) == "-":
        return False
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return _fd_name(Path(path))
    return (not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)) or _fd_name(Path(path))


def check_special(path: Path, flag: str = "-o") -> None:
    """Refuse a special file that cannot take a stream of bytes in place: a block device (a disk) or a socket."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    what = "a block device (a disk)" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else None
    if what:
        msg = f"{flag} {path} is {what}; marsctl writes to files, character devices and pipes"
        raise ConfigError(msg, hint=f"choose a file for {flag}, or '-' for stdout")


# ---------------------------------------------------------------------------------------------- checks
def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _input_paths(inputs: Iterable[str | os.PathLike | None]) -> list[Path]:
    return [Path(p) for p in inputs if p is not None and str(p) != "-"]


def check_parent(path: Path, flag: str) -> None:
    """Refuse a path whose nearest existing ancestor is not a directory (``-o file.jsonl/out``)."""
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                msg = f"{flag} {path}: {parent} is a file, so nothing can be written under it"
                raise ConfigError(msg, hint=f"choose a new {flag}")
            return


def check_not_input(path: Path, inputs: Iterable[str | os.PathLike | None], flag: str) -> None:
    """Refuse an output that is one of the inputs, or a folder that holds one."""
    for inp in _input_paths(inputs):
        if path.exists() and inp.exists() and _same_file(path, inp):
            msg = f"{flag} {path} is also an input of this command: writing it would replace the input"
            raise ConfigError(msg, hint=f"choose a new {flag}")
        if inp.exists() and path.resolve() in inp.resolve().parents:
            msg = f"{flag} {path} holds the input {inp}: writing a directory there would remove it"
            raise ConfigError(msg, hint=f"choose a new {flag}")
        if inp.is_dir() and inp.resolve() in path.resolve().parents:
            msg = f"{flag} {path} is inside the input directory {inp}, which marsctl does not write into"
            raise ConfigError(msg, hint=f"choose a new {flag}")


def check_file_output(path: str | os.PathLike | None, inputs: Iterable[str | os.PathLike | None] = (),
                      flag: str = "-o", *, records: bool = False) -> None:
    """Check an output file (``-`` is stdout) before any work starts.

    ``records``: the file receives records, so its extension must name a format marsctl writes
    (:data:`marsctl.formats.WRITE_FORMATS`; no extension is JSONL).
    """
    if path is None or str(path) == "-":
        return
    p = Path(path)
    if p.is_dir():
        msg = f"{flag} {p} is a directory; give a file name"
        raise ConfigError(msg, hint=f"e.g. {flag} {p / 'out.jsonl'}")
    check_parent(p, flag)
    check_not_input(p, inputs, flag)
    check_special(p, flag)
    if records:
        from marsctl.formats import output_format

        output_format(p, flag)


def model_dir_files(path: Path) -> set[str] | None:
    """The files marsctl wrote into a marsctl model directory, or None when it is not one."""
    for meta in ("marsctl.json", "config.json"):
        f = path / meta
        if not f.is_file():
            continue
        try:
            cfg = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(cfg, dict) and "head" in cfg and "format_version" in cfg:
            files = cfg.get("files")
            if isinstance(files, list) and all(isinstance(x, str) for x in files):
                return {*files, meta}
            return {meta, "model.safetensors"}  # written before the list of files was recorded
    return None


def _entries(names: list[str]) -> str:
    return f"{len(names)} {'entry' if len(names) == 1 else 'entries'}"


def check_model_dir_output(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (), *,
                           overwrite: bool = False, flag: str = "-o") -> None:
    """Check a model directory output: new, empty, or (with ``overwrite``) marsctl's own model."""
    p = Path(path)
    check_parent(p, flag)
    check_not_input(p, inputs, flag)
    if not p.exists() and not p.is_symlink():
        return
    if not p.is_dir() or p.is_symlink():
        msg = f"{flag} {p} exists and is not a directory; a model directory is written there"
        raise ConfigError(msg, hint=f"choose a new {flag}")
    entries = sorted(x.name for x in p.iterdir())
    if not entries:
        return
    own = model_dir_files(p)
    if own is None:
        msg = (f"{flag} {p} is a directory that is not a marsctl model directory ({_entries(entries)}, "
               f"e.g. {entries[0]!r}); marsctl will not replace it")
        raise ConfigError(msg, hint=f"choose a new {flag}")
    foreign = [e for e in entries if e not in own]
    if foreign:
        msg = (f"{flag} {p} holds files marsctl did not write ({', '.join(foreign[:3])}"
               f"{', …' if len(foreign) > 3 else ''}); marsctl will not replace it")
        raise ConfigError(msg, hint=f"choose a new {flag}, or move those files out")
    if not overwrite:
        msg = f"{flag} {p} already holds a marsctl model"
        raise ConfigError(msg, hint="pass --overwrite to replace it (the new model is complete before the old "
                                    f"one is removed), or choose a new {flag}")


def check_run_dir(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (), *,
                  marker: str = "manifest.json", flag: str = "--out") -> bool:
    """Check a run directory output; True when it already holds a marsctl run (``marker`` present)."""
    p = Path(path)
    check_parent(p, flag)
    check_not_input(p, inputs, flag)
    if not p.exists() and not p.is_symlink():
        return False
    if not p.is_dir():
        msg = f"{flag} {p} exists and is not a directory; a run directory is written there"
        raise ConfigError(msg, hint=f"choose a new {flag}")
    if (p / marker).is_file():
        return True
    entries = sorted(x.name for x in p.iterdir() if x.name != LOCK_NAME)  # the lock alone: a run killed at its start
    if entries:
        msg = (f"{flag} {p} is a directory that does not hold a marsctl run ({_entries(entries)}, "
               f"e.g. {entries[0]!r}); marsctl will not write into it")
        raise ConfigError(msg, hint=f"choose a new {flag}")
    return False


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
