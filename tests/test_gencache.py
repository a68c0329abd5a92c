"""The content-addressed generation cache, and the generative base that uses it."""

from __future__ import annotations

import pytest

from marsctl_plugins.augmenters.gencache import GenerationCache, generation_key
from marsctl_plugins.augmenters.generative import GenerativeAugmenter, GenerativeConfig

BASE = {"model_id": "m:1", "template_id": "paraphrase@v1", "role": "chosen", "text": "hello there",
        "seed": 0, "params": {"temperature": 0.8, "top_p": 0.95}, "n": 4}


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MARSCTL_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize(
    ("field", "value"),
    [("model_id", "m:2"), ("template_id", "short@v1"), ("role", "rejected"), ("text", "hello there!"),
     ("seed", 1), ("params", {"temperature": 0.7, "top_p": 0.95}), ("n", 5)],
)
def test_key_changes_with_every_field(field, value):
    assert generation_key(**{**BASE, field: value}) != generation_key(**BASE)


def test_key_ignores_param_order():
    assert generation_key(**{**BASE, "params": {"top_p": 0.95, "temperature": 0.8}}) == generation_key(**BASE)


def test_round_trip_and_persistence(tmp_path):
    path = tmp_path / "g.sqlite"
    c = GenerationCache(path)
    k1, k2 = generation_key(**BASE), generation_key(**{**BASE, "seed": 9})
    c.put_many([(k1, ["a", "b ✓"])])
    assert c.get_many([k1, k2]) == {k1: ["a", "b ✓"]}
    assert c.stats == {"hits": 1, "misses": 1}
    c.close()
    again = GenerationCache(path)
    assert again.get_many([k1]) == {k1: ["a", "b ✓"]} and len(again) == 1


def test_default_location_is_under_cache_dir(tmp_path):
    assert GenerationCache().path == tmp_path / "cache" / "generations.sqlite"


class Counting(GenerativeAugmenter):
    """A fake backend: numbered, clearly different rewrites; counts what it is asked for."""

    name = "counting"
    backend = "fake"
    calls: list[int]

    def __init__(self, config=None, *, seed=0):
        super().__init__(config, seed=seed, encoder=None)
        self.calls = []

    def describe_model(self):
        return "fake-model", "fake-model:0"

    def generate(self, messages, n, seeds):
        self.calls.append(len(messages))
        out = []
        for m, s in zip(messages, seeds, strict=True):
            text = m[-1]["content"].split("\n\n")[-2] if "\n\n" in m[-1]["content"] else m[-1]["content"]
            out.append([f"Variant {k} ({s % 97}) of: {text[::-1]}" for k in range(n)])
        return out


PAIRS = [{"id": f"p{i}", "prompt": f"Question number {i} about cats?",
          "chosen": f"A helpful answer {i} about cats.", "rejected": f"A rude reply {i}."} for i in range(3)]


def config(**kw):
    return GenerativeConfig(n_variants=2, oversample=1, sim_low=-1.0, sim_high=1.0, len_low=0.0,
                            len_high=100.0, **kw)


def test_rerun_never_regenerates():
    first = Counting(config(), seed=3)
    rows = first.augment(PAIRS, [2, 0, 3], round=0)
    assert sum(first.calls) == 6  # two pairs × three roles
    second = Counting(config(near_copy=0.95), seed=3)  # a filter change reuses generations
    assert second.augment(PAIRS, [2, 0, 3], round=0) == rows
    assert second.calls == []
    assert second.stats_["cache_hits"] == 6 and second.stats_["cache_misses"] == 0
    third = Counting(config(), seed=4)  # a new seed is new work
    third.augment(PAIRS, [2, 0, 3], round=0)
    assert sum(third.calls) == 6


def test_cache_off_always_generates():
    aug = Counting(config(cache=False))
    aug.augment(PAIRS[:1], [1])
    aug.augment(PAIRS[:1], [1])
    assert sum(aug.calls) == 6


def test_provenance_names_backend_model_template_and_filters():
    aug = Counting(config())
    rows = aug.augment(PAIRS[:1], [3], round=1)[0]
    assert len(rows) == 3
    row = rows[0]
    assert row["generator"] == {"backend": "fake", "model": "fake-model", "template": "paraphrase"}
    assert row["source"] == "synthetic" and row["parent_id"] == "p0"
    assert set(row["filters"]) == {"prompt", "chosen", "rejected"}
    assert all("len_ratio" in v for v in row["filters"].values())
    assert aug.stats_["filter_generated"] == 6 and aug.stats_["filter_kept"] == 6


def test_rewrite_protocol_strips_and_dedupes():
    from marsctl.semantic import Generator

    aug = Counting(config())
    assert isinstance(aug, Generator)
    out = aug.rewrite(["one text", "two text"], "Make it different.", 3)
    assert [len(o) for o in out] == [3, 3]
    assert aug.rewrite(["one text", "two text"], "Make it different.", 3) == out
    assert aug.calls == [2]
