"""The encoder's precision path (issue 20): fp32 as before, bf16 only where native, never mixed in the cache."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, run_cli

from marsctl.embed import (
    BF16_CPU_FLAGS,
    PRECISION_FORMAT,
    EmbeddingCache,
    Encoder,
    TorchBackend,
    cache_id,
    default_encoder_path,
    native_bf16,
    resolve_precision,
)
from marsctl.embed import precision as encoder_precision
from marsctl.errors import ConfigError

NATIVE = native_bf16()
NO_BF16 = "this CPU has no native bf16 units (avx512_bf16 or amx_bf16), and marsctl never runs emulated bf16"


@pytest.fixture(scope="module")
def texts() -> list[str]:
    rows = [json.loads(x) for x in (FIXTURES / "hh_test.jsonl").read_text().splitlines()[:16]]
    return [r["chosen"] for r in rows] + [r["rejected"] for r in rows]


@pytest.fixture(scope="module")
def model() -> object:
    """The bundled encoder, loaded once and shared by the encoders of this module (its weights do not change)."""
    return Encoder().torch.load()


def fresh(tmp_path: Path, name: str, model: object, precision: str = "fp32", cache: str | None = None) -> Encoder:
    enc = Encoder(precision=precision, cache=EmbeddingCache(tmp_path / f"{cache or name}.sqlite", dim=384))
    enc.torch.model = model
    return enc


def todays_forward(self: TorchBackend, texts: list[str], length: int) -> np.ndarray:
    """``TorchBackend.forward`` as it was before the precision path (the reference for fp32)."""
    import torch

    m = self.load()
    features = m.tokenizer(texts, padding="max_length", truncation=True, max_length=length, return_tensors="pt")
    features = {k: v.to(m.device) for k, v in features.items()}
    with torch.inference_mode():
        emb = m(features)["sentence_embedding"]
        emb = torch.nn.functional.normalize(emb.float(), p=2, dim=1)
    return emb.cpu().numpy().astype(np.float32)


@pytest.fixture(scope="module")
def fp32(tmp_path_factory, model, texts) -> np.ndarray:
    return fresh(tmp_path_factory.mktemp("fp32"), "fp32", model, "fp32").encode(texts)


# -- fp32: today's vectors and keys --------------------------------------------------------------------------
def test_the_encoder_class_default_is_fp32_and_keeps_todays_keys(model):
    """The library's ``Encoder()`` stays fp32; the heads' ``encoder_precision`` defaults to auto (below)."""
    enc = Encoder()
    assert enc.precision == "fp32" and enc.describe()["precision"] == "fp32"
    assert enc.id == cache_id(default_encoder_path(), 256)  # existing caches still hit
    assert Encoder(precision="fp32").key("a text", "response") == enc.key("a text", "response")


def test_forced_fp32_equals_todays_vectors_bit_for_bit(tmp_path, monkeypatch, model, texts, fp32):
    with monkeypatch.context() as m:
        m.setattr(TorchBackend, "forward", todays_forward)
        before = fresh(tmp_path, "today", model).encode(texts)
    assert fp32.dtype == np.float32 and fp32.shape == (len(texts), 384)
    assert np.array_equal(fp32, before)  # same texts, same canonical batches, same bits


# -- bf16 ----------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not NATIVE, reason=NO_BF16)
def test_bf16_is_within_cosine_0999_of_fp32_on_real_texts(tmp_path, model, texts, fp32):
    enc = fresh(tmp_path, "bf16", model, "bf16")
    assert enc.precision == "bf16" and enc.id.endswith(":" + PRECISION_FORMAT["bf16"])
    vecs = enc.encode(texts)
    assert vecs.dtype == np.float32 and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    cos = (vecs * fp32).sum(axis=1)
    assert cos.min() >= 0.999
    assert not np.array_equal(vecs, fp32)  # it did run in bf16


@pytest.mark.skipif(not NATIVE, reason=NO_BF16)
@pytest.mark.parametrize(("first", "then"), [("fp32", "bf16"), ("bf16", "fp32")])
def test_the_cache_never_answers_one_precision_with_the_other(tmp_path, model, texts, first, then):
    filled = fresh(tmp_path, first, model, first, cache="shared")
    a = filled.encode(texts[:6])
    asked = fresh(tmp_path, then, model, then, cache="shared")
    b = asked.encode(texts[:6])
    assert asked.stats["hits"] == 0 and asked.stats["misses"] == 6
    assert not np.array_equal(a, b)
    again = fresh(tmp_path, "again", model, first, cache="shared")
    assert np.array_equal(again.encode(texts[:6]), a) and again.stats["misses"] == 0  # both are kept


def test_bf16_and_fp32_keys_differ_for_every_text(monkeypatch, texts):
    """Whatever the CPU: the keys differ (the bf16 encoder is only built here, never run)."""
    monkeypatch.setattr(encoder_precision, "native_bf16", lambda device="cpu": True)
    fp, bf = Encoder(precision="fp32"), Encoder(precision="bf16")
    for side in ("prompt", "response"):
        assert not {fp.key(t, side) for t in texts} & {bf.key(t, side) for t in texts}


# -- detection and fallback ----------------------------------------------------------------------------------
def test_the_real_detection_agrees_with_proc_cpuinfo():
    assert isinstance(NATIVE, bool)
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        assert NATIVE is False
        return
    flags = next((set(line.split(":", 1)[1].split()) for line in text.splitlines() if line.startswith("flags")), set())
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    expected = x86 and bool(flags & set(BF16_CPU_FLAGS))
    assert native_bf16() is expected


def test_a_cpu_without_bf16_falls_back_to_fp32_for_auto_and_refuses_a_forced_bf16(monkeypatch):
    """Simulated: the detection says no (a CPU without bf16 units cannot be produced here otherwise)."""
    from marsctl.embed import get_encoder

    monkeypatch.setattr(encoder_precision, "native_bf16", lambda device="cpu": False)
    assert resolve_precision("auto") == "fp32"
    enc = Encoder(precision="auto")
    assert enc.precision == "fp32" and enc.id == Encoder().id
    assert get_encoder(precision="auto") is get_encoder()
    with pytest.raises(ConfigError, match="no native bf16") as e:
        Encoder(precision="bf16")
    assert "encoder_precision=auto" in (e.value.hint or "")


def test_cpu_flags_reads_the_flags_line_of_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n", encoding="utf-8")
    assert encoder_precision.cpu_flags(str(info)) == {"fpu", "sse", "avx512f", "avx512_bf16", "amx_tile"}
    assert encoder_precision.cpu_flags(str(tmp_path / "none")) == set()  # unreadable: no flags, so fp32


# An AVX-512 CPU without bf16 units (Skylake/Cascade Lake-SP: oneDNN would emulate bf16 there, slower than fp32),
# and one with them (Sapphire Rapids). Simulated through the function that reads /proc/cpuinfo.
AVX512_NO_BF16 = {"fpu", "sse4_2", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"}
AVX512_BF16 = AVX512_NO_BF16 | {"avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"}


@pytest.mark.parametrize(("flags", "resolved"), [(AVX512_NO_BF16, "fp32"), (AVX512_BF16, "bf16"), (set(), "fp32")])
def test_the_heads_default_is_auto_and_follows_the_cpu_flags(monkeypatch, flags, resolved):
    """The default head's encoder: bf16 where the CPU flags say native bf16, else fp32 (today's encoder)."""
    from marsctl import registry

    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(encoder_precision, "cpu_flags", lambda path="/proc/cpuinfo": set(flags))
    assert encoder_precision.native_bf16() is (resolved == "bf16")
    for name in ("linear", "mlp"):
        head = registry.create("head", name)
        assert head.config.encoder_precision == "auto"  # the default
        assert head.encoder.precision == resolved
        assert (head.encoder.id == cache_id(default_encoder_path(), 256)) is (resolved == "fp32")
        forced = registry.create("head", name, ["encoder_precision=fp32"])  # a forced fp32: today's encoder
        assert forced.encoder.precision == "fp32" and forced.encoder.id == cache_id(default_encoder_path(), 256)


def test_forced_fp32_through_the_head_equals_todays_vectors_bit_for_bit(tmp_path, monkeypatch, model, texts):
    """``-p encoder_precision=fp32`` gives the head the vectors of before precisions existed, on a bf16 CPU too."""
    from marsctl import registry

    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(encoder_precision, "cpu_flags", lambda path="/proc/cpuinfo": set(AVX512_BF16))
    monkeypatch.setenv("MARSCTL_CACHE_DIR", str(tmp_path / "head-cache"))  # cold: no vector from other company
    monkeypatch.setattr("marsctl.embed.encoder._ENCODERS", {})  # and a new encoder, not one an earlier test warmed
    head = registry.create("head", "mlp", ["encoder_precision=fp32"])  # its encoder as train and score build it
    with monkeypatch.context() as m:
        m.setattr(TorchBackend, "forward", todays_forward)
        before = fresh(tmp_path, "today", model).encode(texts)
    assert head.encoder.precision == "fp32"
    assert np.array_equal(head.encoder.encode(texts), before)


def test_a_cpu_with_bf16_resolves_auto_to_bf16(monkeypatch):
    monkeypatch.setattr(encoder_precision, "native_bf16", lambda device="cpu": True)
    assert resolve_precision("auto") == "bf16" and Encoder(precision="auto").precision == "bf16"
    assert resolve_precision("auto", backend="onnx") == "fp32"  # bf16 is a torch path only
    with pytest.raises(ConfigError, match="torch encoder backend only"):
        resolve_precision("bf16", backend="static")


def test_a_bad_precision_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match=r"must be one of fp32, bf16, auto\. Got 'fp16'"):
        Encoder(precision="fp16")


# -- CLI: the model directory records it, score uses it -------------------------------------------------------
def test_a_bad_value_on_the_cli_is_exit_2_listing_the_choices(tmp_path):
    proc = run_cli("train", str(FIXTURES / "tiny.jsonl"), "-o", str(tmp_path / "m"), "-p", "encoder_precision=bf61")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "'encoder_precision'" in proc.stderr and "fp32, bf16, auto" in proc.stderr
    assert "Did you mean 'bf16'?" in proc.stderr
    assert not (tmp_path / "m").exists()


def test_cli_train_records_bf16_and_score_uses_bf16_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("MARSCTL_CACHE_DIR", str(tmp_path / "cache"))  # a cache of this test's own
    model = tmp_path / "m"
    proc = run_cli("train", str(FIXTURES / "tiny.jsonl"), "-o", str(model), "--epochs", "1",
                   "-p", "encoder_precision=bf16")
    if not NATIVE:
        assert proc.returncode == 2 and "no native bf16" in proc.stderr and "Traceback" not in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["config"]["encoder_precision"] == cfg["encoder"]["precision"] == "bf16"
    assert cfg["encoder"]["id"].endswith(PRECISION_FORMAT["bf16"])
    test_pairs = [json.loads(x) for x in (FIXTURES / "tiny_test.jsonl").read_text().splitlines()]
    run_cli("score", str(FIXTURES / "tiny_test.jsonl"), "-m", str(model), check=True)
    cache = EmbeddingCache(tmp_path / "cache" / "embeddings.sqlite", dim=384)
    responses = sorted({p[k] for p in test_pairs for k in ("chosen", "rejected")})
    for precision, want in (("bf16", True), ("fp32", False)):
        enc = Encoder(precision=precision)
        _, found = cache.get_matrix([enc.key(t, "response") for t in responses], 384)
        assert bool(found.all()) if want else not found.any(), precision


@pytest.mark.skipif(not NATIVE, reason=NO_BF16)
def test_a_bf16_model_on_a_cpu_without_bf16_scores_with_fp32_and_says_so(tmp_path, monkeypatch, capsys):
    """A model dir's precision is the recorded one; where bf16 is not native it falls back, with a warning."""
    from marsctl.modeldir import load_head

    model = tmp_path / "m"
    run_cli("train", str(FIXTURES / "tiny.jsonl"), "-o", str(model), "--epochs", "1",
            "-p", "encoder_precision=auto", check=True)
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["config"]["encoder_precision"] == "auto" and cfg["encoder"]["precision"] == "bf16"
    assert load_head(model).encoder.precision == "bf16"  # recorded, not re-decided
    assert load_head(model, overrides=["encoder_precision=fp32"]).encoder.precision == "fp32"  # overridden
    monkeypatch.setattr(encoder_precision, "native_bf16", lambda device="cpu": False)
    capsys.readouterr()
    head = load_head(model)
    assert head.encoder.precision == "fp32"
    assert "trained on bf16 encoder vectors" in " ".join(capsys.readouterr().err.split())


# -- refine: the run says which precision ran ------------------------------------------------------------------
@pytest.mark.parametrize(("params", "rounds", "want"), [
    ([], 1, "bf16" if NATIVE else "fp32"),  # the default (auto): what this CPU runs natively
    (["-p", "encoder_precision=fp32"], 0, "fp32"),
])
def test_a_refine_run_records_the_precision_that_ran(tmp_path, params, rounds, want):
    out = tmp_path / "run"
    run_cli("refine", str(FIXTURES / "tiny.jsonl"), "--eval", str(FIXTURES / "tiny_test.jsonl"), "--rounds",
            str(rounds), "--epochs", "2", "--out", str(out), *params, check=True)
    manifest = json.loads((out / "manifest.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert [t["encoder_precision"] for t in manifest["timing"].values()] == [want] * (rounds + 1)
    assert summary["timing"] == manifest["timing"]
    for k in range(rounds + 1):
        cfg = json.loads((out / f"round-{k}" / "model" / "config.json").read_text())
        assert cfg["encoder"]["precision"] == want
