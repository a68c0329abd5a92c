"""Damaged model directories and caches: exit 2 with one Error line naming the file, never a traceback.

A model is trained once for the module with the real CLI; every case damages a copy of it in tmp_path.
Pickled model directories are built from tiny random BERT/Llama models written with torch.save.
"""

from __future__ import annotations

import json
import random
import re
import shlex
import shutil
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, read_jsonl, run_cli

TINY = FIXTURES / "tiny.jsonl"
TEST = FIXTURES / "tiny_test.jsonl"


def one_error(proc: subprocess.CompletedProcess, *needles: str, code: int = 2) -> str:
    """The single Error line of a failed run (exit ``code``, nothing on stdout, no traceback)."""
    assert proc.returncode == code, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def hint(proc: subprocess.CompletedProcess) -> str:
    return "\n".join(line for line in proc.stderr.splitlines() if line.startswith("Hint:"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """``marsctl train fixtures/tiny.jsonl -o M --epochs 1``, once for the module."""
    root = tmp_path_factory.mktemp("trained")
    env = {"MARSCTL_CACHE_DIR": str(cache_dir), "HOME": str(root / "home")}
    run_cli("train", str(TINY), "-o", str(root / "M"), "--epochs", "1", env=env, check=True)
    return root / "M"


@pytest.fixture
def model_copy(model_dir: Path, tmp_path: Path) -> Path:
    """A copy without the recorded sha256s (as saved before they were), so the checks below the checksum
    (safetensors parsing, finite weights, shapes) are what these tests reach."""
    dst = tmp_path / "M"
    shutil.copytree(model_dir, dst)
    cfg = json.loads((dst / "config.json").read_text())
    assert set(cfg.pop("sha256")) == {"model.safetensors"}
    (dst / "config.json").write_text(json.dumps(cfg, indent=2))
    return dst


@pytest.mark.parametrize("where", ["header", "data"])
def test_a_flipped_bit_that_still_parses_is_caught_by_the_checksum(model_dir, tmp_path, where):
    """One bit of a float32 weight flipped: the file parses and the weight stays finite, so only the
    sha256 recorded at save time can tell."""
    dst = tmp_path / "M"
    shutil.copytree(model_dir, dst)
    f = dst / "model.safetensors"
    data = bytearray(f.read_bytes())
    at = len(data) - 4 if where == "data" else 8 + _header_len(bytes(data)) - 1  # trailing header padding
    data[at] ^= 0x01
    f.write_bytes(bytes(data))
    proc = run_cli("score", str(TEST), "-m", str(dst))
    one_error(proc, str(f))
    assert "sha256 differs" in proc.stderr and "train the model again" in hint(proc)


# ------------------------------------------------------------------------------- model.safetensors
def _header_len(data: bytes) -> int:
    return struct.unpack("<Q", data[:8])[0]


def _fill_data(data: bytes, pattern: bytes, start: float = 0.0, length: int | None = None) -> bytes:
    """Overwrite (part of) the tensor data after the header with a float32 bit pattern (NaN or inf)."""
    begin = 8 + _header_len(data)
    at = begin + int((len(data) - begin) * start) // 4 * 4
    n = (len(data) - at) // 4 if length is None else length
    return data[:at] + pattern * n + data[at + 4 * n:]


DAMAGE = {
    "truncated": lambda d: d[: len(d) // 2],
    "empty": lambda d: b"",
    "random-bytes": lambda d: random.Random(0).randbytes(len(d)),
    "all-nan": lambda d: _fill_data(d, b"\xff\xff\xff\x7f"),
    "inf-window": lambda d: _fill_data(d, b"\x00\x00\x80\x7f", start=0.5, length=100),
    "bad-header": lambda d: d[:8] + b"{" + b"\x00" * (_header_len(d) - 1) + d[8 + _header_len(d):],
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_safetensors_is_refused_by_score(model_copy, damage):
    f = model_copy / "model.safetensors"
    f.write_bytes(DAMAGE[damage](f.read_bytes()))
    proc = run_cli("score", str(TEST), "-m", str(model_copy))
    one_error(proc, str(f))
    assert "damaged" in hint(proc)


@pytest.mark.parametrize("damage", ["truncated", "all-nan"])
def test_damaged_safetensors_is_refused_by_eval(model_copy, damage):
    """Before: all-nan scored every pair NaN and reported accuracy 0.0 with exit 0."""
    f = model_copy / "model.safetensors"
    f.write_bytes(DAMAGE[damage](f.read_bytes()))
    one_error(run_cli("eval", str(TEST), "-m", str(model_copy)), str(f))


@pytest.mark.parametrize(("change", "needle"), [
    (lambda state: {k: v.double() for k, v in state.items()}, "torch.float64"),
    (lambda state: {k: (v[:-1] if k.endswith("0.weight") else v) for k, v in state.items()}, "it needs torch.float32"),
    (lambda state: {k: v for k, v in state.items() if not k.endswith("bias")}, "missing tensor"),
], ids=["dtype", "shape", "missing"])
def test_safetensors_that_do_not_fit_the_config_are_refused(model_copy, change, needle):
    from safetensors.torch import load_file, save_file

    f = model_copy / "model.safetensors"
    save_file({k: v.contiguous() for k, v in change(load_file(str(f))).items()}, str(f))
    from marsctl.errors import ConfigError
    from marsctl.modeldir import load_head

    with pytest.raises(ConfigError, match=needle) as e:
        load_head(model_copy)
    assert str(f) in str(e.value)


def test_intact_copy_still_scores(model_copy):
    """The checks pass on a healthy model: the same scores as before the copy."""
    from marsctl.modeldir import load_head

    rows = read_jsonl(TEST)[:3]
    scores = [r["pred_margin"] for r in load_head(model_copy).score(rows)]
    assert all(isinstance(s, float) and s == s for s in scores)


# ------------------------------------------------------------------------------------- config.json
def _edit_config(model: Path, edit) -> Path:
    f = model / "config.json"
    cfg = json.loads(f.read_text())
    edit(cfg)
    f.write_text(json.dumps(cfg))
    return f


CONFIG_CASES = {
    "hidden-str": (lambda c: c["config"].update(hidden="big"), "'hidden'"),
    "config-list": (lambda c: c.update(config=[]), "field 'config' must be an object"),
    "head-int": (lambda c: c.update(head=3), "field 'head' must be a string"),
    "training-str": (lambda c: c.update(training="x"), "field 'training' must be an object"),
    "format-version-str": (lambda c: c.update(format_version="1"), "field 'format_version' must be an integer"),
    "format-version-bool": (lambda c: c.update(format_version=True), "field 'format_version' must be an integer"),
    "encoder-int": (lambda c: c.update(encoder=5), "field 'encoder' must be an object"),
    "history-str": (lambda c: c.update(history="x"), "field 'history' must be an array"),
    "seed-str": (lambda c: c["training"].update(seed="0"), "'training.seed'"),
    "lr-str": (lambda c: c["config"].update(lr="0.1"), "The 'lr' parameter of the head 'mlp' must be a float"),
    "hidden-float": (lambda c: c["config"].update(hidden=2.5), "must be an int"),
    "hidden-bool": (lambda c: c["config"].update(hidden=True), "must be an int"),
    "margin-field-int": (lambda c: c["config"].update(margin_field=1), "must be a bool"),
    "features-int": (lambda c: c["config"].update(features=3), "must be a str"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_config_json_with_wrong_types_names_the_file_and_field(model_copy, case):
    from marsctl.errors import ConfigError
    from marsctl.modeldir import load_head

    edit, needle = CONFIG_CASES[case]
    f = _edit_config(model_copy, edit)
    with pytest.raises(ConfigError, match="^" + re.escape(str(f))) as e:
        load_head(model_copy)
    assert needle in str(e.value)


def test_an_int_for_a_float_field_is_fine(model_copy):
    from marsctl.modeldir import load_head

    _edit_config(model_copy, lambda c: c["config"].update(lr=1, dropout=0))
    head = load_head(model_copy)
    assert head.config.lr == 1.0 and isinstance(head.config.lr, float)


@pytest.mark.parametrize("case", ["hidden-str", "head-int", "training-str"])
def test_config_json_with_wrong_types_through_the_cli(model_copy, case):
    """Before: head-int and training-str ended in a TypeError/AttributeError traceback (exit 1)."""
    f = _edit_config(model_copy, CONFIG_CASES[case][0])
    one_error(run_cli("score", str(TEST), "-m", str(model_copy)), str(f))


# ------------------------------------------------------------------------------------------ limits
def test_huge_hidden_in_config_json_is_refused_before_allocating(model_copy):
    """Before: torch tried to allocate 614 GB and died with a RuntimeError traceback."""
    f = _edit_config(model_copy, lambda c: c["config"].update(hidden=200_000_000))
    err = one_error(run_cli("score", str(TEST), "-m", str(model_copy)), str(f))
    assert "in the range [1, 65536]. Got 200000000 instead." in err


def test_huge_hidden_flag_is_refused_at_train_time(tmp_path):
    proc = run_cli("train", str(TINY), "-o", str(tmp_path / "M"), "-p", "hidden=200000000")
    err = one_error(proc, "The 'hidden' parameter of the head must be an int in the range [1, 65536]")
    assert "200000000" in err and not (tmp_path / "M").exists()


@pytest.mark.parametrize(("cls", "field", "value"), [
    ("MLPConfig", "hidden", 65537), ("MLPConfig", "epochs", 10**9), ("LinearConfig", "batch_size", 10**9)])
def test_head_configs_have_upper_bounds(cls, field, value):
    from marsctl.errors import ConfigError
    from marsctl_plugins.heads import embedding

    with pytest.raises(ConfigError, match=f"The '{field}' parameter of the head must be an int in the range"):
        getattr(embedding, cls)(**{field: value})


def test_transformer_config_has_upper_bounds():
    pytest.importorskip("transformers")
    from marsctl.errors import ConfigError
    from marsctl_plugins.heads.transformer.config import TransformerConfig

    for field in ("epochs", "batch_size", "grad_accum", "eval_batch_size"):
        with pytest.raises(ConfigError, match=f"'{field}' parameter of the transformer head must be an int in"):
            TransformerConfig(**{field: 10**9})


# -------------------------------------------------------------------------------- pickled weights
TINY_BERT = {"vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 64, "max_position_embeddings": 128}


def _pickle_weights(model, path: Path) -> None:
    """save_pretrained, then replace model.safetensors by a pickled pytorch_model.bin."""
    import torch

    model.save_pretrained(path)
    torch.save(model.state_dict(), path / "pytorch_model.bin")
    (path / "model.safetensors").unlink()


@pytest.fixture(scope="module")
def pickled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Directories holding only pytorch_model.bin: a sentence-transformers encoder, a transformer-head
    model dir, and a causal LM for the rewrite augmenter."""
    pytest.importorskip("transformers")
    import torch
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
        BertModel,
        LlamaConfig,
        LlamaForCausalLM,
    )

    from marsctl.embed import default_encoder_path

    src = Path(default_encoder_path())
    root = tmp_path_factory.mktemp("pickled")
    torch.manual_seed(0)
    enc = root / "encoder"
    shutil.copytree(src, enc, ignore=lambda d, names: [n for n in names if Path(d) == src and n in
                                                       ("model.safetensors", "config.json")])
    _pickle_weights(BertModel(BertConfig(**TINY_BERT)), enc)
    pooling = json.loads((enc / "1_Pooling" / "config.json").read_text())
    (enc / "1_Pooling" / "config.json").write_text(json.dumps({**pooling, "word_embedding_dimension": 32}))

    tok = AutoTokenizer.from_pretrained(src)
    head = root / "transformer-head"
    _pickle_weights(BertForSequenceClassification(BertConfig(**TINY_BERT, num_labels=1)), head)
    tok.save_pretrained(head)
    (head / "marsctl.json").write_text(json.dumps({"format_version": 1, "head": "transformer",
                                                   "config": {"max_length": 32}, "training": {"seed": 0}}))
    lm = root / "llama"
    _pickle_weights(LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                                                 num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                                 pad_token_id=tok.pad_token_id)), lm)
    tok.save_pretrained(lm)
    return {"encoder": enc, "head": head, "llama": lm}


def test_pickled_encoder_is_refused_before_loading(pickled, tmp_path):
    """Before: train -p encoder=DIR unpickled pytorch_model.bin and wrote the model (exit 0)."""
    enc = pickled["encoder"]
    proc = run_cli("train", str(TINY), "-o", str(tmp_path / "M"), "--epochs", "1", "-p", f"encoder={enc}")
    one_error(proc, str(enc / "pytorch_model.bin"), "only safetensors")
    assert "from sentence_transformers import SentenceTransformer as S" in hint(proc)
    assert f"S('{enc}').save('{enc}')" in hint(proc)
    assert not (tmp_path / "M").exists()


def test_pickled_transformer_head_dir_is_refused(pickled):
    """Before: marsctl score -m DIR loaded pytorch_model.bin and scored with exit 0."""
    d = pickled["head"]
    proc = run_cli("score", str(TEST), "-m", str(d))
    one_error(proc, str(d / "pytorch_model.bin"), "only safetensors")
    assert "save_pretrained" in hint(proc)


def test_pickled_transformer_backbone_is_refused(pickled, tmp_path):
    d = pickled["head"]
    proc = run_cli("train", str(TINY), "-o", str(tmp_path / "M"), "--head", "transformer",
                   "-p", f"model_path={d}", "-p", "max_length=32")
    one_error(proc, str(d / "pytorch_model.bin"))
    assert not (tmp_path / "M").exists()


def test_pickled_rewrite_model_is_refused(pickled):
    rows = read_jsonl(TINY)[:1]
    selected = "".join(json.dumps({**r, "pred_margin": 0.0, "budget": 1}) + "\n" for r in rows)
    proc = run_cli("augment", "-", "--backend", "rewrite", "-p", f"model={pickled['llama']}", input=selected)
    one_error(proc, str(pickled["llama"] / "pytorch_model.bin"))
    assert "AutoModelForCausalLM" in hint(proc) or "LlamaForCausalLM" in hint(proc)


def _run_hint(error: Exception | subprocess.CompletedProcess) -> None:
    """Run the conversion command a refusal's hint offers (with this interpreter)."""
    text = hint(error) if isinstance(error, subprocess.CompletedProcess) else error.hint
    command = text.split("convert it once with: ", 1)[1]
    assert command.startswith("python -c ")
    subprocess.run(shlex.quote(sys.executable) + command[len("python"):], shell=True, check=True,
                   capture_output=True, timeout=300)


def test_the_hint_converts_a_pickled_head_dir_that_then_scores(pickled, tmp_path):
    """The conversion command works, and a dir with safetensors beside the .bin is accepted."""
    d = tmp_path / "head"
    shutil.copytree(pickled["head"], d)
    _run_hint(run_cli("score", str(TEST), "-m", str(d)))
    assert (d / "model.safetensors").exists() and (d / "pytorch_model.bin").exists()
    ok = run_cli("score", str(TEST), "-m", str(d))
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert len(read_jsonl_text(ok.stdout)) == len(read_jsonl(TEST))


def test_the_hint_converts_a_pickled_encoder_that_then_embeds(pickled, tmp_path):
    from marsctl.embed import Encoder
    from marsctl.errors import ConfigError

    d = tmp_path / "encoder"
    shutil.copytree(pickled["encoder"], d)
    with pytest.raises(ConfigError, match=r"pytorch_model\.bin holds pickled weights") as e:
        Encoder(str(d))
    _run_hint(e.value)
    vecs = Encoder(str(d)).encode(["a text", "another"])
    assert vecs.shape == (2, 32)


def read_jsonl_text(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------ caches
def _cache_with_rows(model_dir: Path, dst: Path) -> Path:
    """A real embeddings.sqlite in folder ``dst``, filled by a marsctl process of its own.

    Never a connection to the session cache from this process: closing a second connection to a
    SQLite file drops the locks of the first (marsctl.store), which could corrupt it.
    """
    run_cli("score", str(TEST), "-m", str(model_dir), env={"MARSCTL_CACHE_DIR": str(dst)}, check=True)
    assert not (dst / "embeddings.sqlite-wal").exists() or (dst / "embeddings.sqlite-wal").stat().st_size == 0
    return dst / "embeddings.sqlite"


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_embedding_cache_names_the_file_and_how_to_rebuild(model_dir, tmp_path, damage):
    """Before: a sqlite3.DatabaseError traceback (exit 1)."""
    f = _cache_with_rows(model_dir, tmp_path / "cache")
    data = f.read_bytes()
    assert len(data) > 8192
    f.write_bytes(random.Random(1).randbytes(len(data)) if damage == "garbage" else data[: len(data) // 2])
    before = f.read_bytes()
    proc = run_cli("score", str(TEST), "-m", str(model_dir), env={"MARSCTL_CACHE_DIR": str(f.parent)})
    one_error(proc, str(f), "damaged")
    assert f"rm -f {f}*" in hint(proc)
    assert f.read_bytes() == before  # never deleted or rewritten by marsctl


def test_damaged_generation_cache_is_a_data_error(tmp_path):
    from marsctl.errors import DataError
    from marsctl_plugins.augmenters.gencache import GenerationCache

    f = tmp_path / "generations.sqlite"
    f.write_bytes(b"this is not a database, just text that someone wrote here\n" * 200)
    with pytest.raises(DataError, match="is damaged") as e:
        GenerationCache(f)
    assert str(f) in str(e.value) and "rm -f" in e.value.hint
    assert f.exists()


def test_generation_cache_entry_of_the_wrong_type_is_a_miss(tmp_path, capsys):
    from marsctl_plugins.augmenters.gencache import GenerationCache

    f = tmp_path / "generations.sqlite"
    cache = GenerationCache(f)
    cache.put_many([(b"k1", ["fine"]), (b"k2", ["also"])])
    db = sqlite3.connect(f)
    db.execute("UPDATE gen SET outputs = ? WHERE key = ?", ('{"not": "a list"}', b"k2"))
    db.commit()
    db.close()
    assert GenerationCache(f).get_many([b"k1", b"k2"]) == {b"k1": ["fine"]}
    assert "1 stored entries are damaged" in capsys.readouterr().err


def test_cached_vector_of_the_wrong_length_is_recomputed(tmp_path, monkeypatch, capsys):
    """Before: np.stack failed on vectors of different lengths (ValueError traceback)."""
    import numpy as np

    from marsctl.embed import Encoder

    monkeypatch.setenv("MARSCTL_CACHE_DIR", str(tmp_path / "cache"))
    enc = Encoder()
    texts = ["a cached text", "another cached text"]
    good = enc.encode(texts)
    enc.cache.put_many([(enc.key(texts[0], "response"), np.ones(7, dtype=np.float32))])
    again = Encoder().encode(texts)  # a fresh encoder: reads the damaged entry from the cache file
    assert again.shape == (2, enc.dim) and np.allclose(again, good, atol=1e-5)
    assert "1 stored entries are damaged or do not fit" in capsys.readouterr().err
    assert Encoder().cache.get_many([enc.key(texts[0], "response")])[enc.key(texts[0], "response")].shape == (
        enc.dim,)
