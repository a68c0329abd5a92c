"""Per-pair weights, the length term and ensembles of the embedding heads (issue #13), on the real encoder."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import FIXTURES, read_jsonl, run_cli

from marsctl import registry, steps
from marsctl.errors import ConfigError, DataError
from marsctl.losses import bt_loss, pair_weights
from marsctl.metrics import evaluate
from marsctl.modeldir import load_head
from marsctl.records import read_pairs
from marsctl.testing import check_head


@pytest.fixture(scope="module")
def tiny():
    return read_pairs(FIXTURES / "tiny.jsonl")


def margins(scored):
    return [r["pred_margin"] for r in scored]


def test_bt_loss_weighted_mean():
    rc, rr = torch.tensor([1.0, 0.0, -1.0]), torch.tensor([0.0, 0.0, 1.0])
    w = torch.tensor([2.0, 0.0, 1.0])
    terms = -torch.nn.functional.logsigmoid(rc - rr)
    assert torch.allclose(bt_loss(rc, rr, weight=w), (2 * terms[0] + terms[2]) / 3)
    assert torch.allclose(bt_loss(rc, rr, weight=torch.full((3,), 5.0)), bt_loss(rc, rr))  # scale-free
    centred = bt_loss(rc, rr, center_rewards=0.1, weight=w)
    assert torch.allclose(centred, (2 * terms[0] + terms[2]) / 3 + 0.1 * (2 * 1.0 + 0.0) / 3)
    with pytest.raises(ValueError, match="weights must have"):
        bt_loss(rc, rr, weight=torch.ones(2))


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf"), "1", True, None])
def test_bad_weights_are_refused_naming_the_line(bad):
    rows = [{"_line": 1}, {"_line": 2, "weight": bad}]
    with pytest.raises(DataError, match=r"pairs.jsonl line 2: field 'weight' must be a finite number >= 0"):
        pair_weights(rows, "pairs.jsonl")
    with pytest.raises(DataError, match="every pair has weight 0"):
        pair_weights([{"weight": 0}, {"weight": 0.0}])
    assert pair_weights([{"weight": 0}, {}, {"weight": 2.5}]) == [0.0, 1.0, 2.5]


def test_train_cli_refuses_a_bad_weight_with_one_error_line(tiny, tmp_path):
    rows = [dict(r) for r in tiny[:6]]
    for r in rows:
        r.pop("_line")
    rows[3]["weight"] = -1
    src = tmp_path / "w.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = run_cli("train", str(src), "-o", str(tmp_path / "m"), "--epochs", "1")
    assert proc.returncode == 2 and not (tmp_path / "m").exists()
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: {src} line 4: field 'weight' must be a finite number >= 0, got -1"]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("name,params", [("mlp", []), ("linear", ["length=off"]),
                                         ("mlp", ["ensemble=2", "ensemble_resample=true"])])
def test_weights_reach_the_loss(tiny, name, params):
    def trained(rows):
        return margins(steps.score(tiny, steps.train(rows, head=name, params=params, seed=2, epochs=3)))

    base = trained(tiny)
    without = trained(tiny[1:])
    assert trained([{**tiny[0], "weight": 0}, *tiny[1:]]) == without  # exactly: the pair is left out
    assert without != base
    assert trained([{**tiny[0], "weight": 2}, *tiny[1:]]) != base
    assert trained([{**tiny[0], "weight": 1.0}, *tiny[1:]]) == base  # an explicit 1 is the default


def test_length_free_scores_differ_from_full_scores_by_the_length_term(tiny, tmp_path):
    head = steps.train(tiny, head="mlp", seed=1, epochs=3)  # length=term is the default
    assert head.config.length == "term"
    full = steps.score(tiny, head)
    free = steps.score(tiny, head, length_free=True)
    assert any(abs(r["length_chosen"] - r["length_rejected"]) > 1e-4 for r in full)  # the term learned something
    for f, q in zip(full, free, strict=True):
        for side in ("chosen", "rejected"):
            assert abs(f[f"score_{side}"] - q[f"score_{side}"] - f[f"length_{side}"]) < 1e-9
            assert q[f"score_{side}"] == f[f"quality_{side}"] == q[f"quality_{side}"]
            assert q[f"length_{side}"] == f[f"length_{side}"]
        assert abs(q["pred_margin"] - (q["quality_chosen"] - q["quality_rejected"])) < 2e-6
    # the CLI: the same numbers, and eval reports accuracy with and without the length term
    head.save(tmp_path / "m")
    src = tmp_path / "p.jsonl"
    src.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "_line"}) + "\n" for r in tiny))
    run_cli("score", str(src), "-m", str(tmp_path / "m"), "--length-free", "-o", str(tmp_path / "lf.jsonl"),
            check=True)
    cli = read_jsonl(tmp_path / "lf.jsonl")
    assert [r["score_chosen"] for r in cli] == [r["score_chosen"] for r in free]
    m = evaluate(full, n_boot=100)
    assert m["length_term"]["with_length"] == m["accuracy"]
    assert m["length_term"]["without_length"] == evaluate(free, n_boot=100)["accuracy"]
    proc = run_cli("eval", str(src), "-m", str(tmp_path / "m"), "--json", check=True)
    shown = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert shown["length_term"] == pytest.approx(m["length_term"])


def test_length_free_needs_a_length_term(tiny, tmp_path):
    head = steps.train(tiny[:8], head="linear", params=["length=off"], seed=1, epochs=1)
    assert "quality_chosen" not in steps.score(tiny[:2], head)[0]
    with pytest.raises(ConfigError, match="no length term"):
        steps.score(tiny[:2], head, length_free=True)
    head.save(tmp_path / "m")
    src = tmp_path / "p.jsonl"
    src.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "_line"}) + "\n" for r in tiny[:3]))
    proc = run_cli("score", str(src), "-m", str(tmp_path / "m"), "--length-free", "-o", str(tmp_path / "o.jsonl"))
    assert proc.returncode == 2 and not (tmp_path / "o.jsonl").exists()
    assert [x for x in proc.stderr.splitlines() if x.startswith("Error:")] == [
        "Error: length-free scores: this linear head has no length term to leave out"]


def test_length_term_learns_the_sign_of_a_length_preference(tiny):
    """Pairs where the shorter response is chosen give a length term that rewards shortness."""
    short_wins = [{**p, "chosen": p["rejected"], "rejected": p["chosen"]} if len(p["chosen"]) > len(p["rejected"])
                  else p for p in tiny]
    head = steps.train(short_wins, head="linear", seed=0, epochs=20)
    scored = steps.score(short_wins, head)
    assert all(r["length_chosen"] > r["length_rejected"] for r in scored if len(r["chosen"]) < len(r["rejected"]))


def test_length_init_fit_starts_at_the_length_only_optimum(tiny):
    """length_init=fit: with 0 epochs the head is the length term alone, fitted to the BT loss by itself."""
    import numpy as np

    short_wins = [{**p, "chosen": p["rejected"], "rejected": p["chosen"]} if len(p["chosen"]) > len(p["rejected"])
                  else p for p in tiny]
    zero = steps.train(short_wins, head="mlp", params=["length_init=zero"], seed=0, epochs=0)
    fit = steps.train(short_wins, head="mlp", params=["length_init=fit"], seed=0, epochs=0)
    assert not zero.model_.members[0].length.coef.detach().any()
    a, b = fit.model_.members[0].length.coef.detach().tolist()
    assert a < 0  # shorter responses win: the fitted term rewards shortness before any joint training
    scored = steps.score(short_wins, fit)
    assert all(r["length_chosen"] > r["length_rejected"] for r in scored if len(r["chosen"]) < len(r["rejected"]))

    # It is the optimum of the loss in (a, b): a small step any way does not lower the loss.
    from marsctl.losses import bt_loss

    term = fit.model_.members[0].length
    lc = torch.tensor([float(len(p["chosen"])) for p in short_wins])
    lr = torch.tensor([float(len(p["rejected"])) for p in short_wins])
    with torch.no_grad():
        best = float(bt_loss(term(lc), term(lr)))
        for da, db in [(1e-2, 0), (-1e-2, 0), (0, 1e-2), (0, -1e-2)]:
            term.coef += torch.tensor([da, db])
            assert float(bt_loss(term(lc), term(lr))) >= best - 1e-9
            term.coef -= torch.tensor([da, db])
    # deterministic, and a trained term carries forward when training continues (not fitted again)
    again = steps.train(short_wins, head="mlp", params=["length_init=fit"], seed=0, epochs=0)
    assert np.allclose(again.model_.members[0].length.coef.detach().numpy(), [a, b], rtol=0, atol=0)
    flipped = [{**p, "chosen": p["rejected"], "rejected": p["chosen"]} for p in short_wins]  # longer wins now
    assert steps.train(flipped, head="mlp", params=["length_init=fit"], seed=0, epochs=0).model_.members[0] \
        .length.coef.detach().tolist()[0] > 0
    kept = steps.train(flipped, init=fit, epochs=0, seed=0)  # continuing: not fitted again on the new pairs
    assert kept.model_.members[0].length.coef.detach().tolist() == [a, b]


def test_length_init_fit_conforms_and_weights_reach_it(tiny):
    cls = registry.load("head", "mlp")
    check_head(cls, cls.Config(length_init="fit", epochs=2), pairs=tiny[:12])
    with pytest.raises(ConfigError, match="'length_init' parameter"):
        cls.Config(length_init="yes")


def test_ensemble_spread_is_zero_for_one_network_and_positive_for_several(tiny, tmp_path):
    single = steps.train(tiny, head="mlp", seed=4, epochs=2)
    one = steps.score(tiny, single)
    assert all(r["pred_margin_std"] == 0.0 for r in one)
    k3 = steps.train(tiny, head="mlp", params=["ensemble=3"], seed=4, epochs=2)
    three = steps.score(tiny, k3)
    assert all(r["pred_margin_std"] > 0 for r in three)
    # member 0 is the single head exactly; the reward is the members' mean
    texts = [p["prompt"] for p in tiny], [p["chosen"] for p in tiny]
    members = k3._member_rewards(*texts)[0]
    assert members[0] == single.score_batch(*texts)
    assert k3.score_batch(*texts) == pytest.approx([sum(col) / 3 for col in zip(*members, strict=True)], abs=1e-12)
    assert k3.manifest_["member_steps"] == [2, 2, 2]
    k3.save(tmp_path / "k3")
    again = load_head(tmp_path / "k3")
    assert steps.score(tiny, again) == three
    assert not (tmp_path / "k3" / "model.safetensors").read_bytes().count(b'"0.weight"')  # m{k}. prefixes


def test_a_directory_without_length_term_or_ensemble_keeps_its_tensor_names(tiny, tmp_path):
    from safetensors.numpy import load_file

    steps.train(tiny[:8], head="mlp", params=["length=off"], seed=1, epochs=1).save(tmp_path / "m")
    assert sorted(load_file(str(tmp_path / "m" / "model.safetensors"))) == ["0.bias", "0.weight", "3.bias",
                                                                            "3.weight"]
    steps.train(tiny[:8], head="mlp", seed=1, epochs=1).save(tmp_path / "t")
    assert {"length.coef", "length.center", "length.scale"} <= set(load_file(str(tmp_path / "t" /
                                                                             "model.safetensors")))


def test_ensemble_and_length_configs_are_validated():
    cls = registry.load("head", "mlp")
    with pytest.raises(ConfigError, match="'ensemble' parameter"):
        cls.Config(ensemble=0)
    with pytest.raises(ConfigError, match="'length' parameter"):
        cls.Config(length="yes")
    with pytest.raises(ConfigError, match="'length_lr' parameter"):
        cls.Config(length_lr=-1)


@pytest.mark.parametrize("name,config", [("mlp", {"ensemble": 2, "ensemble_resample": True}),
                                         ("linear", {"length": "off", "ensemble": 3})])
def test_ensembles_conform(tiny, name, config):
    cls = registry.load("head", name)
    check_head(cls, cls.Config(**config), pairs=tiny[:12])
