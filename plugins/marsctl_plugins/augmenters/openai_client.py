"""``openai``: paraphrases from an OpenAI-compatible chat-completions server.

Works with vLLM, llama.cpp (``llama-cpp-python[server]``, ``llama-server``), Ollama and hosted APIs.
Only the standard library is used (``urllib`` and a thread pool). The API key is read from the
environment variable named by ``api_key_env`` at request time; it is never stored in the config,
written to a file or a record, or printed.

Each of the ``n`` samples for a text is its own request with its own ``seed``, so a server that
ignores ``n`` still gives ``n`` samples and reruns are reproducible where the server honours seeds.
Requests that fail with 429 or 5xx, or time out, are retried with exponential backoff
(``Retry-After`` is honoured); anything else fails at once with a :class:`GeneratorError`.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import email.utils
import http.client
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from typing import Any, ClassVar

from marsctl.errors import MarsError
from marsctl.params import check_interval
from marsctl_plugins.augmenters.generative import GenerativeAugmenter, GenerativeConfig

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


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


def _snippet(body: bytes | str, limit: int = 200) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit else "")


# What a server may echo back of a request's credentials: bearer tokens, sk-style keys, a URL's user:password@.
REDACTED = "[REDACTED]"
_SECRET_PATTERNS = [
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',;}]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)(\"?(?:api[_-]?key|authorization|x-api-key)\"?\s*[:=]\s*\"?)(?!bearer\s)[^\s\"',;}]+"),
     r"\1" + REDACTED),
    (re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{6,}"), REDACTED),
    (re.compile(r"\b(?:sk|hf|ghp|gho|gsk|xox[abprs])_[A-Za-z0-9_\-]{6,}"), REDACTED),
    (re.compile(r"(//)[^/@\s]+@"), r"\1" + REDACTED + "@"),
]


def redact(text: str | None, secrets: tuple[str, ...] = ()) -> str | None:
    """``text`` with the given secret values, and anything that looks like a credential, replaced.

    >>> redact('{"echo": "Bearer abc123456789"}; key sk-abc123456789')
    '{"echo": "Bearer [REDACTED]"}; key [REDACTED]'
    """
    if text is None:
        return None
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    for pattern, repl in _SECRET_PATTERNS:
        text = pattern.sub(repl, text)
    return text


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


class ChatClient:
    """A minimal, thread-safe client for ``POST {base_url}/chat/completions``.

    Parameters
    ----------
    base_url : str
        Up to and including ``/v1``, e.g. ``http://127.0.0.1:8080/v1``.
    api_key_env : str
        Name of the environment variable holding the key ('' or unset: no Authorization header).
    timeout : float
        Seconds per request (connect and read).
    retries : int
        Extra tries after a 429, a 5xx or a timeout.
    backoff, max_backoff : float
        First wait and largest wait, in seconds; the wait doubles after each failure.
    """

    def __init__(self, base_url: str, *, api_key_env: str = "", timeout: float = 60.0, retries: int = 4,
                 backoff: float = 1.0, max_backoff: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.stats = {"requests": 0, "retries": 0}
        self._lock = threading.Lock()

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _secrets(self) -> tuple[str, ...]:
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        return (key,) if key else ()

    def _clean(self, err: GeneratorError) -> GeneratorError:
        """The error with the key, and anything that looks like a credential, taken out of message and hint."""
        secrets = self._secrets()
        return GeneratorError(redact(str(err), secrets) or "", hint=redact(err.hint, secrets))

    def _hint(self) -> str:
        return (f"is a server running at {self.base_url}? For a local one: bash scripts/llama_server.sh; "
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
        """One try: the decoded body, a GeneratorError, or a _Retry carrying the error to raise last."""
        req = urllib.request.Request(url, data=data, headers=self._headers(), method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as e:
            err = self._http_error(url, e.code, e.read() if e.fp else b"", attempt)
            if e.code not in RETRY_STATUS:
                raise err from None
            raise _Retry(_retry_after(e.headers.get("Retry-After") if e.headers else None, self.max_backoff),
                         err) from None
        except TimeoutError:
            raise _Retry(None, self._timeout(url, attempt)) from None
        except urllib.error.URLError as e:
            if not isinstance(e.reason, TimeoutError):
                msg = f"{url}: cannot connect ({e.reason})"
                raise GeneratorError(msg, hint=self._hint()) from None
            raise _Retry(None, self._timeout(url, attempt)) from None
        except (OSError, http.client.HTTPException) as e:
            msg = f"{url}: the connection broke ({e!r}) after {attempt + 1} tries"
            raise _Retry(None, GeneratorError(msg, hint=self._hint())) from None
        return self._decode(url, body)

    def _timeout(self, url: str, attempt: int) -> GeneratorError:
        msg = f"{url}: no answer within {self.timeout:g}s ({attempt + 1} tries)"
        return GeneratorError(msg, hint="raise -p timeout=SECONDS or lower -p concurrency")

    def _decode(self, url: str, body: bytes) -> Any:
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            msg = f"{url}: the server answered something that is not JSON: {_snippet(body)!r}"
            raise GeneratorError(msg, hint="is base_url an OpenAI-compatible endpoint ending in /v1?") from None

    def _http_error(self, url: str, code: int, body: bytes, attempt: int) -> GeneratorError:
        detail = _snippet(body)
        try:
            err = json.loads(body).get("error")
            detail = _snippet(err.get("message", str(err)) if isinstance(err, dict) else str(err))
        except (ValueError, AttributeError):
            pass
        tries = f" after {attempt + 1} tries" if attempt else ""
        msg = f"{url}: HTTP {code}{tries}: {detail}"
        hint = None
        if code in (401, 403):
            hint = f"set the API key in ${self.api_key_env}" if self.api_key_env else "pass -p api_key_env=VAR"
        elif code == 404:
            hint = "check base_url (it should end in /v1) and the model name"
        elif code == 429 or code >= 500:
            hint = "the server is overloaded: lower -p concurrency or raise -p retries"
        return GeneratorError(msg, hint=hint)

    def chat(self, messages: list[dict[str, str]], **params: Any) -> str:
        """The assistant text of one chat completion."""
        data = self.request_json("POST", "/chat/completions", {"messages": messages, **params})
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            msg = (f"{self.base_url}/chat/completions: the answer has no choices[0].message.content: "
                   f"{_snippet(json.dumps(data))!r}")
            raise self._clean(GeneratorError(msg, hint="is the server OpenAI-compatible?")) from None
        if not isinstance(content, str):
            content = "" if content is None else str(content)
        return content

    def first_model(self) -> str | None:
        """The first model the server lists under /models, if any."""
        try:
            data = self.request_json("GET", "/models")
            return str(data["data"][0]["id"])
        except (GeneratorError, KeyError, IndexError, TypeError):
            return None


@dataclasses.dataclass
class OpenAIConfig(GenerativeConfig):
    """Settings of the chat-completions client."""

    base_url: str = dataclasses.field(default="http://127.0.0.1:8080/v1", metadata={
        "help": "Server URL up to and including /v1."})
    model: str = dataclasses.field(default="", metadata={
        "help": "Model name sent to the server; empty: the first one the server lists."})
    api_key_env: str = dataclasses.field(default="OPENAI_API_KEY", metadata={
        "help": "Name of the environment variable holding the API key (the key itself is never stored)."})
    concurrency: int = dataclasses.field(default=4, metadata={"help": "Requests in flight at once."})
    timeout: float = dataclasses.field(default=60.0, metadata={"help": "Seconds per request."})
    retries: int = dataclasses.field(default=4, metadata={"help": "Extra tries after a 429, 5xx or timeout."})
    backoff: float = dataclasses.field(default=1.0, metadata={
        "help": "First retry wait in seconds (doubles each time; Retry-After wins)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = "the openai augmenter"
        if not self.base_url.startswith(("http://", "https://")):
            from marsctl.errors import ConfigError

            msg = (f"The 'base_url' parameter of {owner} must start with http:// or https://. "
                   f"Got {self.base_url!r} instead.")
            raise ConfigError(msg)
        check_env_name(self.api_key_env, "api_key_env", owner)
        check_interval(self.concurrency, "concurrency", owner, kind=int, low=1, high=256)
        check_interval(self.timeout, "timeout", owner, low=0.0, high=3600.0, closed="right")
        check_interval(self.retries, "retries", owner, kind=int, low=0, high=20)
        check_interval(self.backoff, "backoff", owner, low=0.0, high=60.0)


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
