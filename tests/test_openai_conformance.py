"""marsctl.testing.check_augmenter on the openai augmenter, against a real HTTP server on 127.0.0.1.

The server is scripted like the one in test_openai_client.py: it answers /v1/models and, for each
chat completion, a rewording that depends on the request's seed (so samples differ and repeat).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

import pytest
from conftest import serve_http

from marsctl import registry
from marsctl.testing import SAMPLE_PAIRS, check_augmenter
from marsctl_plugins.augmenters.openai_client import OpenAIConfig


class Rewording(BaseHTTPRequestHandler):
    """GET /v1/models names one model; POST /v1/chat/completions answers by seed and counts the calls."""

    posts: ClassVar[list[dict]] = []

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send({"object": "list", "data": [{"id": "served-model"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.posts.append(body)
        text = f"A wholly new wording, sample {body.get('seed')}."
        self._send({"id": "x", "object": "chat.completion", "model": "served-model",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}]})


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_http(Rewording) as url:
        yield f"{url}/v1"


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MARSCTL_CACHE_DIR", str(tmp_path / "cache"))


def test_check_augmenter_passes(base_url: str):
    cls = registry.load("augmenter", "openai")
    cfg = OpenAIConfig(base_url=base_url, api_key_env="", n_variants=2, oversample=1, concurrency=2,
                       sim_low=-1.0, sim_high=1.0, len_low=0.0, len_high=50.0)
    Rewording.posts.clear()
    check_augmenter(cls, cfg)
    sent = len(Rewording.posts)
    assert sent > 0 and {b["model"] for b in Rewording.posts} == {"served-model"}
    rows = cls(cfg, seed=7).augment(SAMPLE_PAIRS, [3, 0, 1, 2, 0, 1], round=2)
    assert [len(r) for r in rows] == [3, 0, 1, 2, 0, 1]
    assert all(r["generator"]["backend"] == "openai-chat" for rs in rows for r in rs)
    assert len(Rewording.posts) == sent  # the check's second run and this one came from the cache
