"""The Bradley–Terry loss, with the shape check that catches [B, 1] − [B] broadcasting."""

from __future__ import annotations

from typing import Any


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
