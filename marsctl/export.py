"""Export an embedding head's model directory to one ONNX graph that ONNX Runtime runs without marsctl.

The graph is the whole reward model: the encoder (a BERT-style transformer, mean pooling over the
attention mask, L2 normalisation) run on the prompt and on the response, the head's pair features
(the blocks of ``config.json``'s ``features``), the head's own torch network (every ensemble member,
averaged) and its length term when it has one. The tokenizer stays outside, as usual for ONNX
transformers: its ``tokenizer.json`` is stored in the file's metadata (``marsctl.tokenizer``), so
``onnxruntime`` and ``tokenizers`` are all a user needs (docs/model-dir.md shows the recipe).

Why not the head alone over embeddings: a user would then have to reproduce marsctl's embeddings
(the same encoder files, pooling, normalisation and truncation) with torch and sentence-transformers,
which is most of what marsctl does; with the encoder inside, only the word pieces come from outside.

Inputs (int64 unless noted; B pairs, any token lengths): ``prompt_input_ids`` and
``prompt_attention_mask`` [B, Tp] (absent when the features do not read the prompt),
``response_input_ids`` and ``response_attention_mask`` [B, Tr], and ``response_chars`` (float32 [B],
the response's length in characters) only when the head has a length term. Outputs: ``reward`` [B]
(float32), and ``length_reward`` [B] (its length part) with a length term.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from marsctl.errors import ConfigError

FORMATS = ["onnx"]
ONNX_FORMAT = "marsctl-reward-onnx-v1"  # metadata "marsctl.format": bump when the inputs or outputs change
TOLERANCE = 1e-4  # largest |reward difference| to marsctl's own scores for an export to be written
PROBE_PAIRS = (
    ("How do I bake a loaf of bread without yeast?", "Mix flour, water, salt and baking soda, then bake it."),
    ("Hi.", "Hello! How can I help you today? " * 40),
)


def _network(head: Any) -> tuple[list[Any], bool]:
    """The head's members (modules giving (quality, length), or a [B, 1] reward) and whether one has a length term."""
    import torch

    net = head._ensure_model() if hasattr(head, "_ensure_model") else getattr(head, "model_", None)
    if not isinstance(net, torch.nn.Module):
        msg = f"the {head.name} head has no torch network to export"
        raise ConfigError(msg, hint="export supports the embedding heads (mlp, linear)")
    members = list(getattr(net, "members", [net]))
    return members, any(getattr(m, "length", None) is not None for m in members)


def _features_of(head: Any) -> list[str]:
    extra = head.extra_config()
    blocks = extra.get("features")
    if not (hasattr(head, "encoder") and isinstance(blocks, list) and blocks):
        msg = f"the {head.name} head is not an embedding head: only mlp and linear model directories export to ONNX"
        raise ConfigError(msg, hint="the transformer head's directory is a Hugging Face model: export it with optimum")
    unknown = sorted(set(blocks) - {"p", "r", "p*r", "|p-r|"})
    if unknown:
        msg = f"the {head.name} head's features include {unknown[0]!r}, which the ONNX export does not know"
        raise ConfigError(msg)
    if head.encoder.backend == "static":
        msg = "a head on the static encoder backend cannot be exported (its embeddings are a token table)"
        raise ConfigError(msg, hint="train it with -p encoder_backend=torch (or onnx) to export it")
    return blocks


def _graph(head: Any, blocks: list[str], members: list[Any], length: bool) -> Any:
    """The torch module traced into the graph (the head's modules in eval mode, inside)."""
    import torch

    st = head.encoder.torch.load()
    for m in members:
        m.eval()

    class RewardModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.st = st
            self.members = torch.nn.ModuleList(members)

        def embed(self, ids: Any, mask: Any) -> Any:
            out = self.st({"input_ids": ids, "attention_mask": mask})["sentence_embedding"]
            return torch.nn.functional.normalize(out.float(), p=2, dim=1)

        def forward(self, *inputs: Any) -> Any:
            args = list(inputs)
            p = self.embed(args.pop(0), args.pop(0)) if "p" in "".join(blocks) else None
            r = self.embed(args.pop(0), args.pop(0))
            chars = args.pop(0) if length else torch.zeros(r.shape[0])
            parts = {"p": lambda: p, "r": lambda: r, "p*r": lambda: p * r, "|p-r|": lambda: torch.abs(p - r)}
            x = torch.cat([parts[b]() for b in blocks], dim=1)
            full, ells = [], []
            for m in self.members:
                out = m(x, chars) if hasattr(m, "quality") else (m(x).squeeze(-1), torch.zeros_like(chars))
                full.append(out[0] + out[1])
                ells.append(out[1])
            reward = torch.stack(full).mean(dim=0)
            return (reward, torch.stack(ells).mean(dim=0)) if length else reward

    return RewardModel().eval()


def _names(blocks: list[str], length: bool) -> tuple[list[str], list[str]]:
    inputs = ["prompt_input_ids", "prompt_attention_mask"] if "p" in "".join(blocks) else []
    inputs += ["response_input_ids", "response_attention_mask"] + (["response_chars"] if length else [])
    return inputs, ["reward", "length_reward"] if length else ["reward"]


def tokenizer_json(head: Any) -> str:
    """The encoder's tokenizer.json, set to truncate at its ``max_seq_length`` and not to pad."""
    data = json.loads((Path(head.encoder.model_path) / "tokenizer.json").read_text(encoding="utf-8"))
    data["truncation"] = {"direction": "Right", "max_length": head.encoder.max_seq_length,
                          "strategy": "LongestFirst", "stride": 0}
    data["padding"] = None
    return json.dumps(data, ensure_ascii=False)


def _tokenize(tok: Any, texts: list[str], keep_end: bool, max_len: int) -> tuple[Any, Any]:
    """Ids and masks [B, T] of texts, as docs/model-dir.md says (prompts keep their end)."""
    import numpy as np

    if keep_end:
        tok.no_truncation()
        cut = []
        for t in texts:
            offsets = tok.encode(t, add_special_tokens=False).offsets
            cut.append(t if len(offsets) <= max_len - 2 else t[offsets[-(max_len - 2)][0] :])
        texts = cut
        tok.enable_truncation(max_len)
    encs = tok.encode_batch(texts)
    width = max(len(e.ids) for e in encs)
    ids = np.zeros((len(texts), width), dtype=np.int64)
    mask = np.zeros((len(texts), width), dtype=np.int64)
    for i, e in enumerate(encs):
        ids[i, : len(e.ids)] = e.ids
        mask[i, : len(e.ids)] = 1
    return ids, mask


def run_onnx(session: Any, tokenizer: Any, prompts: list[str], responses: list[str], max_len: int) -> list[float]:
    """Rewards from an exported graph for aligned prompts and responses (the recipe of docs/model-dir.md)."""
    import numpy as np

    names = {i.name for i in session.get_inputs()}
    feed = {}
    if "prompt_input_ids" in names:
        feed["prompt_input_ids"], feed["prompt_attention_mask"] = _tokenize(tokenizer, prompts, True, max_len)
    feed["response_input_ids"], feed["response_attention_mask"] = _tokenize(tokenizer, responses, False, max_len)
    if "response_chars" in names:
        feed["response_chars"] = np.array([len(r) for r in responses], dtype=np.float32)
    return [float(v) for v in session.run(["reward"], feed)[0]]


def _check_agrees(head: Any, path: Path) -> float:
    """The largest |reward difference| of the file at ``path`` to the head's own scores on probe pairs."""
    from tokenizers import Tokenizer

    from marsctl.embed import onnx_session

    session = onnx_session(path)
    tok = Tokenizer.from_str(tokenizer_json(head))
    prompts, responses = [p for p, _ in PROBE_PAIRS], [r for _, r in PROBE_PAIRS]
    got = run_onnx(session, tok, prompts, responses, head.encoder.max_seq_length)
    want = head.score_batch(prompts, responses)
    worst = max(abs(a - b) for a, b in zip(got, want, strict=True))
    if worst > TOLERANCE:
        msg = f"the ONNX export disagrees with marsctl's scores by {worst:.2e} (more than {TOLERANCE:g})"
        raise ConfigError(msg, hint="this model does not export faithfully; score it with marsctl score")
    return worst


def _metadata(head: Any, model_dir: Path, blocks: list[str], length: bool, members: int) -> dict[str, str]:
    from marsctl.embed import TRUNCATION_RULE
    from marsctl.stats import file_sha256
    from marsctl.version import __version__

    enc = head.encoder.describe()
    weights = model_dir / "model.safetensors"
    return {
        "marsctl.format": ONNX_FORMAT, "marsctl.version": __version__, "marsctl.head": head.name,
        "marsctl.features": json.dumps(blocks), "marsctl.ensemble": str(members),
        "marsctl.length_term": "term" if length else "off",
        "marsctl.encoder": json.dumps({"name": enc["name"], "fingerprint": enc["fingerprint"]}),
        "marsctl.max_seq_length": str(head.encoder.max_seq_length), "marsctl.truncation": TRUNCATION_RULE,
        "marsctl.model_sha256": file_sha256(weights) if weights.is_file() else "",
        "marsctl.tokenizer": tokenizer_json(head),
    }


def _write_graph(head: Any, model_dir: Path, dest: Path) -> None:
    """Trace the reward model into ``dest`` and add marsctl's metadata."""
    import warnings

    import torch

    from marsctl.embed import require

    onnx = require("onnx")
    blocks = _features_of(head)
    members, length = _network(head)
    inputs, outputs = _names(blocks, length)
    sample = torch.ones((2, 8), dtype=torch.int64)
    args = [sample, sample] * (len(inputs) // 2) + ([torch.tensor([10.0, 20.0])] if length else [])
    axes = {n: {0: "batch", 1: f"{n.split('_')[0]}_tokens"} for n in inputs if n != "response_chars"}
    axes |= {n: {0: "batch"} for n in [*outputs, *(["response_chars"] if length else [])]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_graph(head, blocks, members, length), tuple(args), str(dest), dynamo=False,
                          input_names=inputs, output_names=outputs, dynamic_axes=axes, opset_version=17)
    model = onnx.load(str(dest))
    for key, value in _metadata(head, model_dir, blocks, length, len(members)).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(dest))
    onnx.checker.check_model(str(dest))


def export_onnx(model_dir: str | Path, output: str | Path) -> dict[str, Any]:
    """Write the reward model of an mlp/linear model directory as one ONNX file, checked against marsctl's scores.

    Parameters
    ----------
    model_dir : path
        A model directory from ``marsctl train`` (an embedding head: mlp or linear).
    output : path
        The ``.onnx`` file to write (atomically: a temporary file beside it, renamed when checked); a
        device or pipe is written in place once the file is checked, never replaced.

    Returns
    -------
    dict
        ``output``, the graph's ``inputs`` and ``outputs``, ``bytes``, ``max_abs_diff`` (to the head's own
        scores on probe pairs with the encoder in fp32, as the graph computes it; the file is refused above
        ``TOLERANCE``) and ``encoder_precision`` (the graph's, fp32, and the one the model ran).
    """
    from marsctl.atomic import deliver, scratch_file, write_failed
    from marsctl.embed import require
    from marsctl.modeldir import load_head
    from marsctl.outputs import check_file_output, is_special

    target = Path(output)
    check_file_output(target, [model_dir])
    require("onnxruntime")
    require("tokenizers")
    head: Any = load_head(model_dir)  # an embedding head (``_features_of`` refuses the others)
    # The graph computes the encoder in fp32; a model that ran it in bf16 is checked against its own fp32 scores
    # (the bf16 scores differ from those by bf16's rounding, not by the export).
    fp32 = {"encoder_precision": "fp32"}
    reference = head if head.encoder.precision == "fp32" else load_head(model_dir, overrides=fp32)
    blocks = _features_of(head)
    inputs, outputs = _names(blocks, _network(head)[1])
    try:
        fd, tmp = scratch_file(target)  # beside a file; in $TMPDIR for a device or pipe, copied into it at the end
        os.close(fd)
    except OSError as e:
        raise write_failed(target, e) from None
    try:
        _write_graph(head, Path(model_dir), Path(tmp))
        worst = _check_agrees(reference, Path(tmp))
        size = Path(tmp).stat().st_size
        os.chmod(tmp, 0o644)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise write_failed(target, e) from None
        raise
    special = is_special(target)
    deliver(tmp, target)  # renamed over a regular file; a device or pipe is written in place, never replaced
    return {"output": str(target), "inputs": inputs, "outputs": outputs,
            "bytes": size if special else target.stat().st_size, "max_abs_diff": worst,
            "encoder_precision": {"graph": "fp32", "model": head.encoder.precision}}
