"""The encoder backend interface (:class:`Backend`) and what each backend is: its name, cache-key format, width.

An :class:`~marsctl.embed.encoder.Encoder` reads the cache, truncates and groups texts into canonical
batches; a backend only turns one such batch into vectors. ``torch``
(:mod:`marsctl.embed.torch_backend`, the default) runs sentence-transformers and is the reference. The
others are made offline, once per encoder, from its torch network, into ``cache_dir()/encoders``
(:mod:`marsctl.embed.artefacts`: written to a temporary name, then renamed, with a sidecar ``.json``
holding the file's sha256, checked at every load: a damaged or half-written file is rebuilt, never used):

- ``onnx`` (:mod:`marsctl.embed.onnx_backend`): the whole sentence-transformers pipeline exported with
  ``torch.onnx.export`` and run with ONNX Runtime (fp32). Checked against torch after the export
  (cosine >= AGREEMENT).
- ``static`` (:mod:`marsctl.embed.static_backend`): a model2vec static embedding distilled from the
  encoder (a token table, PCA to 256 dims); a text's vector is the mean of its tokens' rows.

All read the same word pieces as torch (the truncation rule of :mod:`marsctl.embed`), through the
encoder's own tokenizer, in the same canonical batches (:func:`padded_length`).

Cache keys: each backend has its own (``Encoder.id`` + ``FORMAT``). ONNX fp32 is within the issue's
tolerance of torch (least cosine 0.9999998, largest element difference 2e-7, on fixture texts), so it
could share torch's keys; it does not: with shared keys a score would depend, in its 7th digit, on
which backend embedded a text first, and entries of a faulty export could not be told from torch's.
The cost: switching backends embeds each text once more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from marsctl.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

BACKENDS = {
    "torch": "sentence-transformers on torch (the reference)",
    "onnx": "the same network on ONNX Runtime, exported once into the cache (cosine >= 0.999 to torch)",
    "static": "a model2vec static embedding distilled once from the encoder (256-d; far faster)",
}
FAST_PIP = "pip install 'marsctl[fast]'  (or: pip install onnxruntime onnx model2vec 'skeletoken>=0.6,<0.7')"
# Part of the cache keys and artefact names: bump when an artefact, or how it is run (ONNX_ROWS), changes.
FORMAT = {"onnx": "onnx-v1", "static": "m2v-pca256-v1"}
STATIC_DIMS = 256
PAD_MULTIPLE = 16  # canonical batches: texts padded to a multiple of 16 tokens (see Encoder.encode)


class Backend(Protocol):
    """What an :class:`~marsctl.embed.encoder.Encoder` needs from a backend.

    Implemented by :class:`~marsctl.embed.torch_backend.TorchBackend`,
    :class:`~marsctl.embed.onnx_backend.OnnxBackend` and :class:`~marsctl.embed.static_backend.StaticBackend`;
    :func:`marsctl.embed.encoder.make_backend` builds the one an encoder names. A new backend adds its
    entry to ``BACKENDS`` and ``FORMAT`` (its cache keys) and a case to ``make_backend``.
    """

    @property
    def tokenizer(self) -> Any:
        """The encoder's own Hugging Face tokenizer (it decides the truncation and the canonical batches)."""
        ...

    def forward(self, texts: list[str], length: int) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text, of texts padded to exactly ``length`` tokens."""
        ...


def backend_dim(backend: str, hidden: int) -> int:
    """Embedding width of ``backend``, given the transformer's hidden size.

    >>> backend_dim("torch", 384), backend_dim("static", 384), backend_dim("static", 128)
    (384, 256, 128)
    """
    return min(STATIC_DIMS, hidden) if backend == "static" else hidden


def padded_length(n_tokens: int, max_seq_length: int) -> int:
    """A text's canonical padded length: ``n_tokens`` up to a multiple of ``PAD_MULTIPLE``, at most ``max_seq_length``.

    >>> padded_length(1, 256), padded_length(17, 256), padded_length(10_000, 256)
    (16, 32, 256)
    """
    return min(max_seq_length, -(-n_tokens // PAD_MULTIPLE) * PAD_MULTIPLE)


def require(module: str) -> Any:
    """Import ``module`` (a backend's optional package), or raise a ConfigError saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:  # the package itself, or one it imports (model2vec.distill needs skeletoken)
        missing = (e.name or module).split(".")[0]
        msg = f"encoder_backend needs the {missing} package, which is not installed"
        raise ConfigError(msg, hint=FAST_PIP) from None


def load_tokenizer(path: str) -> Any:
    """The Hugging Face tokenizer of the encoder directory ``path`` (without its over-length notices)."""
    import transformers

    transformers.logging.set_verbosity_error()
    return transformers.AutoTokenizer.from_pretrained(path)
