"""Where marsctl's caches live (:func:`cache_dir`), and the small thread-safe SQLite key-value store behind them.

The caches are marsctl's own files and are rebuilt when missing: a damaged one (overwritten,
truncated) is reported with the command that deletes it (``rm -f FILE*``: the file with its -wal and
-shm), or ``MARSCTL_CACHE_DIR`` can point at another folder. marsctl never deletes a cache by itself.
A stored value that cannot be decoded, or fails the store's ``valid`` check (an embedding of the
wrong length, say), is treated as missing: it is recomputed and replaced.

A cache folder that cannot be used (see :func:`usable_cache_dir`) is handled by who chose it:

- ``MARSCTL_CACHE_DIR`` names a folder that cannot be created or written (a regular file, a path under
  a file, a missing or read-only filesystem such as ``/proc``): exit 2 with one ``Error:`` line naming
  the path and the variable. You asked for that folder; quietly not caching would hide the mistake
  and make every later run embed again.
- The default folder (``$XDG_CACHE_HOME/marsctl``, else ``~/.cache/marsctl``) cannot be used, as for a
  system account or a container whose HOME is read-only or missing: marsctl runs without a persistent
  cache (it keeps one in memory for this process), after one warning line that names the path and
  how to fix it, as pip does. Results are the same; only later runs are slower.
- A cache *file* that is damaged, is a folder, or cannot be written is named with its fix, exit 2
  (a full disk stays exit 1: the machine failed, not the configuration).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from marsctl.errors import ConfigError, DataError, MarsError

_DAMAGED = ("SQLITE_NOTADB", "SQLITE_CORRUPT", "SQLITE_CORRUPT_INDEX", "SQLITE_CORRUPT_SEQUENCE")


ENV = "MARSCTL_CACHE_DIR"
_FIX = f"set {ENV} to a writable folder"


def cache_location() -> tuple[Path, str]:
    """Where marsctl keeps its caches, and the environment variable that chose it.

    ``$MARSCTL_CACHE_DIR``, else ``$XDG_CACHE_HOME/marsctl`` (an absolute path, as the XDG spec says),
    else ``~/.cache/marsctl`` (``HOME``).
    """
    if os.environ.get(ENV):
        return Path(os.environ[ENV]), ENV
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "marsctl", "XDG_CACHE_HOME"
    return Path(os.path.expanduser("~")) / ".cache" / "marsctl", "HOME"


def cache_dir() -> Path:
    """Where marsctl keeps its caches (see :func:`cache_location`); not checked or created here."""
    return cache_location()[0]


def _unusable(folder: Path) -> str | None:
    """Why ``folder`` cannot hold caches (created if missing), or None when a file can be written in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except FileExistsError:
        return "it is not a folder"
    except NotADirectoryError:
        return "a part of it is a file, not a folder"
    except OSError as e:
        return e.strerror or str(e)
    return None


_USABLE: dict[str, Path | None] = {}


def usable_cache_dir() -> Path | None:
    """The cache folder, created if missing and checked writable; None to run without a persistent cache.

    A bad ``$MARSCTL_CACHE_DIR`` is a ConfigError (exit 2); an unusable default folder (under
    ``XDG_CACHE_HOME`` or ``HOME``) gives None after one warning (see the module docstring). Checked once
    per folder in a process.
    """
    folder, var = cache_location()
    key = str(folder)
    if key not in _USABLE:
        why = _unusable(folder)
        if why is not None and var == ENV:
            msg = f"{ENV}={folder} cannot hold marsctl's caches: {why}"
            raise ConfigError(msg, hint=f"{_FIX}, or unset it to use the default folder (~/.cache/marsctl)")
        if why is not None:
            from marsctl import ui

            ui.warn(f"the cache folder {folder} (from {var}) cannot be used: {why}; running without a persistent "
                    f"cache (later runs embed again): {_FIX}")
        _USABLE[key] = None if why else folder
    return _USABLE[key]


def cache_file(name: str) -> Path | None:
    """``usable_cache_dir() / name``, or None (keep that cache in memory) when there is no usable folder."""
    folder = usable_cache_dir()
    return None if folder is None else folder / name


def quiet_matplotlib() -> None:
    """Before matplotlib is imported: give it a writable MPLCONFIGDIR when its own folder cannot be written.

    With a read-only or missing HOME, matplotlib logs two lines about a temporary folder it made; marsctl
    has already warned once (``usable_cache_dir``), so it hands matplotlib a folder of its own. A
    ``MPLCONFIGDIR`` you set is left alone.
    """
    if os.environ.get("MPLCONFIGDIR"):
        return
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path(os.path.expanduser("~")) / ".config"
    if _unusable(base / "matplotlib") is not None:
        folder = cache_folder("matplotlib")
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["MPLCONFIGDIR"] = str(folder)


_SCRATCH: list[Path] = []


def cache_folder(name: str) -> Path:
    """A folder for cached files (``usable_cache_dir() / name``), else a temporary one removed at exit."""
    folder = usable_cache_dir()
    if folder is not None:
        return folder / name
    if not _SCRATCH:
        import atexit
        import shutil

        _SCRATCH.append(Path(tempfile.mkdtemp(prefix="marsctl-cache-")))
        atexit.register(shutil.rmtree, _SCRATCH[0], True)
    return _SCRATCH[0] / name


def _store_error(path: Path, e: sqlite3.Error) -> MarsError:
    """The user-facing error for a failed SQLite operation on cache file ``path``."""
    name = getattr(e, "sqlite_errorname", "") or ""
    text = str(e)
    damaged = name in _DAMAGED or "not a database" in text or "malformed" in text or "no such column" in text
    if damaged:
        msg = f"cache file {path} is damaged ({text})"
        hint = (f"it is marsctl's own cache and is rebuilt when missing: delete it with "
                f"rm -f {shlex.quote(str(path))}* (or set MARSCTL_CACHE_DIR to another folder)")
        return DataError(msg, hint=hint)
    msg = f"cache file {path}: {text}"
    if "locked" in text:
        return MarsError(msg, hint="another marsctl process holds it: wait, or set MARSCTL_CACHE_DIR to another folder")
    if path.is_dir():
        msg = f"cache file {path} is a folder, not marsctl's SQLite cache"
        return ConfigError(msg, hint=f"move it away (marsctl never deletes it), or {_FIX}")
    if "full" in text:  # the machine failed, not the configuration
        return MarsError(msg, hint="free some disk space, or set MARSCTL_CACHE_DIR to a folder on another disk")
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return ConfigError(f"{msg} (it cannot be opened for writing)",
                           hint=f"make it and its folder writable, or {_FIX}")
    return MarsError(msg, hint="check the folder's permissions and free space, or set MARSCTL_CACHE_DIR elsewhere")


# One connection per cache file in a process. SQLite's POSIX locks belong to the process: closing any
# second connection to a file (or letting one be garbage-collected) drops the locks the first one
# holds, and another process writing meanwhile can then corrupt the file. Every store on the same
# file therefore shares one connection and its lock, and it is never closed before the process ends.
_SHARED: dict[str, tuple[sqlite3.Connection, threading.Lock]] = {}
_SHARED_LOCK = threading.Lock()


def _shared_connection(path: Path | None) -> tuple[sqlite3.Connection, threading.Lock]:
    """The process's connection to ``path``; None: the one in-memory database (no persistent cache)."""
    key = ":memory:" if path is None else str(path.resolve())
    with _SHARED_LOCK:
        if key not in _SHARED:
            db = sqlite3.connect(key, timeout=60, check_same_thread=False)
            try:
                if path is not None:
                    db.execute("PRAGMA journal_mode=WAL")
            except sqlite3.Error:
                db.close()
                raise
            _SHARED[key] = (db, threading.Lock())
        return _SHARED[key]


class SQLiteStore:
    """Map bytes keys to values, encoded to a BLOB or TEXT column by ``encode``/``decode``.

    ``valid`` (optional) checks each decoded value; values failing it, or failing to decode, are misses.
    ``path`` None keeps the store in memory for this process (no usable cache folder: ``cache_file``).
    """

    def __init__(self, path: str | Path | None, table: str, *, encode: Callable[[Any], Any],
                 decode: Callable[[Any], Any], column: str = "value", column_type: str = "BLOB",
                 valid: Callable[[Any], bool] | None = None):
        self.path = None if path is None else Path(path)
        why = None if self.path is None else _unusable(self.path.parent)
        if self.path is not None and why is not None:
            msg = f"cache file {self.path}: its folder {self.path.parent} cannot be used: {why}"
            raise ConfigError(msg, hint=_FIX)
        self.table, self.column = table, column
        self._encode, self._decode, self._valid = encode, decode, valid
        self.invalid = 0  # stored values ignored as undecodable or invalid
        with self._guard():
            self._db, self._lock = _shared_connection(self.path)
            with self._lock:
                self._db.execute(f"CREATE TABLE IF NOT EXISTS {table} "
                                 f"(key BLOB PRIMARY KEY, {column} {column_type} NOT NULL)")
                self._db.commit()

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn SQLite failures (a damaged file, a lock held too long) into errors that name the file."""
        try:
            yield
        except sqlite3.Error as e:
            raise _store_error(self.path or Path(":memory:"), e) from None

    def _decode_checked(self, raw: Any) -> tuple[bool, Any]:
        try:
            value = self._decode(raw)
        except (ValueError, TypeError, UnicodeDecodeError):
            return False, None
        return (self._valid is None or bool(self._valid(value))), value

    def raw_rows(self, keys: list[bytes]) -> list[tuple[bytes, Any]]:
        """The stored ``(key, value)`` rows of distinct ``keys``, not decoded (looked up 500 at a time)."""
        rows: list[tuple[bytes, Any]] = []
        with self._lock, self._guard():
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                q = f"SELECT key, {self.column} FROM {self.table} WHERE key IN ({','.join('?' * len(chunk))})"
                rows += self._db.execute(q, chunk).fetchall()
        return rows

    def count_invalid(self, count: int) -> None:
        """Count ``count`` stored values found damaged or unfit (to be recomputed), with one warning."""
        from marsctl import ui

        self.invalid += count
        ui.warn(f"cache file {self.path}: {count} stored entries are damaged or do not fit; recomputing them")

    def get_many(self, keys: list[bytes]) -> dict[bytes, Any]:
        """Decoded values for the keys that are present (looked up 500 at a time)."""
        found: dict[bytes, Any] = {}
        bad = 0
        for k, v in self.raw_rows(list(dict.fromkeys(keys))):
            ok, value = self._decode_checked(v)
            if ok:
                found[bytes(k)] = value
            else:
                bad += 1
        if bad:
            self.count_invalid(bad)
        return found

    def put_many(self, items: list[tuple[bytes, Any]]) -> None:
        """Store values, replacing any under the same key."""
        with self._lock, self._guard():
            self._db.executemany(f"INSERT OR REPLACE INTO {self.table} (key, {self.column}) VALUES (?, ?)",
                                 [(k, self._encode(v)) for k, v in items])
            self._db.commit()

    def __len__(self) -> int:
        with self._lock, self._guard():
            return int(self._db.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0])

    def close(self) -> None:
        """Nothing to do: the process-wide connection stays open until exit (see ``_shared_connection``)."""
