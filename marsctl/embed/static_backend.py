"""The static backend: a model2vec static embedding distilled once from the encoder (a token table, PCA to 256 dims).

A text's vector is the normalised mean of its word pieces' rows (the word pieces torch would read). The
table and its tokenizer are one safetensors file in the cache (:mod:`marsctl.embed.artefacts`),
distilled on first use from the encoder's torch network.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from marsctl.embed.artefacts import artefact_path, build, is_intact
from marsctl.embed.base import STATIC_DIMS, load_tokenizer, require
from marsctl.errors import ConfigError

if TYPE_CHECKING:
    from marsctl.embed.torch_backend import TorchBackend


@contextlib.contextmanager
def _tqdm_only_on_a_terminal(module: Any) -> Iterator[None]:
    """``module``'s tqdm bars, like ours, only on a terminal (TQDM_DISABLE is read once, at tqdm's import)."""
    original = module.tqdm
    module.tqdm = functools.partial(original, disable=True if os.environ.get("MARSCTL_NO_PROGRESS") else None)
    try:
        yield
    finally:
        module.tqdm = original


def _distill(source: TorchBackend, dest: Path) -> None:
    """Distill ``source`` with model2vec into one safetensors file: the token table and its tokenizer."""
    from safetensors.numpy import save_file

    distill = require("model2vec.distill")
    model = source.load()
    with _tqdm_only_on_a_terminal(require("model2vec.distill.inference")):
        static = distill.distill_from_model(model=model[0].auto_model, tokenizer=model.tokenizer,
                                            pca_dims=STATIC_DIMS, device="cpu", quantize_to="float32")
    if static.weights is not None or static.token_mapping is not None:
        msg = "model2vec returned a weighted or quantized vocabulary, which marsctl does not read"
        raise ConfigError(msg, hint="use -p encoder_backend=torch")
    table = np.ascontiguousarray(static.embedding, dtype=np.float32)
    unk = static.unk_token_id
    save_file({"embeddings": table}, str(dest),
              metadata={"tokenizer": static.tokenizer.to_str(), "unk_token_id": "" if unk is None else str(unk),
                        "source": source.model_path})
    source.unload()


class StaticBackend:
    """A static token table (a :class:`~marsctl.embed.base.Backend`), distilled into the cache on first use.

    Parameters
    ----------
    source : TorchBackend
        The encoder's torch network, distilled when the file is made.
    encoder_id : str
        The encoder's cache id; the table lives in the cache under its name and fingerprint.
    """

    def __init__(self, source: TorchBackend, encoder_id: str):
        from safetensors import safe_open
        from tokenizers import Tokenizer

        path = artefact_path(encoder_id, "static", ".safetensors")
        if not is_intact(path):
            require("model2vec.distill")
        self.path = build(path, "static encoder (model2vec distillation: minutes on a CPU)",
                          lambda p: _distill(source, p))
        with safe_open(str(self.path), framework="numpy") as f:
            meta = f.metadata()
            self.table = f.get_tensor("embeddings")
        self.static_tokenizer = Tokenizer.from_str(meta["tokenizer"])
        self.static_tokenizer.no_truncation()
        self.unk = int(meta["unk_token_id"]) if meta["unk_token_id"] else None
        self.keep = source.max_seq_length - 2  # the word pieces torch reads (it adds [CLS] and [SEP])
        self.tokenizer = load_tokenizer(source.model_path)

    def forward(self, texts: list[str], length: int) -> np.ndarray:
        """L2-normalised float32 vectors; each depends on its own text only (``length`` is not needed)."""
        out = np.zeros((len(texts), self.table.shape[1]), dtype=np.float32)
        for i, enc in enumerate(self.static_tokenizer.encode_batch_fast(texts, add_special_tokens=False)):
            ids = [t for t in enc.ids if t != self.unk][: self.keep]
            if ids:
                v = self.table[ids].mean(axis=0)
                out[i] = v / max(float(np.linalg.norm(v)), 1e-12)
        return out
