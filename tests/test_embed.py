"""The encoder behind the cache: canonical batching gives each text the same vector whatever its company."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES

from marsctl.embed import BATCH_TOLERANCE, PAD_MULTIPLE, EmbeddingCache, Encoder


@pytest.fixture(scope="module")
def texts() -> list[str]:
    rows = [json.loads(x) for x in (FIXTURES / "hh_test.jsonl").read_text().splitlines()[:30]]
    return [r["chosen"] for r in rows] + [r["rejected"] for r in rows]


def fresh(tmp_path, name: str, batch_size: int = 64) -> Encoder:
    return Encoder(batch_size=batch_size, cache=EmbeddingCache(tmp_path / f"{name}.sqlite"))


def test_the_same_texts_and_settings_give_the_same_vectors_bit_for_bit(tmp_path, texts):
    first = fresh(tmp_path, "first").encode(texts)
    again = fresh(tmp_path, "again").encode(texts)
    assert first.dtype == np.float32 and first.shape == (len(texts), 384)
    assert np.array_equal(first, again)


def test_vectors_in_other_company_agree_within_the_stated_tolerance(tmp_path, texts):
    """Another batch size or cache fill order may round differently in BLAS: within BATCH_TOLERANCE."""
    whole = fresh(tmp_path, "whole").encode(texts)
    small = fresh(tmp_path, "small", batch_size=3).encode(texts)
    staged = fresh(tmp_path, "staged")
    staged.encode(texts[::-1][:17])  # the cache is filled in another order, with other company
    staged.encode(texts[5:40:2], side="response")
    later = staged.encode(texts)
    for other in (small, later):
        assert other.shape == whole.shape
        assert np.abs(other - whole).max() <= BATCH_TOLERANCE
        assert (other * whole).sum(axis=1).min() > 1 - BATCH_TOLERANCE


def test_canonical_batches_match_sentence_transformers(tmp_path, texts):
    enc = fresh(tmp_path, "st")
    ours = enc.encode(texts)
    ref = enc.torch.load().encode(texts, batch_size=16, normalize_embeddings=True, convert_to_numpy=True)
    cos = (ours * ref).sum(axis=1)
    assert cos.min() > 0.99999
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_padded_length_is_a_multiple_capped_at_max_seq_length(tmp_path):
    enc = fresh(tmp_path, "pad")
    assert enc.padded_length(1) == PAD_MULTIPLE
    assert enc.padded_length(PAD_MULTIPLE + 1) == 2 * PAD_MULTIPLE
    assert enc.padded_length(10_000) == enc.max_seq_length


def test_stores_on_one_file_share_one_connection(tmp_path):
    """A second connection to a SQLite file, once closed or collected, drops the first one's locks."""
    import gc

    a = EmbeddingCache(tmp_path / "e.sqlite")
    b = EmbeddingCache(tmp_path / "e.sqlite")
    assert a._db is b._db and a._lock is b._lock
    del a
    gc.collect()
    b.put_many([(b"k", np.ones(4, dtype=np.float32))])
    b.close()
    assert len(EmbeddingCache(tmp_path / "e.sqlite")) == 1


def test_cache_keys_follow_the_encoders_content_not_its_folder_or_file_sizes(tmp_path):
    """A copy of the encoder elsewhere shares its cached vectors; the same files with one weight byte changed
    (same sizes, same folder name) do not: the cache key hashes the weights' content."""
    import shutil

    from marsctl.embed import default_encoder_path

    bundled = Path(default_encoder_path())
    copy = tmp_path / "a" / bundled.name
    shutil.copytree(bundled, copy)
    tuned = tmp_path / "b" / bundled.name
    shutil.copytree(bundled, tuned)
    weights = tuned / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # a byte of the last tensor: the file keeps its size and still parses
    weights.write_bytes(bytes(data))
    assert Encoder(str(copy)).id.split(":")[1] == Encoder(str(bundled)).id.split(":")[1]
    assert Encoder(str(tuned)).id != Encoder(str(copy)).id
    assert Encoder(str(bundled), max_seq_length=128).id != Encoder(str(bundled)).id
