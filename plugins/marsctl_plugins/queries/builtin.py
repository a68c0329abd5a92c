"""The query strategies: random (seeded), margin (smallest |Δ|), uncertainty (ensemble spread), diverse
(smallest |Δ|, spread over prompts) and fisher (D-optimal on the head's last layer)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from marsctl.params import check_interval
from marsctl.query import QueryContext, QueryStrategy
from marsctl.stats import derive_seed
from marsctl.unlabeled import SPREAD


class RandomQuery(QueryStrategy):
    """Pairs in a seeded random order: the baseline every other strategy must beat.

    A pair's key comes from the seed and its id alone, so the picks do not depend on the pool's order or chunks.
    """

    name: ClassVar[str] = "random"
    version: ClassVar[str] = "0.1.0"
    needs_scores: ClassVar[bool] = False

    def keys(self, rows: list[dict[str, Any]], context: QueryContext) -> list[float]:
        """A uniform draw per pair from (seed, id)."""
        return [derive_seed(context.seed, "query-random", r["id"]) / 2.0**63 for r in rows]


class MarginQuery(QueryStrategy):
    """The near-ties first: smallest |pred_margin| (MARS's own signal; the model is least sure of these)."""

    name: ClassVar[str] = "margin"
    version: ClassVar[str] = "0.1.0"

    def keys(self, rows: list[dict[str, Any]], context: QueryContext) -> list[float]:
        """|Δ|."""
        return [abs(float(r["pred_margin"])) for r in rows]


class UncertaintyQuery(QueryStrategy):
    """The pairs an ensemble's members disagree on most: largest spread of their margins (pred_margin_std)."""

    name: ClassVar[str] = "uncertainty"
    version: ClassVar[str] = "0.1.0"
    needs_ensemble: ClassVar[bool] = True

    def keys(self, rows: list[dict[str, Any]], context: QueryContext) -> list[float]:
        """−spread."""
        return [-float(r.get(SPREAD, 0.0)) for r in rows]


@dataclass
class DiverseConfig:
    """How the diverse strategy spreads its picks."""

    per_prompt: int = field(default=1, metadata={
        "help": "Pairs per prompt before a prompt gets another (near-duplicate prompts count as one)."})
    similarity: float = field(default=0.9, metadata={
        "help": "Prompts whose embeddings have at least this cosine count as the same prompt (1: exact text only)."})
    oversample: int = field(default=4, metadata={
        "help": "Candidates kept per pair to pick (the K × oversample smallest |Δ|; memory grows with it)."})

    def __post_init__(self) -> None:
        check_interval(self.per_prompt, "per_prompt", "the query 'diverse'", kind=int, low=1)
        check_interval(self.similarity, "similarity", "the query 'diverse'", low=-1, high=1)
        check_interval(self.oversample, "oversample", "the query 'diverse'", kind=int, low=1, high=100)


class DiverseQuery(MarginQuery):
    """Smallest |Δ| with the batch spread over prompts: at most ``per_prompt`` picks per prompt (prompts whose
    embeddings are near-duplicates count as one) while the ``K × oversample`` nearest ties last; then by |Δ|."""

    name: ClassVar[str] = "diverse"
    version: ClassVar[str] = "0.1.0"
    Config: ClassVar[type] = DiverseConfig

    def __init__(self, config: Any = None):
        super().__init__(config)
        self.oversample = self.config.oversample  # type: ignore[misc]

    def pick(self, candidates: list[dict[str, Any]], k: int, context: QueryContext) -> list[dict[str, Any]]:
        """Greedy over the candidates in |Δ| order; a prompt cluster is full at ``per_prompt`` picks."""
        cluster = self._clusters([c["prompt"] for c in candidates], context)
        used: dict[int, int] = {}
        picked: list[dict[str, Any]] = []
        rest: list[dict[str, Any]] = []
        for row, g in zip(candidates, cluster, strict=True):
            if len(picked) < k and used.get(g, 0) < self.config.per_prompt:
                used[g] = used.get(g, 0) + 1
                picked.append(row)
            else:
                rest.append(row)
        return picked + rest[: k - len(picked)]

    def _clusters(self, prompts: list[str], context: QueryContext) -> list[int]:
        """A cluster id per prompt: the first earlier prompt with the same text or cosine >= similarity."""
        import numpy as np

        first: dict[str, int] = {}
        ids = [first.setdefault(p, i) for i, p in enumerate(prompts)]
        if context.embed_prompts is None or self.config.similarity >= 1 or not prompts:
            return ids
        uniq = sorted(set(ids))
        vecs = np.asarray(context.embed_prompts([prompts[i] for i in uniq]), dtype=np.float64)
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        sims = vecs @ vecs.T
        root: dict[int, int] = {}
        for a, i in enumerate(uniq):
            earlier = np.flatnonzero(sims[a, :a] >= self.config.similarity)
            root[i] = root[uniq[int(earlier[0])]] if len(earlier) else i
        return [root[i] for i in ids]


@dataclass
class FisherConfig:
    """The D-optimal batch of the fisher strategy."""

    ridge: float = field(default=1.0, metadata={"help": "λ of the prior information matrix λ·I."})
    oversample: int = field(default=8, metadata={
        "help": "Candidates kept per pair to pick (the K × oversample largest p(1−p); memory grows with it)."})

    def __post_init__(self) -> None:
        check_interval(self.ridge, "ridge", "the query 'fisher'", low=0, closed="neither")
        check_interval(self.oversample, "oversample", "the query 'fisher'", kind=int, low=1, high=100)


class FisherQuery(MarginQuery):
    """D-optimal on the head's last layer: greedily the pair that adds most to log det of the Bradley–Terry
    Fisher information Σ p(1−p)·x xᵀ, x the difference of the last layer's inputs for a and b; the candidates
    are the K × oversample nearest ties (largest p(1−p)). Needs a head with one network."""

    name: ClassVar[str] = "fisher"
    version: ClassVar[str] = "0.1.0"
    Config: ClassVar[type] = FisherConfig
    needs_one_network: ClassVar[bool] = True

    def __init__(self, config: Any = None):
        super().__init__(config)
        self.oversample = self.config.oversample  # type: ignore[misc]

    def pick(self, candidates: list[dict[str, Any]], k: int, context: QueryContext) -> list[dict[str, Any]]:
        """Greedy log-det gain w·xᵀA⁻¹x, A⁻¹ updated by Sherman–Morrison after each pick."""
        import numpy as np

        from marsctl.errors import ConfigError

        hidden = context.last_hidden
        prompts = [c["prompt"] for c in candidates]
        ha = hidden(prompts, [c["response_a"] for c in candidates]) if hidden else None
        if ha is None or hidden is None:
            msg = "--strategy fisher needs the inputs of the head's last layer, which an ensemble head has not"
            raise ConfigError(msg, hint="score with a head of one network (ensemble=1), or use --strategy margin")
        x = np.asarray(ha, dtype=np.float64) - np.asarray(hidden(prompts, [c["response_b"] for c in candidates]),
                                                         dtype=np.float64)
        p = np.array([float(c["p_a"]) for c in candidates])
        w = p * (1 - p)
        inv = np.eye(x.shape[1]) / self.config.ridge
        chosen: list[int] = []
        free = np.ones(len(candidates), dtype=bool)
        for _ in range(min(k, len(candidates))):
            gain = w * np.einsum("ij,jk,ik->i", x, inv, x)
            gain[~free] = -np.inf
            i = int(np.argmax(gain))
            chosen.append(i)
            free[i] = False
            v = inv @ x[i]
            inv -= w[i] * np.outer(v, v) / (1 + w[i] * (x[i] @ v))
        return [candidates[i] for i in chosen]

    def keys(self, rows: list[dict[str, Any]], context: QueryContext) -> list[float]:
        """−p(1−p): the nearest ties are the candidates."""
        return [-float(r["p_a"]) * (1 - float(r["p_a"])) for r in rows]
