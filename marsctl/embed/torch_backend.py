"""The torch backend: sentence-transformers on torch, the reference vectors and the network the others are built from.

It loads the encoder directory once (safetensors only; weights holding NaN or inf are refused, as they
would poison the shared cache) and embeds one canonical batch at a time, in fp32 or, where the
hardware runs it natively, in bf16 autocast (:mod:`marsctl.embed.precision`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from marsctl.errors import ConfigError

# Convert a pickled sentence-transformers directory once, in place (run it only on files you trust).
ST_CONVERT = "python -c \"from sentence_transformers import SentenceTransformer as S; S('{dir}').save('{dir}')\""


def _check_finite(model: Any, path: str) -> None:
    """A loaded encoder whose weights hold NaN or inf would poison the shared cache: refuse it."""
    import torch

    for name, p in model.named_parameters():
        if p.is_floating_point() and not bool(torch.isfinite(p).all()):
            msg = f"encoder {path}: parameter {name!r} holds NaN or infinite values (damaged weights)"
            raise ConfigError(msg, hint="restore the model's files, or pass another -p encoder=DIR")


class TorchBackend:
    """An encoder directory on sentence-transformers and torch (a :class:`~marsctl.embed.base.Backend`).

    Parameters
    ----------
    model_path : str
        A local sentence-transformers model directory (checked by the Encoder before this is made).
    max_seq_length : int
        Word pieces read per text.
    device : str
        ``cpu``, ``cuda``, ...
    precision : str
        ``fp32`` or ``bf16`` (resolved: :func:`marsctl.embed.precision.resolve_precision`).
    """

    def __init__(self, model_path: str, max_seq_length: int, device: str = "cpu", precision: str = "fp32"):
        self.model_path = model_path
        self.max_seq_length = max_seq_length
        self.device = device
        self.precision = precision
        self.model: Any = None  # the SentenceTransformer once loaded (load()); None again after unload()

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer (loads the model)."""
        return self.load().tokenizer

    def load(self) -> Any:
        """The SentenceTransformer, loaded on first use (safetensors only; damaged weights are refused)."""
        if self.model is None:
            import transformers
            from safetensors import SafetensorError
            from sentence_transformers import SentenceTransformer

            transformers.logging.set_verbosity_error()  # the tokenizer's over-length notice; we truncate
            transformers.logging.disable_progress_bar()  # "Loading weights" bars; ours go to stderr
            try:
                model = SentenceTransformer(self.model_path, device=self.device,
                                            model_kwargs={"use_safetensors": True})
            except (SafetensorError, OSError, ValueError, RuntimeError, KeyError) as e:
                reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                msg = f"encoder {self.model_path}: cannot load it as a sentence-transformers model ({reason})"
                raise ConfigError(msg, hint="the model's files are damaged or incomplete: restore them, or pass "
                                            "another directory with -p encoder=DIR") from None
            _check_finite(model, self.model_path)
            model.max_seq_length = self.max_seq_length
            self.model = model
        return self.model

    def unload(self) -> None:
        """Let the model go (a backend built from it needs it no more); the next use loads it again."""
        self.model = None

    def forward(self, texts: list[str], length: int) -> np.ndarray:
        """L2-normalised float32 vectors of texts padded to exactly ``length`` tokens."""
        import torch

        model = self.load()
        features = model.tokenizer(texts, padding="max_length", truncation=True, max_length=length,
                                   return_tensors="pt")
        features = {k: v.to(model.device) for k, v in features.items()}
        with torch.inference_mode():
            if self.precision == "bf16":  # native bf16 only (resolve_precision); normalised in float32
                with torch.autocast(model.device.type, dtype=torch.bfloat16):
                    emb = model(features)["sentence_embedding"]
            else:
                emb = model(features)["sentence_embedding"]
            emb = torch.nn.functional.normalize(emb.float(), p=2, dim=1)
        return emb.cpu().numpy().astype(np.float32)
