"""Files an encoder backend builds once into the cache (``cache_dir()/encoders``), atomically and checksummed.

Each file is written to a temporary name, then renamed, with a sidecar ``.json`` holding its size and
sha256, checked at every load (:func:`is_intact`): a damaged or half-written file is rebuilt, never used.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from marsctl.embed.base import FORMAT
from marsctl.stats import file_sha256


def artefact_dir() -> Path:
    """Where the built backends live: ``cache_dir()/encoders`` (a temporary folder when it cannot be used)."""
    from marsctl.store import cache_folder

    return cache_folder("encoders")


def artefact_path(encoder_id: str, backend: str, suffix: str) -> Path:
    """The file of ``backend`` built from the encoder whose cache id is ``encoder_id`` (name, fingerprint, format)."""
    name, fingerprint = encoder_id.split(":")[:2]
    return artefact_dir() / f"{name}-{fingerprint}-{FORMAT[backend]}{suffix}"


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def is_intact(path: Path) -> bool:
    """True when ``path`` exists and matches the sha256 in its sidecar."""
    try:
        meta = json.loads(_sidecar(path).read_text())
        return path.stat().st_size == meta["bytes"] and file_sha256(path) == meta["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def build(path: Path, what: str, write: Callable[[Path], None]) -> Path:
    """Return ``path``, first building it with ``write(tmp)`` unless it is intact; atomic, checksummed."""
    from marsctl import ui

    if is_intact(path):
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
