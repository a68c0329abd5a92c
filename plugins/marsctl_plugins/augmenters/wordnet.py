"""A tiny reader of WordNet synonyms (the plain-text database files, format in ``man 5 wndb``).

Only what the ``eda`` augmenter needs: ``index.<pos>`` gives a lemma's synset offsets (most
frequent sense first) and ``data.<pos>`` is read whole and sliced at those byte offsets. Files load
lazily, per part of speech, once per process (``load`` caches one reader per directory); the four
index files parse in about 0.15 s.

Choices, kept conservative so that a replacement reads as a light rewrite:

- single-word synonyms only: multiword lemmas (``ready_to_hand``), hyphenated ones, proper nouns
  (any capital letter) and the word itself are skipped;
- only a word's main part of speech (>= 80 % of its uses in the sense-tagged corpus counts of
  ``cntlist.rev``) and its first ``max_senses`` tagged senses are used, and a synonym must itself be
  tagged with that sense at least twice, as one of its own first two senses, which keeps
  ``automobile`` for ``car`` and drops ``motorcar`` (rare) and ``green`` for ``gullible``;
- inflection: a word whose lowercase form is a lemma is used as is, unless it is also an irregular
  form (``*.exc``: ``felt`` -> ``feel``) or a regular inflection of another lemma (``used``,
  ``glasses``): those are ambiguous and skipped. A word that is not a lemma but a regular ``-s``
  form of a noun or verb lemma (``cars``, ``helps``) gets that lemma's synonyms re-inflected
  (``autos``). Other inflections (``-ed``, ``-ing``, ``-er``) are skipped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

POS = ("noun", "verb", "adj", "adv")
# cntlist.rev (sense-tagged counts) is required too: without it no synonym passes the filters below
_FILES = (*(f"{kind}.{pos}" for kind in ("index", "data") for pos in POS), "cntlist.rev")
_WORD = re.compile(r"[a-z]+")
_MARKER = re.compile(r"\(\w+\)$")  # adjective position markers: ready_to_hand(p)
# morphy's detachment rules (suffix -> base ending), per part of speech
_RULES = {
    "noun": (("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
             ("men", "man"), ("ies", "y")),
    "verb": (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"),
             ("ing", "")),
    "adj": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
    "adv": (),
}
_SS_TYPE = {"1": "noun", "2": "verb", "3": "adj", "4": "adv", "5": "adj"}
_SS_DIGIT = {"n": "1", "v": "2", "a": "3", "r": "4", "s": "5"}
_S_FORMS = {"noun": {"s", "ses", "xes", "zes", "ches", "shes", "ies"}, "verb": {"s", "ies", "es"}}

DOMINANT_SHARE = 0.8  # a word's main part of speech must cover this share of its tagged uses
MIN_SENSE_TAGS = 2  # a synonym must be tagged with the shared sense this often in cntlist.rev
MAX_SYNONYM_SENSE = 2  # ... and the shared sense must be one of the synonym's first senses
_READERS: dict[str, WordNet | None] = {}


def default_dir() -> str:
    """The WordNet directory: ``$MARSCTL_WORDNET_DIR``, else Debian's ``/usr/share/wordnet``."""
    return os.environ.get("MARSCTL_WORDNET_DIR") or "/usr/share/wordnet"


def is_available(root: str | Path) -> bool:
    """True when ``root`` holds the index and data files of all four parts of speech, and cntlist.rev."""
    return all((Path(root) / name).is_file() for name in _FILES)


def load(root: str | Path) -> WordNet | None:
    """The process-wide reader for ``root`` (``None`` when the files are missing); nothing is parsed yet."""
    key = str(Path(root).resolve())
    if key not in _READERS:
        _READERS[key] = WordNet(key) if is_available(key) else None
    return _READERS[key]


def inflect_s(word: str) -> str:
    """The regular ``-s`` form (noun plural, verb third person) of a base form.

    >>> [inflect_s(w) for w in ("car", "box", "match", "story", "day")]
    ['cars', 'boxes', 'matches', 'stories', 'days']
    """
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if len(word) > 1 and word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


class WordNet:
    """Synonyms from one WordNet database directory, parsed lazily and cached."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._index: dict[str, dict[str, str]] = {}
        self._data: dict[str, bytes] = {}
        self._exc: set[str] | None = None
        self._counts: dict[str, dict[str, int]] | None = None
        self._sense_info: dict[str, tuple[int, int]] = {}
        self._synonyms: dict[tuple[str, int], tuple[str, ...]] = {}

    # -- files ---------------------------------------------------------------------------------
    def index(self, pos: str) -> dict[str, str]:
        """Lemma -> the rest of its ``index.<pos>`` line (parsed on use)."""
        if pos not in self._index:
            table: dict[str, str] = {}
            text = (self.root / f"index.{pos}").read_text(encoding="latin-1")
            for line in text.split("\n"):
                if line and line[0] != " ":  # licence header lines start with spaces
                    lemma, _, rest = line.partition(" ")
                    table[lemma] = rest
            self._index[pos] = table
        return self._index[pos]

    def exceptions(self) -> set[str]:
        """Irregular inflected forms listed in the ``*.exc`` files (``felt``, ``went``, ``better``)."""
        if self._exc is None:
            forms: set[str] = set()
            for pos in POS:
                path = self.root / f"{pos}.exc"
                if path.is_file():
                    forms.update(line.split(" ", 1)[0] for line in path.read_text("latin-1").splitlines())
            self._exc = forms
        return self._exc

    def _load_counts(self) -> None:
        pos_counts: dict[str, dict[str, int]] = {}
        sense_info: dict[str, tuple[int, int]] = {}
        path = self.root / "cntlist.rev"
        text = path.read_text(encoding="latin-1") if path.is_file() else ""
        for line in text.splitlines():  # sense_key sense_number tag_cnt
            f = line.split(" ")
            lemma, _, key = f[0].partition("%")
            pos = _SS_TYPE.get(key[:1])
            if pos is None or len(f) != 3:
                continue
            by_pos = pos_counts.setdefault(lemma, {})
            by_pos[pos] = by_pos.get(pos, 0) + int(f[2])
            sense_info[f[0]] = (int(f[1]), int(f[2]))
        self._counts, self._sense_info = pos_counts, sense_info

    def pos_counts(self, lemma: str) -> dict[str, int]:
        """Sense-tagged corpus counts of ``lemma`` per part of speech (from ``cntlist.rev``; {} if absent)."""
        if self._counts is None:
            self._load_counts()
        return self._counts.get(lemma, {}) if self._counts is not None else {}

    def sense_info(self, sense_key: str) -> tuple[int, int]:
        """(sense number, tagged count) of a sense key such as ``car%1:06:00::``; (0, 0) if untagged."""
        if self._counts is None:
            self._load_counts()
        return self._sense_info.get(sense_key, (0, 0))

    def senses(self, lemma: str, pos: str) -> tuple[list[int], int]:
        """Synset offsets of ``lemma`` (most frequent first) and its count of sense-tagged senses."""
        rest = self.index(pos).get(lemma)
        if rest is None:
            return [], 0
        f = rest.split()
        n_synsets, n_ptrs = int(f[1]), int(f[2])
        tagged = int(f[4 + n_ptrs])
        return [int(x) for x in f[5 + n_ptrs : 5 + n_ptrs + n_synsets]], tagged

    def _line(self, pos: str, offset: int) -> list[str]:
        if pos not in self._data:
            self._data[pos] = (self.root / f"data.{pos}").read_bytes()
        data = self._data[pos]
        return data[offset : data.index(b"\n", offset)].decode("latin-1").split(" ")

    def synset_words(self, pos: str, offset: int) -> list[tuple[str, str]]:
        """The lemmas of the synset at byte ``offset`` of ``data.<pos>``, each with its sense key."""
        f = self._line(pos, offset)
        lex_filenum, ss_type, count = int(f[1]), f[2], int(f[3], 16)
        head = ":"
        if ss_type == "s":  # an adjective satellite: its sense key names the head adjective
            n_ptrs, at = int(f[4 + 2 * count]), 5 + 2 * count
            ptrs = [f[at + 4 * k : at + 4 * k + 2] for k in range(n_ptrs)]
            head_off = next((int(o) for sym, o in ptrs if sym == "&"), None)
            if head_off is not None:
                h = self._line(pos, head_off)
                head = f"{_MARKER.sub('', h[4]).lower()}:{int(h[5], 16):02d}"
        out = []
        for i in range(count):
            word = _MARKER.sub("", f[4 + 2 * i])
            key = f"{word.lower()}%{_SS_DIGIT[ss_type]}:{lex_filenum:02d}:{int(f[5 + 2 * i], 16):02d}:{head}"
            out.append((word, key))
        return out

    # -- synonyms ------------------------------------------------------------------------------
    def lemma_synonyms(self, lemma: str, pos: str, max_senses: int) -> list[str]:
        """Single-word synonyms of ``lemma`` in its first ``max_senses`` tagged senses of ``pos``.

        A synonym must itself be tagged with that very sense at least twice (``cntlist.rev``), and
        that sense must be one of its own first two: this keeps ``automobile`` for ``car`` and drops
        ``motorcar`` (rare) and ``green`` for ``gullible`` (green's third sense).
        """
        out: list[str] = []
        offsets, tagged = self.senses(lemma, pos)
        for offset in offsets[: max(1, min(max_senses, tagged))]:
            for word, key in self.synset_words(pos, offset):
                if word == lemma or word in out or not _WORD.fullmatch(word):
                    continue
                number, count = self.sense_info(key)
                if count >= MIN_SENSE_TAGS and number <= MAX_SYNONYM_SENSE:
                    out.append(word)
        return out

    def _regular_bases(self, word: str, pos: str, forms: set[str] | None = None) -> list[str]:
        bases = []
        for suffix, ending in _RULES[pos]:
            if forms is not None and suffix not in forms:
                continue
            if word.endswith(suffix) and len(word) > len(suffix) + 1:
                base = word[: len(word) - len(suffix)] + ending
                if base != word and base in self.index(pos) and base not in bases:
                    bases.append(base)
        return bases

    def synonyms(self, word: str, max_senses: int = 1) -> tuple[str, ...]:
        """Replacements for the lowercase surface form ``word``, inflected like it; () if none or ambiguous.

        Parameters
        ----------
        word : str
            A lowercase word as it appears in text.
        max_senses : int
            How many senses per part of speech (most frequent first) to draw synonyms from.

        Returns
        -------
        tuple of str
            Distinct single-word synonyms in a fixed order (sense order, then synset order).
        """
        key = (word, max_senses)
        if key not in self._synonyms:
            self._synonyms[key] = tuple(self._find(word, max_senses))
        return self._synonyms[key]

    def main_pos(self, lemma: str, among: list[str]) -> str | None:
        """The part of speech ``lemma`` nearly always has in tagged text, if it is one of ``among``."""
        counts = self.pos_counts(lemma)
        total = sum(counts.values())
        if total == 0:
            return among[0] if len(among) == 1 else None
        pos = max(POS, key=lambda p: counts.get(p, 0))
        return pos if pos in among and counts[pos] >= DOMINANT_SHARE * total else None

    def is_modifier(self, word: str) -> bool:
        """True when ``word`` is a lemma used mainly as an adjective or adverb (and no inflected form)."""
        among = [pos for pos in POS if word in self.index(pos)]
        if not among or word in self.exceptions() or any(self._regular_bases(word, pos) for pos in POS):
            return False  # unknown, or also an inflected form ("trying")
        return self.main_pos(word, among) in ("adj", "adv")

    def _find(self, word: str, max_senses: int) -> list[str]:
        if word in self.exceptions():
            return []
        is_lemma = [pos for pos in POS if word in self.index(pos)]
        if is_lemma:
            if any(self._regular_bases(word, pos) for pos in POS):
                return []  # also an inflection of another lemma: ambiguous
            pos = self.main_pos(word, is_lemma)
            return self.lemma_synonyms(word, pos, max_senses) if pos else []
        out: list[str] = []
        for pos in ("noun", "verb"):
            for base in self._regular_bases(word, pos, _S_FORMS[pos]):
                if self.main_pos(base, [p for p in POS if base in self.index(p)]) != pos:
                    continue
                for syn in self.lemma_synonyms(base, pos, max_senses):
                    form = inflect_s(syn)
                    if form != word and form not in out:
                        out.append(form)
        return out
