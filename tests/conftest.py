"""Shared fixtures: offline hub, an isolated HOME, one embedding cache per test session."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedding cache for the whole session (texts are embedded once, as in real use)."""
    return tmp_path_factory.mktemp("marsctl-cache")


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cache_dir: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MARSCTL_CACHE_DIR", str(cache_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("MARSCTL_LOAD_PLUGINS", raising=False)


@pytest.fixture
def fake_plugin():
    """Register a plugin class for one test and remove it afterwards."""
    from marsctl import registry

    added: list[tuple[str, str]] = []

    def add(kind: str, name: str, cls: type) -> type:
        registry.register(kind, name, cls)
        added.append((kind, name))
        return cls

    yield add
    for kind, name in added:
        registry.unregister(kind, name)


@contextlib.contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A real HTTP server on a free loopback port, serving ``handler`` in a thread; yields its base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def run_cli(*args: str, input: str | None = None, env: dict | None = None, cwd: Path | None = None,
            check: bool = False) -> subprocess.CompletedProcess:
    """Run the real marsctl CLI in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "marsctl", *args], input=input, capture_output=True,
                          text=True, env=full_env, cwd=cwd, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"marsctl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc
