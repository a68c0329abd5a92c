"""A content-addressed cache of raw generations, so reruns and later rounds never regenerate.

Key: sha256 of (model id, template id, role, input text, seed, sampling parameters, n). Value: the
raw (unfiltered) generations as a JSON list, so changing a filter band reuses what was generated.
One SQLite file, ``generations.sqlite``, under :func:`marsctl.embed.cache_dir`.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any


def generation_key(model_id: str, template_id: str, role: str, text: str, seed: int,
                   params: dict[str, Any], n: int) -> bytes:
    """The cache key of one request.

    >>> k = generation_key("m", "t@v1", "chosen", "hi", 0, {"temperature": 0.7}, 5)
    >>> k == generation_key("m", "t@v1", "chosen", "hi", 0, {"temperature": 0.7}, 5)
    True
    >>> k == generation_key("m", "t@v1", "chosen", "hi", 1, {"temperature": 0.7}, 5)
    False
    """
    blob = json.dumps([model_id, template_id, role, text, int(seed), params, int(n)],
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).digest()


class GenerationCache:
    """A SQLite map from generation keys to lists of generated strings (thread-safe)."""

    def __init__(self, path: str | Path | None = None):
        if path is None:
            from marsctl.embed import cache_dir

            path = cache_dir() / "generations.sqlite"
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS gen (key BLOB PRIMARY KEY, outputs TEXT NOT NULL)")
        self._db.commit()
        self.stats = {"hits": 0, "misses": 0}

    def get_many(self, keys: list[bytes]) -> dict[bytes, list[str]]:
        """Stored generations for the keys that are present."""
        found: dict[bytes, list[str]] = {}
        uniq = list(dict.fromkeys(keys))
        with self._lock:
            for i in range(0, len(uniq), 500):
                chunk = uniq[i : i + 500]
                q = f"SELECT key, outputs FROM gen WHERE key IN ({','.join('?' * len(chunk))})"
                for k, v in self._db.execute(q, chunk):
                    found[bytes(k)] = json.loads(v)
        self.stats["hits"] += sum(1 for k in keys if k in found)
        self.stats["misses"] += sum(1 for k in keys if k not in found)
        return found

    def put_many(self, items: list[tuple[bytes, list[str]]]) -> None:
        """Store generations (replacing any under the same key)."""
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO gen (key, outputs) VALUES (?, ?)",
                [(k, json.dumps(list(v), ensure_ascii=False)) for k, v in items],
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM gen").fetchone()[0])

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
