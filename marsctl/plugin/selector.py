"""The selector base, and how the ``pick`` a selection writes into each row fills its budget."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from marsctl.errors import ConfigError
from marsctl.params import NoConfig
from marsctl.version import __version__

if TYPE_CHECKING:
    from marsctl.plugin.head import Head


class Selector(ABC):
    """Turns predicted margins of base pairs into allocation weights q (summing to 1).

    The core (``marsctl.alloc``) turns q into integer budgets with largest-remainder rounding.
    ``pick`` says how augment draws rows from a pair's pool: ``random`` or ``top-margin``
    (score the pool with the current model and keep the highest predicted margins).
    """

    name: ClassVar[str] = "?"
    version: ClassVar[str] = __version__
    Config: ClassVar[type] = NoConfig
    pick: ClassVar[str] = "random"
    # Numeric row fields besides pred_margin that ``weights_for`` reads: select refuses rows without them
    # (naming the line, with ``needs_hint`` as the hint) before the selector runs.
    needs: ClassVar[tuple[str, ...]] = ()
    needs_hint: ClassVar[str] = ""

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.Config()

    def weights_for(self, rows: list[dict[str, Any]], margins: list[float]) -> list[float]:
        """Allocation weights for scored rows (default: ``weights(margins)``; a selector with ``needs`` reads rows)."""
        return self.weights(margins)

    @abstractmethod
    def weights(self, margins: list[float]) -> list[float]:
        """Allocation weights q_i >= 0 over base pairs, summing to 1."""

    def alpha_eff(self, margins: list[float]) -> float | None:
        """The softmax temperature the selector used on these margins, or None (the default: it has none).

        Reported as ``alpha_eff`` in the selection summary.
        """
        return None


# How augment fills a selected pair's budget b from its pool, by the ``pick`` that select writes into each
# row (``Selector.pick``): ``random``, the augmenter draws b rows (seeded); ``top-margin`` (West-of-N), the
# augmenter makes the whole pool and the b rows the current model gives the highest predicted margin are kept.
PICKS = ("random", "top-margin")


def pick_needs_model(pick: str) -> bool:
    """Whether filling a budget with this pick scores the pool with the current model."""
    return pick == "top-margin"


def pool_request(pick: str, budget: int) -> int:
    """Rows to ask the augmenter for: ``budget`` random draws, or the whole pool (-1) to keep the top."""
    return -1 if pick_needs_model(pick) and budget > 0 else budget


def keep_picked(pick: str, made: list[dict[str, Any]], budget: int, head: Head | None) -> list[dict[str, Any]]:
    """The rows a pair keeps of what the augmenter made for ``pool_request(pick, budget)``.

    ``random``: all of them. ``top-margin``: the ``budget`` rows ``head`` gives the highest predicted
    margin (ties keep the pool's order).
    """
    if not pick_needs_model(pick) or not made:
        return made
    if head is None:
        msg = f"pick {pick!r} keeps each pool's highest-margin rows, so it needs the model"
        raise ConfigError(msg)
    margins = [r["pred_margin"] for r in head.score(made)]
    order = sorted(range(len(made)), key=lambda i: -margins[i])
    return [made[i] for i in order[:budget]]
