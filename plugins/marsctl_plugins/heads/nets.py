"""The embedding heads' networks: K members, each a quality network plus an optional length term.

Imports torch at the top: :mod:`marsctl_plugins.heads.embedding` imports this module inside the
functions that build or run a network, never at start-up.

A member's reward is quality(features) + length(chars); the ensemble's is the mean over its members.
The length term is a·z + b·z², z the log1p of the response's characters standardised by the mean
and std of the first training set's responses (fixed afterwards, saved with the weights) and clipped
to ±Z_CLIP, so an extreme length at scoring time cannot dominate the reward.
"""

from __future__ import annotations

from typing import Any

import torch

Z_CLIP = 4.0


class LengthTerm(torch.nn.Module):
    """a·z + b·z² of the standardised log response length (``coef`` = [a, b], zero at the start)."""

    def __init__(self) -> None:
        super().__init__()
        self.coef = torch.nn.Parameter(torch.zeros(2))
        self.register_buffer("center", torch.zeros(()))
        self.register_buffer("scale", torch.zeros(()))  # 0 until the first training set sets it

    def set_standardisation(self, chars: torch.Tensor) -> None:
        """Fix centre and scale from the first training set's response lengths (later calls keep them)."""
        if float(self.scale) > 0:
            return
        x = torch.log1p(chars.double())
        sd = float(x.std(unbiased=False)) if len(x) else 0.0
        if sd > 0:
            self.center.fill_(float(x.mean()))
            self.scale.fill_(sd)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        """The length term of each response (``chars`` a [B] tensor of character counts)."""
        scale = torch.where(self.scale > 0, self.scale, torch.ones_like(self.scale))  # no branch: traces for ONNX
        z = ((torch.log1p(chars.to(self.coef.dtype)) - self.center) / scale).clamp(-Z_CLIP, Z_CLIP)
        return self.coef[0] * z + self.coef[1] * z * z


class Member(torch.nn.Module):
    """One reward network: ``quality`` (features → [B, 1]) and an optional ``length`` term."""

    def __init__(self, quality: torch.nn.Module, length: bool) -> None:
        super().__init__()
        self.quality = quality
        self.length = LengthTerm() if length else None

    def forward(self, x: torch.Tensor, chars: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(quality, length) rewards, each of shape [B] (length all zero without a length term)."""
        q = self.quality(x).squeeze(-1)
        ell = self.length(chars) if self.length is not None else torch.zeros_like(q)
        return q, ell


class Ensemble(torch.nn.Module):
    """K members; ``members[0]`` is built and trained exactly as a single head would be."""

    def __init__(self, members: list[Member]) -> None:
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    def file_names(self) -> dict[str, str]:
        """Native state-dict name → name in model.safetensors.

        One member saves its quality network's tensors under their own names (the layout of heads
        without ensembles and length terms) and its length term under ``length.``; K > 1 members
        prefix every name with ``m{k}.``.
        """
        out = {}
        for native in self.state_dict():
            _, k, part, rest = native.split(".", 3)
            name = rest if part == "quality" else f"length.{rest}"
            out[native] = name if len(self.members) == 1 else f"m{k}.{name}"
        return out

    def file_state(self) -> dict[str, Any]:
        """The state dict under its file names (contiguous tensors, for safetensors)."""
        names = self.file_names()
        return {names[k]: v.contiguous() for k, v in self.state_dict().items()}

    def load_file_state(self, state: dict[str, Any]) -> None:
        """Load tensors named as :meth:`file_state` names them (checked by the caller)."""
        names = self.file_names()
        self.load_state_dict({native: state[name] for native, name in names.items()})


class AdamW:
    """AdamW as ``torch.optim.AdamW`` computes it on CPU (its single-tensor path), without its start-up cost.

    ``torch.optim.Optimizer`` imports ``torch._dynamo`` on its first use (1.7 s of a warm refine's 13 s,
    perf_notes.md). This is the same arithmetic, operation for operation (betas 0.9/0.999, eps 1e-8,
    decoupled weight decay, no amsgrad), so the trained weights are the same bits: checked against
    ``torch.optim.AdamW`` in tests/test_fast_paths.py. ``groups``: dicts with ``params`` and optionally their
    own ``lr`` and ``weight_decay``, as torch takes them.
    """

    def __init__(self, groups: list[dict[str, Any]], lr: float, weight_decay: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.groups = [{"lr": lr, "weight_decay": weight_decay, **g, "params": list(g["params"])} for g in groups]
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.state: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def zero_grad(self) -> None:
        """Drop the gradients (``set_to_none``, torch's default)."""
        for g in self.groups:
            for p in g["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        beta1, beta2 = self.beta1, self.beta2
        for g in self.groups:
            lr, wd = g["lr"], g["weight_decay"]
            for p in g["params"]:
                if p.grad is None:
                    continue
                if id(p) not in self.state:
                    self.state[id(p)] = (torch.zeros_like(p, memory_format=torch.preserve_format),
                                         torch.zeros_like(p, memory_format=torch.preserve_format),
                                         torch.tensor(0.0, dtype=torch.float32))  # torch's step counter
                exp_avg, exp_avg_sq, step_t = self.state[id(p)]
                step_t += 1
                step = step_t.item()
                if wd != 0:
                    p.mul_(1 - lr * wd)
                grad = p.grad
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step_size = lr / (1 - beta1**step)
                denom = (exp_avg_sq.sqrt() / (1 - beta2**step) ** 0.5).add_(self.eps)
                p.addcdiv_(exp_avg, denom, value=-step_size)
