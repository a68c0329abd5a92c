"""The transformer head: tiny and real, with the bundled MiniLM on CPU (a few optimiser steps each)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "transformer" / "pairs.jsonl"
# precision=fp32: these tests pin the fp32 path (auto is bf16 on a CPU with native bf16 units).
TINY = {"max_length": 40, "batch_size": 2, "epochs": 1, "lr": 1e-4, "warmup_ratio": 0.0, "precision": "fp32"}


def _pairs() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def head_cls() -> type:
    from marsctl import registry

    return registry.load("head", "transformer")


@pytest.fixture(scope="module")
def trained(head_cls):
    """One head trained for 1 step on 2 pairs, and a copy of its parameters before training."""
    head = head_cls(head_cls.Config(**TINY), seed=0)
    head.encoder()  # loads the model (seeded) without training
    before = {n: p.detach().clone() for n, p in head.model_.named_parameters()}
    head.fit(_pairs()[:2])
    return head, before


def test_fit_changes_params_and_loss_is_finite(trained):
    import math

    head, before = trained
    after = dict(head.model_.named_parameters())
    assert not after["classifier.weight"].detach().equal(before["classifier.weight"])
    changed = [n for n, p in after.items() if not p.detach().equal(before[n])]
    assert any(n.startswith("bert.encoder") for n in changed)  # the backbone is fine-tuned too
    assert len(head.history_) == 1 and math.isfinite(head.history_[0]["loss"])
    m = head.manifest_
    assert (m["n_pairs"], m["steps"], m["world_size"], m["global_batch"]) == (2, 1, 1, 2)
    assert m["template"] == "pair" and m["precision"] == "fp32"
    assert m["attention"] == "sdpa" and head.model_.config._attn_implementation == "sdpa"  # fp32: as before


def test_same_seed_same_scores_and_seed_matters(head_cls, trained):
    head, _ = trained
    pairs = _pairs()
    again = head_cls(head_cls.Config(**TINY), seed=0).fit(pairs[:2])
    test = pairs[32:36]
    assert [r["pred_margin"] for r in again.score(test)] == [r["pred_margin"] for r in head.score(test)]
    other = head_cls(head_cls.Config(**TINY), seed=1)
    fresh = head_cls(head_cls.Config(**TINY), seed=0)
    assert other.score_batch(["p"], ["r"]) != fresh.score_batch(["p"], ["r"])  # seeded score layer


def test_saved_dir_scores_the_same_with_plain_transformers(trained, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    head, _ = trained
    head.save_weights(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "config.json").exists()
    tok = AutoTokenizer.from_pretrained(tmp_path)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    fits = [r for r in _pairs() if len(tok(r["prompt"], r["chosen"])["input_ids"]) <= TINY["max_length"]]
    rows = fits[:4]
    assert rows
    prompts, responses = [r["prompt"] for r in rows], [r["chosen"] for r in rows]
    with torch.no_grad():
        plain = model(**tok(prompts, responses, padding=True, return_tensors="pt")).logits.squeeze(-1)
    ours = head.score_batch(prompts, responses)
    assert plain.tolist() == pytest.approx(ours, abs=1e-4)


def test_save_and_load_head_roundtrip(trained, tmp_path):
    from marsctl.modeldir import load_head
    from marsctl.plugin import Head

    if not hasattr(Head, "meta_file"):
        pytest.skip("needs Head.meta_file in the core (marsctl metadata beside HF's config.json)")
    head, _ = trained
    head.save(tmp_path / "m")
    hf_config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert hf_config["architectures"] == ["BertForSequenceClassification"]  # HF's, not overwritten
    loaded = load_head(tmp_path / "m", expect="transformer")
    rows = _pairs()[32:36]
    assert [r["pred_margin"] for r in loaded.score(rows)] == pytest.approx(
        [r["pred_margin"] for r in head.score(rows)], abs=1e-5)
    loaded.fit(rows[:2], epochs=1)  # --init: continue training from the saved weights
    assert len(loaded.history_) == 2


def test_truncation_cuts_the_prompt_start_and_keeps_the_response(head_cls, capsys):
    head = head_cls(head_cls.Config(max_length=32), seed=0)
    prompt = "filler " * 120 + "what is the capital of france"
    feats, cut = head.encoder().encode([prompt, "short prompt"], ["paris is the capital", "ok"])
    assert cut == [True, False]
    text = head.tokenizer_.decode(feats[0]["input_ids"])
    assert len(feats[0]["input_ids"]) <= 32
    assert "paris is the capital" in text and "capital of france" in text
    assert text.count("filler") < 120

    same = "the same long beginning " * 30
    pairs = [{"prompt": prompt, "chosen": same + "good", "rejected": same + "bad"},
             {"prompt": "q", "chosen": "yes", "rejected": "no"}]
    head.fit(pairs, epochs=0)  # encodes and reports, trains nothing
    m = head.manifest_
    assert (m["n_pairs"], m["truncated_pairs"], m["identical_after_truncation"]) == (2, 1, 1)
    err = capsys.readouterr().err
    assert "identical chosen and" in err and "1 of 2 pairs" in err


def test_missing_pad_token_is_added_and_reported(head_cls, tmp_path, capsys):
    from transformers import AutoTokenizer

    from marsctl.embed import default_encoder_path

    src = Path(default_encoder_path())
    tok = AutoTokenizer.from_pretrained(src)
    tok.pad_token = None
    tok.save_pretrained(tmp_path)
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).symlink_to(src / name)
    head = head_cls(head_cls.Config(model_path=str(tmp_path), max_length=32), seed=0)
    rewards = head.score_batch(["a prompt", "another, much longer prompt here"], ["x", "a longer response"])
    assert len(rewards) == 2
    assert head.tokenizer_.pad_token is not None and head.added_pad_token_ == head.tokenizer_.pad_token
    assert head.model_.config.pad_token_id == head.tokenizer_.pad_token_id
    assert "no pad token" in capsys.readouterr().err
    assert head.extra_config()["added_pad_token"] == head.tokenizer_.pad_token


def test_conformance(head_cls):
    from marsctl.testing import check_head

    check_head(head_cls, head_cls.Config(**{**TINY, "batch_size": 6}), epochs=1)  # one step


def test_config_is_validated(head_cls):
    from marsctl.errors import ConfigError
    from marsctl.params import build_config

    cfg = build_config(head_cls.Config, ["batch_size=4", "gradient_checkpointing=true", "precision=bf16"],
                       owner="the head 'transformer'")
    assert (cfg.batch_size, cfg.gradient_checkpointing, cfg.precision) == (4, True, "bf16")
    with pytest.raises(ConfigError, match="'precision' parameter"):
        build_config(head_cls.Config, ["precision=fp8"], owner="the head 'transformer'")
    with pytest.raises(ConfigError, match="'grad_accum' parameter"):
        head_cls.Config(grad_accum=0)


@pytest.mark.parametrize(("n", "world", "sizes", "padded"), [
    (16, 2, [8, 8], 0), (5, 2, [3, 2], 0), (1, 2, [1, 1], 1), (7, 4, [2, 2, 2, 1], 0)])
def test_global_step_is_split_across_ranks(head_cls, n, world, sizes, padded):
    head = head_cls()
    parts = [head._shard(list(range(n)), world, r) for r in range(world)]
    assert [len(p) for p, _ in parts] == sizes and parts[0][1] == padded
    assert sorted({i for p, _ in parts for i in p}) == list(range(n))


WORKER = r"""
import json, os, sys
from pathlib import Path
from marsctl import registry
cfg, data, out = json.loads(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
rows = [json.loads(line) for line in open(data, encoding="utf-8")]
cls = registry.load("head", "transformer")
head = cls(cls.Config(**cfg), seed=0).fit(rows[:32])
scores = head.score(rows[32:])
rank = int(os.environ.get("RANK", "0"))
(out / f"rank{rank}.json").write_text(json.dumps(
    {"main": head.is_main_process(), "world": head.manifest_["world_size"], "history": head.history_}))
if head.is_main_process():
    head.save_weights(out / "model")
    (out / "margins.json").write_text(json.dumps([r["pred_margin"] for r in scores]))
"""


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    """torchrun --nproc_per_node 2 (gloo, CPU), batch 4 per rank, vs one process with batch 8.

    Tolerance: held-out accuracy within 1/16 (one of the 16 held-out pairs may flip) and every
    pred_margin within 1e-3 (dropout is off, so only float summation order differs).
    About 30 s on 2 cores, so it runs by default.
    """
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MARSCTL_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1"}
    cfg = {"max_length": 48, "epochs": 1, "lr": 1e-4, "warmup_ratio": 0.0, "precision": "fp32"}
    runs = {}
    for name, nproc, bs in (("one", 1, 8), ("two", 2, 4)):
        out = tmp_path / name
        out.mkdir()
        launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
                  if nproc == 2 else [sys.executable])
        args = [str(worker), json.dumps({**cfg, "batch_size": bs}), str(FIXTURE), str(out)]
        proc = subprocess.run(launch + args, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = json.loads((out / "margins.json").read_text())
    two = tmp_path / "two"
    assert sorted(p.name for p in two.iterdir() if p.is_dir()) == ["model"]
    ranks = [json.loads((two / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["main"] for r in ranks] == [True, False] and ranks[0]["world"] == 2
    assert ranks[0]["history"] == ranks[1]["history"]  # the loss metric is reduced across processes

    def acc(margins: list[float]) -> float:
        return sum(m > 0 for m in margins) / len(margins)

    assert abs(acc(runs["two"]) - acc(runs["one"])) <= 1 / 16
    assert max(abs(a - b) for a, b in zip(runs["one"], runs["two"], strict=True)) < 1e-3


def test_refine_and_compare_run_with_the_transformer_head(tmp_path):
    """refine --head transformer (weights carry forward in HF format) and compare --head transformer."""
    import json as _json

    from conftest import run_cli

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(_json.dumps(r) + "\n" for r in _pairs()[:16]))
    params = [a for k, v in TINY.items() if k != "epochs" for a in ("-p", f"{k}={v}")]
    run_cli("refine", str(data), "--head", "transformer", *params, "--rounds", "1", "--budget", "8",
            "--epochs", "1", "--out", str(tmp_path / "run"), check=True)
    r1 = tmp_path / "run" / "round-1" / "model"
    meta = _json.loads((r1 / "marsctl.json").read_text())
    assert meta["head"] == "transformer" and meta["training"]["init"].endswith("round-0/model")
    assert (r1 / "config.json").exists() and (r1 / "model.safetensors").exists()
    proc = run_cli("compare", str(data), "--head", "transformer", *params, "--seeds", "1", "--strategies",
                   "none,uniform", "--protocols", "epochs", "--budget", "6", "--epochs", "1",
                   "--test-frac", "0.4", "--out", str(tmp_path / "cmp"), check=True)
    assert "compare, epochs protocol" in proc.stderr
    assert (tmp_path / "cmp" / "table.md").exists()


# -- precision: bf16 autocast with fp32 master weights where the CPU has native bf16 units -------------
SMALL = {**TINY, "max_length": 32, "batch_size": 4}


@pytest.fixture
def no_bf16(monkeypatch):
    """This machine as one without bf16 units: the CPU flags read from /proc/cpuinfo lack them."""
    from marsctl.embed import precision

    flags = precision.cpu_flags() - set(precision.BF16_CPU_FLAGS)
    monkeypatch.setattr(precision, "cpu_flags", lambda path="/proc/cpuinfo": flags)
    assert not precision.native_bf16()


def _needs_native_bf16() -> None:
    from marsctl.embed.precision import native_bf16

    if not native_bf16():
        pytest.skip("this CPU has no native bf16 units (the bf16 path refuses to run emulated)")


def test_bf16_trains_and_scores_close_to_fp32(head_cls):
    """bf16 trains (eager attention, then SDPA again) and scores in bf16: finite, margins follow fp32's."""
    import math
    import statistics

    _needs_native_bf16()
    pairs = _pairs()
    heads = {}
    for p in ("fp32", "bf16"):
        heads[p] = head_cls(head_cls.Config(**{**SMALL, "precision": p}), seed=0).fit(pairs[:8])
    m = heads["bf16"].manifest_
    assert (m["precision"], m["attention"]) == ("bf16", "eager")
    assert heads["bf16"].model_.config._attn_implementation == "sdpa"  # the saved model keeps its own
    assert all(p.dtype.is_floating_point and str(p.dtype) == "torch.float32"
               for p in heads["bf16"].model_.parameters())  # fp32 master weights
    assert math.isfinite(heads["bf16"].history_[0]["loss"])
    test = pairs[32:48]
    margins = {p: [r["pred_margin"] for r in h.score(test)] for p, h in heads.items()}
    assert all(math.isfinite(x) for x in margins["bf16"])
    assert margins["bf16"] != margins["fp32"]  # bf16 really ran (its rounding shows)
    assert statistics.correlation(margins["bf16"], margins["fp32"]) > 0.95


def test_auto_falls_back_to_fp32_without_bf16_units(head_cls, no_bf16):
    from marsctl.errors import ConfigError
    from marsctl_plugins.heads.transformer.distributed import resolve_precision

    assert resolve_precision("auto", "cpu") == "no" and resolve_precision("fp32", "cpu") == "no"
    head = head_cls(head_cls.Config(**{**SMALL, "precision": "auto"}), seed=0).fit(_pairs()[:4])
    assert (head.manifest_["precision"], head.manifest_["attention"]) == ("fp32", "sdpa")
    assert head.extra_config()["precision"] == "fp32"
    with pytest.raises(ConfigError, match="precision=bf16: this CPU has no native bf16 units"):
        head_cls(head_cls.Config(**{**SMALL, "precision": "bf16"}), seed=0).fit(_pairs()[:4])


NO_BF16_CLI = """
import sys
from marsctl.embed import precision
precision.cpu_flags = lambda path="/proc/cpuinfo": set()
from marsctl.cli.app import main
sys.argv = ["marsctl", *sys.argv[1:]]
main()
"""


def test_forced_bf16_without_units_is_one_clear_error(tmp_path):
    """marsctl train -p precision=bf16 on a CPU without bf16 units: exit 2, one Error line, no model dir."""
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _pairs()[:4]))
    env = {**os.environ, "MARSCTL_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", NO_BF16_CLI, "train", str(data), "--head", "transformer",
                           "-p", "precision=bf16", "-p", "max_length=32", "-o", str(tmp_path / "m")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "no native bf16 units" in errors[0], proc.stderr
    assert not (tmp_path / "m").exists()


def test_precision_is_recorded_and_reloaded(head_cls, tmp_path, capsys, monkeypatch):
    """marsctl.json records the precision; a reload under auto uses it; bf16 without units runs fp32."""
    from marsctl.embed.precision import native_bf16
    from marsctl.errors import ConfigError
    from marsctl.modeldir import load_head

    want = "bf16" if native_bf16() else "fp32"
    head = head_cls(head_cls.Config(**{**SMALL, "precision": "auto"}), seed=0).fit(_pairs()[:4])
    head.save(tmp_path / "m")
    meta_path = tmp_path / "m" / "marsctl.json"
    meta = json.loads(meta_path.read_text())
    assert meta["precision"] == want == head.manifest_["precision"] and meta["config"]["precision"] == "auto"
    loaded = load_head(tmp_path / "m", expect="transformer")
    assert loaded.config.precision == want and loaded.precision() == want
    forced = load_head(tmp_path / "m", expect="transformer", overrides=["precision=fp32"])
    assert forced.precision() == "fp32"

    meta_path.write_text(json.dumps({**meta, "precision": "bf16"}))  # as written on a bf16 machine
    from marsctl.embed import precision

    monkeypatch.setattr(precision, "cpu_flags", lambda path="/proc/cpuinfo": set())
    capsys.readouterr()
    moved = load_head(tmp_path / "m", expect="transformer")
    assert moved.config.precision == "fp32" and moved.precision() == "fp32"
    assert "trained in bf16" in capsys.readouterr().err
    moved.fit(_pairs()[4:6], epochs=1)  # continues (resumes) in fp32 there
    assert moved.manifest_["precision"] == "fp32"

    meta_path.write_text(json.dumps({**meta, "precision": "fp8"}))
    with pytest.raises(ConfigError, match="field 'precision' must be fp32, bf16 or fp16"):
        load_head(tmp_path / "m", expect="transformer")
