"""Records written back in the published layouts: conversational rows get their messages again (:func:`restore`, used
by every writer), and ``convert --to`` writes one of :data:`TARGETS`. Reading layouts is :mod:`marsctl.shapes`'s job.
"""

from __future__ import annotations

from typing import Any

from marsctl.shapes import SOURCE, Messages, hh_messages, join_contents, unrender


def restore(rec: dict[str, Any]) -> dict[str, Any]:
    """A record as it is written: conversational rows get their messages back.

    Unchanged texts put back the original fields (the row's own layout: TRL chat, UltraFeedback, OpenAI);
    a record whose texts were changed, and every synthetic pair made from a conversational row
    (:func:`marsctl.shapes.synthetic_source`), is written as TRL conversational preference with an explicit prompt: the
    original prompt messages (system and earlier turns included) and each changed response as one
    assistant message, never a ``Role:`` marker inside a text (:func:`messages_of`).
    """
    source = rec.get(SOURCE)
    if not source:
        return rec
    texts = (rec.get("prompt"), rec.get("chosen"), rec.get("rejected"))
    if "fields" in source and tuple(source["texts"]) == texts:
        out = {k: v for k, v in rec.items() if k not in ("prompt", "chosen", "rejected")}
        return {**source["fields"], **out}
    messages = dict(zip(("prompt", "chosen", "rejected"), messages_of(rec), strict=True))
    return {k: messages.get(k, v) for k, v in rec.items()}


def messages_of(rec: dict[str, Any]) -> tuple[Messages, Messages, Messages]:
    """A record's prompt, chosen and rejected as messages: its own when read from chat and unchanged (a changed
    chat prompt split back at its own role markers), an HH prompt split into its turns, else one message each."""
    source = rec.get(SOURCE)
    texts = (rec["prompt"], rec["chosen"], rec["rejected"])
    m = source["messages"] if source else None
    same = [bool(source) and t == s for t, s in zip(texts, source["texts"] if source else texts, strict=True)]
    if m and same[0]:
        prompt, hh = m["prompt"], None
    else:
        chat = unrender(texts[0], m["prompt"]) if m else None
        hh = None if chat else hh_messages(texts[0])
        prompt = chat or hh or [{"role": "user", "content": texts[0]}]

    def response(k: int, field: str) -> Messages:
        if m and same[k]:
            return m[field]
        return [{"role": "assistant", "content": texts[k].strip() if hh else texts[k]}]

    return prompt, response(1, "chosen"), response(2, "rejected")


# ------------------------------------------------------------------------------------------ convert --to
TARGETS = {
    "trl": "TRL preference, standard: prompt, chosen, rejected strings (extra fields kept)",
    "trl-chat": "TRL preference, conversational with an explicit prompt: message lists (extra fields kept)",
    "openai": "OpenAI preference fine-tuning: input.messages, preferred_output, non_preferred_output (one "
              "assistant message each; nothing else)",
    "rewardbench": "RewardBench v1: prompt, chosen, chosen_model, rejected, rejected_model, subset, id",
}
CORE = ("id", "prompt", "chosen", "rejected")


def _extras(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k not in CORE and not k.startswith("_")}


def to_layout(rec: dict[str, Any], target: str) -> dict[str, Any]:
    """A record in one of the published layouts of :data:`TARGETS`.

    >>> to_layout({"id": "a", "prompt": "Q?", "chosen": "Yes", "rejected": "No"}, "openai")["preferred_output"]
    [{'role': 'assistant', 'content': 'Yes'}]
    """
    if target == "trl":
        return {"id": rec["id"], "prompt": rec["prompt"], "chosen": rec["chosen"], "rejected": rec["rejected"],
                **_extras(rec)}
    prompt, chosen, rejected = messages_of(rec)
    if target == "trl-chat":
        return {"id": rec["id"], "prompt": prompt, "chosen": chosen, "rejected": rejected, **_extras(rec)}
    if target == "openai":  # exactly one assistant message per output, as OpenAI requires
        return {"input": {"messages": prompt},
                "preferred_output": [{"role": "assistant", "content": join_contents(chosen)}],
                "non_preferred_output": [{"role": "assistant", "content": join_contents(rejected)}]}
    return {"prompt": rec["prompt"], "chosen": rec["chosen"], "chosen_model": str(rec.get("chosen_model", "")),
            "rejected": rec["rejected"], "rejected_model": str(rec.get("rejected_model", "")),
            "subset": str(rec.get("subset", "")), "id": rec["id"]}
