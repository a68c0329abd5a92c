"""Quality filters shared by the generative augmenters, and the generate-then-filter base they share.

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
import random
import re
import time
from abc import abstractmethod
from typing import Any, ClassVar

from marsctl.params import check_interval
from marsctl.plugin import Augmenter, PoolConfig, derive_seed

STAT_KEYS = ("generated", "stripped", "empty", "copy", "near_copy", "length", "too_dissimilar",
             "too_similar", "counterpart_copy", "duplicate", "kept")

_OPENERS = r"(?:sure|certainly|of course|okay|ok|absolutely|great|alright)\b[!.,:]*"
_LEAD_RES = [
    re.compile(rf"^\s*{_OPENERS}\s*", re.I),
    re.compile(
        r"^\s*here(?:\s+is|'s|\s+are|\s+you\s+go)\b[^\n:]{0,100}?(?::|\.\s*\n|!\s*\n)\s*", re.I),
    re.compile(
        r"^\s*(?:the\s+)?(?:paraphrased|rewritten|rephrased|revised|reworded|new)\s+"
        r"(?:answer|request|text|version|sentence|response|prompt|question)\s*(?:is)?\s*:\s*", re.I),
    re.compile(r"^\s*(?:paraphrase|rewrite|rewritten|answer|request|response|output)\s*:\s*", re.I),
]
_TAIL_RE = re.compile(
    r"\n\s*(?:\(?\s*note\b|notes?:|explanation:|i hope\b|let me know\b|feel free\b|"
    r"this (?:paraphrase|rewrite|version|rewritten|answer is)\b|in this (?:paraphrase|rewrite|version)\b|"
    r"here(?:'s| is) (?:a|the|my|another) (?:revised|rewritten|paraphrased|new)\b|p\.\s?s\.).*\Z",
    re.I | re.S,
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


# ------------------------------------------------------------------------------ the shared base
@dataclasses.dataclass
class GenerativeConfig(PoolConfig):
    """Settings shared by the generative augmenters: template, sampling, filters, cache."""

    template: str = dataclasses.field(default="paraphrase", metadata={
        "help": "Instruction template (see docs/augmenters.md): paraphrase or short."})
    max_new_tokens: int = dataclasses.field(default=160, metadata={
        "help": "Most tokens generated per rewrite."})
    temperature: float = dataclasses.field(default=0.8, metadata={"help": "Sampling temperature."})
    top_p: float = dataclasses.field(default=0.95, metadata={"help": "Nucleus sampling mass."})
    oversample: int = dataclasses.field(default=2, metadata={
        "help": "Generations per wanted variant; the filters keep at most n_variants of them."})
    sim_low: float = dataclasses.field(default=0.7, metadata={
        "help": "Lowest embedding cosine of a rewrite to its original."})
    sim_high: float = dataclasses.field(default=0.985, metadata={
        "help": "Highest embedding cosine of a rewrite to its original (above: a copy)."})
    len_low: float = dataclasses.field(default=0.5, metadata={
        "help": "Lowest length ratio rewrite/original (characters)."})
    len_high: float = dataclasses.field(default=2.0, metadata={
        "help": "Highest length ratio rewrite/original (characters)."})
    near_copy: float = dataclasses.field(default=0.9, metadata={
        "help": "Word-level difflib ratio at or above which a rewrite counts as a copy."})
    counterpart_sim: float = dataclasses.field(default=0.95, metadata={
        "help": "Cosine to the pair's other response at which a rewrite counts as its copy."})
    cache: bool = dataclasses.field(default=True, metadata={
        "help": "Reuse generations from the cache under MARSCTL_CACHE_DIR."})

    def __post_init__(self) -> None:
        super().__post_init__()
        from marsctl_plugins.augmenters.templates import get_template

        owner = "the augmenter"
        get_template(self.template)
        check_interval(self.max_new_tokens, "max_new_tokens", owner, kind=int, low=1, high=4096)
        check_interval(self.temperature, "temperature", owner, low=0.0, high=5.0)
        check_interval(self.top_p, "top_p", owner, low=0.0, high=1.0, closed="right")
        check_interval(self.oversample, "oversample", owner, kind=int, low=1, high=20)
        check_interval(self.sim_low, "sim_low", owner, low=-1.0, high=1.0)
        check_interval(self.sim_high, "sim_high", owner, low=self.sim_low, high=1.0)
        check_interval(self.len_low, "len_low", owner, low=0.0, high=1.0)
        check_interval(self.len_high, "len_high", owner, low=1.0)
        check_interval(self.near_copy, "near_copy", owner, low=0.0, high=1.0, closed="right")
        check_interval(self.counterpart_sim, "counterpart_sim", owner, low=0.0, high=1.0)


class GenerativeAugmenter(Augmenter):
    """An augmenter that asks a language model for rewrites, caches them and filters them.

    Backends implement ``generate`` (raw samples for chat messages) and ``describe_model``;
    this base does templates, the cache, the filters, progress, stats and provenance. It also
    implements ``rewrite`` (the :class:`marsctl.semantic.Generator` protocol) for semantic refinement.
    """

    backend: ClassVar[str] = "?"
    Config: ClassVar[type] = GenerativeConfig
    chunk_items: ClassVar[int] = 8

    def __init__(self, config: Any = None, *, seed: int = 0, encoder: Any = None):
        super().__init__(config, seed=seed)
        self._encoder = encoder
        self._cache: Any = None
        self._info: dict[tuple[str, str], dict[str, Any]] = {}
        self.filter_ = self._new_filter()
        self.stats_.update({f"filter_{k}": 0 for k in STAT_KEYS})
        self.stats_.update({"cache_hits": 0, "cache_misses": 0, "generate_seconds": 0})

    # -- backends implement these ------------------------------------------------------------------
    @abstractmethod
    def generate(self, messages: list[list[dict[str, str]]], n: int, seeds: list[int]) -> list[list[str]]:
        """``n`` sampled replies for each chat (``seeds[i]`` seeds chat i's sampling)."""

    @abstractmethod
    def describe_model(self) -> tuple[str, str]:
        """(model name for provenance, fingerprint for the cache key)."""

    def sampling_params(self) -> dict[str, Any]:
        """Everything besides model, template, text and seed that changes a generation."""
        c = self.config
        return {"max_new_tokens": c.max_new_tokens, "temperature": c.temperature, "top_p": c.top_p}

    # -- shared machinery --------------------------------------------------------------------------
    @property
    def encoder(self) -> Any:
        """The sentence encoder used by the similarity filters (the bundled MiniLM by default)."""
        if self._encoder is None:
            from marsctl.embed import get_encoder

            self._encoder = get_encoder()  # the process-wide instance every command shares
        return self._encoder

    def _new_filter(self) -> QualityFilter:
        c = self.config
        return QualityFilter(None, sim_low=c.sim_low, sim_high=c.sim_high, len_low=c.len_low,
                             len_high=c.len_high, near_copy=c.near_copy, counterpart_sim=c.counterpart_sim)

    @property
    def cache(self) -> Any:
        """The generation cache (opened on first use)."""
        if self._cache is None:
            from marsctl_plugins.augmenters.gencache import GenerationCache

            self._cache = GenerationCache()
        return self._cache

    def _generate_cached(self, messages: list[list[dict[str, str]]], template_ids: list[str],
                         roles: list[str], texts: list[str], n: int) -> list[list[str]]:
        """Raw generations for each request, from the cache where possible, stored as they are made."""
        from marsctl import ui
        from marsctl_plugins.augmenters.gencache import generation_key

        _, fingerprint = self.describe_model()
        params = self.sampling_params()
        keys = [generation_key(fingerprint, t, r, x, self.seed, params, n)
                for t, r, x in zip(template_ids, roles, texts, strict=True)]
        found = self.cache.get_many(keys) if self.config.cache else {}
        self.stats_["cache_hits"] += sum(1 for k in keys if k in found)
        first = {k: i for i, k in reversed(list(enumerate(keys)))}  # one request per distinct key
        todo = sorted(i for k, i in first.items() if k not in found)
        self.stats_["cache_misses"] += len(todo)
        if todo:
            t0 = time.perf_counter()
            with ui.progress(f"{self.name}: rewriting", len(todo) * n, "rewrites") as advance:
                for s in range(0, len(todo), self.chunk_items):
                    chunk = todo[s : s + self.chunk_items]
                    seeds = [derive_seed(self.seed, template_ids[i], roles[i], texts[i]) for i in chunk]
                    outs = self.generate([messages[i] for i in chunk], n, seeds)
                    new = [(keys[i], list(o)) for i, o in zip(chunk, outs, strict=True)]
                    if self.config.cache:
                        self.cache.put_many(new)
                    found.update(new)
                    advance(len(chunk) * n)
            dt = time.perf_counter() - t0
            self.stats_["generate_seconds"] += round(dt)
            ui.info(f"{self.name}: {len(todo) * n} rewrites in {dt:.1f}s ({len(todo) * n / max(dt, 1e-9):.2f} "
                    f"rewrites/s); {len(keys) - len(todo)} requests from the cache")
        return [found[k] for k in keys]

    @staticmethod
    def _counterparts(items: list[tuple[str, str]]) -> list[str | None]:
        """The other response of each response item (items come as prompt, chosen, rejected triples)."""
        out: list[str | None] = [None] * len(items)
        roles = [r for _, r in items]
        if len(items) % 3 == 0 and roles == ["prompt", "chosen", "rejected"] * (len(items) // 3):
            for j in range(0, len(items), 3):
                out[j + 1], out[j + 2] = items[j + 2][0], items[j + 1][0]
        return out

    def variants(self, text: str, n: int, rng: random.Random, role: str) -> list[str]:
        """Up to ``n`` filtered rewrites of one text (``rng`` is unused: sampling is seeded by content)."""
        return self.variants_batch([(text, role)], n)[0]

    def variants_batch(self, items: list[tuple[str, str]], n: int) -> list[list[str]]:
        """Filtered rewrites for many (text, role) items, generated in batches and cached."""
        from marsctl import ui
        from marsctl_plugins.augmenters.templates import get_template

        tpl = get_template(self.config.template)
        n_gen = n * self.config.oversample
        raw = self._generate_cached([tpl.messages(t, r) for t, r in items], [tpl.id] * len(items),
                                    [r for _, r in items], [t for t, _ in items], n_gen)
        flt = self._new_filter()
        flt.encoder = self.encoder if (self.config.sim_low > -1 or self.config.sim_high < 1) else None
        reqs = [FilterRequest(t, r, cands, cp)
                for (t, r), cands, cp in zip(items, raw, self._counterparts(items), strict=True)]
        kept = flt.run(reqs)
        for k, v in flt.stats.items():
            self.filter_.stats[k] += v
            self.stats_[f"filter_{k}"] += v
        ui.info(f"{self.name} filters: {flt.summary()}")
        out = []
        for (_, role), ks in zip(items, kept, strict=True):
            for text, info in ks[:n]:
                self._info[(role, text)] = info
            out.append([text for text, _ in ks[:n]])
        return out

    def rewrite(self, texts: list[str], instruction: str | list[str], n: int) -> list[list[str]]:
        """Up to ``n`` rewrites of each text following ``instruction`` (one, or one per text).

        Chatter is stripped and empty, unchanged and repeated outputs are dropped; no similarity
        filter applies (semantic refinement judges candidates itself).
        """
        from marsctl_plugins.augmenters.templates import chat_messages, instruction_id

        instrs = [instruction] * len(texts) if isinstance(instruction, str) else list(instruction)
        raw = self._generate_cached([chat_messages(i, t) for i, t in zip(instrs, texts, strict=True)],
                                    [instruction_id(i) for i in instrs], ["rewrite"] * len(texts),
                                    list(texts), n)
        out = []
        for text, cands in zip(texts, raw, strict=True):
            seen = {" ".join(normalise(text))}
            keep = []
            for c in cands:
                c = strip_chatter(c, text)
                key = " ".join(normalise(c))
                if c and key not in seen:
                    seen.add(key)
                    keep.append(c)
            out.append(keep)
        return out

    def provenance(self, pair: dict[str, Any], cand: dict[str, Any], round: int, k: int) -> dict[str, Any]:
        """The base record plus the generator (backend, model, template) and each side's filter facts."""
        row = super().provenance(pair, cand, round, k)
        name, _ = self.describe_model()
        row["generator"] = {"backend": self.backend, "model": name, "template": self.config.template}
        row["filters"] = {
            role: ("original" if cand[role] == pair[role] else self._info.get((role, cand[role]), {}))
            for role in ("prompt", "chosen", "rejected")
        }
        return row
