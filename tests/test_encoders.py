"""Encoder backends (marsctl.embed): onnx agrees with torch, each is independent of batch company,
the built artefacts are reused, and a damaged one is rebuilt, never used."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, read_jsonl, run_cli

from marsctl.embed import BATCH_TOLERANCE, FORMAT, EmbeddingCache, Encoder
from marsctl.errors import ConfigError


@pytest.fixture(scope="module")
def texts() -> list[str]:
    rows = read_jsonl(FIXTURES / "hh_test.jsonl")[:30]
    return [r["chosen"] for r in rows] + [r["rejected"] for r in rows]


def fresh(tmp_path: Path, name: str, backend: str, batch_size: int = 64) -> Encoder:
    return Encoder(batch_size=batch_size, backend=backend, cache=EmbeddingCache(tmp_path / f"{name}.sqlite"))


def built(cache_dir: Path, backend: str) -> Encoder:
    """An encoder whose backend is built in the session cache (once per session: an export, a distillation)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MARSCTL_CACHE_DIR", str(cache_dir))
        enc = Encoder(backend=backend, cache=EmbeddingCache(cache_dir / f"test-{backend}.sqlite"))
        enc.engine()
    return enc


@pytest.fixture(scope="module")
def onnx_enc(cache_dir: Path) -> Encoder:
    pytest.importorskip("onnxruntime", reason="the onnx backend needs marsctl[fast]")
    return built(cache_dir, "onnx")


@pytest.fixture(scope="module")
def static_enc(cache_dir: Path) -> Encoder:
    pytest.importorskip("model2vec", reason="the static backend needs marsctl[fast]")
    return built(cache_dir, "static")


# -- onnx -----------------------------------------------------------------------------------------------------
def test_onnx_agrees_with_torch_on_real_texts(onnx_enc, texts):
    rows = read_jsonl(FIXTURES / "hh_test.jsonl")[:30]
    prompts = [r["prompt"] for r in rows]
    torch_enc = Encoder()
    for side, batch in (("response", texts), ("prompt", prompts)):
        ours, ref = onnx_enc.encode(batch, side=side), torch_enc.encode(batch, side=side)
        cos = (ours * ref).sum(axis=1)
        assert ours.shape == ref.shape and cos.min() >= 0.999, (side, cos.min())
    assert onnx_enc.id != torch_enc.id and onnx_enc.id.startswith(torch_enc.id)  # keys of its own


def test_onnx_vectors_in_other_company_agree_within_the_tolerance(onnx_enc, tmp_path, texts):
    whole = fresh(tmp_path, "whole", "onnx").encode(texts)
    small = fresh(tmp_path, "small", "onnx", batch_size=3).encode(texts)
    staged = fresh(tmp_path, "staged", "onnx")
    staged.encode(texts[::-1][:17])  # the cache filled in another order, with other company (batches of 1 too)
    staged.encode(texts[5:40:2])
    staged.encode(texts[7:8])
    later = staged.encode(texts)
    assert whole.dtype == np.float32 and whole.shape == (len(texts), staged.dim)
    # The same texts and settings: the same bits; other company: within the stated tolerance.
    assert np.array_equal(whole, fresh(tmp_path, "again", "onnx").encode(texts))
    assert np.abs(small - whole).max() <= BATCH_TOLERANCE and np.abs(later - whole).max() <= BATCH_TOLERANCE


def test_onnx_export_is_reused_from_the_cache(onnx_enc, tmp_path, texts, capsys):
    path = onnx_enc.engine().path
    before = path.stat().st_mtime_ns
    again = fresh(tmp_path, "again", "onnx")
    vecs = again.encode(texts[:5])
    assert again.engine().path == path and path.stat().st_mtime_ns == before
    assert again.torch.model is None  # torch was never loaded: nothing was exported
    assert "building" not in capsys.readouterr().err
    assert np.array_equal(vecs, onnx_enc.encode(texts[:5]))


@pytest.mark.parametrize("damage", ["flipped-bytes", "half-written"])
def test_damaged_onnx_export_is_rebuilt_not_used(onnx_enc, tmp_path, monkeypatch, capsys, texts, damage):
    """A file whose sha256 does not match its sidecar (or that has none: an interrupted write) is rebuilt."""
    src = onnx_enc.engine().path
    cache = tmp_path / "cache"
    (cache / "encoders").mkdir(parents=True)
    dst = cache / "encoders" / src.name
    data = bytearray(src.read_bytes())
    if damage == "flipped-bytes":
        (cache / "encoders" / (src.name + ".json")).write_bytes((src.parent / (src.name + ".json")).read_bytes())
        data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    else:
        data = data[: len(data) // 3]
    dst.write_bytes(bytes(data))
    monkeypatch.setenv("MARSCTL_CACHE_DIR", str(cache))
    vecs = fresh(tmp_path, "rebuilt", "onnx").encode(texts[:6])
    err = capsys.readouterr().err
    assert "is damaged or incomplete" in err and str(dst) in err
    assert dst.read_bytes() != bytes(data) and dst.stat().st_size == src.stat().st_size
    assert np.allclose(vecs, onnx_enc.encode(texts[:6]), atol=1e-6)
    assert not list((cache / "encoders").glob("*.tmp"))


@pytest.mark.parametrize(("backend", "module", "package"), [("onnx", "onnxruntime", "onnxruntime"),
                                                         ("static", "model2vec.distill", "model2vec")])
def test_a_missing_package_is_a_config_error_with_the_pip_command(tmp_path, monkeypatch, backend, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # what an environment without it raises: ImportError
    monkeypatch.setenv("MARSCTL_CACHE_DIR", str(tmp_path / "empty"))  # nothing built yet
    with pytest.raises(ConfigError, match=f"needs the {package} package") as e:
        fresh(tmp_path, "missing", backend).encode(["a text"])
    assert "pip install" in e.value.hint and "marsctl[fast]" in e.value.hint


def test_an_unknown_backend_is_refused_before_anything_loads(tmp_path):
    proc = run_cli("train", str(FIXTURES / "tiny.jsonl"), "-o", str(tmp_path / "m"), "-p", "encoder_backend=onx")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "'encoder_backend'" in proc.stderr and "Did you mean 'onnx'?" in proc.stderr


# -- static ---------------------------------------------------------------------------------------------------
def test_static_vectors_are_independent_of_company_trivially(static_enc, tmp_path, texts):
    """A static vector is the mean of its own text's token rows: no other text enters it, so the
    canonical-batching guarantee holds trivially (checked bit for bit all the same)."""
    whole = fresh(tmp_path, "s-whole", "static").encode(texts)
    one_by_one = np.stack([fresh(tmp_path, f"s-{i}", "static").encode([t])[0] for i, t in enumerate(texts[:8])])
    small = fresh(tmp_path, "s-small", "static", batch_size=3).encode(texts)
    assert whole.shape == (len(texts), 256) and static_enc.dim == 256
    assert np.allclose(np.linalg.norm(whole, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(whole, small) and np.array_equal(whole[:8], one_by_one)


def test_static_vectors_are_model2vecs_own(static_enc, texts):
    """marsctl reads the distilled table itself; model2vec's StaticModel gives the same vectors."""
    from model2vec import StaticModel
    from safetensors import safe_open
    from tokenizers import Tokenizer

    with safe_open(str(static_enc.engine().path), framework="numpy") as f:
        table, meta = f.get_tensor("embeddings"), f.metadata()
    ref = StaticModel(vectors=table, tokenizer=Tokenizer.from_str(meta["tokenizer"]), normalize=True)
    ours = static_enc.encode(texts)
    theirs = ref.encode(texts, max_length=static_enc.max_seq_length - 2)
    assert ((ours * theirs).sum(axis=1)).min() > 0.9999


@pytest.mark.parametrize("backend", ["static", "onnx"])
def test_mlp_head_trains_and_scores_through_the_cli(backend, request, tmp_path):
    request.getfixturevalue(f"{backend}_enc")  # built once in the session cache, which the CLI shares
    model = tmp_path / "m"
    run_cli("train", str(FIXTURES / "tiny.jsonl"), "-o", str(model), "--epochs", "2", "-p",
            f"encoder_backend={backend}", check=True)
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["config"]["encoder_backend"] == cfg["encoder"]["backend"] == backend
    assert cfg["encoder"]["id"].endswith(FORMAT[backend])
    scored = run_cli("score", str(FIXTURES / "tiny_test.jsonl"), "-m", str(model), check=True)
    rows = [json.loads(x) for x in scored.stdout.splitlines()]
    assert len(rows) == len(read_jsonl(FIXTURES / "tiny_test.jsonl"))
    assert all(np.isfinite(r["pred_margin"]) for r in rows)
    assert "building" not in scored.stderr  # the artefact was reused
