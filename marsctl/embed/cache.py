"""The embedding cache: sha256 keys to float32 vectors in one SQLite file shared by every command and process."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from marsctl.store import SQLiteStore, cache_file


class EmbeddingCache(SQLiteStore):
    """sha256 keys → float32 vectors, in ``$MARSCTL_CACHE_DIR/embeddings.sqlite``.

    With ``dim``, a stored vector of another length (or holding NaN/inf) is a miss, recomputed and replaced.
    """

    def __init__(self, path: Path | None = None, dim: int | None = None):
        self.dim = dim
        super().__init__(path or cache_file("embeddings.sqlite"), "emb",
                         encode=lambda v: np.asarray(v, dtype=np.float32).tobytes(),
                         decode=lambda b: np.frombuffer(b, dtype=np.float32), column="vec", valid=self._fits)

    def _fits(self, v: np.ndarray) -> bool:
        return (self.dim is None or v.shape == (self.dim,)) and bool(np.isfinite(v).all())

    def get_matrix(self, keys: list[bytes], dim: int, count: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(vectors, found)`` for distinct ``keys``: a (len(keys), dim) float32 array and a bool mask of hits.

        The bulk form of ``get_many`` (decoded and checked all at once, for speed); a stored vector of
        another length or holding NaN/inf is a miss, counted in ``invalid`` with one warning (``count``
        false: neither, for a caller that looks again through a path that counts).
        """
        out = np.zeros((len(keys), dim), dtype=np.float32)
        found = np.zeros(len(keys), dtype=bool)
        where = {k: i for i, k in enumerate(keys)}
        got = self.raw_rows(keys)
        fit = [(k, v) for k, v in got if isinstance(v, bytes) and len(v) == 4 * dim]
        bad = len(got) - len(fit)
        rows = [where[k] for k, _ in fit]
        blobs = [v for _, v in fit]
        if blobs:
            vecs = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim)
            ok = np.isfinite(vecs).all(axis=1)
            bad += int((~ok).sum())
            idx = np.asarray(rows)[ok]
            out[idx] = vecs[ok]
            found[idx] = True
        if bad and count:
            self.count_invalid(bad)
        return out, found
