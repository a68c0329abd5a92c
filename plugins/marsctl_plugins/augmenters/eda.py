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
without WordNet the built-in table alone is used (``synonym_source_`` says which).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from marsctl import ui
from marsctl.errors import ConfigError
from marsctl.params import check_interval
from marsctl.plugin import Augmenter, PoolConfig
from marsctl_plugins.augmenters import wordnet

DEFAULT_WORDNET_DIR = "/usr/share/wordnet"
MARKERS = frozenset({"Human:", "Assistant:", "User:", "System:"})

_STOPWORD_TEXT = """
a about above after again against ago ah all almost already also although always am among an and
another any anybody anyone anything anyway anywhere are aren around as at away back be became
because become been before being below best better between both but by can cannot could couldn
did didn do does doesn doing don done down during each either else enough etc even ever every
everyone everything few for from further get gets getting give go goes going gone got gotten had
hadn has hasn have haven having he her here hers herself him himself his how however i if in into
is isn it its itself just keep kind know last least less let lets like likely little lot lots made
make makes many may maybe me might mine more most mostly much must my myself need needs neither
never new next no nobody none nor not nothing now nowhere of off oh ok okay old on once one only
or other others otherwise our ours ourselves out over own per perhaps please put quite rather
really said same say says see seem seems shall she should shouldn since so some somebody someone
something sometimes somewhat soon sorry still such sure take than thank thanks that the their
theirs them themselves then there these they thing things think this those though through thus
till to too toward towards try two under unless until up upon us use used very want wants was
wasn way we well were weren what whatever when whenever where whether which while who whoever
whom whose why will with within without won would wouldn yeah yes yet you your yours yourself
yourselves
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
# groups of interchangeable words, used when WordNet is absent; a word may sit in several groups.
# Modifiers (adjectives, adverbs) first: those are also the words the built-in mode may delete.
BUILTIN_MODIFIER_GROUPS = """
big large huge
large huge enormous
small little tiny
quick fast rapid speedy
slow sluggish
happy glad cheerful
sad unhappy upset
angry mad furious
scared afraid frightened
smart clever intelligent
stupid dumb foolish
easy simple
difficult tough challenging
important significant crucial
major big
nice pleasant lovely
beautiful lovely gorgeous
ugly hideous
rich wealthy
poor needy
strange odd weird unusual
funny amusing hilarious
dangerous risky hazardous unsafe
safe secure
harmful damaging
illegal unlawful illicit
correct accurate
true accurate
false untrue
real genuine actual
fake phony counterfeit
honest truthful
quiet silent
loud noisy
clean tidy
dirty filthy
busy occupied
tired exhausted weary
sick ill unwell
healthy wholesome
strong powerful
weak feeble
rude impolite disrespectful
polite courteous
friendly kind
cruel nasty vicious
terrible awful horrible dreadful
great excellent wonderful terrific
good fine decent
common usual typical
rare uncommon
possible feasible
obvious evident apparent
main primary principal
special particular
specific particular
different distinct
several various
huge massive
tiny minuscule
often frequently
usually generally typically
probably likely
quickly rapidly swiftly
slowly gradually
completely totally entirely fully
almost nearly
actually truly
simply merely
mainly mostly chiefly
suddenly abruptly
carefully cautiously
finally eventually
instantly immediately
seriously gravely
extremely incredibly
basically essentially
definitely certainly
recently lately
""".strip()
BUILTIN_GROUPS = """
begin start commence
finish conclude
stop halt cease
help assist aid
helps assists aids
helped assisted aided
helping assisting aiding
answer reply
ask inquire
buy purchase
bought purchased
sell vend
build construct
choose pick select
chose picked selected
talk speak chat
talking speaking chatting
shout yell scream
hit strike
attack assault
kill murder slay
killed murdered slain
hurt harm injure
hurts harms injures
destroy ruin wreck
fix repair mend
create make
explain clarify
understand comprehend grasp
believe trust
wish hope
love adore
hate despise loathe
enjoy like
allow permit let
forbid prohibit ban
avoid evade dodge
protect guard defend
find discover locate
hide conceal
travel journey
alter modify
retain keep
receive get obtain
gain earn
attempt try
utilize use employ
needed required
suggest recommend propose
suggests recommends proposes
suggested recommended proposed
consider contemplate
decide determine
remember recall
learn study
teach instruct educate
eat consume
throw toss hurl
catch grab seize
pull tug
push shove
laugh chuckle giggle
cry weep sob
smile grin
worry fret
bother annoy irritate
fool deceive
cheat swindle
people folks persons
person individual
kid child youngster
kids children youngsters
man guy fellow
men guys fellows
woman lady
women ladies
friend pal buddy
friends pals buddies
boss manager supervisor
job occupation
house residence
car automobile vehicle
cars automobiles vehicles
road street
shop store
shops stores
idea notion thought
ideas notions thoughts
problem issue trouble
problems issues troubles
question query
questions queries
reason cause motive
reasons causes motives
result outcome consequence
results outcomes consequences
method manner way
methods ways
plan scheme strategy
plans schemes strategies
goal aim objective
goals aims objectives
chance opportunity
chances opportunities
rule regulation
rules regulations
law statute
laws statutes
mistake error blunder
mistakes errors blunders
fight battle brawl
fights battles brawls
joke gag jest
jokes gags jests
prank trick
pranks tricks
gun firearm
guns firearms
money cash funds
doctor physician
doctors physicians
police cops
teacher instructor
teachers instructors
student pupil
students pupils
information info details
advice guidance counsel
anger rage fury
joy delight happiness
sadness sorrow grief
pain ache
illness sickness disease
trip journey voyage
story tale
stories tales
picture photo image
pictures photos images
movie film
movies films
food meal
town city
country nation
area region zone
part piece portion
parts pieces portions
example instance
examples instances
amount quantity
size dimension
speed pace velocity
danger risk hazard
dangers risks hazards
crime offense
crimes offenses
thief robber burglar
thieves robbers burglars
victim casualty
victims casualties
drug narcotic
drugs narcotics
alcohol liquor booze
""".strip()

_PIECE = re.compile(r"\s+|\S+")
_WORDLIKE = re.compile(r"([\"'(\[“‘*]*)([A-Za-z]+)([.,!?;:\"')\]”’*]*)")
_CLOSERS = "\"')]”’*"
_OWNER = "the eda augmenter"
_WARNED: set[str] = set()
_BUILTIN: dict[str, tuple[str, ...]] = {}
_MODIFIERS: set[str] = set()


def builtin_synonyms() -> dict[str, tuple[str, ...]]:
    """The built-in synonym table: word -> its group-mates, in a fixed order (parsed once)."""
    if not _BUILTIN:
        table: dict[str, list[str]] = {}
        for line in (BUILTIN_MODIFIER_GROUPS + "\n" + BUILTIN_GROUPS).splitlines():
            group = line.split()
            for word in group:
                mates = table.setdefault(word, [])
                mates += [w for w in group if w != word and w not in mates]
        _BUILTIN.update({w: tuple(m) for w, m in table.items()})
        _MODIFIERS.update(BUILTIN_MODIFIER_GROUPS.split())
    return _BUILTIN


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
        root = self.config.wordnet_dir
        self.wordnet_dir_ = wordnet.default_dir() if root == DEFAULT_WORDNET_DIR else root
        self._wordnet = wordnet.load(self.wordnet_dir_)
        self.synonym_source_ = "wordnet" if self._wordnet is not None else "builtin"
        if self._wordnet is None and self.wordnet_dir_ not in _WARNED:
            _WARNED.add(self.wordnet_dir_)
            ui.info(f"eda: no WordNet database in {self.wordnet_dir_}; using the built-in synonym table "
                    "(Debian: apt-get install wordnet-base)")

    def synonyms(self, word: str) -> tuple[str, ...]:
        """Synonyms of a lowercase word: WordNet's first (when installed), then the built-in table's."""
        table = builtin_synonyms().get(word, ())
        if self._wordnet is None:
            return table
        found = self._wordnet.synonyms(word, self.config.max_senses)
        return found + tuple(w for w in table if w not in found) if table else found

    def is_modifier(self, word: str) -> bool:
        """True when a lowercase word is mainly an adjective or adverb (dropping it keeps the sense)."""
        builtin_synonyms()
        return word in _MODIFIERS or (self._wordnet is not None and self._wordnet.is_modifier(word))

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
        return _Plan(pieces, words, swaps)

    def _word(self, pieces: list[str], i: int, start: bool, prev: str) -> _Word | None:
        m = _WORDLIKE.fullmatch(pieces[i])
        if m is None:
            return None
        lead, core, trail = m.groups()
        low = core.lower()
        title = start and core[0].isupper() and core[1:].islower()
        if len(core) < 3 or low in STOPWORDS or not (core.islower() or title):
            return None
        after_article = prev.lower() in ("a", "an")
        # deletable: a lowercase adjective/adverb in front of a content word, not after a/an or a marker
        deletable = (not title and not lead and not trail and not after_article and prev not in MARKERS
                     and i >= 2 and i + 2 < len(pieces) and _inline_space(pieces[i - 1])
                     and _inline_space(pieces[i + 1]) and pieces[i + 2].isalpha()
                     and pieces[i + 2].lower() not in STOPWORDS and self.is_modifier(low))
        synonyms = self.synonyms(low)
        if after_article:  # keep "a"/"an" right: the synonym starts with a vowel iff the word does
            synonyms = tuple(s for s in synonyms if (s[0] in "aeiou") == (low[0] in "aeiou"))
        return _Word(i, lead, core, trail, title, deletable, synonyms)

    def _edit(self, plan: _Plan, rng: random.Random) -> str:
        """One variant: a few synonym replacements, nearby swaps and deletions (at least one edit)."""
        cfg, words = self.config, plan.words
        m = len(words)
        k_syn, k_swap, k_del = (int(p * m + rng.random()) for p in (cfg.p_synonym, cfg.p_swap, cfg.p_delete))
        with_syn = [w for w in words if w.synonyms]
        if k_syn + k_swap + k_del == 0:
            feasible = (("syn", cfg.p_synonym, with_syn), ("swap", cfg.p_swap, plan.swaps),
                        ("del", cfg.p_delete, any(w.deletable for w in words)))
            ops = [(op, p) for op, p, ok in feasible if ok and p > 0]
            if ops:
                op = rng.choices([o for o, _ in ops], weights=[p for _, p in ops])[0]
                k_syn, k_swap, k_del = int(op == "syn"), int(op == "swap"), int(op == "del")
        out = list(plan.pieces)
        used: set[int] = set()
        for w in rng.sample(with_syn, min(k_syn, len(with_syn))):
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
        dels = [w for w in words if w.deletable and w.at not in used]
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
