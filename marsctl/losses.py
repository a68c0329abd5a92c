"""The Bradley–Terry loss, with the shape check that catches [B, 1] − [B] broadcasting, and its options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from marsctl.params import check_interval


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


def bt_loss(r_chosen: Any, r_rejected: Any, target_margin: Any = None, center_rewards: float = 0.0) -> Any:
    """−log σ(r⁺ − r⁻ − m), averaged; optional TRL reward centering c·mean((r⁺ + r⁻)²).

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
    loss = -F.logsigmoid(delta).mean()
    if center_rewards:
        loss = loss + center_rewards * ((r_chosen + r_rejected) ** 2).mean()
    return loss
