"""Row shapes: the preference layouts of the ecosystem, detected per row and read as flat prompt/chosen/rejected pairs.

Each shape's published layout (``SHAPES``) is read into one or more records ``{"id", "prompt", "chosen",
"rejected", ...extra keys}``. Conversational rows keep their original fields under the private key
``_source`` so that writers can put messages back (:mod:`marsctl.layouts`). File formats are
:mod:`marsctl.formats`'s job, the bytes of JSONL :mod:`marsctl.jsonio`'s.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from typing import Any

from marsctl.errors import DataError
from marsctl.messages import Messages, check_messages, join_contents, render_messages, shared_prefix, string_field

HH_SPLIT = "\n\nAssistant:"
SOURCE = "_source"  # private key: the consumed original fields of a conversational row and its texts

# name -> the published layout it reads (help text, error hints and the README table say this once).
SHAPES: dict[str, str] = {
    "trl": "TRL preference: prompt, chosen, rejected strings (or chosen and rejected only, with an implicit "
           "prompt: their shared start)",
    "trl-chat": "TRL conversational preference: chosen and rejected lists of {role, content} messages, with a "
                "prompt list or an implicit prompt (the shared first messages)",
    "hh": "Anthropic HH: chosen and rejected full '\\n\\nHuman: … \\n\\nAssistant: …' dialogues, split at the "
          "last shared '\\n\\nAssistant:'",
    "openai": "OpenAI preference fine-tuning: input.messages, preferred_output, non_preferred_output",
    "ultrafeedback": "UltraFeedback-binarized: a prompt string with chosen and rejected message lists "
                     "(score_chosen/score_rejected kept)",
    "rewardbench": "RewardBench v1: prompt, chosen, rejected strings with chosen_model, rejected_model, subset, id",
    "rewardbench2": "RewardBench 2 / best-of-N: a prompt with lists of chosen and rejected strings; one pair per "
                    "chosen × rejected, sharing group_id",
    "pku": "PKU-SafeRLHF: prompt, response_0, response_1, better_response_id (the more helpful response wins)",
    "pku-safer": "PKU-SafeRLHF read by safer_response_id (the safer response wins)",
    "pairwise": "a labeled pair: prompt, response_a, response_b, preferred: a | b | tie (ties are skipped; without "
                "preferred, an unlabeled pair for score and query)",
    "arena": "pairwise judgement: winner: model_a | model_b | tie, with conversation_a and conversation_b message "
             "lists or prompt, response_a, response_b (ties are skipped)",
}
ACCEPTED_HINT = "marsctl reads these shapes (--format NAME forces one): " + "; ".join(
    f"{k}: {v}" for k, v in SHAPES.items())

Pair = tuple[str, str, str]


def content_id(prompt: str, chosen: str, rejected: str) -> str:
    """A stable id from a pair's content: ``h-`` and the first 16 hex digits of its sha256.

    >>> content_id("p", "a", "b")
    'h-292f6f51c4df81f9'
    """
    digest = hashlib.sha256("\x1f".join((prompt, chosen, rejected)).encode("utf-8")).hexdigest()
    return "h-" + digest[:16]


def _chat(prompt: Messages, chosen: Messages, rejected: Messages, consumed: dict[str, Any]) -> dict[str, Any]:
    """A conversational pair: flat texts plus the original fields and the split messages under ``_source``."""
    texts = (render_messages(prompt), join_contents(chosen), join_contents(rejected))
    source = {"fields": consumed, "messages": {"prompt": prompt, "chosen": chosen, "rejected": rejected},
              "texts": texts}
    return {"prompt": texts[0], "chosen": texts[1], "rejected": texts[2], SOURCE: source}


# ------------------------------------------------------------------------------------------------- parsers
def _need(row: dict[str, Any], fields: tuple[str, ...], where: str, shape: str) -> None:
    for field in fields:
        if field not in row:
            msg = f"{where}: missing field '{field}' (the {shape} shape needs {', '.join(fields)})"
            raise DataError(msg, hint=ACCEPTED_HINT)


def _parse_trl_chat(row: dict[str, Any], where: str) -> list[dict[str, Any]]:
    _need(row, ("chosen", "rejected"), where, "trl-chat")
    chosen = check_messages(row["chosen"], where, "chosen")
    rejected = check_messages(row["rejected"], where, "rejected")
    consumed: dict[str, Any] = {k: row[k] for k in ("prompt", "chosen", "rejected") if k in row}
    if "prompt" in row and not isinstance(row["prompt"], str):
        prompt = check_messages(row["prompt"], where, "prompt") if row["prompt"] != [] else []
    else:
        n = shared_prefix(chosen, rejected)
        prompt, chosen, rejected = chosen[:n], chosen[n:], rejected[n:]
    return [_chat(prompt, chosen, rejected, consumed)]


def _parse_ultrafeedback(row: dict[str, Any], where: str) -> list[dict[str, Any]]:
    _need(row, ("prompt", "chosen", "rejected"), where, "ultrafeedback")
    string_field(row, "prompt", where)
    chosen = check_messages(row["chosen"], where, "chosen")
    rejected = check_messages(row["rejected"], where, "rejected")
    n = shared_prefix(chosen, rejected)
    consumed = {k: row[k] for k in ("prompt", "chosen", "rejected")}
    return [_chat(chosen[:n], chosen[n:], rejected[n:], consumed)]


def _parse_openai(row: dict[str, Any], where: str) -> list[dict[str, Any]]:
    _need(row, ("input", "preferred_output", "non_preferred_output"), where, "openai")
    inp = row["input"]
    if not isinstance(inp, dict) or "messages" not in inp:
        msg = f"{where}: field 'input' must be an object with 'messages' (OpenAI preference fine-tuning)"
        raise DataError(msg)
    prompt = check_messages(inp["messages"], where, "input.messages")
    chosen = check_messages(row["preferred_output"], where, "preferred_output")
    rejected = check_messages(row["non_preferred_output"], where, "non_preferred_output")
    consumed = {k: row[k] for k in ("input", "preferred_output", "non_preferred_output")}
    return [_chat(prompt, chosen, rejected, consumed)]


def _split_hh(chosen: str, rejected: str) -> Pair | None:
    """Anthropic HH rows: split the shared dialogue up to the last ``\\n\\nAssistant:``."""
    common = os.path.commonprefix([chosen, rejected])  # noqa: RUF071 (character prefix is what we want)
    cut = common.rfind(HH_SPLIT)
    if cut < 0:
        return None
    end = cut + len(HH_SPLIT)
    return chosen[:end], chosen[end:], rejected[end:]


def split_implicit(chosen: str, rejected: str) -> Pair | None:
    """TRL's implicit prompt: the shared start, ending before the space a completion starts with.

    >>> split_implicit("The sky is blue.", "The sky is green.")
    ('The sky is', ' blue.', ' green.')
    """
    n = len(os.path.commonprefix([chosen, rejected]))  # noqa: RUF071
    if n == len(chosen) or n == len(rejected):
        n = max(0, min(len(chosen), len(rejected)) - 1)
    if n > 0 and chosen[n - 1] == " ":
        n -= 1
    if not chosen[:n].strip():
        return None
    return chosen[:n], chosen[n:], rejected[n:]


def _parse_strings(row: dict[str, Any], where: str, shape: str) -> list[dict[str, Any]]:
    _need(row, ("chosen", "rejected"), where, shape)
    chosen, rejected = string_field(row, "chosen", where), string_field(row, "rejected", where)
    if "prompt" in row:
        return [{"prompt": string_field(row, "prompt", where), "chosen": chosen, "rejected": rejected}]
    split = _split_hh(chosen, rejected) if shape != "trl" else None
    split = split or (split_implicit(chosen, rejected) if shape != "hh" else None)
    if split is None:
        msg = (f"{where}: no 'prompt' field, and 'chosen' and 'rejected' share no dialogue ending in "
               f"'\\n\\nAssistant:' and no common start (an implicit prompt)")
        raise DataError(msg, hint="give prompt, chosen, rejected; or " + ACCEPTED_HINT)
    return [{"prompt": split[0], "chosen": split[1], "rejected": split[2]}]


def _parse_rewardbench2(row: dict[str, Any], where: str) -> list[dict[str, Any]]:
    _need(row, ("prompt", "chosen", "rejected"), where, "rewardbench2")
    prompt = string_field(row, "prompt", where)
    lists = {}
    for field in ("chosen", "rejected"):
        value = row[field]
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not value or not all(isinstance(x, str) for x in value):
            msg = f"{where}: field '{field}' must be a non-empty list of strings (RewardBench 2)"
            raise DataError(msg)
        lists[field] = value
    group = str(row["id"]) if "id" in row else content_id(prompt, lists["chosen"][0], lists["rejected"][0])
    out = []
    for i, c in enumerate(lists["chosen"]):
        for j, r in enumerate(lists["rejected"]):
            out.append({"id": f"{group}:c{i}:r{j}", "prompt": prompt, "chosen": c, "rejected": r, "group_id": group})
    return out


def _parse_pku(row: dict[str, Any], where: str, key: str) -> list[dict[str, Any]]:
    _need(row, ("prompt", "response_0", "response_1", key), where, "pku")
    prompt = string_field(row, "prompt", where)
    r0, r1 = string_field(row, "response_0", where), string_field(row, "response_1", where)
    best = row[key]
    if best not in (0, 1) or isinstance(best, bool):
        msg = f"{where}: field '{key}' must be 0 or 1, got {best!r}"
        raise DataError(msg)
    chosen, rejected = (r0, r1) if best == 0 else (r1, r0)
    return [{"prompt": prompt, "chosen": chosen, "rejected": rejected}]


PARSERS: dict[str, Callable[[dict[str, Any], str], list[dict[str, Any]]]] = {
    "trl": lambda row, where: _parse_strings(row, where, "trl"),
    "hh": lambda row, where: _parse_strings(row, where, "hh"),
    "rewardbench": lambda row, where: _parse_strings(row, where, "rewardbench"),
    "trl-chat": _parse_trl_chat,
    "ultrafeedback": _parse_ultrafeedback,
    "openai": _parse_openai,
    "rewardbench2": _parse_rewardbench2,
    "pku": lambda row, where: _parse_pku(row, where, "better_response_id"),
    "pku-safer": lambda row, where: _parse_pku(row, where, "safer_response_id"),
    "pairwise": lambda row, where: _parse_judgement(row, where),
    "arena": lambda row, where: _parse_judgement(row, where),
}
# fields a parser turns into prompt/chosen/rejected (dropped from the extra keys; the rest are kept)
JUDGED = ("response_a", "response_b", "conversation_a", "conversation_b", "preferred", "winner")
CONSUMED = {"trl-chat": ("prompt", "chosen", "rejected"), "ultrafeedback": ("prompt", "chosen", "rejected"),
            "openai": ("input", "preferred_output", "non_preferred_output"),
            "rewardbench2": ("prompt", "chosen", "rejected", "id"), "pairwise": JUDGED, "arena": JUDGED}


def _parse_judgement(row: dict[str, Any], where: str) -> list[dict[str, Any]]:
    from marsctl.judgements import parse_judgement  # imported when a judgement row is read (not by --help)

    return parse_judgement(row, where)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(x, str) for x in value)


def detect(row: dict[str, Any]) -> str | None:
    """The shape of one row, or None when it has none we know.

    >>> detect({"prompt": "p", "chosen": "a", "rejected": "b"})
    'trl'
    >>> detect({"input": {"messages": []}, "preferred_output": [], "non_preferred_output": []})
    'openai'
    >>> detect({"prompt": "p", "response_a": "a", "response_b": "b", "preferred": "a"})
    'pairwise'
    """
    if "chosen" in row or "rejected" in row:
        chosen, rejected = row.get("chosen"), row.get("rejected")
        if _is_str_list(chosen) or _is_str_list(rejected):
            return "rewardbench2"
        if isinstance(chosen, list) or isinstance(rejected, list):
            return "ultrafeedback" if isinstance(row.get("prompt"), str) else "trl-chat"
        if "prompt" not in row:
            if isinstance(chosen, str) and isinstance(rejected, str) and _split_hh(chosen, rejected):
                return "hh"
            return "trl"
        return "rewardbench" if "chosen_model" in row or "rejected_model" in row else "trl"
    if isinstance(row.get("input"), dict) and ("preferred_output" in row or "non_preferred_output" in row):
        return "openai"
    if "response_0" in row and "response_1" in row:
        return "pku"
    if "response_a" in row or "conversation_a" in row:
        from marsctl.judgements import has_responses  # imported when such a row is read (not by --help)

        if has_responses(row):
            return "arena" if "winner" in row else "pairwise"
    return None


def parse(row: Any, where: str, shape: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """Read one row (of ``shape``, or the detected one) as flat pairs; returns (shape, pairs).

    Each pair has ``prompt``, ``chosen`` and ``rejected`` strings, plus ``id``/``group_id`` for expanded
    rows and ``_source`` for conversational ones; the caller adds the row's extra keys.
    """
    if not isinstance(row, dict):
        msg = f"{where}: expected a JSON object, got {type(row).__name__}"
        raise DataError(msg)
    name = shape or detect(row)
    if name is None:
        fields = ", ".join(sorted(row)[:8]) or "none"
        msg = f"{where}: no preference shape marsctl knows (fields: {fields}; need prompt, chosen, rejected)"
        raise DataError(msg, hint=ACCEPTED_HINT)
    return name, PARSERS[name](row, where)


def check_shape_name(name: str | None) -> str | None:
    """``--format`` names a known shape (or is None: detect each row)."""
    if name is not None and name not in SHAPES:
        from marsctl.errors import ConfigError

        msg = f"--format {name!r} is not a shape marsctl reads; choose one of: {', '.join(SHAPES)}"
        raise ConfigError(msg)
    return name


# ------------------------------------------------------------------------------------------------ messages
def synthetic_source(pair: dict[str, Any]) -> dict[str, Any] | None:
    """What a synthetic pair made from ``pair`` carries under ``_source``: the parent's messages and texts.

    None for a pair read from a string layout (its synthetic pairs are written as ``trl`` strings). Without
    the parent's original fields, :func:`marsctl.layouts.restore` always writes the synthetic pair as ``trl-chat``.
    """
    source = pair.get(SOURCE)
    return {"messages": source["messages"], "texts": source["texts"]} if source else None


def hh_messages(text: str) -> Messages | None:
    r"""An Anthropic HH dialogue as messages (the empty last ``Assistant:`` turn dropped), or None if it is not one.

    >>> hh_messages("\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Bye?\n\nAssistant:")
    [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello'}, {'role': 'user', 'content': 'Bye?'}]
    """
    parts = _HH_TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        return None
    roles = {"Human": "user", "Assistant": "assistant"}
    out = [{"role": roles[r], "content": c.strip()} for r, c in zip(parts[1::2], parts[2::2], strict=True)]
    return out[:-1] if out and out[-1]["role"] == "assistant" and not out[-1]["content"] else out


_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


def unrender(text: str, like: Messages) -> Messages | None:
    """``text``, a :func:`render_messages` rendering of messages with the roles of ``like`` (contents
    edited), split back into those messages; None when its role markers are not theirs.

    >>> unrender("System: Be brief.\\n\\nUser: Hi there", [{"role": "system", "content": ""}, {"role": "user"}])
    [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi there'}]
    """
    if not like:
        return None
    heads = [f"{m['role'].capitalize()}: " for m in like]
    if not text.startswith(heads[0]):
        return None
    contents, pos = [], len(heads[0])
    for head in heads[1:]:
        cut = text.find("\n\n" + head, pos)
        if cut < 0:
            return None
        contents.append(text[pos:cut])
        pos = cut + 2 + len(head)
    contents.append(text[pos:])
    return [{**m, "content": c} for m, c in zip(like, contents, strict=True)]
