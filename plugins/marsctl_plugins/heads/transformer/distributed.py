"""Running the transformer head under Hugging Face accelerate (or plain torch): devices, precision, ranks.

``fit`` runs under accelerate (DDP; FSDP or DeepSpeed through an accelerate config), launched with
``accelerate launch`` or ``torchrun``; without accelerate installed, one process runs through
``SingleProcess``, which offers the few ``Accelerator`` methods ``fit`` uses.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from marsctl.errors import ConfigError

_MP = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}  # the precision parameter -> accelerate's mixed_precision


class SingleProcess:
    """The few Accelerator methods ``fit`` uses, for plain single-process torch without accelerate."""

    num_processes = 1
    process_index = 0
    is_main_process = True
    distributed_type = "NO"

    def __init__(self, device: Any, mixed_precision: str):
        import torch

        self.device = device
        self.mixed_precision = mixed_precision
        self._scaler = torch.amp.GradScaler(device.type) if mixed_precision == "fp16" else None
        self._optimizer: Any = None

    def prepare(self, model: Any, optimizer: Any) -> tuple[Any, Any]:
        self._optimizer = optimizer
        return model, optimizer

    def autocast(self) -> Any:
        import torch

        if self.mixed_precision == "no":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.mixed_precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def no_sync(self, model: Any) -> Any:
        return contextlib.nullcontext()

    def backward(self, loss: Any) -> None:
        (self._scaler.scale(loss) if self._scaler else loss).backward()

    def clip_grad_norm_(self, params: Any, max_norm: float) -> Any:
        import torch

        if self._scaler:
            self._scaler.unscale_(self._optimizer)
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    def step(self, optimizer: Any) -> None:
        if self._scaler:
            self._scaler.step(optimizer)
            self._scaler.update()
        else:
            optimizer.step()

    def reduce(self, tensor: Any, reduction: str = "sum") -> Any:
        return tensor

    def unwrap_model(self, model: Any) -> Any:
        return model

    def wait_for_everyone(self) -> None:
        pass

    def free_memory(self) -> None:
        pass


def env_rank() -> int:
    """This process's global rank as the launcher set it (0 when not launched)."""
    return int(os.environ.get("RANK", "0") or 0)


def env_local_rank() -> int:
    """This process's rank on its machine (its GPU index) as the launcher set it."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def env_world_size() -> int:
    """The number of processes the launcher started (1 when not launched)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def default_device_type() -> str:
    """``cuda`` when a GPU is there and accelerate was not told to use the CPU, else ``cpu``."""
    import torch

    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_precision(precision: str, device_type: str) -> str:
    """accelerate's ``mixed_precision`` (no, bf16, fp16) for the ``precision`` parameter on a device type."""
    import torch

    if precision == "auto":
        env = os.environ.get("ACCELERATE_MIXED_PRECISION")
        if env in ("no", "bf16", "fp16"):
            return env
        if device_type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "no"
    if precision == "fp16" and device_type != "cuda":
        msg = "precision fp16 needs a CUDA device"
        raise ConfigError(msg, hint="use -p precision=bf16 or fp32 on CPU")
    return _MP[precision]


def accelerator(device: str | None, mixed_precision: str) -> Any:
    """An accelerate ``Accelerator`` (or ``SingleProcess`` when accelerate is missing)."""
    try:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
    except ImportError:
        if env_world_size() > 1:
            msg = "the transformer head needs accelerate for multi-process training"
            raise ConfigError(msg, hint="pip install 'marsctl[gpu]'") from None
        import torch

        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dev.type == "cpu" and mixed_precision == "fp16":
            mixed_precision = "no"
        return SingleProcess(dev, mixed_precision)
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") not in (None, mixed_precision):
        # Another head in this process chose another precision; keep the process group, reset the rest.
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=mixed_precision, cpu=device == "cpu")


def optimizer_step(acc: Any, optimizer: Any) -> None:
    """One optimiser step (an accelerate-prepared optimizer applies its own gradient scaler)."""
    if isinstance(acc, SingleProcess):
        acc.step(optimizer)
    else:
        optimizer.step()
