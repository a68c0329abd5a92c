"""The onnx backend: the encoder's sentence-transformers pipeline exported once to ONNX and run with ONNX Runtime.

The export (``torch.onnx.export`` of the whole pipeline with its L2 norm, fp32) is made on first use
into the cache (:mod:`marsctl.embed.artefacts`) and used only when it agrees with torch on
``PROBE_TEXTS`` (cosine >= ``AGREEMENT``). :func:`onnx_session` opens any ONNX file with marsctl's
settings (``marsctl export`` checks its reward graphs with it too).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from marsctl.embed.artefacts import artefact_path, build
from marsctl.embed.base import load_tokenizer, padded_length, require
from marsctl.errors import ConfigError

if TYPE_CHECKING:
    from marsctl.embed.torch_backend import TorchBackend

AGREEMENT = 0.999  # least cosine to torch, per probe text, for an ONNX export to be used
# ONNX Runtime's rows vary (~1e-8) with the number of rows in a call (1, 3 and 23 differed here) but
# not with a row's position in a call of fixed shape: every call runs exactly ONNX_ROWS rows. Small
# calls were also the fastest here (texts/s on 2 cores: 4 rows ≈ 2 rows > 8 > 16 > 32 > 64).
ONNX_ROWS = 4
PROBE_TEXTS = (
    "Hi.",
    "How do I bake a loaf of bread without yeast?",
    "The committee met on Tuesday to review the budget, and after a long debate it agreed to fund the new "
    "library, the repairs to the bridge and two more buses for the night routes. " * 3,
)


def _export_onnx(source: TorchBackend, dest: Path) -> None:
    """Export ``source``'s sentence-transformers pipeline (with the L2 norm) to ONNX at ``dest``."""
    import warnings

    import torch

    model = source.load()
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


def onnx_session(path: Path) -> Any:
    """An ONNX Runtime session on the file at ``path`` (CPU; idle threads sleep), or a ConfigError naming it."""
    ort = require("onnxruntime")
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


def _export_checked(source: TorchBackend, dest: Path) -> None:
    """Export, then refuse the file unless it agrees with torch on the probe texts."""
    _export_onnx(source, dest)
    onnx = require("onnx")
    try:
        onnx.checker.check_model(str(dest), full_check=True)
    except onnx.checker.ValidationError as e:
        msg = f"the ONNX export of encoder {source.model_path} is not a valid model ({str(e).splitlines()[0][:200]})"
        raise ConfigError(msg, hint="use -p encoder_backend=torch") from None
    probe = OnnxBackend(source, path=dest)
    texts = list(PROBE_TEXTS)
    length = padded_length(max(len(ids) for ids in probe.tokenizer(texts)["input_ids"]), source.max_seq_length)
    cos = (probe.forward(texts, length) * source.forward(texts, length)).sum(axis=1)
    source.unload()  # torch is not needed after this
    if float(cos.min()) < AGREEMENT:
        msg = (f"the ONNX export of encoder {source.model_path} disagrees with torch "
               f"(least cosine {float(cos.min()):.5f})")
        raise ConfigError(msg, hint="this encoder does not export faithfully: use -p encoder_backend=torch")


class OnnxBackend:
    """An encoder's network on ONNX Runtime (a :class:`~marsctl.embed.base.Backend`).

    Parameters
    ----------
    source : TorchBackend
        The encoder's torch network: exported from, and compared with, when the file is made.
    encoder_id : str
        The encoder's cache id; the export lives in the cache under its name and fingerprint and is
        made on first use.
    path : Path, optional
        An exported file to use as it is instead (the check of a fresh export).
    """

    def __init__(self, source: TorchBackend, encoder_id: str = "", path: Path | None = None):
        require("onnxruntime")
        require("onnx")
        self.tokenizer = load_tokenizer(source.model_path)
        self.path = path or build(artefact_path(encoder_id, "onnx", ".onnx"), "ONNX export of the encoder",
                                  lambda p: _export_checked(source, p))
        self.session = onnx_session(self.path)
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
