"""marsctl export: one ONNX graph whose rewards match `marsctl score`, run with onnxruntime alone.

The scoring code here (``onnx_rewards``) imports onnxruntime, tokenizers and numpy only: it follows
docs/model-dir.md, reading the tokenizer and the truncation length from the file's metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, read_jsonl, run_cli

ort = pytest.importorskip("onnxruntime")
tokenizers = pytest.importorskip("tokenizers")

TOL = 1e-4
# Real rows: two prompts longer than 256 word pieces (keep-end truncation), three responses longer (keep-start).
ROWS = [("tiny.jsonl", 0), ("tiny.jsonl", 1), ("tiny.jsonl", 10), ("tiny.jsonl", 21),
        ("llmbar_sample.jsonl", 29), ("llmbar_sample.jsonl", 38), ("llmbar_sample.jsonl", 50)]


def onnx_rewards(path: Path, prompts: list[str], responses: list[str]) -> tuple[np.ndarray, dict, list[str]]:
    """Rewards of an exported file, as docs/model-dir.md computes them: (rewards, metadata, input names)."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    tok, n = tokenizers.Tokenizer.from_str(meta["marsctl.tokenizer"]), int(meta["marsctl.max_seq_length"])

    def batch(texts: list[str], keep_end: bool) -> tuple[np.ndarray, np.ndarray]:
        if keep_end:
            tok.no_truncation()
            cut = []
            for t in texts:
                offsets = tok.encode(t, add_special_tokens=False).offsets
                cut.append(t if len(offsets) <= n - 2 else t[offsets[-(n - 2)][0]:])
            texts = cut
            tok.enable_truncation(n)
        enc = tok.encode_batch(texts)
        width = max(len(e.ids) for e in enc)
        ids = np.array([e.ids + [0] * (width - len(e.ids)) for e in enc], dtype=np.int64)
        mask = np.array([[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in enc], dtype=np.int64)
        return ids, mask

    names = [i.name for i in sess.get_inputs()]
    feed = {}
    if "prompt_input_ids" in names:
        feed["prompt_input_ids"], feed["prompt_attention_mask"] = batch(prompts, True)
    feed["response_input_ids"], feed["response_attention_mask"] = batch(responses, False)
    if "response_chars" in names:
        feed["response_chars"] = np.array([len(r) for r in responses], dtype=np.float32)
    return sess.run(["reward"], feed)[0], meta, names


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few real rows cut from the fixtures, long prompts and long responses among them."""
    lines = {name: (FIXTURES / name).read_text(encoding="utf-8").splitlines() for name in {n for n, _ in ROWS}}
    path = tmp_path_factory.mktemp("export") / "pairs.jsonl"
    path.write_text("".join(lines[name][i] + "\n" for name, i in ROWS), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An mlp head trained 2 epochs on tiny.jsonl (the CLI, as a user would)."""
    path = tmp_path_factory.mktemp("export") / "m"
    run_cli("train", str(FIXTURES / "tiny.jsonl"), "-o", str(path), "--epochs", "2",
            "-p", "encoder_precision=fp32", check=True)  # the graph runs the encoder in fp32
    return path


def _both_sides(rows: list[dict]) -> tuple[list[str], list[str]]:
    return [r["prompt"] for r in rows] * 2, [r["chosen"] for r in rows] + [r["rejected"] for r in rows]


def test_export_matches_marsctl_score(model_dir: Path, pairs_file: Path, tmp_path: Path):
    out = tmp_path / "rm.onnx"
    proc = run_cli("export", str(model_dir), "--to", "onnx", "-o", str(out), check=True)
    assert "exported" in proc.stderr and proc.stdout == ""
    scored_file = tmp_path / "scored.jsonl"
    run_cli("score", str(pairs_file), "-m", str(model_dir), "-o", str(scored_file), check=True)
    scored = read_jsonl(scored_file)
    prompts, responses = _both_sides(scored)
    got, meta, names = onnx_rewards(out, prompts, responses)
    want = np.array([r["score_chosen"] for r in scored] + [r["score_rejected"] for r in scored])
    assert np.abs(got - want).max() < TOL
    margins = got[: len(scored)] - got[len(scored):]
    assert np.abs(margins - np.array([r["pred_margin"] for r in scored])).max() < 2 * TOL
    length = json.loads((model_dir / "config.json").read_text())["config"].get("length", "off") == "term"
    assert names == ["prompt_input_ids", "prompt_attention_mask", "response_input_ids", "response_attention_mask",
                     *(["response_chars"] if length else [])]
    assert meta["marsctl.format"] == "marsctl-reward-onnx-v1" and json.loads(meta["marsctl.features"]) == ["r", "p*r"]
    assert json.loads(meta["marsctl.encoder"])["name"] == "all-MiniLM-L6-v2"


def test_export_of_an_ensemble_with_a_length_term(pairs_file: Path, tmp_path: Path):
    """The graph follows the head's network: 2 members averaged, each with its length term (an extra input)."""
    from marsctl import export_onnx, read_pairs, steps

    train = read_pairs(FIXTURES / "tiny.jsonl")
    head = steps.train(train, head="linear", params=["epochs=3", "ensemble=2", "length=term", "length_lr=0.5",
                                                     "features=full", "encoder_precision=fp32"], seed=1)
    head.save(tmp_path / "m")
    info = export_onnx(tmp_path / "m", tmp_path / "rm.onnx")
    assert info["inputs"][-1] == "response_chars" and info["outputs"] == ["reward", "length_reward"]
    rows = read_pairs(pairs_file)
    prompts, responses = _both_sides(rows)
    got, meta, _ = onnx_rewards(tmp_path / "rm.onnx", prompts, responses)
    want = np.array(head.score_batch(prompts, responses))
    assert np.abs(got - want).max() < TOL
    assert meta["marsctl.ensemble"] == "2" and meta["marsctl.length_term"] == "term"


def test_a_model_of_the_default_precision_exports_against_its_fp32_scores(tmp_path: Path):
    """The default (auto: bf16 where the CPU has it) exports: the fp32 graph is checked against the model's fp32 scores."""
    from marsctl import export_onnx, read_pairs, steps
    from marsctl.modeldir import load_head

    train = read_pairs(FIXTURES / "tiny.jsonl")
    head = steps.train(train, head="mlp", params=["epochs=2"], seed=3)
    head.save(tmp_path / "m")
    info = export_onnx(tmp_path / "m", tmp_path / "rm.onnx")
    assert info["encoder_precision"] == {"graph": "fp32", "model": head.encoder.precision}
    prompts, responses = _both_sides(train)
    got, _, _ = onnx_rewards(tmp_path / "rm.onnx", prompts, responses)
    fp32 = load_head(tmp_path / "m", overrides={"encoder_precision": "fp32"})
    assert fp32.encoder.precision == "fp32"
    assert np.abs(got - np.array(fp32.score_batch(prompts, responses))).max() < TOL
    # the model's own scores (bf16 on a CPU with bf16 units) differ from the graph's by the encoder's rounding only
    assert np.abs(got - np.array(head.score_batch(prompts, responses))).max() < 1e-2


@pytest.mark.parametrize(("args", "message"), [
    (["--to", "tflite", "-o", "{tmp}/rm.onnx"], "'to' parameter of export must be one of onnx"),
    (["-o", "-"], "export writes a binary file"),
    (["-o", "{tmp}"], "is a directory; give a file name"),
], ids=["format", "stdout", "dir"])
def test_bad_export_options_exit_2(model_dir: Path, tmp_path: Path, args: list[str], message: str):
    proc = run_cli("export", str(model_dir), *[a.format(tmp=tmp_path) for a in args])
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and proc.stderr.count("Error:") == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "rm.onnx").exists()


def test_export_of_a_missing_model_dir_exits_2(tmp_path: Path):
    proc = run_cli("export", str(tmp_path / "nope"), "-o", str(tmp_path / "rm.onnx"))
    assert proc.returncode == 2 and "no such directory" in proc.stderr
    assert not (tmp_path / "rm.onnx").exists()
