"""Credentials in URLs and plugin parameters: found before anything is recorded, never echoed.

A run records its plugin parameters (``manifest.json``, ``summary.json``, ``report.html``), so a key
given inside a URL (``https://user:KEY@host/v1``, ``...?api_key=KEY``) would be written to disk.
:func:`check_params_credentials` refuses such a value with exit 2 before any file is written, and
:func:`safe_url` is the form of a URL that messages may show (no user, password, query or fragment).
Every pattern here is linear in the length of its input.
"""

from __future__ import annotations

import re
from typing import Any

from marsctl.errors import ConfigError

KEY_PREFIXES = ("sk-", "sk_", "pk-", "pk_", "rk-", "rk_", "hf_", "ghp_", "gho_", "ghs_", "ghu_", "gsk_",
                "github_pat_", "xoxa-", "xoxb-", "xoxp-", "xoxr-", "xoxs-", "glpat-", "AKIA")
# Names of query parameters that carry credentials: api_key, apikey, key, access_token, token, secret,
# password, passwd, pwd, auth, authorization, sig, signature, credential, session, bearer, ...
_CRED_NAME = re.compile(r"(?i)key|token|secret|pass|pwd|auth|sig|cred|session|bearer|jwt")
# name=value pairs after ? & # or ; (each match starts at one of those separators: linear).
_QUERY_PAIR = re.compile(r"[?&#;]([^=&#;?\s]{0,256})=([^&#;?\s]*)")
_KEY_TOKEN = re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(re.escape(p) for p in KEY_PREFIXES) + r")[A-Za-z0-9_\-]{6}")
_NETLOC = re.compile(r"[^/?#\s\\]*")


def looks_like_key(value: str) -> bool:
    """True for a string that looks like an API key: a known prefix, or 20+ characters of mixed-case letters and digits.

    >>> looks_like_key("sk-proj-abc123"), looks_like_key("2024-02-01"), looks_like_key("Zq8vR2mW7xK4pL9nT3bY")
    (True, False, True)
    """
    if value.startswith(KEY_PREFIXES):
        return True
    if len(value) < 20:
        return False
    return any(c.islower() for c in value) and any(c.isupper() for c in value) and any(c.isdigit() for c in value)


def url_credential(text: str) -> str | None:
    """What credential ``text`` carries in a URL (a phrase for a message, never the value), or None.

    >>> url_credential("http://127.0.0.1:8080/v1") is None
    True
    >>> url_credential("https://me:pw@host/v1"), url_credential("http://h/v1?api_key=x")
    ('a user name or password (user:password@host)', "a credential in its query string ('api_key')")
    """
    from urllib.parse import unquote

    start = text.find("://")
    while start != -1:
        netloc = _NETLOC.match(text, start + 3)
        end = netloc.end() if netloc else start + 3
        if netloc and "@" in netloc.group():
            return "a user name or password (user:password@host)"
        start = text.find("://", max(end, start + 3))
    if "://" not in text and "?" not in text and "#" not in text and ";" not in text:
        return None
    for m in _QUERY_PAIR.finditer(text):
        name, value = unquote(m.group(1)), unquote(m.group(2))
        if _CRED_NAME.search(name) or looks_like_key(value):
            return f"a credential in its query string ({name[:40]!r})"
    if "://" in text and _KEY_TOKEN.search(text):
        return "an API key"
    return None


def safe_url(url: str) -> str:
    """``url`` as messages may show it: no user or password, query string or fragment, nothing key-like.

    >>> safe_url("https://me:pw@api.example.com:8443/v1?api_key=abc#x")
    'https://api.example.com:8443/v1?…'
    """
    cut = min((i for i in (url.find("?"), url.find("#")) if i != -1), default=len(url))
    head, rest = url[:cut], ("?…" if cut < len(url) else "")
    scheme_end = head.find("://")
    host_start = scheme_end + 3 if scheme_end != -1 else 0
    netloc = _NETLOC.match(head, host_start)
    host_end = netloc.end() if netloc else host_start
    at = head.rfind("@", host_start, host_end)
    if at != -1:
        head = head[:host_start] + head[at + 1 :]
    return _KEY_TOKEN.sub("[REDACTED]", head) + rest


def _items(params: Any) -> list[tuple[str, str]]:
    if isinstance(params, dict):
        return [(str(k), v) for k, v in params.items() if isinstance(v, str)]
    out = []
    for p in params or []:
        if isinstance(p, str):
            key, _, value = p.partition("=")
            out.append((key.strip(), value))
    return out


def check_params_credentials(params: Any, kind: str, owner: str) -> None:
    """Refuse plugin parameters (``key=value`` strings or a dict) holding a URL with credentials.

    The value is not shown. Called before anything is written, so a refused value never reaches a
    manifest, a report or a log.
    """
    for key, value in _items(params):
        what = url_credential(value)
        if what:
            msg = (f"The {kind} parameter '{key[:60]}' of {owner} holds a URL with {what}; marsctl records its "
                   "parameters in the run folder, so it refuses credentials in them (the value is not shown).")
            hint = ("give the address without credentials and the key through the environment (the openai "
                    f"augmenter: export OPENAI_API_KEY=..., and pass the {kind} parameter api_key_env=OPENAI_API_KEY)")
            raise ConfigError(msg, hint=hint)
