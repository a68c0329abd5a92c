"""One writer per run folder: the flock on its ``.marsctl.lock`` that refine, compare and report hold."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from marsctl.errors import ConfigError
from marsctl.outputs import LOCK_NAME


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold run folder ``out`` (created when missing) for this process; a second writer is refused.

    The lock is an exclusive ``fcntl.flock`` on ``out/.marsctl.lock``, taken without waiting and held
    until the block ends; the holder writes its pid into the file for the message the next one gets,
    and empties it when the block ends.
    The kernel drops a flock when its last descriptor closes, which happens when the process exits in
    any way, SIGKILL included: a killed run never blocks the next one (the file stays, unlocked, and
    the next run locks it again). The file is never removed, so two processes always lock the same
    file; it is opened close-on-exec so no child process keeps the lock alive.
    """
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as e:
        msg = f"{path}: cannot open the run's lock file ({e.strerror or e})"
        raise ConfigError(msg, hint="remove it if it is not a regular file, or choose another --out") from None
    held = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            pid = f"pid {holder}" if holder.isdigit() else "pid unknown"
            msg = f"{out} is in use by another marsctl process ({pid})"
            raise ConfigError(msg, hint="wait for it to finish, or choose another --out") from None
        except OSError as e:  # a file system without locks (some network mounts): go on, unguarded
            from marsctl import ui

            ui.warn(f"{out}: cannot lock the run folder ({e.strerror or e}); make sure no other marsctl writes it")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        held = True
        yield
    finally:
        if held:  # emptied on the way out, so a finished or refused run leaves the folder as it found it
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
        os.close(fd)
