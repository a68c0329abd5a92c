"""The Encoder: texts to L2-normalised vectors through the cache, in canonical batches, on one backend.

Also the process's shared encoders (:func:`get_encoder`: each model loads once) and their counts
(:func:`encoder_stats`). Which texts to embed, how they are truncated and batched, and where the
vectors are stored are decided here; a backend (:class:`~marsctl.embed.base.Backend`) only computes
one canonical batch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from marsctl.embed.base import BACKENDS, FORMAT, Backend, backend_dim, padded_length
from marsctl.embed.cache import EmbeddingCache
from marsctl.embed.identity import TRUNCATION_RULE, cache_id, default_encoder_path, encoder_fingerprint, encoder_name
from marsctl.embed.onnx_backend import OnnxBackend
from marsctl.embed.precision import PRECISION_FORMAT, resolve_precision
from marsctl.embed.static_backend import StaticBackend
from marsctl.embed.torch_backend import ST_CONVERT, TorchBackend
from marsctl.errors import ConfigError

# How far one text's vector may move when it is embedded in other company (another batch size, another
# cache fill order): BLAS picks its kernels and its split of the work by matrix shape, thread count and
# CPU (AMX, AVX-512, AVX2), and does not promise the same float rounding across shapes. Measured: up to
# 2.4e-7 per component on an AMX CPU with 2 threads; this bound leaves a 40x margin. The same texts
# embedded in the same batches with the same settings give the same bits (tests/test_embed.py).
BATCH_TOLERANCE = 1e-5


def make_backend(backend: str, source: TorchBackend, encoder_id: str) -> Backend:
    """The backend named ``backend`` of an encoder whose torch network is ``source`` and cache id ``encoder_id``.

    ``torch`` is ``source`` itself; ``onnx`` and ``static`` are built from it into the cache on first use.
    """
    if backend == "torch":
        return source
    return {"onnx": OnnxBackend, "static": StaticBackend}[backend](source, encoder_id)


_ENCODERS: dict[tuple[str, int, str, str, str], Encoder] = {}


def get_encoder(model_path: str | None = None, max_seq_length: int = 256, device: str = "cpu",
                backend: str = "torch", precision: str = "fp32") -> Encoder:
    """One shared Encoder per (model, length, device, backend, precision) in this process: the model loads once.

    ``precision`` is resolved first (``auto`` is fp32 or bf16 here), so ``auto`` and what it means share one.
    """
    resolved = resolve_precision(precision, backend, device)
    key = (model_path or default_encoder_path(), max_seq_length, device, backend, resolved)
    if key not in _ENCODERS:
        _ENCODERS[key] = Encoder(key[0], max_seq_length=max_seq_length, device=device, backend=backend,
                                 precision=resolved)
    return _ENCODERS[key]


def encoder_stats() -> dict[str, float]:
    """Embedding hits, misses and seconds summed over this process's encoders."""
    out = {"hits": 0, "misses": 0, "embed_seconds": 0.0}
    for enc in _ENCODERS.values():
        for k in out:
            out[k] += enc.stats[k]
    return out


class Encoder:
    """A frozen sentence encoder behind the cache.

    Parameters
    ----------
    model_path : str, optional
        A local sentence-transformers model directory; default: the bundled MiniLM.
    max_seq_length : int
        Word pieces read per text (longer texts are truncated as :mod:`marsctl.embed` says).
    device : str
        ``cpu``, ``cuda``, ... (the torch backend's)
    backend : str
        ``torch``, ``onnx`` or ``static`` (see :mod:`marsctl.embed.base`); each has its own cache keys.
    precision : str
        ``fp32`` (the default), ``bf16`` or ``auto`` (:func:`marsctl.embed.precision.resolve_precision`;
        the resolved one is ``self.precision``). bf16 vectors have cache keys of their own.

    ``self.torch`` is the encoder's torch network (:class:`~marsctl.embed.torch_backend.TorchBackend`,
    loaded on first use); :meth:`engine` is the backend that computes its vectors.
    """

    def __init__(self, model_path: str | None = None, max_seq_length: int = 256, device: str = "cpu",
                 batch_size: int = 64, cache: EmbeddingCache | None = None, backend: str = "torch",
                 precision: str = "fp32"):
        from marsctl.params import check_choice

        self.backend = check_choice(backend, "encoder_backend", "the encoder", list(BACKENDS))
        self.precision = resolve_precision(precision, self.backend, device)
        self.model_path = model_path or default_encoder_path()
        if not Path(self.model_path).is_dir():
            msg = f"encoder {self.model_path}: no such model directory"
            raise ConfigError(msg, hint="pass a local sentence-transformers directory")
        from marsctl.params import check_safetensors_dir

        check_safetensors_dir(self.model_path, "encoder", ST_CONVERT)  # never unpickle: refuse before loading
        if not (Path(self.model_path) / "config.json").is_file():
            msg = f"encoder {self.model_path}: no config.json (not a Hugging Face model directory)"
            raise ConfigError(msg, hint="pass a local sentence-transformers directory")
        self.max_seq_length = max_seq_length
        self.device = device
        self.batch_size = batch_size
        self.id = cache_id(self.model_path, max_seq_length)
        if backend != "torch":  # not torch's vectors bit for bit: keys of its own (why: marsctl/embed/base.py)
            self.id += f":{FORMAT[backend]}"
        if self.precision != "fp32":  # fp32 keys stay those from before precisions existed
            self.id += f":{PRECISION_FORMAT[self.precision]}"
        self._cache = cache
        self._dim: int | None = None
        self.torch = TorchBackend(self.model_path, max_seq_length, device, self.precision)
        self._engine: Backend | None = None
        self.stats = {"hits": 0, "misses": 0, "embed_seconds": 0.0}
        self._last: dict[str, tuple[list[str], np.ndarray]] = {}  # side → the last call's texts and vectors

    @property
    def cache(self) -> EmbeddingCache:
        """The shared cache (opened on first use)."""
        if self._cache is None:
            self._cache = EmbeddingCache(dim=self.dim)
        return self._cache

    @property
    def dim(self) -> int:
        """Embedding width, read from the model config without loading it (once)."""
        if self._dim is None:
            cfg = Path(self.model_path) / "config.json"
            data = json.loads(cfg.read_text())
            self._dim = backend_dim(self.backend, int(data.get("hidden_size") or data.get("d_model")))
        return self._dim

    def describe(self) -> dict[str, Any]:
        """Facts for config.json."""
        return {"name": encoder_name(self.model_path), "fingerprint": encoder_fingerprint(self.model_path),
                "path": self.model_path, "id": self.id, "max_seq_length": self.max_seq_length,
                "truncation": TRUNCATION_RULE, "backend": self.backend, "precision": self.precision}

    @property
    def tokenizer(self) -> Any:
        """The encoder's tokenizer (it decides the truncation and the canonical batches, whatever the backend)."""
        return self.engine().tokenizer

    def engine(self) -> Backend:
        """The backend that computes this encoder's vectors (an onnx or static one is built on first use)."""
        if self._engine is None:
            self._engine = make_backend(self.backend, self.torch, self.id)
        return self._engine

    def padded_length(self, n_tokens: int) -> int:
        """The canonical padded length of a text of ``n_tokens`` word pieces (a multiple of ``PAD_MULTIPLE``)."""
        return padded_length(n_tokens, self.max_seq_length)

    def _keep_end(self, texts: list[str]) -> list[str]:
        """Cut each text to its last ``max_seq_length - 2`` word pieces."""
        tok = self.tokenizer
        keep = self.max_seq_length - 2
        enc = tok(texts, add_special_tokens=False, return_offsets_mapping=True, truncation=False)
        out = []
        for text, offsets in zip(texts, enc["offset_mapping"], strict=True):
            out.append(text if len(offsets) <= keep else text[offsets[-keep][0] :])
        return out

    def key(self, text: str, side: str) -> bytes:
        """The cache key of one text."""
        return hashlib.sha256(f"{self.id}\x1f{side}\x1f{text}".encode()).digest()

    def encode(self, texts: list[str], side: str = "response", progress: Any = None) -> np.ndarray:
        """L2-normalised float32 embeddings, shape (len(texts), dim); side is 'prompt' or 'response'.

        Texts not in the cache are embedded in a canonical batching: grouped by their token length
        padded up to a multiple of ``PAD_MULTIPLE``, sorted, and cut into batches of ``batch_size``.
        A row of a transformer batch depends in exact arithmetic only on its own tokens and the padded
        length; in floats, BLAS may round differently for another batch shape, so a text's vector in
        other company (another batch size, another cache fill order) agrees to within
        ``BATCH_TOLERANCE`` per component, and is bit-identical for the same texts in the same batches
        with the same settings (both checked in tests/test_embed.py).
        """
        import time

        last = self._last.get(side)
        if last is not None and last[0] == texts:  # score asks for a batch's prompts twice
            self.stats["hits"] += len(texts)
            return last[1].copy()
        index: dict[str, int] = {}
        for t in texts:
            index.setdefault(t, len(index))
        keys = [self.key(t, side) for t in index]
        dim = self.dim
        vecs, hit = self.cache.get_matrix(keys, dim) if keys else (np.zeros((0, dim), np.float32), np.zeros(0, bool))
        missing = {keys[i]: t for i, t in enumerate(index) if not hit[i]}
        rows = [index[t] for t in texts]
        self.stats["hits"] += len(texts) - (sum(1 for i in rows if not hit[i]) if missing else 0)
        if missing:
            t0 = time.perf_counter()
            found: dict[bytes, Any] = {}
            self._embed_missing(missing, side, found)
            for i, k in enumerate(keys):
                if not hit[i]:
                    vecs[i] = found[k]
            self.stats["misses"] += len(missing)
            self.stats["embed_seconds"] += time.perf_counter() - t0
        out = vecs[rows]
        self._last[side] = (list(texts), out)
        return out.copy()

    def cached(self, texts: list[str], side: str = "response") -> np.ndarray | None:
        """The vectors :meth:`encode` would give for ``texts`` when every one is in the cache, else None.

        One matrix look-up, nothing embedded and nothing counted (``stats`` are the caller's to count); a
        damaged entry makes it None, and :meth:`encode` then warns about it and embeds the text again.
        """
        index: dict[str, int] = {}
        for t in texts:
            index.setdefault(t, len(index))
        dim = self.dim
        if not index:
            return np.zeros((0, dim), np.float32)
        vecs, hit = self.cache.get_matrix([self.key(t, side) for t in index], dim, count=False)
        if not hit.all():
            return None
        return vecs[[index[t] for t in texts]]

    def _embed_missing(self, missing: dict[bytes, str], side: str, found: dict[bytes, Any]) -> None:
        """Embed ``missing`` (key → text) in canonical batches, store each batch in the cache as it is done."""
        from marsctl import ui

        todo_keys = list(missing)
        todo = [missing[k] for k in todo_keys]
        if side == "prompt":
            todo = self._keep_end(todo)
        tok = self.tokenizer
        ids = tok(todo, truncation=True, max_length=self.max_seq_length)["input_ids"]
        order = sorted(range(len(todo)), key=lambda i: (self.padded_length(len(ids[i])), todo[i]))
        with ui.progress(f"embedding {side}s", len(todo), "texts") as advance:
            start = 0
            while start < len(order):
                length = self.padded_length(len(ids[order[start]]))
                batch = [order[start]]
                while (len(batch) < self.batch_size and start + len(batch) < len(order)
                       and self.padded_length(len(ids[order[start + len(batch)]])) == length):
                    batch.append(order[start + len(batch)])
                vecs = self.engine().forward([todo[i] for i in batch], length)
                new = [(todo_keys[i], v) for i, v in zip(batch, vecs, strict=True)]
                self.cache.put_many(new)
                found.update(new)
                advance(len(batch))
                start += len(batch)

