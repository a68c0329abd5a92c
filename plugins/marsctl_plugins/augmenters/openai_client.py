"""``openai``: paraphrases from an OpenAI-compatible chat-completions server.

Works with vLLM, llama.cpp (``llama-cpp-python[server]``, ``llama-server``), Ollama and hosted APIs.
Only the standard library is used (``urllib`` and a thread pool). The API key is read from the
environment variable named by ``api_key_env`` at request time; it is never stored in the config,
written to a file or a record, or printed.

Each of the ``n`` samples for a text is its own request with its own ``seed``, so a server that
ignores ``n`` still gives ``n`` samples and reruns are reproducible where the server honours seeds.
Requests that fail with 429 or 5xx, or time out, are retried with exponential backoff
(``Retry-After`` is honoured); anything else fails at once with a :class:`GeneratorError`.

A server is not trusted: redirects are never followed (the key would go to wherever they point), an
answer may be at most :data:`MAX_RESPONSE_BYTES`, ``timeout`` is a wall-clock deadline for the whole
answer (a server sending one byte a second cannot outlast it), and every message is redacted (the key
in any common encoding, a piece of it, anything key-like) before it is cut to length.
"""

from __future__ import annotations

import base64
import concurrent.futures as cf
import contextlib
import dataclasses
import email.utils
import functools
import html
import http.client
import json
import os
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, ClassVar

from marsctl.credentials import safe_url, url_credential
from marsctl.errors import MarsError
from marsctl.params import check_interval
from marsctl_plugins.augmenters.generative import GenerativeAugmenter, GenerativeConfig

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
# The largest answer read (body bytes). A chat completion of max_new_tokens=4096 is well under 100 KB,
# even JSON-escaped; a long /models list is under 1 MB. A server sending more is broken or hostile.
MAX_RESPONSE_BYTES = 4 * 2**20
MAX_ERROR_BYTES = 64 * 2**10  # of an error answer: only its first 200 characters are shown
_CHUNK = 64 * 2**10


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_KEY_PREFIXES = ("sk-", "sk_", "pk-", "pk_", "rk-", "rk_", "hf_", "ghp_", "gho_", "gsk_", "github_pat_", "xox")


def looks_like_secret(value: str) -> bool:
    """True for a value that is not an env var name or looks like an API key (never shown to the user).

    >>> looks_like_secret("OPENAI_API_KEY"), looks_like_secret("sk-abc123"), looks_like_secret("sk_live_x")
    (False, True, True)
    """
    if not _ENV_NAME.fullmatch(value):
        return True
    mixed = any(c.islower() for c in value) and any(c.isupper() for c in value) and any(c.isdigit() for c in value)
    return value.startswith(_KEY_PREFIXES) or (len(value) >= 24 and mixed)


def check_env_name(value: str, name: str, owner: str) -> str:
    """Check that ``value`` names an environment variable ('' for none); the value is never echoed."""
    from marsctl.errors import ConfigError

    if value and looks_like_secret(value):
        msg = (f"The '{name}' parameter of {owner} must be the NAME of an environment variable (letters, digits "
               "and _, not starting with a digit), not the key itself. Got a value that is not one (not shown).")
        hint = f"put the key in the environment and pass its name: export OPENAI_API_KEY=...; -p {name}=OPENAI_API_KEY"
        raise ConfigError(msg, hint=hint)
    return value


class GeneratorError(MarsError):
    """A generation server could not be reached or answered something unusable."""

    exit_code = 1


class _Retry(Exception):
    """A failure worth another try; ``error`` is raised when the tries run out."""

    def __init__(self, delay: float | None, error: GeneratorError):
        super().__init__(str(error))
        self.delay = delay
        self.error = error


# What a server may echo back of a request's credentials: bearer tokens, sk-style keys, a URL's user:password@.
REDACTED = "[REDACTED]"
_SECRET_PATTERNS = [
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',;}]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)\b(basic\s+)(?=[A-Za-z_\-]*[0-9+/=])[A-Za-z0-9+/=_\-]{8,}"), r"\1" + REDACTED),
    (re.compile(r"(?i)(\"?(?:api[_-]?key|authorization|x-api-key)\"?\s*[:=]\s*\"?)(?!bearer\s)(?!basic\s)[^\s\"',;}]+"),
     r"\1" + REDACTED),
    (re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{6,}"), REDACTED),
    (re.compile(r"\b(?:sk|hf|ghp|gho|gsk|xox[abprs])_[A-Za-z0-9_\-]{6,}"), REDACTED),
    (re.compile(r"(//)[^/@\s]+@"), r"\1" + REDACTED + "@"),
]
_PIECE = 8  # a run of this many characters of a key (in any of its forms) counts as the key
_SNIPPET_WINDOW = 8192  # bytes of a body looked at for a 200-character snippet


@functools.lru_cache(maxsize=8)
def secret_forms(secret: str) -> tuple[str, ...]:
    """The ways a server may echo ``secret``: as is, URL-, JSON-, HTML-, hex- and base64-encoded.

    Base64 forms are the characters that encode only the key's bytes at each of the three alignments,
    so they are found inside any base64 text holding the key (``user:KEY`` of Basic auth included).
    Longest first; they are matched ignoring case (hex and %XX come in both cases, some servers lower-case).
    """
    raw = secret.encode("utf-8")
    quote = urllib.parse.quote
    forms = {secret, quote(secret, safe=""), urllib.parse.quote_plus(secret), quote(quote(secret, safe=""), safe=""),
             json.dumps(secret)[1:-1], json.dumps(secret)[1:-1].replace("/", "\\/"),
             "".join(c if c.isalnum() else f"\\u{ord(c):04x}" for c in secret),
             html.escape(secret), "".join(c if c.isalnum() else f"&#{ord(c)};" for c in secret),
             "".join(c if c.isalnum() else f"&#x{ord(c):x};" for c in secret), raw.hex(), raw.hex().upper()}
    for shift in range(3):
        enc = base64.b64encode(b"\0" * shift + raw).decode("ascii")
        core = enc[-(-8 * shift // 6) : 8 * (shift + len(raw)) // 6]
        forms |= {core, core.replace("+", "-").replace("/", "_")}
    return tuple(sorted((f for f in forms if len(f) >= 4), key=len, reverse=True))  # matched ignoring case


def _redact_known(text: str, secrets: tuple[str, ...], pieces: bool = True) -> str:
    """``text`` with every form of each secret, and (``pieces``) every run of _PIECE characters of one, replaced."""
    forms = [f for s in secrets if s and len(s) >= 4 for f in secret_forms(s)]
    if not forms:
        return text
    text = re.sub("|".join(re.escape(f) for f in forms), REDACTED, text, flags=re.I)  # literals: linear
    if not pieces:
        return text
    return _redact_pieces(text, forms)


def _redact_pieces(text: str, forms: list[str]) -> str:
    """``text`` with every run of _PIECE or more characters of one of ``forms`` replaced (a key cut or split)."""
    grams = {f[i : i + _PIECE].lower() for f in forms if len(f) >= _PIECE for i in range(len(f) - _PIECE + 1)}
    if not grams:
        return text
    folded = text.lower()
    if len(folded) != len(text):  # a few non-ASCII letters lower-case to two characters
        folded = text
    marked = bytearray(len(text))
    for i in range(len(text) - _PIECE + 1):
        if folded[i : i + _PIECE] in grams:
            marked[i : i + _PIECE] = b"\1" * _PIECE
    if not any(marked):
        return text
    out, i = [], 0
    while i < len(text):
        if marked[i]:
            while i < len(text) and marked[i]:
                i += 1
            out.append(REDACTED)
        else:
            j = marked.find(1, i)
            j = len(text) if j == -1 else j
            out.append(text[i:j])
            i = j
    return "".join(out)


def redact(text: str | None, secrets: tuple[str, ...] = ()) -> str | None:
    """``text`` with the given secrets (in any common encoding), and anything that looks like a credential, replaced.

    >>> redact('{"echo": "Bearer abc123456789"}; key sk-abc123456789')
    '{"echo": "Bearer [REDACTED]"}; key [REDACTED]'
    """
    if text is None:
        return None
    text = _redact_known(text, secrets)
    for pattern, repl in _SECRET_PATTERNS:
        text = pattern.sub(repl, text)
    return text


def _snippet(body: bytes | str, secrets: tuple[str, ...] = (), limit: int = 200) -> str:
    """The start of a body for a message: redacted first, then cut to ``limit`` characters.

    A piece of a key left at the cut (four or more of its first characters) is redacted too.
    """
    head = body[:_SNIPPET_WINDOW]
    text = head.decode("utf-8", "replace") if isinstance(head, bytes) else head
    text = redact(" ".join(text.split()), secrets) or ""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    for form in (f for s in secrets if s and len(s) >= 4 for f in secret_forms(s)):
        for j in range(min(len(form), limit) - 1, 3, -1):
            if cut.lower().endswith(form[:j].lower()):
                cut = cut[:-j] + REDACTED
                break
    return cut + "…"


def _retry_after(value: str | None, cap: float) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), capped."""
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), cap)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(when - time.time(), 0.0), cap)


# -- transport: no redirects, a wall-clock deadline per request, a bounded body -------------------------
_watch = threading.local()  # the _Deadline of the request this thread is sending


class _Deadline:
    """A request's wall-clock deadline: when it passes, its sockets are shut down, so no read outlasts it.

    A socket timeout bounds each read, not the answer: a server sending a byte a second never trips it.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = False
        self._done = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def track(self, sock: socket.socket) -> None:
        """Shut ``sock`` down when the deadline passes (at once if it has)."""
        with self._lock:
            self._socks.append(sock)
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            for sock in self._socks:
                _shut(sock)

    def finish(self) -> None:
        """The request is over: its sockets are no longer touched."""
        with self._lock:
            self._done = True
            self._socks.clear()
        self._timer.cancel()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv, which then sees the end of the stream


def _track(sock: socket.socket) -> None:
    deadline = getattr(_watch, "deadline", None)
    if deadline is not None:
        deadline.track(sock)


def _create_connection(*args: Any, **kwargs: Any) -> socket.socket:
    sock = socket.create_connection(*args, **kwargs)
    _track(sock)
    return sock


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._create_connection = _create_connection


class _HTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._create_connection = _create_connection


class _SSLSocket(ssl.SSLSocket):
    """Tracked before its handshake, which a trickling server could otherwise stretch forever."""

    def do_handshake(self, block: bool = False) -> None:
        _track(self)
        super().do_handshake(block)


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self) -> None:
        context = ssl.create_default_context()
        context.sslsocket_class = _SSLSocket
        super().__init__(context=context)

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPSConnection, req, context=self._context)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: the request (and its key) goes to base_url and nowhere else."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None  # urllib then raises HTTPError(code), answered by ChatClient._redirected


@functools.lru_cache(maxsize=1)
def _opener() -> urllib.request.OpenerDirector:
    """urllib's opener (proxies from the environment included) without redirects, with deadline-aware sockets."""
    return urllib.request.build_opener(_NoRedirect, _HTTPHandler, _HTTPSHandler)


class _TooLarge(Exception):
    pass


def _read_body(resp: Any, limit: int, *, truncate: bool = False) -> bytes:
    """At most ``limit`` bytes of a response, read in chunks; more raises _TooLarge (or, with ``truncate``, stops)."""
    length = resp.headers.get("Content-Length") if resp.headers else None
    if not truncate and length and length.strip().isdigit() and int(length) > limit:
        raise _TooLarge
    buf = bytearray()
    while len(buf) <= limit:
        chunk = resp.read1(_CHUNK) if hasattr(resp, "read1") else resp.read(_CHUNK)
        if not chunk:
            return bytes(buf)
        buf += chunk
    if truncate:
        return bytes(buf[:limit])
    raise _TooLarge


def _origin(url: str) -> str:
    """scheme://host[:port] of a URL (no user, password, path or query), or '?' when it has none."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "?"
    if not parts.scheme or not host:
        return "?"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}"


class ChatClient:
    """A minimal, thread-safe client for ``POST {base_url}/chat/completions``.

    Parameters
    ----------
    base_url : str
        Up to and including ``/v1``, e.g. ``http://127.0.0.1:8080/v1``.
    api_key_env : str
        Name of the environment variable holding the key ('' or unset: no Authorization header).
    timeout : float
        Seconds per try: a wall-clock deadline for connecting, the headers and the whole body.
    retries : int
        Extra tries after a 429, a 5xx or a timeout.
    backoff, max_backoff : float
        First wait and largest wait, in seconds; the wait doubles after each failure.
    max_bytes : int
        The largest answer read; a larger one fails (not retried).
    """

    def __init__(self, base_url: str, *, api_key_env: str = "", timeout: float = 60.0, retries: int = 4,
                 backoff: float = 1.0, max_backoff: float = 30.0, max_bytes: int = MAX_RESPONSE_BYTES):
        self.base_url = base_url.rstrip("/")
        self.shown_url = safe_url(self.base_url)  # what messages show: no user:password@, query or key
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_bytes = max_bytes
        self.stats = {"requests": 0, "retries": 0}
        self._lock = threading.Lock()
        # Credentials in base_url itself (OpenAIConfig refuses them; ChatClient may be built directly) are secrets too.
        try:
            parts = urllib.parse.urlsplit(self.base_url)
            found = (parts.username, parts.password, *(x for _, x in urllib.parse.parse_qsl(parts.query)))
        except ValueError:
            found = ()
        self._url_secrets = tuple(v for v in found if v and len(v) >= 4)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _secrets(self) -> tuple[str, ...]:
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        return ((key,) if key else ()) + self._url_secrets

    def _clean(self, err: GeneratorError) -> GeneratorError:
        """The error with the key, and anything that looks like a credential, taken out of message and hint."""
        secrets = self._secrets()
        return GeneratorError(redact(str(err), secrets) or "", hint=redact(err.hint, secrets))

    def _hint(self) -> str:
        return (f"is a server running at {self.shown_url}? For a local one: bash scripts/llama_server.sh; "
                "or pass -p base_url=http://HOST:PORT/v1")

    def request_json(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        """Send one request with retries; return the decoded JSON body."""
        url = f"{self.base_url}{path}"
        data = json.dumps(payload).encode("utf-8") if payload is not None else None
        wait = self.backoff
        for attempt in range(self.retries + 1):
            with self._lock:
                self.stats["requests"] += 1
                self.stats["retries"] += int(attempt > 0)
            try:
                return self._once(url, method, data, attempt)
            except GeneratorError as e:  # a server's answer may echo the Authorization header
                raise self._clean(e) from None
            except _Retry as r:
                if attempt == self.retries:
                    raise self._clean(r.error) from None
                time.sleep(r.delay if r.delay is not None else wait)
                wait = min(wait * 2, self.max_backoff)
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, url: str, method: str, data: bytes | None, attempt: int) -> Any:
        """One try within the deadline: the decoded body, a GeneratorError, or a _Retry with the error to raise last."""
        deadline = _Deadline(self.timeout)
        _watch.deadline = deadline
        try:
            body = self._send(url, method, data, attempt, deadline)
        finally:
            _watch.deadline = None
            deadline.finish()
        return self._decode(url, body)

    def _send(self, url: str, method: str, data: bytes | None, attempt: int, deadline: _Deadline) -> bytes:
        shown = f"{self.shown_url}{url[len(self.base_url):]}"
        req = urllib.request.Request(url, data=data, headers=self._headers(), method=method)
        try:
            with _opener().open(req, timeout=self.timeout) as resp:
                body = _read_body(resp, self.max_bytes)
        except urllib.error.HTTPError as e:
            raise self._answered(shown, url, e, attempt, deadline) from None
        except _TooLarge:
            msg = (f"{shown}: the answer is larger than {self.max_bytes / 2**20:g} MiB; stopped reading it "
                   "(a chat completion is far smaller: is base_url an OpenAI-compatible server?)")
            raise GeneratorError(msg, hint="check base_url; the server may be broken") from None
        except (OSError, http.client.HTTPException) as e:  # URLError and TimeoutError included
            reason = e.reason if isinstance(e, urllib.error.URLError) else e
            if deadline.expired or isinstance(reason, TimeoutError):
                raise _Retry(None, self._timeout(shown, attempt)) from None
            if isinstance(e, urllib.error.URLError):
                msg = f"{shown}: cannot connect ({e.reason})"
                raise GeneratorError(msg, hint=self._hint()) from None
            msg = f"{shown}: the connection broke ({e!r}) after {attempt + 1} tries"
            raise _Retry(None, GeneratorError(msg, hint=self._hint())) from None
        if deadline.expired:  # the deadline cut the body short; what was read is not the answer
            raise _Retry(None, self._timeout(shown, attempt))
        return body

    def _answered(self, shown: str, url: str, e: urllib.error.HTTPError, attempt: int,
                  deadline: _Deadline) -> Exception:
        """What to raise for an HTTP error status: a redirect, a retry or a GeneratorError."""
        try:
            if deadline.expired:
                return _Retry(None, self._timeout(shown, attempt))
            if 300 <= e.code < 400:
                return self._redirected(shown, url, e)
            try:
                detail = _read_body(e.fp, MAX_ERROR_BYTES, truncate=True) if e.fp else b""
            except (OSError, http.client.HTTPException):
                detail = b""
        finally:
            e.close()
        err = self._http_error(shown, e.code, detail, attempt)
        if e.code not in RETRY_STATUS:
            return err
        return _Retry(_retry_after(e.headers.get("Retry-After") if e.headers else None, self.max_backoff), err)

    def _redirected(self, shown: str, url: str, e: urllib.error.HTTPError) -> GeneratorError:
        location = (e.headers.get("Location") or e.headers.get("URI") or "") if e.headers else ""
        target = _origin(urllib.parse.urljoin(url, location)) if location else "?"
        where = "the same server" if target == _origin(url) else "another server"
        msg = (f"{shown}: HTTP {e.code}: the server redirects to {target} ({where}); redirects are not "
               "followed, so the API key is never sent anywhere but base_url")
        return GeneratorError(msg, hint="set -p base_url to the address the server redirects to, if you trust it")

    def _timeout(self, shown: str, attempt: int) -> GeneratorError:
        msg = f"{shown}: no answer within {self.timeout:g}s ({attempt + 1} tries)"
        return GeneratorError(msg, hint="raise -p timeout=SECONDS (a deadline for the whole answer) or lower "
                                        "-p concurrency")

    def _decode(self, url: str, body: bytes) -> Any:
        try:
            return json.loads(body)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep, an integer too long
            shown = f"{self.shown_url}{url[len(self.base_url):]}"
            msg = f"{shown}: the server answered something that is not JSON: {_snippet(body, self._secrets())!r}"
            raise GeneratorError(msg, hint="is base_url an OpenAI-compatible endpoint ending in /v1?") from None

    def _http_error(self, shown: str, code: int, body: bytes, attempt: int) -> GeneratorError:
        secrets = self._secrets()
        detail = _snippet(body, secrets)
        try:
            err = json.loads(body).get("error")
            detail = _snippet(err.get("message", str(err)) if isinstance(err, dict) else str(err), secrets)
        except (ValueError, AttributeError, RecursionError):
            pass
        tries = f" after {attempt + 1} tries" if attempt else ""
        msg = f"{shown}: HTTP {code}{tries}: {detail}"
        hint = None
        if code in (401, 403):
            hint = f"set the API key in ${self.api_key_env}" if self.api_key_env else "pass -p api_key_env=VAR"
        elif code == 404:
            hint = "check base_url (it should end in /v1) and the model name"
        elif code == 429 or code >= 500:
            hint = "the server is overloaded: lower -p concurrency or raise -p retries"
        return GeneratorError(msg, hint=hint)

    def chat(self, messages: list[dict[str, str]], **params: Any) -> str:
        """The assistant text of one chat completion (the key, in any form, taken out of it)."""
        data = self.request_json("POST", "/chat/completions", {"messages": messages, **params})
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            msg = (f"{self.shown_url}/chat/completions: the answer has no choices[0].message.content: "
                   f"{_snippet(json.dumps(data), self._secrets())!r}")
            raise self._clean(GeneratorError(msg, hint="is the server OpenAI-compatible?")) from None
        if not isinstance(content, str):
            content = "" if content is None else str(content)
        return _redact_known(content, self._secrets(), pieces=False)

    def first_model(self) -> str | None:
        """The first model the server lists under /models, if any (a usable name: short, one line, no key)."""
        try:
            data = self.request_json("GET", "/models")
            name = data["data"][0]["id"]
        except (GeneratorError, KeyError, IndexError, TypeError):
            return None
        if not isinstance(name, str) or not 0 < len(name) <= 256 or not name.isprintable():
            return None
        return None if redact(name, self._secrets()) != name else name


@dataclasses.dataclass
class OpenAIConfig(GenerativeConfig):
    """Settings of the chat-completions client."""

    base_url: str = dataclasses.field(default="http://127.0.0.1:8080/v1", metadata={
        "help": "Server URL up to and including /v1 (no user:password@ or query: the key goes in api_key_env)."})
    model: str = dataclasses.field(default="", metadata={
        "help": "Model name sent to the server; empty: the first one the server lists."})
    api_key_env: str = dataclasses.field(default="OPENAI_API_KEY", metadata={
        "help": "Name of the environment variable holding the API key (the key itself is never stored)."})
    concurrency: int = dataclasses.field(default=4, metadata={"help": "Requests in flight at once."})
    timeout: float = dataclasses.field(default=60.0, metadata={
        "help": "Seconds per request: a deadline for the whole answer (connecting, headers and body)."})
    retries: int = dataclasses.field(default=4, metadata={"help": "Extra tries after a 429, 5xx or timeout."})
    backoff: float = dataclasses.field(default=1.0, metadata={
        "help": "First retry wait in seconds (doubles each time; Retry-After wins)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = "the openai augmenter"
        self._check_base_url(owner)
        check_env_name(self.api_key_env, "api_key_env", owner)
        check_interval(self.concurrency, "concurrency", owner, kind=int, low=1, high=256)
        check_interval(self.timeout, "timeout", owner, low=0.0, high=3600.0, closed="right")
        check_interval(self.retries, "retries", owner, kind=int, low=0, high=20)
        check_interval(self.backoff, "backoff", owner, low=0.0, high=60.0)

    def _check_base_url(self, owner: str) -> None:
        """http(s)://HOST[:PORT]/PATH and nothing else: a user, password, query or fragment is refused unshown."""
        from marsctl.errors import ConfigError

        if not self.base_url.startswith(("http://", "https://")):
            msg = (f"The 'base_url' parameter of {owner} must start with http:// or https://. "
                   f"Got {safe_url(self.base_url)!r} instead.")
            raise ConfigError(msg)
        try:
            parts = urllib.parse.urlsplit(self.base_url)
            parts.port  # noqa: B018 - parses the port: ValueError when it is not a number in range
        except ValueError:
            msg = f"The 'base_url' parameter of {owner} is not a valid URL. Got {safe_url(self.base_url)!r} instead."
            raise ConfigError(msg) from None
        what = url_credential(self.base_url)
        if what is None and "@" in parts.netloc:
            what = "a user name or password (user:password@host)"
        if what is None and (parts.query or parts.fragment or ";" in parts.path or "?" in self.base_url
                             or "#" in self.base_url):
            what = "a query string or fragment"
        if what:
            msg = (f"The 'base_url' parameter of {owner} must be the server's address only (http(s)://HOST:PORT/v1); "
                   f"got one with {what} (not shown). Credentials in a URL would be sent on, logged and recorded.")
            hint = ("put the key in the environment and pass its name: export OPENAI_API_KEY=...; "
                    "-p api_key_env=OPENAI_API_KEY")
            raise ConfigError(msg, hint=hint)


class OpenAIAugmenter(GenerativeAugmenter):
    """Paraphrases prompts and responses through an OpenAI-compatible server, then filters them."""

    name: ClassVar[str] = "openai"
    backend: ClassVar[str] = "openai-chat"
    Config: ClassVar[type] = OpenAIConfig

    def __init__(self, config: Any = None, *, seed: int = 0, encoder: Any = None):
        super().__init__(config, seed=seed, encoder=encoder)
        c = self.config
        self.client = ChatClient(c.base_url, api_key_env=c.api_key_env, timeout=c.timeout, retries=c.retries,
                                 backoff=c.backoff)
        self._model_name: str | None = c.model or None

    @property
    def chunk_items(self) -> int:  # type: ignore[override]
        """Chats per cache write."""
        return max(1, 2 * self.config.concurrency)

    def model_name(self) -> str:
        """The configured model, or the first one the server lists ('default' if none)."""
        if self._model_name is None:
            self._model_name = self.client.first_model() or "default"
        return self._model_name

    def describe_model(self) -> tuple[str, str]:
        """(model name, model name at the server's base URL)."""
        name = self.model_name()
        return name, f"{name}@{self.config.base_url}"

    def generate(self, messages: list[list[dict[str, str]]], n: int, seeds: list[int]) -> list[list[str]]:
        """``n`` requests per chat, ``concurrency`` at a time; the first failure cancels the rest."""
        c = self.config
        params: dict[str, Any] = {"model": self.model_name(), "max_tokens": c.max_new_tokens,
                                  "temperature": c.temperature, "top_p": c.top_p}
        out: list[list[str]] = [[""] * n for _ in messages]
        with cf.ThreadPoolExecutor(max_workers=c.concurrency, thread_name_prefix="marsctl-openai") as pool:
            futures = {
                pool.submit(self.client.chat, m, seed=(seed + k) % (2**31), **params): (i, k)
                for i, (m, seed) in enumerate(zip(messages, seeds, strict=True)) for k in range(n)
            }
            try:
                for fut in cf.as_completed(futures):
                    i, k = futures[fut]
                    out[i][k] = fut.result()
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
        return out
