"""Encoder backends: other engines behind :class:`marsctl.embed.Encoder`, built once into the cache.

``torch`` (the default, in :mod:`marsctl.embed`) runs sentence-transformers. The others are made
offline, once per encoder, from the same local directory, into ``cache_dir()/encoders`` (written to a
temporary name, then renamed, with a sidecar ``.json`` holding the file's sha256, checked at every
load: a damaged or half-written file is rebuilt, never used):

- ``onnx``: the whole sentence-transformers pipeline exported with ``torch.onnx.export`` and run
  with ONNX Runtime (fp32). Checked against torch after the export (cosine >= AGREEMENT).
- ``static``: a model2vec static embedding distilled from the encoder (a token table, PCA to 256
  dims); a text's vector is the mean of its tokens' rows.

Both read the same word pieces as torch (the truncation rule of :mod:`marsctl.embed`), through the
encoder's own tokenizer, in the same canonical batches.

Cache keys: each backend has its own (``Encoder.id`` + ``FORMAT``). ONNX fp32 is within the issue's
tolerance of torch (least cosine 0.9999998, largest element difference 2e-7, on fixture texts), so it
could share torch's keys; it does not: with shared keys a score would depend, in its 7th digit, on
which backend embedded a text first, and entries of a faulty export could not be told from torch's.
The cost: switching backends embeds each text once more.

Precision (``encoder_precision``, torch backend only): ``fp32`` (the reference, and today's vectors
bit for bit), ``bf16`` (the forward inside ``torch.autocast(dtype=torch.bfloat16)``, the output cast
to float32 and L2-normalised) or ``auto`` (bf16 where it is native, else fp32). bf16 runs only where the
hardware does it natively (:func:`native_bf16`): on a CPU without bf16 units oneDNN *emulates* it on
AVX-512, slower than fp32, so ``bf16`` is refused there (exit 2) and ``auto`` is fp32. bf16 vectors
have keys of their own (``Encoder.id`` + ``PRECISION_FORMAT``; fp32 keys are the keys of before), so a
cache never returns one precision's vector for the other.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from marsctl.errors import ConfigError
from marsctl.stats import file_sha256

if TYPE_CHECKING:
    from marsctl.embed import Encoder

BACKENDS = {
    "torch": "sentence-transformers on torch (the reference)",
    "onnx": "the same network on ONNX Runtime, exported once into the cache (cosine >= 0.999 to torch)",
    "static": "a model2vec static embedding distilled once from the encoder (256-d; far faster)",
}
FAST_PIP = "pip install 'marsctl[fast]'  (or: pip install onnxruntime onnx model2vec 'skeletoken>=0.6,<0.7')"
# Part of the cache keys and artefact names: bump when an artefact, or how it is run (ONNX_ROWS), changes.
FORMAT = {"onnx": "onnx-v1", "static": "m2v-pca256-v1"}
AGREEMENT = 0.999  # least cosine to torch, per probe text, for an ONNX export to be used
# ONNX Runtime's rows vary (~1e-8) with the number of rows in a call (1, 3 and 23 differed here) but
# not with a row's position in a call of fixed shape: every call runs exactly ONNX_ROWS rows. Small
# calls were also the fastest here (texts/s on 2 cores: 4 rows ≈ 2 rows > 8 > 16 > 32 > 64).
ONNX_ROWS = 4
STATIC_DIMS = 256
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
PROBE_TEXTS = (
    "Hi.",
    "How do I bake a loaf of bread without yeast?",
    "The committee met on Tuesday to review the budget, and after a long debate it agreed to fund the new "
    "library, the repairs to the bridge and two more buses for the night routes. " * 3,
)


def artefact_dir() -> Path:
    """Where the built backends live: ``cache_dir()/encoders`` (a temporary folder when it cannot be used)."""
    from marsctl.store import cache_folder

    return cache_folder("encoders")


def backend_dim(enc: Encoder, hidden: int) -> int:
    """Embedding width of ``enc``'s backend, given the transformer's hidden size."""
    return min(STATIC_DIMS, hidden) if enc.backend == "static" else hidden


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


def make_backend(enc: Encoder) -> Any:
    """The non-torch backend object of ``enc`` (built into the cache on first use)."""
    return {"onnx": OnnxBackend, "static": StaticBackend}[enc.backend](enc)


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:  # the package itself, or one it imports (model2vec.distill needs skeletoken)
        missing = (e.name or module).split(".")[0]
        msg = f"encoder_backend needs the {missing} package, which is not installed"
        raise ConfigError(msg, hint=FAST_PIP) from None


def _tokenizer(path: str) -> Any:
    import transformers

    transformers.logging.set_verbosity_error()
    return transformers.AutoTokenizer.from_pretrained(path)


# -- artefacts: a file in the cache and its checksum ----------------------------------------------------------
def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _intact(path: Path) -> bool:
    """True when ``path`` exists and matches the sha256 in its sidecar."""
    try:
        meta = json.loads(_sidecar(path).read_text())
        return path.stat().st_size == meta["bytes"] and file_sha256(path) == meta["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _build(path: Path, what: str, write: Callable[[Path], None]) -> Path:
    """Return ``path``, first building it with ``write(tmp)`` unless it is intact; atomic, checksummed."""
    from marsctl import ui

    if _intact(path):
        return path
    if path.exists():
        ui.warn(f"{path} is damaged or incomplete (its checksum does not match); building it again")
    ui.info(f"building the {what} once (offline): {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        meta = {"bytes": tmp.stat().st_size, "sha256": file_sha256(tmp), "what": what}
        tmp.chmod(0o644)  # as the other cache files (mkstemp makes it 0600)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    side_tmp = _sidecar(tmp)
    side_tmp.write_text(json.dumps(meta))
    os.replace(side_tmp, _sidecar(path))
    return path


def _artefact(enc: Encoder, suffix: str) -> Path:
    name, fingerprint = enc.id.split(":")[:2]
    return artefact_dir() / f"{name}-{fingerprint}-{FORMAT[enc.backend]}{suffix}"


# -- onnx -------------------------------------------------------------------------------------------------------
def _export_onnx(enc: Encoder, dest: Path) -> None:
    """Export ``enc``'s sentence-transformers pipeline (with the L2 norm) to ONNX at ``dest``."""
    import warnings

    import torch

    model = enc._load()
    names = list(model.tokenizer.model_input_names)

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.st = model

        def forward(self, *tensors: Any) -> Any:
            out = self.st(dict(zip(names, tensors, strict=True)))["sentence_embedding"]
            return torch.nn.functional.normalize(out.float(), p=2, dim=1)

    sample = model.tokenizer(list(PROBE_TEXTS[:2]), padding="max_length", max_length=16, return_tensors="pt")
    axes = {k: {0: "batch", 1: "tokens"} for k in names} | {"embedding": {0: "batch"}}
    # eval(): the exporter restores the wrapper's training flag afterwards (a fresh Module is in training mode).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Pipeline().eval(), tuple(sample[k] for k in names), str(dest), dynamo=False,
                          input_names=names, output_names=["embedding"], dynamic_axes=axes, opset_version=17)


def _session(path: Path) -> Any:
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Idle threads sleep instead of spinning: on a busy 2-core machine spinning cost 1.3-1.5x the time.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own untyped errors
        msg = f"ONNX Runtime cannot load {path} ({(str(e).strip().splitlines() or [type(e).__name__])[0][:200]})"
        raise ConfigError(msg, hint=f"delete it to export it again: rm -f {path}*, "
                                    "or use -p encoder_backend=torch") from None


def _export_checked(enc: Encoder, dest: Path) -> None:
    """Export, then refuse the file unless it agrees with torch on the probe texts."""
    _export_onnx(enc, dest)
    onnx = _require("onnx")
    try:
        onnx.checker.check_model(str(dest), full_check=True)
    except onnx.checker.ValidationError as e:
        msg = f"the ONNX export of encoder {enc.model_path} is not a valid model ({str(e).splitlines()[0][:200]})"
        raise ConfigError(msg, hint="use -p encoder_backend=torch") from None
    probe = OnnxBackend(enc, dest)
    texts = list(PROBE_TEXTS)
    length = enc._padded_length(max(len(ids) for ids in probe.tokenizer(texts)["input_ids"]))
    cos = (probe.forward(texts, length) * enc._forward_torch(texts, length)).sum(axis=1)
    enc._model = None  # torch is not needed after this
    if float(cos.min()) < AGREEMENT:
        msg = f"the ONNX export of encoder {enc.model_path} disagrees with torch (least cosine {float(cos.min()):.5f})"
        raise ConfigError(msg, hint="this encoder does not export faithfully: use -p encoder_backend=torch")


class OnnxBackend:
    """``enc``'s network on ONNX Runtime, exported into the cache on first use (or the file at ``path``)."""

    def __init__(self, enc: Encoder, path: Path | None = None):
        _require("onnxruntime")
        _require("onnx")
        self.tokenizer = _tokenizer(enc.model_path)
        self.path = path or _build(_artefact(enc, ".onnx"), "ONNX export of the encoder",
                                   lambda p: _export_checked(enc, p))
        self.session = _session(self.path)
        self.inputs = [i.name for i in self.session.get_inputs()]

    def forward(self, texts: list[str], length: int) -> np.ndarray:
        """L2-normalised float32 vectors of texts padded to exactly ``length`` tokens."""
        feats = self.tokenizer(texts, padding="max_length", truncation=True, max_length=length, return_tensors="np")
        out = []
        for start in range(0, len(texts), ONNX_ROWS):
            rows = list(range(start, min(start + ONNX_ROWS, len(texts))))
            full = rows + [rows[-1]] * (ONNX_ROWS - len(rows))  # pad with copies: a fixed shape per call
            got = self.session.run(None, {k: feats[k][full].astype(np.int64) for k in self.inputs})[0]
            out.append(got[: len(rows)])
        return np.concatenate(out).astype(np.float32)


# -- static -----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _tqdm_only_on_a_terminal(module: Any) -> Iterator[None]:
    """``module``'s tqdm bars, like ours, only on a terminal (TQDM_DISABLE is read once, at tqdm's import)."""
    original = module.tqdm
    module.tqdm = functools.partial(original, disable=True if os.environ.get("MARSCTL_NO_PROGRESS") else None)
    try:
        yield
    finally:
        module.tqdm = original


def _distill(enc: Encoder, dest: Path) -> None:
    """Distill ``enc`` with model2vec into one safetensors file: the token table and its tokenizer."""
    from safetensors.numpy import save_file

    distill = _require("model2vec.distill")
    model = enc._load()
    with _tqdm_only_on_a_terminal(_require("model2vec.distill.inference")):
        static = distill.distill_from_model(model=model[0].auto_model, tokenizer=model.tokenizer,
                                            pca_dims=STATIC_DIMS, device="cpu", quantize_to="float32")
    if static.weights is not None or static.token_mapping is not None:
        msg = "model2vec returned a weighted or quantized vocabulary, which marsctl does not read"
        raise ConfigError(msg, hint="use -p encoder_backend=torch")
    table = np.ascontiguousarray(static.embedding, dtype=np.float32)
    unk = static.unk_token_id
    save_file({"embeddings": table}, str(dest),
              metadata={"tokenizer": static.tokenizer.to_str(), "unk_token_id": "" if unk is None else str(unk),
                        "source": enc.model_path})
    enc._model = None


class StaticBackend:
    """A static token table: a text's vector is the normalised mean of its word pieces' rows."""

    def __init__(self, enc: Encoder):
        from safetensors import safe_open
        from tokenizers import Tokenizer

        path = _artefact(enc, ".safetensors")
        if not _intact(path):
            _require("model2vec.distill")
        self.path = _build(path, "static encoder (model2vec distillation: minutes on a CPU)",
                           lambda p: _distill(enc, p))
        with safe_open(str(self.path), framework="numpy") as f:
            meta = f.metadata()
            self.table = f.get_tensor("embeddings")
        self.static_tokenizer = Tokenizer.from_str(meta["tokenizer"])
        self.static_tokenizer.no_truncation()
        self.unk = int(meta["unk_token_id"]) if meta["unk_token_id"] else None
        self.keep = enc.max_seq_length - 2  # the word pieces torch reads (it adds [CLS] and [SEP])
        self.tokenizer = _tokenizer(enc.model_path)

    def forward(self, texts: list[str], length: int) -> np.ndarray:
        """L2-normalised float32 vectors; each depends on its own text only (``length`` is not needed)."""
        out = np.zeros((len(texts), self.table.shape[1]), dtype=np.float32)
        for i, enc in enumerate(self.static_tokenizer.encode_batch_fast(texts, add_special_tokens=False)):
            ids = [t for t in enc.ids if t != self.unk][: self.keep]
            if ids:
                v = self.table[ids].mean(axis=0)
                out[i] = v / max(float(np.linalg.norm(v)), 1e-12)
        return out
