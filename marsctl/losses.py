"""The Bradley–Terry loss, with the shape check that catches [B, 1] − [B] broadcasting, and its options.

Per-pair weights: a training record's ``weight`` field (a finite number >= 0; absent means 1)
multiplies its loss term, and a batch's loss is the weighted mean sum(w·l) / sum(w), so scaling
every weight by the same factor changes nothing. Heads leave pairs of weight 0 out before batching
(:func:`positive_weights`), so a weight of 0 trains exactly as if the pair were not there.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, ClassVar

from marsctl.errors import DataError
from marsctl.params import check_interval

WEIGHT_FIELD = "weight"


@dataclass
class BTLossConfig:
    """The options of ``bt_loss`` a head exposes as parameters; a head's Config inherits them."""

    owner: ClassVar[str] = "the head"  # who the parameters belong to, in error messages

    margin_field: bool = field(default=False, metadata={
        "help": "Subtract a row's label-side 'margin' inside the loss (TRL's convention)."})
    center_rewards: float = field(default=0.0, metadata={
        "help": "Reward-centering coefficient (TRL): adds c*mean((r+ + r-)^2)."})

    def __post_init__(self) -> None:
        check_interval(self.center_rewards, "center_rewards", self.owner, low=0)

    def target_margins(self, pairs: list[dict[str, Any]]) -> list[float]:
        """The margin m of each pair for ``bt_loss``: its ``margin`` field when ``margin_field`` is on, else 0."""
        if not self.margin_field:
            return [0.0] * len(pairs)
        return [float(p.get("margin", 0.0) or 0.0) for p in pairs]


def pair_weights(pairs: list[dict[str, Any]], name: str | None = None) -> list[float]:
    """Each pair's training weight: its ``weight`` field (a finite number >= 0), 1 when absent.

    A bad weight is a DataError naming the record's line (``_line``); so is a set whose weights are all 0.

    >>> pair_weights([{"weight": 2}, {}])
    [2.0, 1.0]
    """
    out = []
    for i, p in enumerate(pairs):
        w = p.get(WEIGHT_FIELD, 1.0)
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w) or w < 0:
            where = f"{name or 'training data'} line {p.get('_line', i + 1)}"
            msg = f"{where}: field 'weight' must be a finite number >= 0, got {w!r}"
            raise DataError(msg, hint="a pair's weight multiplies its loss term; absent means 1")
        out.append(float(w))
    if out and not any(out):
        msg = f"{name or 'training data'}: every pair has weight 0; there is nothing to train on"
        raise DataError(msg)
    return out


def positive_weights(weights: list[float]) -> tuple[list[int], list[float] | None]:
    """Indices of the positive weights, and those weights (None when every one of them is 1).

    Heads train on these indices only: leaving weight-0 pairs out before batching makes a weight
    of 0 train exactly as without the pair.

    >>> positive_weights([0.0, 1.0, 1.0])
    ([1, 2], None)
    >>> positive_weights([2.0, 0.0, 1.0])
    ([0, 2], [2.0, 1.0])
    """
    keep = [i for i, x in enumerate(weights) if x > 0]
    if not keep:
        msg = "every pair has weight 0; there is nothing to train on"
        raise DataError(msg)
    kept = [weights[i] for i in keep]
    return keep, (None if all(x == 1.0 for x in kept) else kept)


def bt_loss(r_chosen: Any, r_rejected: Any, target_margin: Any = None, center_rewards: float = 0.0,
            weight: Any = None) -> Any:
    """−log σ(r⁺ − r⁻ − m), averaged; optional TRL reward centering c·mean((r⁺ + r⁻)²).

    With ``weight`` (shape [B], >= 0, positive sum), both means are weighted: sum(w·l) / sum(w).
    Both reward tensors must have shape [B]: a [B, 1] tensor minus a [B] tensor would silently
    broadcast to [B, B] and train on every cross pair.
    """
    import torch.nn.functional as F

    if r_chosen.dim() != 1 or r_chosen.shape != r_rejected.shape:
        msg = f"rewards must both have shape [B]; got {tuple(r_chosen.shape)} and {tuple(r_rejected.shape)}"
        raise ValueError(msg)
    delta = r_chosen - r_rejected
    if target_margin is not None:
        delta = delta - target_margin
    if weight is None:
        loss = -F.logsigmoid(delta).mean()
        if center_rewards:
            loss = loss + center_rewards * ((r_chosen + r_rejected) ** 2).mean()
        return loss
    if weight.shape != r_chosen.shape:
        msg = f"weights must have the rewards' shape {tuple(r_chosen.shape)}; got {tuple(weight.shape)}"
        raise ValueError(msg)
    total = weight.sum()
    loss = -(weight * F.logsigmoid(delta)).sum() / total
    if center_rewards:
        loss = loss + center_rewards * (weight * (r_chosen + r_rejected) ** 2).sum() / total
    return loss
