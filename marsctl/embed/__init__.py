"""Sentence embeddings with a persistent content-addressed cache shared by every command.

A text is embedded once per (encoder, side, text): train, score, eval and every refine round read
the same cache, so a second pass never re-embeds a seen text. The cache is one SQLite file under
``$MARSCTL_CACHE_DIR`` (default ``~/.cache/marsctl``), keyed by sha256.

Truncation is deliberate: the encoder reads at most ``max_seq_length`` word pieces (256 for the
bundled MiniLM). Responses keep their *beginning*; prompts keep their *end* (the last user turn of a
multi-turn dialogue is what the response answers), cut on a word-piece boundary.

The public names of its modules are importable from here (``from marsctl.embed import Encoder``);
the modules, one job each:

- :mod:`~marsctl.embed.encoder`: :class:`Encoder` (the cache, truncation and canonical batches) and
  the process's shared encoders (:func:`get_encoder`, :func:`encoder_stats`).
- :mod:`~marsctl.embed.cache`: :class:`EmbeddingCache`, the vectors' SQLite file.
- :mod:`~marsctl.embed.identity`: fingerprints, cache ids and names; finding a recorded encoder.
- :mod:`~marsctl.embed.precision`: fp32 or bf16, and whether the hardware runs bf16 natively.
- :mod:`~marsctl.embed.base`: the backend interface (:class:`Backend`) and each backend's facts.
- :mod:`~marsctl.embed.torch_backend`, :mod:`~marsctl.embed.onnx_backend`,
  :mod:`~marsctl.embed.static_backend`: the backends.
- :mod:`~marsctl.embed.artefacts`: files a backend builds once into the cache, checksummed.
"""

from marsctl.embed.artefacts import artefact_dir
from marsctl.embed.base import (
    BACKENDS,
    FAST_PIP,
    FORMAT,
    PAD_MULTIPLE,
    STATIC_DIMS,
    Backend,
    backend_dim,
    load_tokenizer,
    padded_length,
    require,
)
from marsctl.embed.cache import EmbeddingCache
from marsctl.embed.encoder import BATCH_TOLERANCE, Encoder, encoder_stats, get_encoder, make_backend
from marsctl.embed.identity import (
    BUNDLED_NAME,
    IDENTITY_FILES,
    SEARCH_ENV,
    TRUNCATION_RULE,
    cache_id,
    default_encoder_path,
    encoder_fingerprint,
    encoder_name,
    is_bundled,
    legacy_fingerprint,
    resolve_encoder,
)
from marsctl.embed.onnx_backend import AGREEMENT, ONNX_ROWS, PROBE_TEXTS, OnnxBackend, onnx_session
from marsctl.embed.precision import (
    BF16_CPU_FLAGS,
    PRECISION_FORMAT,
    PRECISIONS,
    cpu_flags,
    native_bf16,
    resolve_precision,
)
from marsctl.embed.static_backend import StaticBackend
from marsctl.embed.torch_backend import ST_CONVERT, TorchBackend

__all__ = [
    "AGREEMENT", "BACKENDS", "BATCH_TOLERANCE", "BF16_CPU_FLAGS", "BUNDLED_NAME", "FAST_PIP", "FORMAT",
    "IDENTITY_FILES", "ONNX_ROWS", "PAD_MULTIPLE", "PRECISIONS", "PRECISION_FORMAT", "PROBE_TEXTS",
    "SEARCH_ENV", "STATIC_DIMS", "ST_CONVERT", "TRUNCATION_RULE", "Backend", "EmbeddingCache", "Encoder",
    "OnnxBackend", "StaticBackend", "TorchBackend", "artefact_dir", "backend_dim", "cache_id", "cpu_flags",
    "default_encoder_path", "encoder_fingerprint", "encoder_name", "encoder_stats", "get_encoder", "is_bundled",
    "legacy_fingerprint", "load_tokenizer", "make_backend", "native_bf16", "onnx_session", "padded_length",
    "require", "resolve_encoder", "resolve_precision",
]
