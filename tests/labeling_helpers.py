"""Shared by the labeling tests: models trained once per module on real rows (fixtures/tiny.jsonl)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FIXTURES

POOL = FIXTURES / "labeling" / "pool.jsonl"
LABELED = FIXTURES / "labeling" / "labeled.jsonl"
ARENA = FIXTURES / "labeling" / "arena.jsonl"
TINY = FIXTURES / "tiny.jsonl"


def train_model(tmp: Path, cache_dir: Path, *params: str) -> Path:
    """A model directory trained on fixtures/tiny.jsonl (40 real HH pairs) with the head params given."""
    from marsctl import steps
    from marsctl.records import read_pairs

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MARSCTL_CACHE_DIR", str(cache_dir))
        mp.setenv("HF_HUB_OFFLINE", "1")
        head = steps.train(read_pairs(TINY), params=[*params, "encoder_precision=fp32"], seed=0)  # fp32: vectors do not depend on the cache's state (bf16's do, within docs/guarantees.md's bound)
        out = tmp / ("model" + "-".join(params).replace("=", ""))
        head.save(out)
    return out
