"""Train/test splits grouped by prompt, so no test prompt is seen in training."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from marsctl.params import check_interval


def grouped_split(records: list[dict[str, Any]], test_frac: float, seed: int = 0,
                  key: str = "prompt") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split records into (train, test) with every group (same ``key``) on one side.

    Groups are shuffled with ``seed`` and taken for the test side until it holds about
    ``test_frac`` of the records. Order inside each side follows the input.

    >>> rows = [{"prompt": p} for p in "aabbbcd"]
    >>> train, test = grouped_split(rows, 0.4, seed=1)
    >>> sorted({r["prompt"] for r in train} & {r["prompt"] for r in test})
    []
    """
    check_interval(test_frac, "test_frac", "split", low=0, high=1, closed="neither")
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        groups[r[key]].append(i)
    names = sorted(groups, key=str)
    random.Random(seed).shuffle(names)
    want = test_frac * len(records)
    test_idx: set[int] = set()
    for g in names:
        if len(test_idx) >= want:
            break
        test_idx.update(groups[g])
    train = [r for i, r in enumerate(records) if i not in test_idx]
    test = [r for i, r in enumerate(records) if i in test_idx]
    return train, test
