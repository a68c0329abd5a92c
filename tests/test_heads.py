"""The embedding heads on the real bundled encoder: BT loss shapes, training, save/load, --init."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import FIXTURES

from marsctl import registry, steps
from marsctl.errors import ConfigError
from marsctl.losses import bt_loss
from marsctl.modeldir import load_head
from marsctl.records import read_pairs
from marsctl.testing import check_head


def test_bt_loss_value_and_shapes():
    rc = torch.tensor([1.0, 0.0, -1.0])
    rr = torch.tensor([0.0, 0.0, 1.0])
    want = -torch.log(torch.sigmoid(rc - rr)).mean()
    assert torch.allclose(bt_loss(rc, rr), want)
    with pytest.raises(ValueError, match=r"shape \[B\]"):
        bt_loss(rc.unsqueeze(-1), rr)  # [B,1] - [B] would broadcast to [B,B]
    m = torch.tensor([0.5, 0.5, 0.5])
    assert torch.allclose(bt_loss(rc, rr, m), -torch.log(torch.sigmoid(rc - rr - m)).mean())


@pytest.fixture(scope="module")
def tiny():
    return read_pairs(FIXTURES / "tiny.jsonl")


@pytest.mark.parametrize("name", ["mlp", "linear"])
def test_heads_conform(name, tiny):
    check_head(registry.load("head", name), pairs=tiny[:12])


def test_training_changes_params_and_lowers_loss(tiny):
    head = registry.create("head", "mlp", ["epochs=1"], seed=0)
    head._ensure_model()
    before = [p.detach().clone() for p in head.model_.parameters()]
    head.fit(tiny, epochs=30)
    after = list(head.model_.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    losses = [h["loss"] for h in head.history_]
    assert all(torch.isfinite(torch.tensor(x)) for x in losses)
    assert losses[-1] < losses[0]
    assert len(losses) == 30 and head.manifest_["steps"] == 30


def test_same_seed_same_scores_different_seed_differs(tiny, tmp_path):
    a = steps.score(tiny, steps.train(tiny, head="mlp", seed=5, epochs=3))
    b = steps.score(tiny, steps.train(tiny, head="mlp", seed=5, epochs=3))
    c = steps.score(tiny, steps.train(tiny, head="mlp", seed=6, epochs=3))
    assert [r["pred_margin"] for r in a] == [r["pred_margin"] for r in b]
    assert [r["pred_margin"] for r in a] != [r["pred_margin"] for r in c]


def test_model_dir_and_init_continue(tiny, tmp_path):
    head = steps.train(tiny, head="linear", seed=1, epochs=2)
    head.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["format_version"] == 1 and cfg["head"] == "linear"
    assert cfg["training"]["seed"] == 1 and cfg["training"]["epochs"] == 2 and len(cfg["training"]["data_sha256"]) == 64
    assert cfg["encoder"]["max_seq_length"] == 256 and cfg["features"] == ["r", "p*r"]
    assert not list(tmp_path.glob("m/*.pkl")) and (tmp_path / "m" / "model.safetensors").exists()
    cont = steps.train(tiny, init=tmp_path / "m", seed=1, epochs=2)
    assert cont.name == "linear" and len(cont.history_) == 4
    assert cont.manifest_["init"] == str(tmp_path / "m")
    fresh = load_head(tmp_path / "m")
    assert steps.score(tiny, fresh) != steps.score(tiny, cont)


def test_init_from_another_head_is_refused(tiny, tmp_path):
    steps.train(tiny, head="linear", epochs=1).save(tmp_path / "lin")
    with pytest.raises(ConfigError, match="holds a 'linear' head, not 'mlp'"):
        steps.train(tiny, head="mlp", init=tmp_path / "lin")


def test_feature_change_on_init_is_refused(tiny, tmp_path):
    steps.train(tiny, head="mlp", epochs=1).save(tmp_path / "m")
    with pytest.raises(ConfigError, match="weights do not fit"):
        steps.train(tiny, head="mlp", init=tmp_path / "m", params=["hidden=8"])


def test_second_pass_reads_embeddings_from_cache(tiny):
    from marsctl.embed import get_encoder

    enc = get_encoder()
    enc.encode([r["chosen"] for r in tiny])
    before = dict(enc.stats)
    enc.encode([r["chosen"] for r in tiny])
    assert enc.stats["misses"] == before["misses"]
    assert enc.stats["hits"] == before["hits"] + len(tiny)


def test_threads_apply_while_training_and_torch_is_left_as_it_was(tiny):
    seen = []

    class Probe(registry.load("head", "linear")):
        def _train_loop(self, member, rows, epochs, shuffle):
            seen.append(torch.get_num_threads())
            return 0, [0.0] * epochs  # (steps, loss per epoch)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for n in (1, 0, 3):
            Probe(Probe.Config(threads=n)).fit(tiny[:4], epochs=1)
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 2, 3]  # the default is 1; 0 keeps torch's setting
    assert Probe.Config().threads == 1
    with pytest.raises(ConfigError, match="'threads' parameter of the head must be an int"):
        Probe.Config(threads=-1)
