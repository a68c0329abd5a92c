"""The paper's selectors: mars (signed), mars-abs, uniform and West-of-N (won)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from marsctl.alloc import population_std, softmax
from marsctl.params import check_choice, check_interval
from marsctl.plugin import Selector


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
        """α after the optional scaling by std(Δ)."""
        if self.config.alpha_scale == "std":
            sd = population_std(margins)
            return self.config.alpha / sd if sd > 0 else 0.0
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
    finds easiest (highest predicted margin); the opposite of MARS."""

    name: ClassVar[str] = "won"
    pick: ClassVar[str] = "top-margin"
