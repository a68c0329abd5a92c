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
    """accelerate's ``mixed_precision`` (no, bf16, fp16) for the ``precision`` parameter on a device type.

    The encoder's rule (:mod:`marsctl.embed.precision`): ``auto`` is bf16 where the device runs bf16
    natively (:func:`~marsctl.embed.precision.native_bf16`: a CPU with avx512_bf16 or amx_bf16, a GPU
    with bf16 units), else fp32; a forced ``bf16`` without native units is a ConfigError (exit 2),
    since emulated bf16 is slower than fp32. ``auto`` follows ``ACCELERATE_MIXED_PRECISION`` when an
    accelerate launcher set it.
    """
    from marsctl.embed.precision import BF16_CPU_FLAGS, native_bf16

    if precision == "auto":
        env = os.environ.get("ACCELERATE_MIXED_PRECISION")
        if env in ("no", "bf16", "fp16"):
            return env
        return "bf16" if native_bf16(device_type) else "no"
    if precision == "fp16" and device_type != "cuda":
        msg = "precision fp16 needs a CUDA device"
        raise ConfigError(msg, hint="use -p precision=bf16 or fp32 on CPU")
    if precision == "bf16" and not native_bf16(device_type):
        where = "this CPU" if device_type == "cpu" else f"device {device_type}"
        units = f" ({' or '.join(BF16_CPU_FLAGS)} in /proc/cpuinfo)" if device_type == "cpu" else ""
        msg = (f"the transformer head's precision=bf16: {where} has no native bf16 units{units}, "
               "and emulated bf16 is slower than fp32")
        raise ConfigError(msg, hint="use -p precision=auto (bf16 where native, else fp32) or -p precision=fp32")
    return _MP[precision]


def precision_name(mixed_precision: str) -> str:
    """The precision's name as marsctl records it (fp32, bf16, fp16) for accelerate's ``mixed_precision``.

    >>> precision_name("no"), precision_name("bf16")
    ('fp32', 'bf16')
    """
    return {v: k for k, v in _MP.items()}.get(mixed_precision, mixed_precision)


def cpu_training_attention(model: Any, mixed_precision: str, device_type: str) -> str | None:
    """Switch a model that uses SDPA to eager attention for bf16 training on CPU; returns the old one.

    PyTorch's CPU flash-attention *backward* in bf16 is several times slower than in fp32 (measured:
    benchmarks/results/transformer_precision.md), while eager attention's matmuls run on the bf16
    units. Scoring keeps SDPA (its bf16 forward is fast). None when nothing was changed.
    """
    config = getattr(model, "config", None)
    old = getattr(config, "_attn_implementation", None)
    if mixed_precision != "bf16" or device_type != "cpu" or old != "sdpa":
        return None
    try:
        model.set_attn_implementation("eager")
    except (AttributeError, ValueError, ImportError):
        return None
    return old if getattr(model.config, "_attn_implementation", None) == "eager" else None


def attention_name(model: Any, switched: str | None) -> str | None:
    """The attention the fit trained with: eager when ``cpu_training_attention`` switched, else the model's."""
    return "eager" if switched is not None else getattr(model.config, "_attn_implementation", None)


def loaded_precision(configured: str, recorded: Any, where: str) -> str:
    """The precision a reloaded or resumed model runs in: the recorded one under ``auto``.

    ``auto`` does not re-decide per machine: the model trains and scores in the precision it was
    trained in, unless the config or an override names another. A bf16 model on a machine without
    native bf16 runs in fp32, with a warning (emulated bf16 is slower than fp32). ``where`` names the
    metadata file in errors.
    """
    from marsctl import ui
    from marsctl.embed.precision import BF16_CPU_FLAGS, native_bf16

    if recorded not in ("fp32", "bf16", "fp16"):
        msg = f"{where} field 'precision' must be fp32, bf16 or fp16; got {recorded!r}"
        raise ConfigError(msg, hint="restore the file, or train the model again")
    want = recorded if configured == "auto" else configured
    device = default_device_type()
    if want == recorded == "bf16" and not native_bf16(device):
        lacks = (f"this CPU has no native bf16 ({' or '.join(BF16_CPU_FLAGS)})" if device == "cpu"
                 else f"device {device} has no native bf16")
        ui.warn(f"{where.split(':')[0]} was trained in bf16, but {lacks}: running it in fp32 instead "
                "(emulated bf16 is slower than fp32; scores may differ in their last decimals)")
        want = "fp32"
    return str(want)


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
