"""The shared quality filters of the generative augmenters."""

from __future__ import annotations

import numpy as np
import pytest

from marsctl.errors import ConfigError
from marsctl_plugins.augmenters.filters import (
    STAT_KEYS,
    FilterRequest,
    QualityFilter,
    copy_ratio,
    strip_chatter,
)
from marsctl_plugins.augmenters.generative import GenerativeConfig


class TableEncoder:
    """Maps known texts to fixed unit vectors; anything else to a hashed bag of words."""

    def __init__(self, table: dict[str, list[float]] | None = None, dim: int = 64):
        self.table = table or {}
        self.dim = dim
        self.calls = 0

    def encode(self, texts, side="response"):
        self.calls += 1
        rows = []
        for t in texts:
            if t in self.table:
                v = np.zeros(self.dim)
                v[: len(self.table[t])] = self.table[t]
            else:
                v = np.zeros(self.dim)
                for w in t.lower().split():
                    v[hash(w) % self.dim] += 1.0
            rows.append(v / (np.linalg.norm(v) or 1.0))
        return np.array(rows, dtype=np.float32)


@pytest.mark.parametrize(
    ("raw", "original", "expected"),
    [
        pytest.param('Sure! Here is the rewritten text:\n"The cat sat."', "", "The cat sat.", id="sure-here-quotes"),
        pytest.param("Here's a paraphrased version: Dogs bark loudly.", "", "Dogs bark loudly.", id="heres-colon"),
        pytest.param("Certainly! Paraphrased answer: Use a pen.", "", "Use a pen.", id="certainly-label"),
        pytest.param("Rewritten text: Go left.", "", "Go left.", id="label-only"),
        pytest.param("“Paris is big.”", "", "Paris is big.", id="curly-quotes"),
        pytest.param("Go home now.\n\nNote: I kept the meaning.", "", "Go home now.", id="trailing-note"),
        pytest.param("Sure, I can help.", "Sure, I can help you.", "Sure, I can help.", id="original-opener-kept"),
        pytest.param('"Quoted"', '"Quoted original"', '"Quoted"', id="original-quotes-kept"),
        pytest.param("Plain text.", "", "Plain text.", id="unchanged"),
        pytest.param("Paris is lovely.\n\nHere's a revised version: Paris is nice.", "", "Paris is lovely.",
                     id="second-version-tail"),
        pytest.param("Sure!", "", "Sure!", id="nothing-left-keeps-it"),
    ],
)
def test_strip_chatter(raw, original, expected):
    assert strip_chatter(raw, original) == expected


def test_copy_ratio_ignores_case_and_punctuation():
    assert copy_ratio("The cat sat!", "the  cat sat") == 1.0
    assert copy_ratio("a b c d e f g h i j", "a b c d e f g h i k") == pytest.approx(0.9)
    assert copy_ratio("completely new words here", "the cat sat on the mat") < 0.3


ORIG = "The quick brown fox jumps over the lazy dog near the river bank today."


def run(flt, cands, role="chosen", counterpart=None, original=ORIG):
    return flt.run([FilterRequest(original, role, cands, counterpart)])[0]


def test_lexical_rules_are_counted():
    flt = QualityFilter(None)
    kept = run(flt, [
        "Sure! Here is the rewritten text: " + ORIG,  # stripped, then a copy
        ORIG.upper(),  # copy
        ORIG.replace("today", "tonight"),  # near copy
        "Fox.",  # too short
        ORIG * 3,  # too long
        "",  # empty
        "A fast brown fox leaps above a sleepy dog by the riverside this morning.",
        "A fast brown fox leaps above a sleepy dog by the riverside this morning!",  # duplicate
    ])
    assert [t for t, _ in kept] == ["A fast brown fox leaps above a sleepy dog by the riverside this morning."]
    s = flt.stats
    assert s["generated"] == 8 and s["kept"] == 1
    assert (s["copy"], s["near_copy"], s["length"], s["empty"], s["duplicate"]) == (2, 1, 2, 1, 1)
    assert s["stripped"] == 1
    assert sum(s[k] for k in STAT_KEYS[2:]) == s["generated"]  # every candidate lands in one bucket
    assert "len_ratio" in kept[0][1] and "sim" not in kept[0][1]


def test_similarity_band():
    good, far, close = "a paraphrase of it", "something else entirely", "nearly the same"
    enc = TableEncoder({ORIG: [1.0, 0.0], good: [0.9, 0.436], far: [0.3, 0.954], close: [0.999, 0.045]})
    flt = QualityFilter(enc, sim_low=0.7, sim_high=0.985, len_low=0.0, len_high=100.0)
    kept = run(flt, [good, far, close])
    assert [t for t, _ in kept] == [good]
    assert kept[0][1]["sim"] == pytest.approx(0.9, abs=1e-3)
    assert flt.stats["too_dissimilar"] == 1 and flt.stats["too_similar"] == 1


def test_rejected_rewrite_never_becomes_the_chosen_one():
    chosen = "You should call a doctor right away and describe the symptoms in detail."
    rejected = "Just wait, it will pass on its own, no need to worry about anything."
    drifted = "Call a doctor at once and describe the symptoms carefully to them."
    fine = "Simply wait it out, it goes away by itself, nothing to worry about here."
    enc = TableEncoder({rejected: [1.0, 0.0], chosen: [0.0, 1.0], drifted: [0.2, 0.98], fine: [0.9, 0.436]})
    flt = QualityFilter(enc, sim_low=-1.0, sim_high=1.0, len_low=0.0, len_high=100.0)
    kept = run(flt, [chosen, drifted, fine], role="rejected", counterpart=chosen, original=rejected)
    assert [t for t, _ in kept] == [fine]
    assert flt.stats["counterpart_copy"] == 2  # the verbatim copy (lexical) and the drift (embedding)


def test_summary_line():
    flt = QualityFilter(None)
    run(flt, [ORIG, "A fast brown fox leaps above a sleepy dog by the riverside this morning."])
    assert flt.summary() == "2 generated, 1 kept (50%), 0 stripped of chatter; rejected: copy 1"


def test_config_checks_bands():
    with pytest.raises(ConfigError, match="The 'sim_high' parameter of the augmenter must be a float"):
        GenerativeConfig(sim_low=0.9, sim_high=0.5)
    with pytest.raises(ConfigError, match="'template'"):
        GenerativeConfig(template="nope")
    assert GenerativeConfig(n_variants=3).oversample == 2
