"""The augmenter base: the MARS pool recipe, seeded draws and provenance."""

from __future__ import annotations

import dataclasses
import random
import re
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from marsctl.shapes import SOURCE, synthetic_source
from marsctl.stats import derive_seed
from marsctl.version import __version__

ROLES: tuple[str, ...] = ("prompt", "chosen", "rejected")
# dialogue markers: HH's turns and the "Role:" blocks of a rendered chat prompt; a variant keeps its text's
_MARKERS = re.compile(r"(?:^|\n\n)(Human|Assistant|User|System):")


def keeps_markers(text: str, variant: str) -> bool:
    """Whether ``variant`` has the dialogue markers of ``text`` (``\\n\\nHuman:``, ``\\n\\nAssistant:``, …), in order.

    >>> keeps_markers("\\n\\nHuman: Hi\\n\\nAssistant:", "\\n\\nHuman: Hello\\n\\nAssistant:")
    True
    >>> keeps_markers("\\n\\nHuman: Hi\\n\\nAssistant:", "Hello, what can I do?")
    False
    """
    return _MARKERS.findall(text) == _MARKERS.findall(variant)


@dataclasses.dataclass
class PoolConfig:
    """Pool settings shared by augmenters."""

    n_variants: int = dataclasses.field(
        default=5, metadata={"help": "Variants made of each of prompt, chosen and rejected (pool = n²)."}
    )

    def __post_init__(self) -> None:
        from marsctl.params import check_interval

        check_interval(self.n_variants, "n_variants", "the augmenter", kind=int, low=1, high=50)


class Augmenter(ABC):
    """Makes label-preserving variants of texts; the base builds the per-pair pool and draws from it.

    Pool recipe (MARS): ``n`` variants each of prompt, chosen and rejected; combination
    (chosen c, rejected r, prompt (c + r) mod n) gives n² rows per pair; a pair with budget b
    draws b rows without replacement while b <= n² (beyond that the pool is cycled, and counted).

    The prompt of a conversational pair (read from message lists: its text is a rendering for the
    encoder) is never varied: its synthetic rows keep the original prompt messages and vary the
    responses only, and are written as ``trl-chat`` (:func:`marsctl.layouts.restore`). A variant that
    lost or gained a dialogue marker of its text (``\\n\\nHuman:``, ``\\n\\nAssistant:``) is dropped.

    Subclasses implement ``variants``; override ``variants_batch`` to batch generation.
    """

    name: ClassVar[str] = "?"
    version: ClassVar[str] = __version__
    Config: ClassVar[type] = PoolConfig
    # True for an augmenter whose rows for one pair draw on the other pairs given (``contrast``): a streaming
    # augment then hands it the whole input, rows of budget 0 included, as one call (``augmentation.iter_augment``),
    # so its rows do not depend on how the stream is chunked.
    reads_all_pairs: ClassVar[bool] = False

    def __init__(self, config: Any = None, *, seed: int = 0, draw_seed: int | None = None):
        self.config = config if config is not None else self.Config()
        self.seed = seed  # seeds the variants (the pool)
        self.draw_seed = seed if draw_seed is None else draw_seed  # seeds which pool rows are drawn
        self.stats_: dict[str, int] = {"pairs": 0, "rows": 0, "cycled_rows": 0, "short_pools": 0}
        # What the augmenter found at run time that its output depends on (e.g. eda's synonym source);
        # recorded in each round's metrics (``augment.provenance``) and shown in the HTML report.
        self.provenance_: dict[str, Any] = {}

    @abstractmethod
    def variants(self, text: str, n: int, rng: random.Random, role: str) -> list[str]:
        """Up to ``n`` label-preserving variants of ``text`` (role: prompt, chosen or rejected)."""

    def variants_batch(self, items: list[tuple[str, str]], n: int,
                       counterparts: list[str | None] | None = None) -> list[list[str]]:
        """Variants for many (text, role) items; each item's RNG is seeded from seed, role and text.

        ``counterparts`` (from ``augment``): for each item, the pair's other response (None for a
        prompt), for an augmenter that checks a rewrite did not become it; this one does not need them.
        """
        out = []
        for text, role in items:
            rng = random.Random(derive_seed(self.seed, role, text))
            out.append(self.variants(text, n, rng, role))
        return out

    def pool(self, pair: dict[str, Any], texts: dict[str, list[str]]) -> list[dict[str, Any]]:
        """The pool of candidate rows for one pair, from its variants (``texts[role]``)."""
        n = self.config.n_variants
        prompts = texts["prompt"] or [pair["prompt"]]
        rows = []
        seen = {(pair["prompt"], pair["chosen"], pair["rejected"])}
        for c, chosen in enumerate(texts["chosen"] or [pair["chosen"]]):
            for r, rejected in enumerate(texts["rejected"] or [pair["rejected"]]):
                k = (c + r) % n % len(prompts)
                key = (prompts[k], chosen, rejected)
                if chosen == rejected or key in seen:
                    continue
                seen.add(key)
                rows.append({"prompt": prompts[k], "chosen": chosen, "rejected": rejected,
                             "variant": {"prompt": k, "chosen": c, "rejected": r}})
        return rows

    def augment(
        self, pairs: list[dict[str, Any]], counts: list[int], *, round: int = 0, progress: Any = None
    ) -> list[list[dict[str, Any]]]:
        """For each pair, ``counts[i]`` new synthetic pairs with provenance (or its whole pool if -1)."""
        n = self.config.n_variants
        todo = [i for i, b in enumerate(counts) if b != 0]
        items: list[tuple[str, str]] = []
        counterparts: list[str | None] = []
        varied: list[tuple[str, ...]] = []
        for i in todo:
            p = pairs[i]
            roles = ROLES[1:] if SOURCE in p else ROLES  # a chat prompt stays as it is (messages and all)
            varied.append(roles)
            items += [(p[role], role) for role in roles]
            counterparts += [{"prompt": None, "chosen": p["rejected"], "rejected": p["chosen"]}[role] for role in roles]
        made = self.variants_batch(items, n, counterparts=counterparts) if items else []
        out: list[list[dict[str, Any]]] = [[] for _ in pairs]
        at = 0
        for i, roles in zip(todo, varied, strict=True):
            got = dict(zip(roles, made[at : at + len(roles)], strict=True))
            at += len(roles)
            texts = {role: self._keep_markers(pairs[i][role], got.get(role, [])) for role in ROLES}
            pool = self.pool(pairs[i], texts)
            out[i] = self._draw(pairs[i], pool, counts[i], round)
            if progress is not None:
                progress(1)
        return out

    def _keep_markers(self, text: str, variants: list[str]) -> list[str]:
        """``variants`` without those that changed ``text``'s dialogue markers (counted in ``filter_markers``)."""
        kept = [v for v in variants if keeps_markers(text, v)]
        if len(kept) < len(variants):
            self.stats_["filter_markers"] = self.stats_.get("filter_markers", 0) + len(variants) - len(kept)
        return kept

    def _draw(self, pair: dict[str, Any], pool: list[dict[str, Any]], b: int, round: int) -> list[dict]:
        self.stats_["pairs"] += 1
        if not pool:
            self.stats_["short_pools"] += 1
            return []
        rng = random.Random(derive_seed(self.draw_seed, "draw", round, pair["id"]))
        if b < 0:  # the whole pool, in order
            picks = list(range(len(pool)))
        else:
            picks = []
            while len(picks) < b:
                order = list(range(len(pool)))
                rng.shuffle(order)
                picks += order[: b - len(picks)]
            self.stats_["cycled_rows"] += max(0, b - len(pool))
            if len(pool) < b:
                self.stats_["short_pools"] += 1
        rows = []
        for k, idx in enumerate(picks):
            row = self.provenance(pair, pool[idx], round, k)
            rows.append(row)
        self.stats_["rows"] += len(rows)
        return rows

    def provenance(self, pair: dict[str, Any], cand: dict[str, Any], round: int, k: int) -> dict[str, Any]:
        """A synthetic record: the candidate texts plus parent id, round, augmenter and variant."""
        row = {
            "id": f"{pair['id']}~r{round}~{k}",
            "prompt": cand["prompt"],
            "chosen": cand["chosen"],
            "rejected": cand["rejected"],
            "source": "synthetic",
            "parent_id": pair["id"],
            "round": round,
            "augmenter": {"name": self.name, "version": self.version},
            "variant": cand["variant"],
        }
        for key in ("subset",):
            if key in pair:
                row[key] = pair[key]
        source = synthetic_source(pair)  # from a chat row: written as trl-chat, the parent's prompt messages kept
        if source is not None:
            row[SOURCE] = source
        return row
