"""The generate-then-filter base of the generative augmenters (``rewrite``, ``openai``).

A backend implements ``generate`` (raw samples for chat messages) and ``describe_model``; the base
here renders the instruction templates (:mod:`marsctl_plugins.augmenters.templates`), keeps raw
generations in the content-addressed cache (:mod:`marsctl_plugins.augmenters.gencache`), runs the
quality filters (:mod:`marsctl_plugins.augmenters.filters`) and records provenance.
"""

from __future__ import annotations

import dataclasses
import random
import time
from abc import abstractmethod
from typing import Any, ClassVar

from marsctl.params import check_interval
from marsctl.plugin import Augmenter, PoolConfig, derive_seed
from marsctl_plugins.augmenters.filters import STAT_KEYS, FilterRequest, QualityFilter, normalise, strip_chatter


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

    def variants(self, text: str, n: int, rng: random.Random, role: str) -> list[str]:
        """Up to ``n`` filtered rewrites of one text (``rng`` is unused: sampling is seeded by content)."""
        return self.variants_batch([(text, role)], n)[0]

    def variants_batch(self, items: list[tuple[str, str]], n: int,
                       counterparts: list[str | None] | None = None) -> list[list[str]]:
        """Filtered rewrites for many (text, role) items, generated in batches and cached.

        ``counterparts[i]``: the pair's other response for a response item (the filters refuse a
        rewrite that became it), None for a prompt or when not given.
        """
        from marsctl import ui
        from marsctl_plugins.augmenters.templates import get_template

        tpl = get_template(self.config.template)
        n_gen = n * self.config.oversample
        raw = self._generate_cached([tpl.messages(t, r) for t, r in items], [tpl.id] * len(items),
                                    [r for _, r in items], [t for t, _ in items], n_gen)
        flt = self._new_filter()
        flt.encoder = self.encoder if (self.config.sim_low > -1 or self.config.sim_high < 1) else None
        reqs = [FilterRequest(t, r, cands, cp)
                for (t, r), cands, cp in zip(items, raw, counterparts or [None] * len(items), strict=True)]
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
