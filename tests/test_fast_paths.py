"""The fast paths of issue 20 (items 3 and 4) give the same bits as the paths they replace.

- ``nets.AdamW`` trains an mlp head to the same weights as ``torch.optim.AdamW`` (which imports
  torch._dynamo, 1.7 s of a warm refine), and training no longer imports torch._dynamo;
- warm scoring (every text cached: one matrix look-up per side, ``_warm_rewards``) gives the same
  rewards as the batch-by-batch path, for a single head, an ensemble and a head without a length term.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import FIXTURES

from marsctl import steps
from marsctl.records import read_pairs


@pytest.fixture(scope="module")
def tiny():
    return read_pairs(FIXTURES / "tiny.jsonl")


def _trained(pairs, optimizer=None, **params):
    """An mlp head trained on ``pairs``; ``optimizer`` replaces the head's ``_optimizer`` (a torch one)."""
    from marsctl_plugins.heads.embedding import MLPHead

    if optimizer is None:
        return steps.train(pairs, head="mlp", params={"encoder_precision": "fp32", **params}, seed=3)
    original = MLPHead._optimizer
    MLPHead._optimizer = optimizer
    try:
        return steps.train(pairs, head="mlp", params={"encoder_precision": "fp32", **params}, seed=3)
    finally:
        MLPHead._optimizer = original


def _torch_adamw(self, member):
    groups = [{"params": list(member.quality.parameters())}]
    if member.length is not None:
        groups.append({"params": list(member.length.parameters()), "lr": self.config.length_lr,
                       "weight_decay": self.config.length_decay})
    return torch.optim.AdamW(groups, lr=self.config.lr, weight_decay=self.config.weight_decay)


@pytest.mark.parametrize("params", [{}, {"ensemble": 2, "length": "off", "weight_decay": 0.0}])
def test_own_adamw_trains_the_same_bits_as_torch(tiny, params):
    ours = _trained(tiny, **params)
    theirs = _trained(tiny, _torch_adamw, **params)
    a, b = ours.model_.state_dict(), theirs.model_.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ours.history_ == theirs.history_
    untrained = steps.train(tiny, head="mlp", params={"encoder_precision": "fp32", **params}, seed=3, epochs=0)
    assert not all(torch.equal(a[k], v) for k, v in untrained.model_.state_dict().items())  # the steps moved them


def test_training_does_not_import_dynamo():
    code = ("import sys; from marsctl import steps; from marsctl.records import read_pairs; "
            f"steps.train(read_pairs({str(FIXTURES / 'tiny.jsonl')!r}), head='mlp', "
            "params={'encoder_precision': 'fp32'}); print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("params", [{}, {"ensemble": 3}, {"length": "off", "features": "full"}])
def test_warm_scoring_equals_batch_by_batch(tiny, params):
    head = _trained(tiny, **params)
    prompts = [p["prompt"] for p in tiny]
    chosen, rejected = [p["chosen"] for p in tiny], [p["rejected"] for p in tiny]
    head.score_members(prompts, chosen, rejected)  # every text now cached
    warm = head._warm_rewards(prompts, chosen, rejected, 5)
    assert warm is not None
    head._warm_rewards = lambda *a: None  # the batch-by-batch path
    slow = head.score_members(prompts, chosen, rejected, batch_size=5)
    assert (warm.chosen, warm.rejected) == (slow.chosen, slow.rejected)
    assert (warm.length_chosen, warm.length_rejected) == (slow.length_chosen, slow.length_rejected)
    assert (warm.length_chosen is None) == (params.get("length") == "off")


def test_warm_path_declines_an_uncached_text(tiny):
    head = _trained(tiny)
    prompts = [p["prompt"] for p in tiny]
    rejected = [p["rejected"] for p in tiny]
    new = [p["chosen"] + " (never embedded before: test_fast_paths)" for p in tiny]
    assert head._warm_rewards(prompts, new, rejected, 8) is None
