"""The paper's selectors: mars (signed), mars-abs, uniform and West-of-N (won); and uncertainty (ensemble spread)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import ClassVar

from marsctl.alloc import softmax
from marsctl.params import check_choice, check_interval
from marsctl.plugin import Selector
from marsctl.selection import SPREAD_FIELD as SPREAD
from marsctl.stats import population_std


@dataclass
class AlphaConfig:
    """Temperature of the margin softmax."""

    alpha: float = field(default=0.5, metadata={"help": "Softmax sharpness α (the paper uses 0.5)."})
    alpha_scale: str = field(default="none", metadata={
        "help": "none: use α as given; std: α_eff = α / std(Δ), so the tilt does not depend on the head's "
                "margin scale."})

    def __post_init__(self) -> None:
        check_interval(self.alpha, "alpha", "select", low=0)
        check_choice(self.alpha_scale, "alpha_scale", "select", ["none", "std"])


class MarsSelector(Selector):
    """MARS v2 (signed): q = softmax(−α·Δ); mis-ranked pairs get the most.

    Measured caveat: on noisy human labels the strongly mis-ranked pairs are often label noise,
    so this can pour the budget into wrong labels (see README, Results).
    """

    name: ClassVar[str] = "mars"
    version: ClassVar[str] = "0.1.0"
    Config: ClassVar[type] = AlphaConfig

    def alpha_eff(self, margins: list[float]) -> float:
        """α after the optional scaling by std(Δ) (finite: a subnormal std gives the largest float)."""
        if self.config.alpha_scale == "std":
            sd = population_std(margins)
            if not sd > 0:
                return 0.0
            return min(self.config.alpha / sd, sys.float_info.max)
        return self.config.alpha

    def transform(self, margins: list[float]) -> list[float]:
        """What the softmax ranks (lower gets more budget)."""
        return list(margins)

    def weights(self, margins: list[float]) -> list[float]:
        """softmax(−α_eff · transform(Δ))."""
        a = self.alpha_eff(margins)
        return softmax([-a * m for m in self.transform(margins)])


class MarsAbsSelector(MarsSelector):
    """MARS v1: q = softmax(−α·|Δ|); ambiguous pairs on either side get the most."""

    name: ClassVar[str] = "mars-abs"

    def transform(self, margins: list[float]) -> list[float]:
        """|Δ|."""
        return [abs(m) for m in margins]


@dataclass
class RobustConfig(AlphaConfig):
    """mars-robust: ambiguity by |Δ|, with strongly mis-ranked pairs treated as likely label noise."""

    alpha_scale: str = field(default="std", metadata={"help": "none | std (default std: scale-free)."})
    floor: float = field(default=1.0, metadata={
        "help": "Pairs with Δ < −floor·std(Δ) get no budget (likely label noise)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_interval(self.floor, "floor", "select", low=0)


class MarsRobustSelector(MarsSelector):
    """Noise-aware MARS: q ∝ exp(−α_eff·|Δ|) for Δ ≥ −floor·std(Δ), 0 below.

    Mis-ranked pairs far below zero are more often label noise than hard examples on noisy human
    data; this variant spends the budget on ambiguous pairs and skips those.
    """

    name: ClassVar[str] = "mars-robust"
    Config: ClassVar[type] = RobustConfig

    def weights(self, margins: list[float]) -> list[float]:
        """softmax over |Δ| restricted to Δ ≥ −floor·std(Δ) (uniform if that leaves no pair)."""
        a = self.alpha_eff(margins)
        limit = -self.config.floor * population_std(margins)
        keep = [m >= limit for m in margins]
        if not any(keep):
            return [1.0 / len(margins)] * len(margins)
        q = softmax([-a * abs(m) for m, k in zip(margins, keep, strict=True) if k])
        it = iter(q)
        return [next(it) if k else 0.0 for k in keep]


@dataclass
class SpreadConfig:
    """uncertainty: the tilt towards pairs the ensemble disagrees on."""

    alpha: float = field(default=1.0, metadata={
        "help": "Softmax sharpness α on the spread, in units of std(spread) (0: uniform)."})

    def __post_init__(self) -> None:
        check_interval(self.alpha, "alpha", "select", low=0)


class UncertaintySelector(Selector):
    """q = softmax(+α·s/std(s)) over the ensemble spread s = ``pred_margin_std``: the pairs the heads disagree on.

    Unlike |Δ|, the spread separates "unsure" from "confidently wrong" (a mislabeled pair the ensemble agrees
    on has a large |Δ| and a small spread). Needs rows scored by an ensemble head (``-p ensemble=K``); with no
    spread at all (K = 1) it is uniform.
    """

    name: ClassVar[str] = "uncertainty"
    version: ClassVar[str] = "0.1.0"
    Config: ClassVar[type] = SpreadConfig
    needs: ClassVar[tuple[str, ...]] = (SPREAD,)
    needs_hint: ClassVar[str] = ("score with an ensemble head, whose spread the score step writes: train or refine "
                                 "with -p ensemble=5 (or pass another --strategy)")

    def alpha_eff(self, margins: list[float]) -> float | None:
        """α / std(spread) of the last rows weighted (None before any)."""
        return getattr(self, "_alpha_eff", None)

    def weights(self, margins: list[float]) -> list[float]:
        """Without spreads there is nothing to tilt by: uniform (``select`` always calls ``weights_for``)."""
        return [1.0 / len(margins)] * len(margins) if margins else []

    def weights_for(self, rows: list[dict], margins: list[float]) -> list[float]:
        """softmax(α·s/std(s)) over each row's ``pred_margin_std`` (uniform when every spread is equal)."""
        spread = [float(r[SPREAD]) for r in rows]
        sd = population_std(spread)
        self._alpha_eff = min(self.config.alpha / sd, sys.float_info.max) if sd > 0 else 0.0
        return softmax([self._alpha_eff * s for s in spread])


class UniformSelector(Selector):
    """The paper's main baseline: q = 1/n."""

    name: ClassVar[str] = "uniform"
    version: ClassVar[str] = "0.1.0"

    def weights(self, margins: list[float]) -> list[float]:
        """Equal weights."""
        n = len(margins)
        return [1.0 / n] * n if n else []


class WestOfNSelector(UniformSelector):
    """West-of-N (adapted): an equal share per pair, filled with the pool rows the current model
    finds easiest (highest predicted margin; ``pick = "top-margin"``, the rule is
    ``marsctl.plugin.keep_picked``); the opposite of MARS."""

    name: ClassVar[str] = "won"
    pick: ClassVar[str] = "top-margin"
