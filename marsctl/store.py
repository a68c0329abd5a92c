"""Where marsctl's caches live (:func:`cache_dir`), and the small thread-safe SQLite key-value store behind them.

The caches are marsctl's own files and are rebuilt when missing: a damaged one (overwritten,
truncated) is reported with the command that deletes it (``rm -f FILE*``: the file with its -wal and
-shm), or ``MARSCTL_CACHE_DIR`` can point at another folder. marsctl never deletes a cache by itself.
A stored value that cannot be decoded, or fails the store's ``valid`` check (an embedding of the
wrong length, say), is treated as missing: it is recomputed and replaced.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from marsctl.errors import DataError, MarsError

_DAMAGED = ("SQLITE_NOTADB", "SQLITE_CORRUPT", "SQLITE_CORRUPT_INDEX", "SQLITE_CORRUPT_SEQUENCE")


def cache_dir() -> Path:
    """Where marsctl keeps its caches: ``$MARSCTL_CACHE_DIR``, else ``~/.cache/marsctl``."""
    root = os.environ.get("MARSCTL_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "marsctl")
    return Path(root)


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
    return MarsError(msg, hint="check the folder's permissions and free space, or set MARSCTL_CACHE_DIR elsewhere")


# One connection per cache file in a process. SQLite's POSIX locks belong to the process: closing any
# second connection to a file (or letting one be garbage-collected) drops the locks the first one
# holds, and another process writing meanwhile can then corrupt the file. Every store on the same
# file therefore shares one connection and its lock, and it is never closed before the process ends.
_SHARED: dict[str, tuple[sqlite3.Connection, threading.Lock]] = {}
_SHARED_LOCK = threading.Lock()


def _shared_connection(path: Path) -> tuple[sqlite3.Connection, threading.Lock]:
    key = str(path.resolve())
    with _SHARED_LOCK:
        if key not in _SHARED:
            db = sqlite3.connect(key, timeout=60, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
            except sqlite3.Error:
                db.close()
                raise
            _SHARED[key] = (db, threading.Lock())
        return _SHARED[key]


class SQLiteStore:
    """Map bytes keys to values, encoded to a BLOB or TEXT column by ``encode``/``decode``.

    ``valid`` (optional) checks each decoded value; values failing it, or failing to decode, are misses.
    """

    def __init__(self, path: str | Path, table: str, *, encode: Callable[[Any], Any],
                 decode: Callable[[Any], Any], column: str = "value", column_type: str = "BLOB",
                 valid: Callable[[Any], bool] | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
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
            raise _store_error(self.path, e) from None

    def _decode_checked(self, raw: Any) -> tuple[bool, Any]:
        try:
            value = self._decode(raw)
        except (ValueError, TypeError, UnicodeDecodeError):
            return False, None
        return (self._valid is None or bool(self._valid(value))), value

    def get_many(self, keys: list[bytes]) -> dict[bytes, Any]:
        """Decoded values for the keys that are present (looked up 500 at a time)."""
        found: dict[bytes, Any] = {}
        uniq = list(dict.fromkeys(keys))
        bad = 0
        with self._lock, self._guard():
            for i in range(0, len(uniq), 500):
                chunk = uniq[i : i + 500]
                q = f"SELECT key, {self.column} FROM {self.table} WHERE key IN ({','.join('?' * len(chunk))})"
                for k, v in self._db.execute(q, chunk).fetchall():
                    ok, value = self._decode_checked(v)
                    if ok:
                        found[bytes(k)] = value
                    else:
                        bad += 1
        if bad:
            from marsctl import ui

            self.invalid += bad
            ui.warn(f"cache file {self.path}: {bad} stored entries are damaged or do not fit; recomputing them")
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
