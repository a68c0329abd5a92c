"""Loading model directories (marsctl.modeldir) directly: a real linear head saved once in tmp_path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES

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
