"""The ``eda`` augmenter: light, seeded, label-preserving word edits (Wei & Zou's EDA, minus insertion).

Each variant replaces a few words with synonyms (the main edit), swaps a few coordinated pairs of
words ("salt and pepper" -> "pepper and salt") and deletes a few adjectives or adverbs in front of
another word ("a random nerd" -> "a nerd"), at small rates of the *eligible* words; every variant
makes at least one edit. Eligible: lowercase words of three or more letters (or a Title-case word
starting a sentence) that are not stopwords. Never touched:
stopwords and negations, numbers, words with digits or punctuation inside, URLs, code (anything in
a ``` fence or with code characters), ALL-CAPS and mixed-case words, names in mid-sentence, and the
dialogue markers ``Human:``, ``Assistant:``, ``User:``, ``System:``. Whitespace and newlines are
kept byte for byte, except the single space in front of a deleted word.

Synonyms come from WordNet (``marsctl_plugins.augmenters.wordnet``) when its database is installed
(Debian: ``apt-get install wordnet-base``), topped up from a small built-in table of common words;
without WordNet the built-in table alone is used (``synonym_source_`` says which). The stopwords and
the built-in table are data, in ``data/eda_words.json`` beside this module.
"""

from __future__ import annotations

import functools
import json
import random
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, ClassVar

from marsctl import ui
from marsctl.errors import ConfigError
from marsctl.params import check_interval
from marsctl.plugin import Augmenter, PoolConfig
from marsctl_plugins.augmenters import wordnet

DEFAULT_WORDNET_DIR = "/usr/share/wordnet"
MARKERS = frozenset({"Human:", "Assistant:", "User:", "System:"})

_PIECE = re.compile(r"\s+|\S+")
_WORDLIKE = re.compile(r"([\"'(\[“‘*]*)([A-Za-z]+)([.,!?;:\"')\]”’*]*)")
_CLOSERS = "\"')]”’*"
_OWNER = "the eda augmenter"
_WARNED: set[str] = set()
WORDS_FILE = "data/eda_words.json"  # stopwords and the built-in synonym groups, shipped with the package


@dataclass(frozen=True)
class WordTables:
    """The word data of ``WORDS_FILE``: stopwords, the built-in synonym table and its modifiers."""

    stopwords: frozenset[str]
    synonyms: dict[str, tuple[str, ...]]  # word -> its group-mates, in a fixed order
    modifiers: frozenset[str]  # adjectives and adverbs of the built-in groups (may be deleted)


@functools.cache
def word_tables() -> WordTables:
    """The word tables, read from the package's ``data/eda_words.json`` once per process."""
    text = resources.files("marsctl_plugins.augmenters").joinpath(WORDS_FILE).read_text(encoding="utf-8")
    data = json.loads(text)
    table: dict[str, list[str]] = {}
    for group in data["modifier_groups"] + data["groups"]:
        for word in group:
            mates = table.setdefault(word, [])
            mates += [w for w in group if w != word and w not in mates]
    modifiers = frozenset(w for group in data["modifier_groups"] for w in group)
    return WordTables(frozenset(data["stopwords"]), {w: tuple(m) for w, m in table.items()}, modifiers)


def builtin_synonyms() -> dict[str, tuple[str, ...]]:
    """The built-in synonym table: word -> its group-mates, in a fixed order."""
    return word_tables().synonyms


def recase(word: str, title: bool) -> str:
    """``word`` in Title case when ``title``, else as is.

    >>> recase("automobile", True), recase("automobile", False)
    ('Automobile', 'automobile')
    """
    return word[:1].upper() + word[1:] if title else word


@dataclass
class EDAConfig(PoolConfig):
    """Settings of the eda augmenter (rates are shares of eligible words, per variant)."""

    p_synonym: float = field(
        default=0.1, metadata={"help": "Share of eligible words replaced by a synonym in each variant."}
    )
    p_swap: float = field(
        default=0.05, metadata={"help": "Share of eligible words swapped with their partner in 'X and Y' or "
                                        "'X or Y', in each variant."}
    )
    p_delete: float = field(
        default=0.05, metadata={"help": "Share of eligible words deleted in each variant (only adjectives "
                                        "and adverbs in front of another word)."}
    )
    max_senses: int = field(
        default=1, metadata={"help": "WordNet senses of a word (most frequent first) to take synonyms from."}
    )
    wordnet_dir: str = field(
        default=DEFAULT_WORDNET_DIR,
        metadata={"help": "WordNet database directory (index.* and data.*); $MARSCTL_WORDNET_DIR replaces "
                          "the default. Without one, a built-in synonym table is used."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("p_synonym", "p_swap", "p_delete"):
            check_interval(getattr(self, name), name, _OWNER, kind=float, low=0.0, high=1.0)
        check_interval(self.max_senses, "max_senses", _OWNER, kind=int, low=1, high=50)
        if not (self.p_synonym or self.p_swap or self.p_delete):
            msg = f"{_OWNER} needs one of p_synonym, p_swap, p_delete above 0. Got all three 0 instead."
            raise ConfigError(msg, hint="try -p p_synonym=0.1")


@dataclass
class _Word:
    """An editable word: its piece index, affixes, core, and what the edits may do with it."""

    at: int
    lead: str
    core: str
    trail: str
    title: bool
    deletable: bool
    synonyms: tuple[str, ...]


@dataclass
class _Plan:
    """A text split into pieces (tokens and whitespace runs, joined back verbatim) and its edit sites."""

    pieces: list[str]
    words: list[_Word]
    swaps: list[tuple[int, int]]  # indices into words: "X and Y", "X or Y"
    with_syn: list[_Word] = field(default_factory=list)  # the words that have synonyms (made once, not per edit)
    deletable: list[_Word] = field(default_factory=list)  # the words that may be deleted


class EDAAugmenter(Augmenter):
    """Offline, seeded word edits: synonyms, swapped "X and Y" pairs, dropped modifiers.

    Parameters
    ----------
    config : EDAConfig, optional
        Rates, WordNet settings and ``n_variants``.
    seed : int
        Seed for the per-text random streams and the draws from each pool.

    Attributes
    ----------
    synonym_source_ : str
        ``"wordnet"`` (WordNet, topped up by the built-in table) or ``"builtin"`` (no WordNet
        database in ``wordnet_dir_``).
    wordnet_dir_ : str
        The WordNet directory looked at.
    """

    name: ClassVar[str] = "eda"
    version: ClassVar[str] = "0.1.0"
    Config: ClassVar[type] = EDAConfig

    def __init__(self, config: Any = None, *, seed: int = 0):
        super().__init__(config, seed=seed)
        self._words = word_tables()
        root = self.config.wordnet_dir
        self.wordnet_dir_ = wordnet.default_dir() if root == DEFAULT_WORDNET_DIR else root
        self._wordnet = wordnet.load(self.wordnet_dir_)
        self.synonym_source_ = "wordnet" if self._wordnet is not None else "builtin"
        self.provenance_ = {"synonym_source": self.synonym_source_, "wordnet_dir": self.wordnet_dir_}
        if self._wordnet is None and self.wordnet_dir_ not in _WARNED:
            _WARNED.add(self.wordnet_dir_)
            ui.info(f"eda: no WordNet database in {self.wordnet_dir_}; using the built-in synonym table "
                    "(Debian: apt-get install wordnet-base)")

    def synonyms(self, word: str) -> tuple[str, ...]:
        """Synonyms of a lowercase word: WordNet's first (when installed), then the built-in table's."""
        table = self._words.synonyms.get(word, ())
        if self._wordnet is None:
            return table
        found = self._wordnet.synonyms(word, self.config.max_senses)
        return found + tuple(w for w in table if w not in found) if table else found

    def is_modifier(self, word: str) -> bool:
        """True when a lowercase word is mainly an adjective or adverb (dropping it keeps the sense)."""
        return word in self._words.modifiers or (self._wordnet is not None and self._wordnet.is_modifier(word))

    def variants(self, text: str, n: int, rng: random.Random, role: str) -> list[str]:
        """Up to ``n`` distinct edited copies of ``text``, none equal to it (fewer when it is too short)."""
        plan = self._plan(text)
        out: list[str] = []
        if not plan.words or n <= 0:
            return out
        for _ in range(4 * n + 4):
            new = self._edit(plan, rng)
            if new != text and new not in out:
                out.append(new)
                if len(out) == n:
                    break
        return out

    # -- internals -----------------------------------------------------------------------------
    def _plan(self, text: str) -> _Plan:
        """Split ``text`` into pieces and find the words that may be replaced, swapped or deleted."""
        pieces = _PIECE.findall(text)
        words: list[_Word] = []
        start, in_code, prev = True, False, ""
        for i, piece in enumerate(pieces):
            if piece.isspace():
                start = start or "\n" in piece
                continue
            if "```" in piece:
                in_code = not in_code if piece.count("```") % 2 else in_code
            elif not in_code and piece not in MARKERS:
                word = self._word(pieces, i, start, prev)
                if word is not None:
                    words.append(word)
            start = piece in MARKERS or piece.rstrip(_CLOSERS).endswith((".", "!", "?", ":"))
            prev = piece
        swaps = [(a, a + 1) for a in range(len(words) - 1) if _swappable(pieces, words[a], words[a + 1])]
        return _Plan(pieces, words, swaps, [w for w in words if w.synonyms], [w for w in words if w.deletable])

    def _word(self, pieces: list[str], i: int, start: bool, prev: str) -> _Word | None:
        m = _WORDLIKE.fullmatch(pieces[i])
        if m is None:
            return None
        lead, core, trail = m.groups()
        low = core.lower()
        title = start and core[0].isupper() and core[1:].islower()
        if len(core) < 3 or low in self._words.stopwords or not (core.islower() or title):
            return None
        after_article = prev.lower() in ("a", "an")
        # deletable: a lowercase adjective/adverb in front of a content word, not after a/an or a marker
        deletable = (not title and not lead and not trail and not after_article and prev not in MARKERS
                     and i >= 2 and i + 2 < len(pieces) and _inline_space(pieces[i - 1])
                     and _inline_space(pieces[i + 1]) and pieces[i + 2].isalpha()
                     and pieces[i + 2].lower() not in self._words.stopwords and self.is_modifier(low))
        synonyms = self.synonyms(low)
        if after_article:  # keep "a"/"an" right: the synonym starts with a vowel iff the word does
            synonyms = tuple(s for s in synonyms if (s[0] in "aeiou") == (low[0] in "aeiou"))
        return _Word(i, lead, core, trail, title, deletable, synonyms)

    def _edit(self, plan: _Plan, rng: random.Random) -> str:
        """One variant: a few synonym replacements, nearby swaps and deletions (at least one edit)."""
        cfg, words = self.config, plan.words
        m = len(words)
        k_syn = int(cfg.p_synonym * m + rng.random())
        k_swap = int(cfg.p_swap * m + rng.random())
        k_del = int(cfg.p_delete * m + rng.random())
        with_syn = plan.with_syn
        if k_syn + k_swap + k_del == 0:
            feasible = (("syn", cfg.p_synonym, with_syn), ("swap", cfg.p_swap, plan.swaps),
                        ("del", cfg.p_delete, bool(plan.deletable)))
            ops = [(op, p) for op, p, ok in feasible if ok and p > 0]
            if ops:
                op = rng.choices([o for o, _ in ops], weights=[p for _, p in ops])[0]
                k_syn, k_swap, k_del = int(op == "syn"), int(op == "swap"), int(op == "del")
        out = list(plan.pieces)
        used: set[int] = set()
        for w in rng.sample(with_syn, min(k_syn, len(with_syn))) if k_syn else ():  # sample(.., 0) draws nothing
            out[w.at] = w.lead + recase(rng.choice(w.synonyms), w.title) + w.trail
            used.add(w.at)
        for _ in range(k_swap):
            free = [(a, b) for a, b in plan.swaps if words[a].at not in used and words[b].at not in used]
            if not free:
                break
            a, b = rng.choice(free)
            wa, wb = words[a], words[b]
            out[wa.at], out[wb.at] = wa.lead + wb.core + wa.trail, wb.lead + wa.core + wb.trail
            used.update((wa.at, wb.at))
        if not k_del:
            return "".join(out)
        dels = [w for w in plan.deletable if w.at not in used]
        for w in rng.sample(dels, min(k_del, len(dels))):
            out[w.at - 1] = out[w.at] = ""
        return "".join(out)


def _inline_space(piece: str) -> bool:
    return piece.isspace() and "\n" not in piece


def _swappable(pieces: list[str], a: _Word, b: _Word) -> bool:
    """Two lowercase words joined by ``and``/``or`` ("salt and pepper"), so swapping them reads well."""
    if a.title or b.title or a.trail or b.lead or a.core == b.core or b.at - a.at != 4:
        return False
    joint = pieces[a.at + 1 : b.at]
    return _inline_space(joint[0]) and joint[1] in ("and", "or") and _inline_space(joint[2])
