"""Semantic refinement: d, the low-contrast threshold, rejected first, then chosen, else keep."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from marsctl.errors import ConfigError
from marsctl.semantic import Generator, contrast, instruction_for, semantic_refine


class AngleEncoder:
    """Texts 'name@deg' map to the unit vector at that angle: cos is easy to reason about."""

    def encode(self, texts, side="response"):
        rows = []
        for t in texts:
            deg = float(t.rsplit("@", 1)[1])
            rows.append([np.cos(np.radians(deg)), np.sin(np.radians(deg))])
        return np.array(rows, dtype=np.float32)


class Scripted:
    """Returns scripted candidates per input text and records every call."""

    def __init__(self, script):
        self.script = script
        self.calls = []

    def rewrite(self, texts, instruction, n):
        self.calls.append((list(texts), instruction, n))
        return [self.script.get(t, [])[:n] for t in texts]


def pair(i, c_deg, r_deg):
    return {"id": f"p{i}", "prompt": f"q{i}", "chosen": f"c{i}@{c_deg}", "rejected": f"r{i}@{r_deg}"}


PAIRS = [
    pair(0, 0, 10),   # d low: rejected rewrite succeeds on its 2nd try
    pair(1, 0, 5),    # d low: rejected fails, chosen succeeds
    pair(2, 0, 8),    # d low: nothing works, kept
    pair(3, 0, 90),   # high contrast: untouched
    pair(4, 0, 120),  # high contrast: untouched
]
SCRIPT = {
    "r0@10": ["r0b@5", "r0c@40", "r0d@80"],
    "r1@5": ["r1b@2", "r1c@4"],
    "c1@0": ["c1b@-30"],
    "r2@8": ["r2b@8"],
    "c2@0": ["c2b@6"],
}


def test_contrast_is_one_minus_cosine():
    d = contrast(AngleEncoder(), ["a@0", "a@0"], ["b@0", "b@90"])
    assert d == pytest.approx([0.0, 1.0], abs=1e-6)


def test_refines_rejected_first_then_chosen_else_keeps():
    gen = Scripted(SCRIPT)
    out, report = semantic_refine(PAIRS, gen, AngleEncoder(), tries=3)
    assert [p["id"] for p in out] == [p["id"] for p in PAIRS]
    s = [p["semantic"] for p in out]
    assert s[0]["refined"] == "rejected" and s[0]["tries"] == 2 and out[0]["rejected"] == "r0c@40"
    assert s[0]["original"] == "r0@10" and out[0]["chosen"] == "c0@0"
    assert s[0]["d_after"] > s[0]["d_before"]
    assert s[1]["refined"] == "chosen" and out[1]["chosen"] == "c1b@-30" and out[1]["rejected"] == "r1@5"
    assert s[2]["refined"] is None and out[2] == {**PAIRS[2], "semantic": s[2]}
    assert s[2]["d_after"] == s[2]["d_before"] and s[2]["low_contrast"]
    assert not s[3]["low_contrast"] and s[3]["refined"] is None and out[3]["rejected"] == "r3@90"
    # the rejected side is asked for the three low pairs, the chosen side only for the two still unrefined
    assert [c[0] for c in gen.calls] == [["r0@10", "r1@5", "r2@8"], ["c1@0", "c2@0"]]
    assert all(c[2] == 3 for c in gen.calls)
    assert report["low_contrast"] == 3 and report["refined_rejected"] == 1
    assert report["refined_chosen"] == 1 and report["kept"] == 1 and report["candidates"] == 8
    assert report["mean_d_after"] > report["mean_d_before"]
    assert report["mean_d_low_after"] > report["mean_d_low_before"]


def test_instructions_carry_the_context():
    text = instruction_for(PAIRS[0], "rejected")
    assert "q0" in text and "c0@0" in text and "{text}" in text and "worse" in text
    assert "r1@5" in instruction_for(PAIRS[1], "chosen")


def test_judge_vetoes_a_label_flip():
    gen = Scripted(SCRIPT)

    def judge(recs):  # says the rewrite 'r0c@40' would beat the chosen answer
        return [-1.0 if r["rejected"] == "r0c@40" else 1.0 for r in recs]

    out, report = semantic_refine(PAIRS, gen, AngleEncoder(), tries=3, judge=judge)
    assert out[0]["rejected"] == "r0d@80" and out[0]["semantic"]["tries"] == 3
    assert report["rejected_by_judge"] == 1


def test_threshold_and_tries():
    out, report = semantic_refine(PAIRS, Scripted(SCRIPT), AngleEncoder(), tries=1, threshold=0.0)
    assert report["low_contrast"] == 0 and all(p["semantic"]["refined"] is None for p in out)
    with pytest.raises(ConfigError, match="'tries' parameter of semantic refinement"):
        semantic_refine(PAIRS, Scripted(SCRIPT), AngleEncoder(), tries=0)


def test_empty_input():
    out, report = semantic_refine([], Scripted({}), AngleEncoder())
    assert out == [] and report["pairs"] == 0


def test_protocol_and_core_stays_plugin_free():
    assert isinstance(Scripted({}), Generator)
    code = "import sys, marsctl.semantic; print(any(m.startswith('marsctl_plugins') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
