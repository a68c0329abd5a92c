"""A content-addressed cache of raw generations, so reruns and later rounds never regenerate.

Key: sha256 of (model id, template id, role, input text, seed, sampling parameters, n). Value: the
raw (unfiltered) generations as a JSON list, so changing a filter band reuses what was generated.
One SQLite file, ``generations.sqlite``, under :func:`marsctl.store.cache_dir` (in memory when that folder is unusable).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from marsctl.store import SQLiteStore, cache_file


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


class GenerationCache(SQLiteStore):
    """A SQLite map from generation keys to lists of generated strings (thread-safe)."""

    def __init__(self, path: str | Path | None = None):
        if path is None:  # None when there is no usable cache folder: kept in memory (see marsctl.store)
            path = cache_file("generations.sqlite")
        super().__init__(path, "gen", encode=lambda v: json.dumps(list(v), ensure_ascii=False),
                         decode=json.loads, column="outputs", column_type="TEXT",
                         valid=lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v))
        self.stats = {"hits": 0, "misses": 0}

    def get_many(self, keys: list[bytes]) -> dict[bytes, list[str]]:
        """Stored generations for the keys that are present (hits and misses counted)."""
        found = super().get_many(keys)
        self.stats["hits"] += sum(1 for k in keys if k in found)
        self.stats["misses"] += sum(1 for k in keys if k not in found)
        return found
