"""A small thread-safe SQLite key-value store: the one mechanism behind marsctl's caches."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


class SQLiteStore:
    """Map bytes keys to values, encoded to a BLOB or TEXT column by ``encode``/``decode``."""

    def __init__(self, path: str | Path, table: str, *, encode: Callable[[Any], Any],
                 decode: Callable[[Any], Any], column: str = "value", column_type: str = "BLOB"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.table, self.column = table, column
        self._encode, self._decode = encode, decode
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"CREATE TABLE IF NOT EXISTS {table} (key BLOB PRIMARY KEY, {column} {column_type} NOT NULL)")
        self._db.commit()

    def get_many(self, keys: list[bytes]) -> dict[bytes, Any]:
        """Decoded values for the keys that are present (looked up 500 at a time)."""
        found: dict[bytes, Any] = {}
        uniq = list(dict.fromkeys(keys))
        with self._lock:
            for i in range(0, len(uniq), 500):
                chunk = uniq[i : i + 500]
                q = f"SELECT key, {self.column} FROM {self.table} WHERE key IN ({','.join('?' * len(chunk))})"
                for k, v in self._db.execute(q, chunk):
                    found[bytes(k)] = self._decode(v)
        return found

    def put_many(self, items: list[tuple[bytes, Any]]) -> None:
        """Store values, replacing any under the same key."""
        with self._lock:
            self._db.executemany(f"INSERT OR REPLACE INTO {self.table} (key, {self.column}) VALUES (?, ?)",
                                 [(k, self._encode(v)) for k, v in items])
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0])

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
