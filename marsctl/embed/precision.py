"""Encoder precision: what ``encoder_precision`` means on this machine, and whether it runs bf16 natively.

Precision (torch backend only): ``fp32`` (the reference, and today's vectors bit for bit), ``bf16``
(the forward inside ``torch.autocast(dtype=torch.bfloat16)``, the output cast to float32 and
L2-normalised) or ``auto`` (bf16 where it is native, else fp32). bf16 runs only where the hardware does
it natively (:func:`native_bf16`): on a CPU without bf16 units oneDNN *emulates* it on AVX-512, slower
than fp32, so ``bf16`` is refused there (exit 2) and ``auto`` is fp32. bf16 vectors have keys of their
own (``Encoder.id`` + ``PRECISION_FORMAT``; fp32 keys are the keys of before), so a cache never returns
one precision's vector for the other.
"""

from __future__ import annotations

from pathlib import Path

from marsctl.errors import ConfigError

PRECISIONS = {
    "fp32": "float32 (the reference)",
    "bf16": "bfloat16 autocast, only where the CPU (avx512_bf16 or amx_bf16) or GPU runs bf16 natively",
    "auto": "bf16 where the hardware runs it natively, else fp32",
}
# Part of the cache keys (fp32 has none: its keys are those from before precisions existed); bump on a change.
PRECISION_FORMAT = {"bf16": "bf16-autocast-v1"}
# /proc/cpuinfo flags of x86 CPUs that compute bf16 dot products in hardware (AVX512-BF16: vdpbf16ps;
# AMX-BF16: tile dot products). Without them oneDNN emulates bf16 with AVX-512 integer ops.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The first CPU's feature flags as the kernel reports them (its ``flags`` line; empty when unreadable)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def native_bf16(device: str = "cpu") -> bool:
    """True when ``device`` computes bf16 matrix products in hardware (never counting emulation).

    CPU: the kernel's flags (:func:`cpu_flags`) hold ``avx512_bf16`` or ``amx_bf16`` (x86 only; other
    CPUs count as without). Not ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``: it is a private op
    that asks oneDNN (ideep's ``has_bf16_type_support``) whether the ISA is at least ``avx512_core``,
    which is true on AVX-512 CPUs without bf16 units too, where bf16 is emulated and slower than fp32.
    The kernel's flags also reflect what a hypervisor hides. CUDA: ``torch.cuda.is_bf16_supported``
    without emulation.
    """
    import platform

    if device.startswith("cuda"):
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False))
    if device != "cpu" or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    return bool(cpu_flags() & set(BF16_CPU_FLAGS))


def resolve_precision(precision: str, backend: str = "torch", device: str = "cpu", owner: str = "the encoder") -> str:
    """``fp32`` or ``bf16``: what ``encoder_precision`` means on this machine for ``backend`` on ``device``.

    ``auto`` is bf16 where it is native (torch backend), else fp32. A forced ``bf16`` where the hardware
    has no bf16 units, or on another backend than torch, is a ConfigError (exit 2): marsctl never runs
    emulated bf16, and never gives fp32 vectors for a bf16 request without saying so.
    """
    from marsctl.params import check_choice

    check_choice(precision, "encoder_precision", owner, list(PRECISIONS))
    if precision == "fp32":
        return "fp32"
    if backend != "torch":
        if precision == "auto":
            return "fp32"
        msg = f"encoder_precision=bf16 runs on the torch encoder backend only, not {backend!r}"
        raise ConfigError(msg, hint="use -p encoder_backend=torch, or -p encoder_precision=fp32")
    if native_bf16(device):
        return "bf16"
    if precision == "auto":
        return "fp32"
    where = "this CPU" if device == "cpu" else f"device {device}"
    msg = (f"encoder_precision=bf16: {where} has no native bf16 units "
           f"({' or '.join(BF16_CPU_FLAGS)} in /proc/cpuinfo), and emulated bf16 is slower than fp32")
    raise ConfigError(msg, hint="use -p encoder_precision=auto (bf16 where native, else fp32) or fp32")
