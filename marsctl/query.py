"""Which unlabeled pairs to label next: the query strategies' base and the streaming pick over a pool.

A strategy (plugin kind ``query``, entry-point group ``marsctl.queries``) gives each scored pair a key, lower
first (:meth:`QueryStrategy.keys`); the pool is streamed a chunk at a time and only the ``K × oversample``
lowest keys are kept (a bounded heap), so memory is flat in the pool's size. A strategy may then choose its
K from those candidates (:meth:`QueryStrategy.pick`: ``diverse`` spreads them over prompts).
"""

from __future__ import annotations

import heapq
import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from marsctl.errors import ConfigError, DataError
from marsctl.params import NoConfig
from marsctl.version import __version__

LABEL_FIELD = "preferred"  # written empty into each pair to label
RANK_FIELD = "query_rank"  # 1 = label first
STRATEGY_FIELD = "query_strategy"
DEFAULT_STRATEGY = "random"  # chosen by measurement (docs/labeling.md): no strategy beat random beyond noise


@dataclass
class QueryContext:
    """What a strategy may use besides the scored rows: the run's seed, whether the head is an ensemble,
    ``embed_prompts(texts) -> array`` (prompt vectors from the head's encoder, or None) and
    ``last_hidden(prompts, responses) -> array`` (the inputs of the head's last layer, or None)."""

    seed: int = 0
    ensemble: bool = False
    embed_prompts: Callable[[list[str]], Any] | None = None
    last_hidden: Callable[[list[str], list[str]], Any] | None = None


class QueryStrategy(ABC):
    """Orders unlabeled pairs by how much their label is worth: :meth:`keys`, lower is labeled first."""

    name: ClassVar[str] = "?"
    version: ClassVar[str] = __version__
    Config: ClassVar[type] = NoConfig
    needs_ensemble: ClassVar[bool] = False  # reads pred_margin_std: refused without an ensemble head
    needs_one_network: ClassVar[bool] = False  # reads the last layer's inputs: refused with an ensemble head
    oversample: ClassVar[int] = 1  # candidates kept per pair to pick, for :meth:`pick`
    needs_scores: ClassVar[bool] = True  # False: keys from the rows alone (the pool need not be scored)

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.Config()

    @abstractmethod
    def keys(self, rows: list[dict[str, Any]], context: QueryContext) -> list[float]:
        """One key per scored row (reward_a, reward_b, pred_margin, p_a, pred_margin_std); lower goes first."""

    def pick(self, candidates: list[dict[str, Any]], k: int, context: QueryContext) -> list[dict[str, Any]]:
        """The K to label from the candidates, which come sorted by key (default: the first K)."""
        return candidates[:k]


def check_strategy(strategy: QueryStrategy, ensemble: bool) -> None:
    """Refuse a strategy that needs an ensemble head when the head has one network (and the reverse)."""
    if strategy.needs_one_network and ensemble:
        msg = f"--strategy {strategy.name} reads the inputs of the head's last layer, and this model is an ensemble"
        raise ConfigError(msg, hint="use a model trained with ensemble=1, or --strategy uncertainty")
    if strategy.needs_ensemble and not ensemble:
        msg = (f"--strategy {strategy.name} ranks pairs by the spread of an ensemble's margins, and this model "
               "has one network")
        raise ConfigError(msg, hint="train the model with -p ensemble=5 (or more), or use --strategy margin")


def select(rows: Iterable[dict[str, Any]], strategy: QueryStrategy, k: int, context: QueryContext,
           chunk: int = 4096) -> tuple[list[dict[str, Any]], int]:
    """The K rows to label from a stream of scored rows, and the pool's size; memory: K × oversample rows.

    Equal keys keep the pool's order. K larger than the pool is a DataError (said after the pool was read).
    """
    keep = max(k, k * strategy.oversample)
    heap: list[tuple[float, int, dict[str, Any]]] = []  # (−key, −position, row): the largest key on top
    n = 0
    it = iter(rows)
    while part := list(itertools.islice(it, chunk)):
        for key, row in zip(strategy.keys(part, context), part, strict=True):
            item = (-float(key), -n, row)
            n += 1
            if len(heap) < keep:
                heapq.heappush(heap, item)
            elif item > heap[0]:
                heapq.heapreplace(heap, item)
    if k > n:
        msg = f"-k {k} is larger than the pool ({n} pair{'s' * (n != 1)}): there are not {k} pairs to label"
        raise DataError(msg, hint=f"ask for at most {n}")
    candidates = [row for _, _, row in sorted(heap, key=lambda t: (-t[0], -t[1]))]
    picked = strategy.pick(candidates, k, context)
    return picked, n


def to_label(picked: list[dict[str, Any]], strategy: str) -> list[dict[str, Any]]:
    """The picked rows as written for the labeler: rank, strategy, and an empty ``preferred`` last.

    >>> to_label([{"id": "x", "prompt": "p", "response_a": "a", "response_b": "b"}], "margin")[0]["preferred"]
    ''
    """
    out = []
    for i, row in enumerate(picked):
        rec = {k: v for k, v in row.items() if k not in (LABEL_FIELD, RANK_FIELD, STRATEGY_FIELD)}
        out.append({**rec, RANK_FIELD: i + 1, STRATEGY_FIELD: strategy, LABEL_FIELD: ""})
    return out


def query(pool: str, model: Any, k: int, strategy: str = DEFAULT_STRATEGY, *, params: Any = None, seed: int = 0,
          batch_size: int | None = None, name: str | None = None, split: str | None = None) -> list[dict[str, Any]]:
    """The K unlabeled pairs of ``pool`` (a path) to label next by ``strategy``, scored by ``model``.

    ``model`` is a head or a model directory. The pool is read and scored in bounded memory
    (:func:`marsctl.unlabeled.iter_unlabeled`, :func:`marsctl.unlabeled.score_unlabeled`); each pair comes
    back with its scores, ``query_rank``, ``query_strategy`` and an empty ``preferred``.
    """
    from marsctl import registry
    from marsctl.modeldir import load_head
    from marsctl.params import check_interval, check_seed
    from marsctl.plugin import Head
    from marsctl.unlabeled import is_ensemble, iter_unlabeled, score_unlabeled

    check_interval(k, "k", "query", kind=int, low=1)
    check_seed(seed, "seed", "query")
    chooser = registry.create("query", strategy, params)
    head = model if isinstance(model, Head) else load_head(model)
    context = QueryContext(seed=seed, ensemble=is_ensemble(head), embed_prompts=prompt_embedder(head),
                           last_hidden=getattr(head, "last_hidden", None))
    check_strategy(chooser, context.ensemble)
    scored = score_unlabeled(iter_unlabeled(pool, name=name, split=split), head, batch_size)
    picked, _ = select(scored, chooser, k, context)
    return to_label(picked, strategy)


def prompt_embedder(head: Any) -> Callable[[list[str]], Any] | None:
    """``texts -> vectors`` from a head's encoder (the cached MiniLM of the embedding heads), or None."""
    encoder = getattr(head, "encoder", None)
    if encoder is None or not hasattr(encoder, "encode"):
        return None
    return lambda texts: encoder.encode(texts, side="prompt")
