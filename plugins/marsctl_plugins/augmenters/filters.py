"""Quality filters shared by the generative augmenters (applied by :mod:`marsctl_plugins.augmenters.generative`).

Small models paraphrase badly: they chat ("Sure! Here is the rewritten text:"), copy their input, drift
off topic, or turn a bad answer into a good one. Every candidate passes, in order:

1. ``strip_chatter``: preambles, sign-offs and wrapping quotes are removed (counted as ``stripped``).
2. ``empty``: nothing left.
3. ``copy`` / ``near_copy``: the same words as the original (normalised), or a word-level
   ``difflib`` ratio of at least ``near_copy``.
4. ``length``: the character-length ratio to the original outside ``[len_low, len_high]``.
5. ``too_dissimilar`` / ``too_similar``: the embedding cosine to the original outside
   ``[sim_low, sim_high]``.
6. ``counterpart_copy``: a rewrite of one response that became (nearly) the pair's other response
   (lexical near-copy, or cosine to the other >= ``counterpart_sim`` and closer to it than to its own
   original). This keeps a rewrite of the rejected answer from turning into the chosen one.
7. ``duplicate``: the same as an earlier kept candidate.

Each rejection is counted under the first rule it fails; ``kept`` counts the survivors.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Any

STAT_KEYS = ("generated", "stripped", "empty", "copy", "near_copy", "length", "too_dissimilar",
             "too_similar", "counterpart_copy", "duplicate", "kept")

# Every pattern is linear in the text's length (a server's reply is untrusted): no two adjacent parts can
# match the same characters (``\s*(?:is)?\s*`` could, and took O(n²) on a run of spaces), runs of
# whitespace are matched possessively (``\s*+``: never given back), and the tail pattern starts at a line
# break followed by horizontal space only, so a run of n newlines is not rescanned from each of them
# (``\n\s*`` took O(n³) on "\n" * n). tests/test_openai_hardening.py times each on 100k-character inputs.
_OPENERS = r"(?:sure|certainly|of course|okay|ok|absolutely|great|alright)\b[!.,:]*+"
_LEAD_RES = [
    re.compile(rf"^\s*+{_OPENERS}\s*+", re.I),
    re.compile(
        r"^\s*+here(?:\s++is|'s|\s++are|\s++you\s++go)\b[^\n:]{0,100}?(?::|[.!][^\S\n]*+\n)\s*+", re.I),
    re.compile(
        r"^\s*+(?:the\s++)?(?:paraphrased|rewritten|rephrased|revised|reworded|new)\s++"
        r"(?:answer|request|text|version|sentence|response|prompt|question)\s*+(?:is\s*+)?:\s*+", re.I),
    re.compile(r"^\s*+(?:paraphrase|rewrite|rewritten|answer|request|response|output)\s*+:\s*+", re.I),
]
_TAIL_RE = re.compile(
    r"\n[^\S\n]*+(?:\((?>\s*)note\b|note\b|notes?:|explanation:|i hope\b|let me know\b|feel free\b|"
    r"this (?:paraphrase|rewrite|version|rewritten|answer is)\b|in this (?:paraphrase|rewrite|version)\b|"
    r"here(?:'s| is) (?:a|the|my|another) (?:revised|rewritten|paraphrased|new)\b|p\.\s?s\.)",
    re.I,
)
_QUOTES = [('"', '"'), ("“", "”"), ("'", "'"), ("‘", "’"), ("«", "»"), ("**", "**"), ("```", "```")]
_WORD = re.compile(r"\w+", re.UNICODE)


def strip_chatter(text: str, original: str = "") -> str:
    """Remove a chat model's preamble, sign-off and wrapping quotes (unless the original has them).

    >>> strip_chatter('Sure! Here is the rewritten text:\\n"The cat sat."')
    'The cat sat.'
    >>> strip_chatter("Sure, I can help.", original="Sure, I can help with that.")
    'Sure, I can help.'
    """
    out = text.strip()
    orig = original.strip()
    for _ in range(4):
        before = out
        for rx in _LEAD_RES:
            m = rx.match(out)
            if m and m.end() < len(out) and not rx.match(orig):
                out = out[m.end():].lstrip()
        if out == before:
            break
    m = _TAIL_RE.search(out)
    if m and m.start() > 0 and not _TAIL_RE.search(orig):
        out = out[: m.start()].rstrip()
    for left, right in _QUOTES:
        if (len(out) > len(left) + len(right) and out.startswith(left) and out.endswith(right)
                and not (orig.startswith(left) and orig.endswith(right))):
            inner = out[len(left) : len(out) - len(right)].strip()
            if left not in inner or left != right:
                out = inner
    return out.strip()


def normalise(text: str) -> list[str]:
    """Lower-cased word tokens (punctuation and spacing ignored)."""
    return _WORD.findall(text.lower())


def copy_ratio(a: str, b: str) -> float:
    """Word-level similarity of two texts in [0, 1] (1: the same words in the same order).

    >>> copy_ratio("The cat sat.", "the cat  sat")
    1.0
    """
    wa, wb = normalise(a), normalise(b)
    if wa == wb:
        return 1.0
    sm = difflib.SequenceMatcher(None, wa, wb, autojunk=False)
    if sm.real_quick_ratio() < 0.5:
        return sm.real_quick_ratio()
    return sm.ratio()


@dataclasses.dataclass
class FilterRequest:
    """The candidates generated for one text, with its role and the pair's other response."""

    original: str
    role: str
    candidates: list[str]
    counterpart: str | None = None


class QualityFilter:
    """Applies the module's rules to batches of candidates and counts every outcome in ``stats``.

    Parameters
    ----------
    encoder : marsctl.embed.Encoder or None
        Embeds texts for the similarity rules; None skips rules 5 and the embedding half of 6.
    sim_low, sim_high, len_low, len_high, near_copy, counterpart_sim : float
        The bands and thresholds described in the module doc.
    """

    def __init__(self, encoder: Any = None, *, sim_low: float = 0.7, sim_high: float = 0.985,
                 len_low: float = 0.5, len_high: float = 2.0, near_copy: float = 0.9,
                 counterpart_sim: float = 0.95):
        self.encoder = encoder
        self.sim_low, self.sim_high = sim_low, sim_high
        self.len_low, self.len_high = len_low, len_high
        self.near_copy = near_copy
        self.counterpart_sim = counterpart_sim
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)

    def _lexical(self, req: FilterRequest, cand: str) -> str | None:
        ratio = copy_ratio(cand, req.original)
        if ratio >= 1.0:
            return "copy"
        if ratio >= self.near_copy:
            return "near_copy"
        n = max(len(req.original.strip()), 1)
        if not self.len_low <= len(cand) / n <= self.len_high:
            return "length"
        if req.counterpart and copy_ratio(cand, req.counterpart) >= self.near_copy:
            return "counterpart_copy"
        return None

    def run(self, requests: list[FilterRequest]) -> list[list[tuple[str, dict[str, Any]]]]:
        """Kept candidates per request, each with its filter facts (``sim``, ``len_ratio``)."""
        staged: list[list[tuple[str, bool]]] = []
        for req in requests:
            keep = []
            for raw in req.candidates:
                self.stats["generated"] += 1
                cand = strip_chatter(raw, req.original)
                stripped = cand != raw.strip()
                self.stats["stripped"] += int(stripped)
                reason = "empty" if not cand else self._lexical(req, cand)
                if reason:
                    self.stats[reason] += 1
                else:
                    keep.append((cand, stripped))
            staged.append(keep)
        sims = self._similarities(requests, staged)
        out: list[list[tuple[str, dict[str, Any]]]] = []
        for i, (req, keep) in enumerate(zip(requests, staged, strict=True)):
            kept: list[tuple[str, dict[str, Any]]] = []
            seen = set()
            for j, (cand, stripped) in enumerate(keep):
                sim, sim_other = sims.get((i, j), (None, None))
                reason = self._semantic(sim, sim_other)
                key = " ".join(normalise(cand))
                if reason is None and key in seen:
                    reason = "duplicate"
                if reason:
                    self.stats[reason] += 1
                    continue
                seen.add(key)
                self.stats["kept"] += 1
                info: dict[str, Any] = {"len_ratio": round(len(cand) / max(len(req.original.strip()), 1), 3)}
                if sim is not None:
                    info["sim"] = round(sim, 4)
                if stripped:
                    info["stripped"] = True
                kept.append((cand, info))
            out.append(kept)
        return out

    def _semantic(self, sim: float | None, sim_other: float | None) -> str | None:
        if sim is None:
            return None
        if sim < self.sim_low:
            return "too_dissimilar"
        if sim > self.sim_high:
            return "too_similar"
        if sim_other is not None and sim_other >= self.counterpart_sim and sim_other > sim:
            return "counterpart_copy"
        return None

    def _similarities(self, requests: list[FilterRequest],
                      staged: list[list[tuple[str, bool]]]) -> dict[tuple[int, int], tuple[float, float | None]]:
        """Cosine of each staged candidate to its original and to the pair's other response."""
        if self.encoder is None or not any(staged):
            return {}
        import numpy as np

        sims: dict[tuple[int, int], tuple[float, float | None]] = {}
        for side in ("prompt", "response"):
            idx = [(i, j) for i, keep in enumerate(staged) for j in range(len(keep))
                   if (requests[i].role == "prompt") == (side == "prompt")]
            if not idx:
                continue
            cands = [staged[i][j][0] for i, j in idx]
            origs = [requests[i].original for i, _ in idx]
            others = [requests[i].counterpart or "" for i, _ in idx]
            e_c = self.encoder.encode(cands, side=side)
            e_o = self.encoder.encode(origs, side=side)
            e_x = self.encoder.encode(others, side=side)
            s_o = np.sum(e_c * e_o, axis=1)
            s_x = np.sum(e_c * e_x, axis=1)
            for k, (i, j) in enumerate(idx):
                sims[(i, j)] = (float(s_o[k]), float(s_x[k]) if requests[i].counterpart else None)
        return sims

    def summary(self) -> str:
        """One line for stderr: generated, kept and every non-zero rejection count."""
        s = self.stats
        rate = s["kept"] / s["generated"] if s["generated"] else 0.0
        parts = [f"{k} {s[k]}" for k in STAT_KEYS[2:-1] if s[k]]
        extra = f"; rejected: {', '.join(parts)}" if parts else ""
        return (f"{s['generated']} generated, {s['kept']} kept ({rate:.0%}), "
                f"{s['stripped']} stripped of chatter{extra}")

