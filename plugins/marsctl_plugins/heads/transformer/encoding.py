"""Turning (prompt, response) texts into the transformer head's input ids, and truncating them.

Sequences longer than ``max_length`` lose the *start of the prompt* first (the last turn of a
dialogue is what the response answers); only when the prompt is gone is the response cut, keeping
its beginning. Truncated pairs, and pairs whose chosen and rejected inputs become identical, are
counted (``encode_pairs``) and reported on stderr (``report_encoding``); no row is ever dropped.
"""

from __future__ import annotations

from typing import Any

from marsctl.losses import BTLossConfig

TRUNCATION_RULE = "prompt:cut-start-first,response:keep-start,v1"
Feature = dict[str, list[int]]  # input_ids (and token_type_ids) of one (prompt, response)
PairItem = tuple[Feature, Feature, float]  # chosen, rejected, target margin


class PairEncoder:
    """Turns (prompt, response) texts into the model's input ids, truncating as the module doc says.

    Parameters
    ----------
    tokenizer : a Hugging Face tokenizer (a fast one gives exact prompt cuts)
    max_length : int
        Tokens per input, special tokens included.
    template : str
        ``chat`` or ``pair`` (``auto`` resolved by the caller).
    """

    def __init__(self, tokenizer: Any, max_length: int, template: str):
        self.tok = tokenizer
        self.max_length = max_length
        self.template = template

    def _render(self, prompts: list[str], responses: list[str]) -> list[Feature]:
        if self.template == "chat":
            texts = [
                self.tok.apply_chat_template(
                    [{"role": "user", "content": p}, {"role": "assistant", "content": r}], tokenize=False)
                for p, r in zip(prompts, responses, strict=True)
            ]
            enc = self.tok(texts, add_special_tokens=False, verbose=False)
        else:
            enc = self.tok(prompts, responses, verbose=False)
        keys = [k for k in ("input_ids", "token_type_ids") if k in enc]
        return [{k: list(enc[k][i]) for k in keys} for i in range(len(prompts))]

    def _offsets(self, text: str) -> list[tuple[int, int]]:
        if getattr(self.tok, "is_fast", False):
            enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
            return [tuple(o) for o in enc["offset_mapping"]]
        # A slow tokenizer: approximate offsets by the decoded length of each token prefix.
        ids = self.tok(text, add_special_tokens=False, verbose=False)["input_ids"]
        out, start = [], 0
        for i in range(len(ids)):
            end = min(len(text), len(self.tok.decode(ids[: i + 1])))
            out.append((start, end))
            start = end
        return out

    def _cut(self, prompt: str, response: str, n: int) -> Feature:
        """Re-encode an over-long input: cut the prompt's start, then (if needed) the response's end."""
        limit = self.max_length
        p_off = self._offsets(prompt)
        drop = 0
        while prompt:
            drop += n - limit
            prompt = prompt[p_off[drop][0]:] if drop < len(p_off) else ""
            enc = self._render([prompt], [response])[0]
            n = len(enc["input_ids"])
            if n <= limit:
                return enc
        r_off = self._offsets(response)
        keep = len(r_off)
        for _ in range(8):
            keep -= n - limit
            response = response[: r_off[keep - 1][1]] if keep > 0 else ""
            enc = self._render([""], [response])[0]
            n = len(enc["input_ids"])
            if n <= limit or not response:
                break
        # Last resort (the template alone is longer than max_length): hard cut, keep the start.
        return {k: v[:limit] for k, v in enc.items()}

    def encode(self, prompts: list[str], responses: list[str]) -> tuple[list[Feature], list[bool]]:
        """Input features for each (prompt, response) and whether it was truncated."""
        feats = self._render(prompts, responses)
        cut = [False] * len(feats)
        for i, f in enumerate(feats):
            if len(f["input_ids"]) > self.max_length:
                feats[i] = self._cut(prompts[i], responses[i], len(f["input_ids"]))
                cut[i] = True
        return feats, cut


def encode_pairs(enc: PairEncoder, pairs: list[dict[str, Any]],
                 loss: BTLossConfig) -> tuple[list[PairItem], dict[str, int]]:
    """(chosen, rejected, target margin) for each pair, and counts of truncated and degenerate pairs."""
    prompts = [p["prompt"] for p in pairs]
    chosen, cut_c = enc.encode(prompts, [p["chosen"] for p in pairs])
    rejected, cut_r = enc.encode(prompts, [p["rejected"] for p in pairs])
    stats = {
        "truncated_pairs": sum(1 for c, r in zip(cut_c, cut_r, strict=True) if c or r),
        "identical_after_truncation": sum(
            1 for p, c, r in zip(pairs, chosen, rejected, strict=True)
            if c["input_ids"] == r["input_ids"] and p["chosen"] != p["rejected"]),
        "identical_texts": sum(1 for p in pairs if p["chosen"] == p["rejected"]),
    }
    return list(zip(chosen, rejected, loss.target_margins(pairs), strict=True)), stats


def report_encoding(stats: dict[str, int], n: int, what: str, max_length: int) -> None:
    """Warn on stderr about the truncated and degenerate pairs ``encode_pairs`` counted."""
    from marsctl import ui

    if stats["truncated_pairs"]:
        ui.info(f"{what}: {stats['truncated_pairs']} of {n} pairs longer than max_length="
                f"{max_length} tokens; cut the prompt's start first (responses kept)")
    if stats["identical_after_truncation"]:
        ui.warn(f"{what}: {stats['identical_after_truncation']} of {n} pairs have identical chosen and "
                f"rejected inputs after truncation (kept; they carry no signal). Raise max_length.")
    if stats["identical_texts"]:
        ui.warn(f"{what}: {stats['identical_texts']} of {n} pairs have the same chosen and rejected text")
