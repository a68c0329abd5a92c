"""Issue 18: the openai backend against a hostile or broken server, on real loopback servers (127.0.0.1 only).

Redirects to another origin (the key must not follow), the key in error bodies at the 200-character cut and
in encoded forms, credentials in base_url (never recorded), an endless body, a 1-byte-per-second trickle
(body, headers, TLS handshake), and a reply of 100k newlines through the quality filters. Every server loop
is bounded in bytes and seconds.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

import pytest
from conftest import FIXTURES, read_jsonl, run_cli, serve_http

from marsctl_plugins.augmenters.openai_client import MAX_RESPONSE_BYTES, ChatClient, GeneratorError, OpenAIConfig

KEY = "Zq8vR2mW7xK4pL9n+T3b/Y6cH1dF=5gJ"  # 32 characters; + / = change under URL and JSON encodings
ENV = "MARSCTL_HARDEN_KEY"
MSG = [{"role": "user", "content": "Rewrite: hello"}]


def key_forms(key: str = KEY) -> list[str]:
    """The key as a server might echo it."""
    raw = key.encode()
    return [key, urllib.parse.quote(key, safe=""), urllib.parse.quote_plus(key),
            urllib.parse.quote(key, safe="").lower(), json.dumps(key)[1:-1].replace("/", "\\/"),
            html.escape(key), raw.hex(), base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode(),
            base64.b64encode(b"user:" + raw).decode(), base64.b64encode(b"ab:" + raw).decode(),
            base64.b64encode(raw + b":").decode()]


def _b64_core(b64: str, prefix: int, n: int) -> str:
    """The base64 characters that encode only the key's bytes (after ``prefix`` bytes, ``n`` bytes long)."""
    return b64[-(-8 * prefix // 6) : 8 * (prefix + n) // 6]


def leaked(text: str, key: str = KEY, run: int = 8) -> list[str]:
    """Runs of ``run`` characters of any form of the key found in ``text`` (base64 of user:key by its key part)."""
    raw = key.encode()
    forms = key_forms(key)[:7] + [_b64_core(base64.b64encode(b"\0" * s + raw).decode(), s, len(raw)) for s in range(3)]
    forms += [f.replace("+", "-").replace("/", "_") for f in forms[-3:]]
    return sorted({f[i : i + run] for f in forms for i in range(len(f) - run + 1) if f[i : i + run] in text})


def completion(text: str) -> dict:
    return {"id": "x", "object": "chat.completion", "model": "fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}


# ------------------------------------------------------------------ the servers
class Sink(BaseHTTPRequestHandler):
    """The other origin a redirect points to: records every request and its Authorization header."""

    seen: ClassVar[list] = []

    def log_message(self, *args):
        pass

    def _any(self):
        Sink.seen.append((self.command, self.path, self.headers.get("Authorization")))
        data = json.dumps({**completion("from the other server"), "data": [{"id": "sink-model"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _any


class Hostile(BaseHTTPRequestHandler):
    """Behaviour by the first path segment: /redirect307/v1, /leak/v1, /endless/v1, /trickle/v1, ..."""

    sink: ClassVar[str] = ""
    bodies: ClassVar[dict] = {}  # leak bodies by name
    sent: ClassVar[dict] = {}

    def log_message(self, *args):
        pass

    def _send(self, code, body, headers=None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _drain(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)

    def do_GET(self):
        self.do_POST()

    def do_POST(self):  # noqa: C901 - one branch per scripted behaviour
        self._drain()
        parts = self.path.strip("/").split("/")
        mode = parts[0]
        try:
            if mode.startswith("redirect"):  # redirect307 -> the sink; redirect307same -> this server
                code = int(mode[8:11])
                target = f"{self.sink}/v1/chat/completions" if not mode.endswith("same") else "/ok/v1/chat/completions"
                if mode.endswith("creds"):
                    host = urllib.parse.urlsplit(self.sink).netloc
                    quoted = urllib.parse.quote(KEY, safe="")
                    target = f"http://user:{quoted}@{host}/v1/chat/completions?api_key={quoted}"
                self._send(code, b"", {"Location": target})
            elif mode == "ok":
                self._send(200, completion("An entirely fresh rewording of the text."))
            elif mode == "leak":
                self._send(int(parts[1]), self.bodies[parts[2]].encode())
            elif mode == "endless":  # 200 or 500, no Content-Length, as fast as it goes (at most 256 MiB)
                self.send_response(int(parts[1]))
                self.end_headers()
                sent = 0
                chunk = b"A" * 65536
                while sent < 256 * 2**20:
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    Hostile.sent[mode] = sent
            elif mode == "biglength":  # declares 10 GB
                self.send_response(200)
                self.send_header("Content-Length", str(10 * 2**30))
                self.end_headers()
                self.wfile.write(b"{")
            elif mode == "trickle":  # a valid answer, one byte a second (at most 60)
                data = json.dumps(completion("slow")).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.flush()
                for b in data[:60]:
                    self.wfile.write(bytes([b]))
                    self.wfile.flush()
                    time.sleep(1.0)
            elif mode == "trickleheaders":  # the status line, then headers a byte a second (at most 60)
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                for b in b"X-Slow: " + b"a" * 52:
                    self.wfile.write(bytes([b]))
                    self.wfile.flush()
                    time.sleep(1.0)
            elif mode == "newlines":  # 100k newlines inside the content, after a chat preamble
                self._send(200, completion("Sure! Here is the rewritten text:\nx" + "\n" * 100_000 + "y"))
            elif mode == "deepjson":
                self._send(200, b"[" * 200_000)
            elif mode == "models":  # /models lists a hostile name: the key, or 1 MB
                self._send(200, {"data": [{"id": KEY if parts[1] == "key" else "m" * 2**20}]})
            else:
                self._send(404, {"error": {"message": "no such route"}})
        except OSError:  # the client hung up (it stopped reading): that is the point
            pass


@pytest.fixture(scope="module")
def servers():
    Sink.seen = []
    with serve_http(Sink) as sink, serve_http(Hostile) as url:
        Hostile.sink = sink
        yield url, sink


@pytest.fixture(autouse=True)
def _key(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, KEY)
    monkeypatch.setenv("MARSCTL_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


def _client(url: str, **kw) -> ChatClient:
    return ChatClient(url, api_key_env=ENV, **{"retries": 0, "backoff": 0.0, **kw})


def _shown(e: pytest.ExceptionInfo) -> str:
    return str(e.value) + " " + (e.value.hint or "")


def _selected(n: int = 1) -> str:
    rows = read_jsonl(FIXTURES / "tiny.jsonl")[:n]
    return "".join(json.dumps({**r, "pred_margin": 0.0, "budget": 1}) + "\n" for r in rows)


FAST = ["-p", "model=m", "-p", "n_variants=1", "-p", "oversample=1", "-p", "sim_low=-1.0", "-p", "sim_high=1.0",
        "-p", "len_low=0.0", "-p", "len_high=1000000.0", "-p", "retries=0"]


def _augment(base_url: str, tmp_path, *extra: str):
    return run_cli("augment", "-", "--backend", "openai", "-p", f"base_url={base_url}", "-p", f"api_key_env={ENV}",
                   *FAST, *extra, input=_selected(),
                   env={ENV: KEY, "MARSCTL_CACHE_DIR": str(tmp_path / "c"), "NO_PROXY": "127.0.0.1"})


def _no_key_on_disk(root) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            text = p.read_text(errors="replace")
            assert not leaked(text), (p, leaked(text))
            assert "sk-harden" not in text and "QSECRET" not in text, p


# ------------------------------------------------------------------ 1. redirects
@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_origin_is_not_followed_and_the_key_stays_home(servers, code):
    """Before: 301/302/303 were followed as a GET to the other server, Authorization: Bearer KEY included."""
    url, sink = servers
    Sink.seen.clear()
    with pytest.raises(GeneratorError) as e:
        _client(f"{url}/redirect{code}/v1").chat(MSG, model="m")
    shown = _shown(e)
    assert f"HTTP {code}" in shown and f"redirects to {sink} (another server)" in shown
    assert not leaked(shown) and Sink.seen == []


@pytest.mark.parametrize("mode", ["redirect302same", "redirect307creds"])
def test_no_redirect_is_followed_and_a_location_is_shown_by_its_origin_only(servers, mode):
    url, sink = servers
    Sink.seen.clear()
    with pytest.raises(GeneratorError) as e:
        _client(f"{url}/{mode}/v1").chat(MSG, model="m")
    shown = _shown(e)
    assert f"redirects to {url if mode.endswith('same') else sink}" in shown
    assert not leaked(shown) and "user" not in shown and "api_key" not in shown and Sink.seen == []


def test_listing_models_does_not_follow_a_redirect_either(servers):
    url, _ = servers
    Sink.seen.clear()
    assert _client(f"{url}/redirect301/v1").first_model() is None
    assert Sink.seen == []


def test_cli_refuses_the_redirect_without_sending_the_key(servers, tmp_path):
    url, sink = servers
    Sink.seen.clear()
    proc = _augment(f"{url}/redirect307/v1", tmp_path)
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"redirects to {sink}" in proc.stderr and not leaked(proc.stderr)
    assert Sink.seen == []


# ------------------------------------------------------------------ 2. redaction before the cut
def _leak_bodies() -> dict[str, str]:
    raw = KEY.encode()
    bodies = {f"cut{k}": "x" * k + " " + KEY + " tail" for k in (150, 168, 180, 190, 198)}  # the key at the 200 cut
    bodies.update({
        "urlencoded": "bad key " + urllib.parse.quote(KEY, safe=""),
        "urlencoded_lower": "bad key " + urllib.parse.quote(KEY, safe="").lower(),
        "quote_plus": "bad key " + urllib.parse.quote_plus(KEY),
        "double_urlencoded": "bad key " + urllib.parse.quote(urllib.parse.quote(KEY, safe=""), safe=""),
        "base64": "got " + base64.b64encode(raw).decode(),
        "base64_urlsafe": "got " + base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "basic_user": "Authorization: Basic " + base64.b64encode(b"user:" + raw).decode(),
        "basic_longer_user": "auth header was " + base64.b64encode(b"someone@example.com:" + raw).decode(),
        "json_escaped": '{"detail": "key \\"' + json.dumps(KEY)[1:-1].replace("/", "\\/") + '\\" refused"',
        "json_unicode": "key " + "".join(c if c.isalnum() else f"\\u{ord(c):04x}" for c in KEY),
        "html": "<p>key " + html.escape(KEY) + "</p>",
        "html_numeric": "key " + "".join(c if c.isalnum() else f"&#{ord(c)};" for c in KEY),
        "hex": "key bytes " + raw.hex(),
        "server_truncated": "invalid key " + KEY[:31] + "...",
        "split_by_newline": "invalid key " + KEY[:16] + "\n" + KEY[16:],
        "cut_encoded": "x" * 180 + " " + urllib.parse.quote(KEY, safe=""),
        "cut_base64": "x" * 185 + " " + base64.b64encode(b"user:" + raw).decode(),
        "prefix_at_cut": "x" * 193 + " " + KEY[:6] + " is not a valid key prefix",
    })
    return bodies


@pytest.mark.parametrize("code", [401, 500, 200])
@pytest.mark.parametrize("name", sorted(_leak_bodies()))
def test_the_key_never_reaches_a_message_in_any_form(servers, name, code):
    """Before: the body was cut to 200 characters, then redacted: a key across the cut printed its first part."""
    url, _ = servers
    Hostile.bodies = _leak_bodies()
    with pytest.raises(GeneratorError) as e:
        _client(f"{url}/leak/{code}/{name}/v1").chat(MSG, model="m")
    shown = _shown(e)
    assert not leaked(shown), (name, shown)
    if name == "prefix_at_cut":
        assert KEY[:4] not in shown, shown
    assert len(str(e.value)) < 500


def test_a_key_in_the_answer_is_taken_out_of_the_text_and_the_model_name(servers):
    url, _ = servers
    Hostile.bodies = {"echo": json.dumps(completion(f"here is your key {KEY} and {urllib.parse.quote(KEY, safe='')}"))}
    text = _client(f"{url}/leak/200/echo/v1").chat(MSG, model="m")
    assert not leaked(text) and "[REDACTED]" in text
    assert _client(f"{url}/models/key/v1").first_model() is None  # a model "name" that is the key is not used
    assert _client(f"{url}/models/huge/v1").first_model() is None  # nor one of 1 MB


# ------------------------------------------------------------------ 3. credentials in base_url
BAD_URLS = {
    "userinfo": "http://user:sk-harden-0123456789@127.0.0.1:{port}/v1",
    "user_only": "http://sk-harden-0123456789@127.0.0.1:{port}/v1",
    "api_key_query": "http://127.0.0.1:{port}/v1?api_key=QSECRET0123456789",
    "key_query": "http://127.0.0.1:{port}/v1?key=QSECRET",
    "token_fragment": "http://127.0.0.1:{port}/v1#access_token=QSECRET0123",
    "path_params": "http://127.0.0.1:{port}/v1;token=QSECRET0123",
    "any_query": "http://127.0.0.1:{port}/v1?x=QSECRET",
    "no_scheme": "127.0.0.1:{port}/v1?api_key=QSECRET0123456789",
    "no_scheme_userinfo": "u:QSECRET0123@127.0.0.1:{port}/v1",
}


@pytest.mark.parametrize("name", sorted(BAD_URLS))
def test_credentials_in_base_url_are_refused_without_echoing_them(name):
    from marsctl.errors import ConfigError

    with pytest.raises(ConfigError, match="'base_url' parameter") as e:
        OpenAIConfig(base_url=BAD_URLS[name].format(port=9))
    assert "QSECRET" not in _shown(e) and "sk-harden" not in _shown(e)


@pytest.mark.parametrize("name", ["userinfo", "api_key_query", "no_scheme"])
def test_cli_augment_refuses_a_key_in_base_url_with_exit_2(servers, tmp_path, name):
    url, _ = servers
    port = urllib.parse.urlsplit(url).port
    out = tmp_path / "out.jsonl"
    proc = _augment(BAD_URLS[name].format(port=port), tmp_path, "-o", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "'base_url' parameter" in errors[0]
    assert "QSECRET" not in proc.stderr and "sk-harden" not in proc.stderr and not out.exists()
    if name != "no_scheme":
        assert "api_key_env" in proc.stderr  # the hint: the key goes in the environment


@pytest.mark.parametrize("extra", [[], ["--strategy", "none"], ["--rounds", "0"]])
def test_refine_refuses_a_key_in_any_recorded_url_before_writing_anything(tmp_path, extra):
    """Before: with --rounds 0 (or --strategy none) the augmenter's base_url went unchecked into manifest.json,
    summary.json and report.html, user:password and ?api_key= included."""
    run = tmp_path / "run"
    args = ["refine", str(FIXTURES / "tiny.jsonl"), "--rounds", "1", "--out", str(run), "--backend", "openai",
            "--augment-param", "base_url=http://user:sk-harden-0123456789@127.0.0.1:9/v1?api_key=QSECRET0123", *extra]
    proc = run_cli(*args, env={"MARSCTL_CACHE_DIR": str(tmp_path / "c")})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "QSECRET" not in proc.stderr and "sk-harden" not in proc.stderr
    assert not run.exists() or not any(run.iterdir())


def test_compare_refuses_a_key_in_a_recorded_url(tmp_path):
    out = tmp_path / "cmp"
    proc = run_cli("compare", str(FIXTURES / "tiny.jsonl"), "--strategies", "none", "--seeds", "1", "--out", str(out),
                   "--augment-param", "base_url=http://127.0.0.1:9/v1?token=QSECRET0123",
                   env={"MARSCTL_CACHE_DIR": str(tmp_path / "c")})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "QSECRET" not in proc.stderr and (not out.exists() or not any(out.iterdir()))


def test_a_refine_run_with_the_openai_backend_records_no_credentials(servers, tmp_path):
    """The real path that writes manifest.json, summary.json and report.html, the key in the environment."""
    url, _ = servers
    run = tmp_path / "run"
    proc = run_cli("refine", str(FIXTURES / "tiny.jsonl"), "--rounds", "1", "--budget", "4", "--epochs", "1",
                   "--out", str(run), "--backend", "openai", "--augment-param", f"base_url={url}/ok/v1",
                   "--augment-param", f"api_key_env={ENV}",
                   *[a.replace("-p", "--augment-param") if a == "-p" else a for a in FAST],
                   env={ENV: KEY, "MARSCTL_CACHE_DIR": str(tmp_path / "c"), "NO_PROXY": "127.0.0.1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "manifest.json").is_file() and (run / "report.html").is_file()
    assert not leaked(proc.stderr + proc.stdout)
    _no_key_on_disk(tmp_path)


def test_a_chat_client_built_with_credentials_in_its_url_never_shows_them():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ChatClient(f"http://me:QSECRET0123@127.0.0.1:{port}/v1?api_key=QSECRET4567", retries=0)
    with pytest.raises(GeneratorError) as e:
        client.chat(MSG)
    assert "QSECRET" not in _shown(e)


# ------------------------------------------------------------------ 4. a hostile server: size, time, CPU
@pytest.mark.parametrize("code", [200, 500])
def test_an_endless_body_is_cut_at_the_limit(servers, code):
    """Before: the whole body was read into memory (over 2 GB in seconds); an error body too."""
    url, _ = servers
    Hostile.sent.clear()
    t0 = time.perf_counter()
    with pytest.raises(GeneratorError) as e:
        _client(f"{url}/endless/{code}/v1").chat(MSG, model="m")
    assert time.perf_counter() - t0 < 30
    if code == 200:
        assert "larger than 4 MiB" in str(e.value)
    else:
        assert "HTTP 500" in str(e.value) and len(str(e.value)) < 500
    time.sleep(0.2)
    assert Hostile.sent.get("endless", 0) < 64 * 2**20  # the client stopped reading long before the server's cap


def test_a_declared_length_over_the_limit_fails_at_once(servers):
    url, _ = servers
    with pytest.raises(GeneratorError, match="larger than 4 MiB"):
        _client(f"{url}/biglength/v1").chat(MSG, model="m")
    assert MAX_RESPONSE_BYTES == 4 * 2**20


@pytest.mark.parametrize("mode", ["trickle", "trickleheaders"])
def test_a_trickle_cannot_outlast_the_deadline(servers, mode):
    """Before: timeout bounded each read, so one byte a second kept a request alive forever."""
    url, _ = servers
    t0 = time.perf_counter()
    with pytest.raises(GeneratorError, match=r"no answer within 1.5s \(2 tries\)"):
        _client(f"{url}/{mode}/v1", timeout=1.5, retries=1).chat(MSG, model="m")
    assert time.perf_counter() - t0 < 8  # two tries of 1.5 s, with room for a loaded machine


def test_a_tls_handshake_trickle_cannot_outlast_the_deadline():
    """A server that starts a TLS record and sends it one byte a second (https://127.0.0.1)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(10)
    port = srv.getsockname()[1]
    stop = threading.Event()

    def serve():
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        with conn:
            try:
                conn.recv(4096)  # the ClientHello
                conn.sendall(b"\x16\x03\x03\x40\x00")  # a handshake record of 16 KB follows...
                for _ in range(30):  # ...one byte a second, 30 at most
                    if stop.is_set():
                        return
                    conn.sendall(b"\x02")
                    time.sleep(1.0)
            except OSError:
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(GeneratorError, match=r"no answer within 1.5s"):
            _client(f"https://127.0.0.1:{port}/v1", timeout=1.5).chat(MSG, model="m")
        assert time.perf_counter() - t0 < 6
    finally:
        stop.set()
        srv.close()
        t.join(5)


def test_cli_trickle_with_a_small_deadline_exits_1_quickly(servers, tmp_path):
    url, _ = servers
    t0 = time.perf_counter()
    proc = _augment(f"{url}/trickle/v1", tmp_path, "-p", "timeout=1.5")
    assert proc.returncode == 1 and "no answer within 1.5s" in proc.stderr, proc.stderr[-2000:]
    assert time.perf_counter() - t0 < 120  # CLI start-up on a shared machine; the trickle alone would take 60 s+


def test_cli_endless_body_exits_1(servers, tmp_path):
    url, _ = servers
    proc = _augment(f"{url}/endless/200/v1", tmp_path)
    assert proc.returncode == 1 and "larger than 4 MiB" in proc.stderr and "Traceback" not in proc.stderr


def test_deeply_nested_json_is_an_error_not_a_traceback(servers):
    url, _ = servers
    with pytest.raises(GeneratorError, match="not JSON"):
        _client(f"{url}/deepjson/v1").chat(MSG, model="m")


def test_cli_a_reply_of_100k_newlines_is_filtered_in_linear_time(servers, tmp_path):
    """Before: strip_chatter's tail pattern (\\n\\s*...) took O(n³) on newlines: 1,000 took 5 s, 100k would take days."""
    url, _ = servers
    t0 = time.perf_counter()
    proc = _augment(f"{url}/newlines/v1", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert time.perf_counter() - t0 < 120  # CLI start-up on a shared machine included


# ------------------------------------------------------------------ every regex is linear
def _patterns() -> dict[str, re.Pattern]:
    import marsctl.credentials as credentials
    import marsctl.formats as formats
    import marsctl.jsonio as jsonio
    import marsctl.outputs as outputs
    import marsctl.plugin.augmenter as plugin_augmenter
    import marsctl.shapes as shapes
    import marsctl_plugins.augmenters.eda as eda
    import marsctl_plugins.augmenters.filters as filters
    import marsctl_plugins.augmenters.openai_client as openai_client
    import marsctl_plugins.augmenters.wordnet as wordnet

    found: dict[str, re.Pattern] = {}
    for mod in (filters, openai_client, credentials, eda, wordnet, formats, jsonio, outputs, plugin_augmenter, shapes):
        for name, value in vars(mod).items():
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                rx = item[0] if isinstance(item, tuple) and item and isinstance(item[0], re.Pattern) else item
                if isinstance(rx, re.Pattern):
                    found[f"{mod.__name__.rsplit('.', 1)[-1]}.{name}[{i}]"] = rx
    return found


_ATOMS = ["\n", " ", "\n ", "\r\n", "\n\n", "\t", "a", "aB3", "(", "( ", "\n(", "*", "'", "\"", ".", "!", "=", "?k=",
          "://", "//", ":", "@", "-", "_", "/", "sk-", "here is ", "note ", "Human:", "\n\nHuman:", "basic ", "bearer "]
_PREFIXES = ["", "x", "here is", "here is.", "paraphrased answer", "sure", "x\n(", "api_key=", "http://", "Bearer ",
             "Basic ", "/dev/fd/"]


# Patterns the code only ever anchors (fullmatch on one short token); searched, they rescan from every position.
_ANCHORED = {"eda._WORDLIKE[0]", "formats._HUB_NAME[0]"}


def _run(rx: re.Pattern, text: str, anchored: bool) -> float:
    t0 = time.perf_counter()
    if not anchored:
        for _ in rx.finditer(text):
            pass
    rx.match(text)
    rx.fullmatch(text)
    return time.perf_counter() - t0


def test_every_regex_is_linear_on_adversarial_input():
    """n and 4n characters of repeated atoms (after a prefix that enters the pattern, before a character that
    fails it): every input that takes measurable time at n must take about 4 times as long at 4n, not 16 or 64."""
    patterns = _patterns()
    assert len(patterns) >= 20 and "filters._TAIL_RE[0]" in patterns
    n = 4000
    slow = []
    for name, rx in patterns.items():
        anchored = name in _ANCHORED
        for prefix in _PREFIXES:
            for atom in _ATOMS:
                reps = max(1, n // len(atom))
                if _run(rx, prefix + atom * reps + "\x00", anchored) < 0.004:
                    continue
                t_n = min(_run(rx, prefix + atom * reps + "\x00", anchored) for _ in range(3))
                t_4n = min(_run(rx, prefix + atom * (4 * reps) + "\x00", anchored) for _ in range(3))
                if t_4n > 8 * t_n + 0.02:
                    slow.append((name, prefix, atom, round(t_n, 4), round(t_4n, 4)))
    assert not slow, slow


@pytest.mark.parametrize("text", ["x" + "\n" * 100_000 + "y", "x" + "\r\n" * 50_000 + "y", "x\n" + " " * 100_000 + "y",
                                  "paraphrased answer" + " " * 100_000 + "x", "here is." + " " * 100_000 + "x",
                                  "x\n(" + " \n" * 50_000 + "y", "x" + "\n(" * 50_000])
def test_strip_chatter_on_100k_characters_takes_well_under_2_seconds(text):
    from marsctl_plugins.augmenters.filters import strip_chatter

    t0 = time.perf_counter()
    strip_chatter(text, "a short original")
    assert time.perf_counter() - t0 < 2.0


def test_redaction_of_a_large_body_is_fast():
    from marsctl_plugins.augmenters.openai_client import _snippet, redact

    body = ("bearer " * 20_000 + "sk-" * 20_000 + "//" + "a" * 50_000 + KEY[:7] * 10_000).encode()
    t0 = time.perf_counter()
    shown = _snippet(body, (KEY,))
    redact(body.decode()[:200_000], (KEY,))
    assert time.perf_counter() - t0 < 2.0 and not leaked(shown)


def test_the_filters_still_strip_chatter():
    from marsctl_plugins.augmenters.filters import strip_chatter

    assert strip_chatter('Sure! Here is the rewritten text:\n"The cat sat."') == "The cat sat."
    assert strip_chatter("The cat sat.\n\n  Note: kept short.") == "The cat sat."
    assert strip_chatter("The cat sat.\n\n( note: kept short )") == "The cat sat."
    assert strip_chatter("The paraphrased answer is : The cat sat.") == "The cat sat."
    assert strip_chatter("Here you go.\n\nThe cat sat.") == "The cat sat."
    assert os.environ.get(ENV) == KEY
