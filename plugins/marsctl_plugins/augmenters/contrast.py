"""The ``contrast`` augmenter: cross-prompt contrast pairs (RRM, Liu et al., arXiv 2409.13156), no generator.

For a selected pair (x, y_w, y_l) each synthetic row keeps the prompt x and the chosen response y_w and
takes as ``rejected`` a response (chosen or rejected, see ``responses``) of a pair with a *different
prompt text*, drawn from the other pairs given to the augmenter: an on-prompt answer should beat an
off-prompt one. RRM adds such pairs so a reward model must look at the prompt, not only at
prompt-independent artefacts of a response (length, format). Every text is a base text, so an
embedding head needs no new embeddings.

Pools and draws follow the base recipe: a pair's pool is up to ``pool_size`` distinct off-prompt
responses, in an order seeded by the augmenter's seed and the pair's id; a budget of b draws b of them
(seeded by the draw seed, the round and the pair's id; cycled beyond the pool, and counted). A
response whose text equals the pair's own chosen or rejected one is never drawn. Each row carries
``weight`` (its BT loss weight, ``marsctl.losses.pair_weights``) and ``contrast_of`` (the id of the
pair the rejected response comes from; ``variant.rejected`` says which of its responses).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from marsctl.errors import DataError
from marsctl.params import check_choice, check_interval
from marsctl.plugin import Augmenter, derive_seed

_OWNER = "the contrast augmenter"
RESPONSES = {"both": ("chosen", "rejected"), "chosen": ("chosen",), "rejected": ("rejected",)}


@dataclass
class ContrastConfig:
    """Settings of the contrast augmenter."""

    # Default 0.5, chosen before any measurement, not tuned on a test set: 1 (an ordinary pair, RRM's
    # choice) lowered a frozen linear head's HH accuracy in the probe of issue #13 (62.0 -> 52.6), and 0
    # trains as without the rows; at the default budget (one synthetic row per base pair) 0.5 gives the
    # contrast rows a third of the loss mass (0.5n / 1.5n), so the base preferences outweigh them 2:1.
    weight: float = field(default=0.5, metadata={
        "help": "BT loss weight written on each contrast row ('weight'; a base pair's is 1, 0 trains as "
                "without the row)."})
    pool_size: int = field(default=25, metadata={
        "help": "Off-prompt responses in each pair's pool (the rows a won/top-margin selection ranks)."})
    responses: str = field(default="both", metadata={
        "help": "Which responses of other prompts' pairs may be the rejected one: both, chosen, rejected."})

    def __post_init__(self) -> None:
        self.weight = float(check_interval(self.weight, "weight", _OWNER, kind=float, low=0.0))
        check_interval(self.pool_size, "pool_size", _OWNER, kind=int, low=1, high=2500)
        check_choice(self.responses, "responses", _OWNER, list(RESPONSES))


class ContrastAugmenter(Augmenter):
    """Cross-prompt contrast pairs (RRM): keep prompt and chosen, reject another prompt's response.

    Parameters
    ----------
    config : ContrastConfig, optional
        ``weight``, ``pool_size`` and ``responses``.
    seed : int
        Seed for the order of each pair's pool.
    draw_seed : int, optional
        Seed for the draws from each pool (default ``seed``).
    """

    name: ClassVar[str] = "contrast"
    version: ClassVar[str] = "0.1.0"
    Config: ClassVar[type] = ContrastConfig
    reads_all_pairs: ClassVar[bool] = True

    def variants(self, text: str, n: int, rng: random.Random, role: str) -> list[str]:
        """None: contrast rows reuse the base texts of other pairs instead of making variants."""
        return []

    def augment(
        self, pairs: list[dict[str, Any]], counts: list[int], *, round: int = 0, progress: Any = None
    ) -> list[list[dict[str, Any]]]:
        """For each pair, ``counts[i]`` contrast rows drawn from its pool (the whole pool if -1)."""
        out: list[list[dict[str, Any]]] = [[] for _ in pairs]
        todo = [i for i, b in enumerate(counts) if b != 0]
        if not todo:
            return out
        index = _Responses(pairs, RESPONSES[self.config.responses])
        for i in todo:
            pool = self.contrast_pool(pairs[i], index)
            out[i] = self._draw(pairs[i], pool, counts[i], round)
            if progress is not None:
                progress(1)
        return out

    def contrast_pool(self, pair: dict[str, Any], index: _Responses) -> list[dict[str, Any]]:
        """Up to ``pool_size`` candidate rows for ``pair``: distinct off-prompt responses, in a seeded order."""
        rng = random.Random(derive_seed(self.seed, "contrast", pair["id"]))
        seen = {pair["chosen"], pair["rejected"]}
        rows: list[dict[str, Any]] = []
        for text, source_id, role in index.off_prompt(pair["prompt"], rng):
            if text in seen:
                continue
            seen.add(text)
            rows.append({"prompt": pair["prompt"], "chosen": pair["chosen"], "rejected": text,
                         "variant": {"rejected": role}, "contrast_of": source_id})
            if len(rows) == self.config.pool_size:
                break
        return rows

    def provenance(self, pair: dict[str, Any], cand: dict[str, Any], round: int, k: int) -> dict[str, Any]:
        """The base provenance plus ``contrast_of`` and the row's ``weight``."""
        row = super().provenance(pair, cand, round, k)
        row["contrast_of"] = cand["contrast_of"]
        row["weight"] = self.config.weight
        return row


class _Responses:
    """The responses of the pairs given, grouped by prompt text: one block ``[start, end)`` per prompt."""

    def __init__(self, pairs: list[dict[str, Any]], roles: tuple[str, ...]):
        groups: dict[str, list[tuple[str, str, str]]] = {}
        for p in pairs:
            groups.setdefault(p["prompt"], []).extend((p[role], p["id"], role) for role in roles)
        if len(groups) < 2:
            msg = (f"{_OWNER} got {len(pairs)} pair(s) that all share one prompt; contrast pairs need at "
                   "least two prompts (the rejected response comes from another prompt's pair)")
            raise DataError(msg, hint="give it pairs of several prompts (marsctl augment: the whole selected "
                                      "file, rows of budget 0 included)")
        self.items: list[tuple[str, str, str]] = []  # (text, pair id, role)
        self.block: dict[str, tuple[int, int]] = {}
        for prompt, items in groups.items():
            self.block[prompt] = (len(self.items), len(self.items) + len(items))
            self.items += items

    def off_prompt(self, prompt: str, rng: random.Random) -> Iterator[tuple[str, str, str]]:
        """Every response of the other prompts once, in a random order drawn lazily from ``rng``."""
        start, end = self.block[prompt]
        skip = end - start
        for j in _shuffled(len(self.items) - skip, rng):
            yield self.items[j + skip if j >= start else j]


def _shuffled(m: int, rng: random.Random) -> Iterator[int]:
    """``range(m)`` in a random order, lazily: a Fisher–Yates shuffle that stores only the slots it swapped.

    >>> sorted(_shuffled(5, random.Random(0)))
    [0, 1, 2, 3, 4]
    """
    swapped: dict[int, int] = {}
    for i in range(m):
        j = rng.randrange(i, m)
        yield swapped.get(j, j)
        swapped[j] = swapped.get(i, i)
