"""The plugin bases (marsctl.plugin): Head.score and its hooks, the optional abilities' defaults."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import pytest

from marsctl import registry
from marsctl.errors import ConfigError
from marsctl.params import describe_config
from marsctl.plugin import Head, Selector, sigmoid

RECORDS = [{"id": f"p{i}", "prompt": f"q{i}", "chosen": "c" * (i + 2), "rejected": "r" * (i + 1)} for i in range(5)]


class LengthHead(Head):
    """Reward = a tenth of the response's length; records every score_batch call."""

    name: ClassVar[str] = "length"
    score_batch_size: ClassVar[int] = 2

    def __init__(self, config: Any = None, *, seed: int = 0):
        super().__init__(config, seed=seed)
        self.calls: list[list[str]] = []

    def fit(self, pairs: list[dict[str, Any]], *, epochs: int | None = None) -> LengthHead:
        return self

    def score_batch(self, prompts: list[str], responses: list[str]) -> list[float]:
        self.calls.append(list(responses))
        return [len(r) / 10 + (math.nan if r == "bad" else 0.0) for r in responses]


def test_score_batches_by_score_batch_size_chosen_then_rejected():
    head = LengthHead()
    out = head.score(RECORDS)
    assert head.calls == [["cc", "ccc"], ["r", "rr"], ["cccc", "ccccc"], ["rrr", "rrrr"], ["cccccc"], ["rrrrr"]]
    assert [r["pred_margin"] for r in out] == [0.1] * 5
    assert out[0]["score_chosen"] == 0.2 and out[0]["p_chosen"] == round(sigmoid(0.1), 6)
    assert "score_chosen" not in RECORDS[0]  # copies
    head.calls.clear()
    head.score(RECORDS, batch_size=4)
    assert [len(c) for c in head.calls] == [4, 4, 1, 1]


def test_a_head_that_overrides_score_pairs_gets_every_pair_and_the_batch_size():
    seen = []

    class PairwiseHead(LengthHead):
        def score_pairs(self, prompts, chosen, rejected, batch_size=None):
            seen.append((len(prompts), batch_size))
            return [1.0] * len(prompts), [0.5] * len(prompts)

    out = PairwiseHead().score(RECORDS, batch_size=3)
    assert seen == [(5, 3)]
    assert [r["pred_margin"] for r in out] == [0.5] * 5


def test_a_non_finite_reward_names_the_pair():
    rows = [*RECORDS[:2], {"id": "x", "prompt": "q", "chosen": "bad", "rejected": "r", "_line": 7}]
    with pytest.raises(ConfigError, match=r"non-finite reward \(nan, 0.1\) for line 7"):
        LengthHead().score(rows)


def test_optional_abilities_have_defaults():
    @dataclasses.dataclass
    class EpochsConfig:
        epochs: int = 7

    class WithEpochs(LengthHead):
        Config: ClassVar[type] = EpochsConfig

    assert LengthHead().last_hidden(["q"], ["r"]) is None
    assert LengthHead.default_epochs() is None and WithEpochs.default_epochs() == 7

    class Flat(Selector):
        def weights(self, margins):
            return [1 / len(margins)] * len(margins)

    assert Flat().alpha_eff([0.1, 0.2]) is None


@pytest.mark.parametrize(("name", "epochs"), [("mlp", 3), ("linear", 20), ("transformer", 1)])
def test_first_party_heads_declare_their_default_epochs(name, epochs):
    assert registry.load("head", name).default_epochs() == epochs


def test_selectors_alpha_eff():
    assert registry.create("selector", "uniform").alpha_eff([0.1, 0.3]) is None
    assert registry.create("selector", "mars", ["alpha=0.25"]).alpha_eff([0.1, 0.3]) == 0.25
    assert registry.create("selector", "mars-robust").alpha_eff([1.0, 3.0]) == pytest.approx(0.5 / 1.0)


def test_the_loss_options_are_declared_once_for_every_head():
    rows = {name: {r[0]: r for r in describe_config(registry.load("head", name).Config)}
            for name in ("mlp", "linear", "transformer")}
    for key in ("margin_field", "center_rewards"):
        assert rows["mlp"][key] == rows["linear"][key] == rows["transformer"][key]
    with pytest.raises(ConfigError, match="'center_rewards' parameter of the transformer head"):
        registry.load("head", "transformer").Config(center_rewards=-1)
    with pytest.raises(ConfigError, match="'center_rewards' parameter of the head must"):
        registry.load("head", "mlp").Config(center_rewards=-1)


def test_round6_is_pythons_round_to_6_decimals_also_at_halves_and_extremes():
    import numpy as np

    from marsctl.scorefields import round6

    rng = np.random.default_rng(0)
    halves = [(int(k) + 0.5) / 1e6 for k in rng.integers(-10**9, 10**9, 20000)]  # the ties numpy could miss
    values = [*rng.normal(0, 3, 20000).tolist(), *rng.normal(0, 1e-6, 5000).tolist(), *halves,
              *(math.nextafter(v, math.inf) for v in halves), *(math.nextafter(v, -math.inf) for v in halves),
              *rng.uniform(-1e12, 1e12, 2000).tolist(), 0.0, -0.0, -1e-9, 2.675, 5e-324, 1e300, -1e300,
              math.inf, -math.inf, math.nan]
    got, want = round6(values), [round(v, 6) for v in values]
    assert [repr(v) for v in got] == [repr(v) for v in want]  # repr: -0.0 and nan compared too
