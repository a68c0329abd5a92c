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

How they are written (temporaries renamed into place, devices written in place) is :mod:`marsctl.atomic`'s job.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

from marsctl.errors import ConfigError
from marsctl.extensions import WRITE_FORMATS

LOCK_NAME = ".marsctl.lock"  # in a run folder: held (flock) by the marsctl process writing the folder


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
    (:data:`marsctl.extensions.WRITE_FORMATS`; no extension is JSONL).
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


def output_format(path: str | os.PathLike, flag: str = "-o") -> str:
    """The format written to ``path``, from its extension; an extension marsctl does not write is a ConfigError.

    >>> output_format("out.parquet"), output_format("-"), output_format("scored.jsonl.gz")
    ('parquet', 'jsonl', 'jsonl.gz')
    """
    if str(path) == "-":
        return "jsonl"
    p = Path(path)
    suffixes = "".join(p.suffixes[-2:]).lower()
    for ext in (suffixes, p.suffix.lower()):
        if ext in WRITE_FORMATS:
            return WRITE_FORMATS[ext]
    if not p.suffix or is_special(p):
        return "jsonl"
    msg = f"{flag} {p}: marsctl does not write {p.suffix!r} files"
    raise ConfigError(msg, hint="name the output with one of: " + ", ".join(WRITE_FORMATS))
