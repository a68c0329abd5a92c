"""Loading model directories (marsctl.modeldir) directly: a real linear head saved once in tmp_path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES, read_jsonl, run_cli

from marsctl.errors import ConfigError
from marsctl.modeldir import load_head, read_model_config
from marsctl.records import read_pairs


@pytest.fixture(scope="module")
def tiny() -> list[dict]:
    return read_pairs(FIXTURES / "tiny.jsonl")


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """A linear head trained 2 epochs (seed 4, lr 0.01) and saved; its scored records."""
    from marsctl import steps

    head = steps.train(tiny, head="linear", params=["lr=0.01", "epochs=2"], seed=4)
    path = tmp_path_factory.mktemp("modeldir") / "m"
    head.save(path)
    return path, head.score(tiny)


@pytest.fixture
def copy(saved, tmp_path: Path) -> Path:
    dst = tmp_path / "m"
    shutil.copytree(saved[0], dst)
    return dst


def test_load_head_restores_the_head(saved, tiny):
    path, scored = saved
    head = load_head(path, expect="linear")
    assert head.name == "linear" and head.seed == 4
    assert (head.config.lr, head.config.epochs) == (0.01, 2)
    assert [h["epoch"] for h in head.history_] == [1, 2] and head.manifest_["n_pairs"] == len(tiny)
    assert head.score(tiny) == scored
    assert read_model_config(path)["sha256"].keys() == {"model.safetensors"}


def test_expect_names_the_kind_it_found(saved):
    with pytest.raises(ConfigError, match="holds a 'linear' head, not 'mlp'") as e:
        load_head(saved[0], expect="mlp")
    assert e.value.hint == "use --head linear, or train a new model without --init"


@pytest.mark.parametrize("overrides", [["lr=0.5"], {"lr": 0.5}], ids=["list", "dict"])
def test_overrides_change_only_what_they_name(saved, overrides, tiny):
    head = load_head(saved[0], overrides=overrides)
    assert head.config.lr == 0.5
    assert head.config.epochs == 2  # the saved value, not the default (20)
    assert head.score(tiny) == saved[1]  # the weights are the saved ones


def test_an_override_that_changes_the_weight_shapes_is_refused(saved):
    with pytest.raises(ConfigError, match="the weights do not fit the linear head's config"):
        load_head(saved[0], overrides=["features=full"])


def test_a_bad_override_is_refused(saved):
    with pytest.raises(ConfigError, match="'lr' parameter of the head must be a float"):
        load_head(saved[0], overrides=["lr=-1"])


def test_checksum_catches_a_flipped_bit(copy):
    f = copy / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0x01  # inside the last tensor: the file still parses
    f.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"model\.safetensors: the file is damaged"):
        load_head(copy)


def test_checksum_catches_a_missing_file(copy):
    (copy / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match=r"model\.safetensors is missing"):
        load_head(copy)


def test_an_edited_config_names_the_file(copy):
    cfg = json.loads((copy / "config.json").read_text())
    cfg["config"]["features"] = "everything"
    (copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"config\.json, field 'config': The 'features' parameter"):
        load_head(copy)


def test_not_a_model_dir(tmp_path):
    with pytest.raises(ConfigError, match="no such directory"):
        read_model_config(tmp_path / "nope")
    with pytest.raises(ConfigError, match="not a marsctl model directory"):
        read_model_config(tmp_path)


# ------------------------------------------------------------------------------ the encoder, by identity
def _encoder_copy(where: Path, edit: bool = False) -> Path:
    """A copy of the bundled encoder in folder ``where/model`` (the bundled folder's name: same cache keys)."""
    from marsctl.embed import default_encoder_path

    dst = where / "model"
    shutil.copytree(default_encoder_path(), dst)
    if edit:  # another encoder as far as its files go (the tokenizer reads this file)
        f = dst / "tokenizer_config.json"
        f.write_text(json.dumps({**json.loads(f.read_text()), "model_max_length": 511}))
    return dst


def _train_with(encoder: Path, pairs: list[dict], out: Path) -> list[dict]:
    from marsctl import steps

    head = steps.train(pairs, head="linear", params=["epochs=1", f"encoder={encoder}", "encoder_precision=fp32"],
                       seed=2)  # fp32: vectors do not depend on the cache's state (bf16's do, within docs/guarantees.md's bound)
    head.save(out)
    return head.score(pairs)


def test_a_model_trained_with_a_moved_encoder_finds_it_by_identity(tiny, tmp_path):
    """Trained with the encoder in a folder that is gone when scoring (another machine): the bundled one matches."""
    from marsctl.embed import encoder_fingerprint

    enc = _encoder_copy(tmp_path / "elsewhere")
    before = _train_with(enc, tiny[:4], tmp_path / "m")
    record = read_model_config(tmp_path / "m")["encoder"]
    assert record["path"] == str(enc) and record["fingerprint"] == encoder_fingerprint(enc)
    shutil.rmtree(tmp_path / "elsewhere")
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in
                                                  [{k: p[k] for k in ("id", "prompt", "chosen", "rejected")}
                                                   for p in tiny[:4]]))
    proc = run_cli("score", str(tmp_path / "pairs.jsonl"), "-m", str(tmp_path / "m"), "-o", str(tmp_path / "s.jsonl"),
)
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stderr.split())  # rich wraps stderr lines at 160 columns
    assert f"its encoder {enc} is not there; using the same encoder (the bundled encoder)" in said
    got = read_jsonl(tmp_path / "s.jsonl")
    assert [r["score_chosen"] for r in got] == [r["score_chosen"] for r in before]
    assert load_head(tmp_path / "m").config.encoder == ""  # resolved to the bundled encoder


def test_a_model_whose_encoder_is_nowhere_exits_2_naming_what_it_expected(tiny, tmp_path):
    enc = _encoder_copy(tmp_path / "elsewhere", edit=True)
    _train_with(enc, tiny[:4], tmp_path / "m")
    want = read_model_config(tmp_path / "m")["encoder"]["fingerprint"]
    shutil.rmtree(tmp_path / "elsewhere")
    out = tmp_path / "s.jsonl"
    proc = run_cli("score", str(FIXTURES / "tiny.jsonl"), "-m", str(tmp_path / "m"), "-o", str(out))
    assert proc.returncode == 2 and proc.stderr.count("Error:") == 1 and "Traceback" not in proc.stderr
    assert f"was trained with encoder 'model' (fingerprint {want[:16]}), which is not on this machine" in proc.stderr
    assert f"{enc} (the encoder given: missing)" in proc.stderr and "(the bundled encoder: fingerprint " in proc.stderr
    assert "Hint: copy that encoder's folder" in proc.stderr and "MARSCTL_ENCODER_PATH" in proc.stderr
    assert not out.exists()
    # the fix the hint gives: the encoder's folder, under a folder named in MARSCTL_ENCODER_PATH
    _encoder_copy(tmp_path / "encoders", edit=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MARSCTL_ENCODER_PATH", str(tmp_path / "encoders"))
        assert load_head(tmp_path / "m").config.encoder == str(tmp_path / "encoders" / "model")


def test_a_model_dir_without_a_fingerprint_still_loads(copy, saved, tiny):
    """Written before fingerprints were recorded: matched on the short fingerprint in its encoder id."""
    cfg = json.loads((copy / "config.json").read_text())
    from marsctl.embed import legacy_fingerprint

    for key in ("name", "fingerprint"):
        del cfg["encoder"][key]
    enc = cfg["encoder"]
    enc["id"] = f"{Path(enc['path']).name}:{legacy_fingerprint(enc['path'], enc['max_seq_length'])}"  # as written then
    (copy / "config.json").write_text(json.dumps(cfg))
    assert load_head(copy).score(tiny) == saved[1]
    cfg["encoder"]["id"] = "model:0123456789abcdef"
    (copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"fingerprint 0123456789abcdef\), which is not on this machine"):
        load_head(copy)


def test_a_reward_by_hand_as_docs_model_dir_says(tiny, tmp_path):
    """docs/model-dir.md's recipe (features in order, the mlp's layers, erf GELU) gives marsctl's rewards."""
    from math import erf

    import numpy as np
    from safetensors.numpy import load_file

    from marsctl import steps

    head = steps.train(tiny, head="mlp", params=["epochs=1", "features=full", "length=off"], seed=3)
    head.save(tmp_path / "m")
    cfg, w = read_model_config(tmp_path / "m"), load_file(str(tmp_path / "m" / "model.safetensors"))
    prompts, responses = [p["prompt"] for p in tiny[:5]], [p["chosen"] for p in tiny[:5]]
    eps, ers = head.encoder.encode(prompts, side="prompt"), head.encoder.encode(responses, side="response")
    by_hand = []
    for ep, er in zip(eps, ers, strict=True):
        blocks = {"p": ep, "r": er, "p*r": ep * er, "|p-r|": np.abs(ep - er)}
        x = np.concatenate([blocks[b] for b in cfg["features"]]).astype(np.float64)
        a = x @ w["0.weight"].T.astype(np.float64) + w["0.bias"]
        h = 0.5 * a * (1 + np.vectorize(erf)(a / np.sqrt(2)))
        by_hand.append(float((h @ w["3.weight"].T.astype(np.float64) + w["3.bias"])[0]))
    if "length.coef" in w:  # the length term (length=term, the default)
        coef, center, scale = (w[k].astype(np.float64) for k in ("length.coef", "length.center", "length.scale"))
        z = np.clip((np.log1p([len(r) for r in responses]) - center) / (scale if scale > 0 else 1.0), -4, 4)
        by_hand = list(np.array(by_hand) + coef[0] * z + coef[1] * z * z)
        assert coef.any()  # trained: the term is in the rewards
    assert cfg["features"] == ["p", "r", "p*r", "|p-r|"] and cfg["input_dim"] == 4 * 384
    assert np.abs(np.array(by_hand) - np.array(head.score_batch(prompts, responses))).max() < 1e-6
