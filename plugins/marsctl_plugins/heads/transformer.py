"""The ``transformer`` head: a full sequence-classifier reward model, fine-tuned end to end.

``AutoModelForSequenceClassification(num_labels=1)`` from any local Hugging Face model directory
(default: the bundled all-MiniLM-L6-v2, so it runs on CPU), trained with the Bradley–Terry loss
``-logsigmoid(r(x, y+) - r(x, y-))`` on chosen and rejected in one forward pass per batch.

Input text
    ``template=auto`` uses the tokenizer's chat template when it has one (a user turn holding the
    prompt, an assistant turn holding the response), else ``pair``: the tokenizer's own
    sentence-pair encoding, ``tokenizer(prompt, response)`` (``[CLS] prompt [SEP] response [SEP]``
    for BERT, RoBERTa and DeBERTa, the paper's backbones). A saved head is scored by plain
    transformers with exactly that call.
Truncation
    Sequences longer than ``max_length`` lose the *start of the prompt* first (the last turn of a
    dialogue is what the response answers); only when the prompt is gone is the response cut,
    keeping its beginning. Truncated pairs, and pairs whose chosen and rejected inputs become
    identical, are counted in the manifest and reported on stderr; no row is ever dropped.
Several processes
    ``fit`` runs under Hugging Face accelerate (DDP; FSDP or DeepSpeed through an accelerate config),
    launched with ``accelerate launch`` or ``torchrun``. Every optimiser step sees the same global
    batch of ``batch_size * processes * grad_accum`` pairs whatever the number of processes, and
    the loss is normalised by that global count, so 2 processes x 8 pairs train like 1 x 16.
    Only the main process writes (``is_main_process``); metrics are summed across processes.
Saved format
    ``save_pretrained`` of model and tokenizer (safetensors), so
    ``AutoModelForSequenceClassification.from_pretrained(dir)`` loads it; marsctl's own metadata goes
    to ``marsctl.json`` (``meta_file``) so it does not overwrite Hugging Face's ``config.json``.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from marsctl.errors import ConfigError
from marsctl.params import check_choice, check_interval, check_safetensors_dir
from marsctl.plugin import Head, derive_seed

PRECISIONS = ["auto", "fp32", "bf16", "fp16"]
TEMPLATES = ["auto", "chat", "pair"]
TRUNCATION_RULE = "prompt:cut-start-first,response:keep-start,v1"
_MP = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}
Feature = dict[str, list[int]]  # input_ids (and token_type_ids) of one (prompt, response)


@dataclass
class TransformerConfig:
    """Hyper-parameters of the transformer head."""

    model_path: str = field(default="", metadata={
        "help": "Local Hugging Face model directory; empty means the bundled all-MiniLM-L6-v2."})
    max_length: int = field(default=512, metadata={
        "help": "Tokens per (prompt, response) input; the prompt's start is cut first."})
    template: str = field(default="auto", metadata={
        "help": "Input format: auto (chat template if the tokenizer has one, else pair) | chat | pair."})
    epochs: int = field(default=1, metadata={"help": "Passes over the training pairs."})
    lr: float = field(default=2e-5, metadata={"help": "Peak learning rate (AdamW)."})
    batch_size: int = field(default=8, metadata={"help": "Pairs per forward pass on each process."})
    grad_accum: int = field(default=1, metadata={
        "help": "Forward passes per optimiser step (global batch = batch_size x processes x grad_accum)."})
    warmup_ratio: float = field(default=0.1, metadata={
        "help": "Fraction of the steps with a linear warm-up (then linear decay to 0)."})
    weight_decay: float = field(default=0.0, metadata={
        "help": "AdamW weight decay (not applied to biases and norm weights)."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0: off)."})
    dropout: float = field(default=0.0, metadata={
        "help": "Dropout probability set on every dropout layer while training (-1 keeps the model's; "
                "0 is TRL's disable_dropout default)."})
    precision: str = field(default="auto", metadata={
        "help": "auto (bf16 on a GPU that has it, else fp32) | fp32 | bf16 | fp16 (mixed precision)."})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "Recompute activations in the backward pass (less memory, ~30% slower)."})
    eval_batch_size: int = field(default=32, metadata={
        "help": "Texts per forward pass when scoring (length-sorted batches)."})
    margin_field: bool = field(default=False, metadata={
        "help": "Subtract a row's label-side 'margin' inside the loss (TRL's convention)."})
    center_rewards: float = field(default=0.0, metadata={
        "help": "Reward-centering coefficient (TRL): adds c*mean((r+ + r-)^2)."})

    def __post_init__(self) -> None:
        owner = "the transformer head"
        check_interval(self.max_length, "max_length", owner, kind=int, low=8, high=1_000_000)
        check_choice(self.template, "template", owner, TEMPLATES)
        check_interval(self.epochs, "epochs", owner, kind=int, low=0, high=10_000)
        check_interval(self.lr, "lr", owner, low=0, closed="right")
        check_interval(self.batch_size, "batch_size", owner, kind=int, low=1, high=65_536)
        check_interval(self.grad_accum, "grad_accum", owner, kind=int, low=1, high=65_536)
        check_interval(self.warmup_ratio, "warmup_ratio", owner, low=0, high=1)
        check_interval(self.weight_decay, "weight_decay", owner, low=0)
        check_interval(self.max_grad_norm, "max_grad_norm", owner, low=0)
        if self.dropout != -1:
            check_interval(self.dropout, "dropout", owner, low=0, high=1, closed="left")
        check_choice(self.precision, "precision", owner, PRECISIONS)
        check_interval(self.eval_batch_size, "eval_batch_size", owner, kind=int, low=1, high=65_536)
        check_interval(self.center_rewards, "center_rewards", owner, low=0)


# --------------------------------------------------------------------------------------- encoding
class PairEncoder:
    """Turns (prompt, response) texts into the model's input ids, truncating as the module doc says.

    Parameters
    ----------
    tokenizer : a Hugging Face tokenizer (a fast one gives exact prompt cuts)
    max_length : int
        Tokens per input, special tokens included.
    template : str
        ``chat`` or ``pair`` (``auto`` resolved by the caller).
    """

    def __init__(self, tokenizer: Any, max_length: int, template: str):
        self.tok = tokenizer
        self.max_length = max_length
        self.template = template

    def _render(self, prompts: list[str], responses: list[str]) -> list[dict[str, list[int]]]:
        if self.template == "chat":
            texts = [
                self.tok.apply_chat_template(
                    [{"role": "user", "content": p}, {"role": "assistant", "content": r}], tokenize=False)
                for p, r in zip(prompts, responses, strict=True)
            ]
            enc = self.tok(texts, add_special_tokens=False, verbose=False)
        else:
            enc = self.tok(prompts, responses, verbose=False)
        keys = [k for k in ("input_ids", "token_type_ids") if k in enc]
        return [{k: list(enc[k][i]) for k in keys} for i in range(len(prompts))]

    def _offsets(self, text: str) -> list[tuple[int, int]]:
        if getattr(self.tok, "is_fast", False):
            enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
            return [tuple(o) for o in enc["offset_mapping"]]
        # A slow tokenizer: approximate offsets by the decoded length of each token prefix.
        ids = self.tok(text, add_special_tokens=False, verbose=False)["input_ids"]
        out, start = [], 0
        for i in range(len(ids)):
            end = min(len(text), len(self.tok.decode(ids[: i + 1])))
            out.append((start, end))
            start = end
        return out

    def _cut(self, prompt: str, response: str, n: int) -> dict[str, list[int]]:
        """Re-encode an over-long input: cut the prompt's start, then (if needed) the response's end."""
        limit = self.max_length
        p_off = self._offsets(prompt)
        drop = 0
        while prompt:
            drop += n - limit
            prompt = prompt[p_off[drop][0]:] if drop < len(p_off) else ""
            enc = self._render([prompt], [response])[0]
            n = len(enc["input_ids"])
            if n <= limit:
                return enc
        r_off = self._offsets(response)
        keep = len(r_off)
        for _ in range(8):
            keep -= n - limit
            response = response[: r_off[keep - 1][1]] if keep > 0 else ""
            enc = self._render([""], [response])[0]
            n = len(enc["input_ids"])
            if n <= limit or not response:
                break
        # Last resort (the template alone is longer than max_length): hard cut, keep the start.
        return {k: v[:limit] for k, v in enc.items()}

    def encode(self, prompts: list[str], responses: list[str]) -> tuple[list[Feature], list[bool]]:
        """Input features for each (prompt, response) and whether it was truncated."""
        feats = self._render(prompts, responses)
        cut = [False] * len(feats)
        for i, f in enumerate(feats):
            if len(f["input_ids"]) > self.max_length:
                feats[i] = self._cut(prompts[i], responses[i], len(f["input_ids"]))
                cut[i] = True
        return feats, cut


# ---------------------------------------------------------------------------------- accelerate glue
class _SingleProcess:
    """The few Accelerator methods ``fit`` uses, for plain single-process torch without accelerate."""

    num_processes = 1
    process_index = 0
    is_main_process = True
    distributed_type = "NO"

    def __init__(self, device: Any, mixed_precision: str):
        self.device = device
        self.mixed_precision = mixed_precision
        import torch

        self._scaler = torch.amp.GradScaler(device.type) if mixed_precision == "fp16" else None

    def prepare(self, model: Any, optimizer: Any) -> tuple[Any, Any]:
        self._optimizer = optimizer
        return model, optimizer

    def autocast(self) -> Any:
        import contextlib

        import torch

        if self.mixed_precision == "no":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.mixed_precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def no_sync(self, model: Any) -> Any:
        import contextlib

        return contextlib.nullcontext()

    def backward(self, loss: Any) -> None:
        (self._scaler.scale(loss) if self._scaler else loss).backward()

    def clip_grad_norm_(self, params: Any, max_norm: float) -> Any:
        import torch

        if self._scaler:
            self._scaler.unscale_(self._optimizer)
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    def step(self, optimizer: Any) -> None:
        if self._scaler:
            self._scaler.step(optimizer)
            self._scaler.update()
        else:
            optimizer.step()

    def reduce(self, tensor: Any, reduction: str = "sum") -> Any:
        return tensor

    def unwrap_model(self, model: Any) -> Any:
        return model

    def wait_for_everyone(self) -> None:
        pass

    def free_memory(self) -> None:
        pass


def _world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def _accelerator(device: str | None, mixed_precision: str) -> Any:
    """An accelerate ``Accelerator`` (or the single-process stand-in when accelerate is missing)."""
    try:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
    except ImportError:
        if _world_size_from_env() > 1:
            msg = "the transformer head needs accelerate for multi-process training"
            raise ConfigError(msg, hint="pip install 'marsctl[gpu]'") from None
        import torch

        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if mixed_precision != "no" and dev.type == "cpu" and mixed_precision == "fp16":
            mixed_precision = "no"
        return _SingleProcess(dev, mixed_precision)
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") not in (None, mixed_precision):
        # Another head in this process chose another precision; keep the process group, reset the rest.
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=mixed_precision, cpu=device == "cpu")


def _step_on(acc: Any, optimizer: Any) -> None:
    if isinstance(acc, _SingleProcess):
        acc.step(optimizer)
    else:
        optimizer.step()


# ---------------------------------------------------------------------------------------- the head
class TransformerHead(Head):
    """A full sequence-classifier reward model fine-tuned with the Bradley–Terry loss."""

    name: ClassVar[str] = "transformer"
    version: ClassVar[str] = "0.1.0"
    Config: ClassVar[type] = TransformerConfig
    # marsctl's metadata must not overwrite Hugging Face's config.json in the same directory.
    meta_file: ClassVar[str] = "marsctl.json"

    def __init__(self, config: Any = None, *, seed: int = 0):
        super().__init__(config, seed=seed)
        self.model_: Any = None
        self.tokenizer_: Any = None
        self.backbone_: str = ""
        self.template_: str = ""
        self.max_length_: int = self.config.max_length
        self.added_pad_token_: str | None = None
        self._acc: Any = None
        self._fits = 0

    # -- model ------------------------------------------------------------------------------------
    def _imports(self) -> Any:
        try:
            import transformers
        except ImportError:
            msg = "the transformer head needs transformers"
            raise ConfigError(msg, hint="pip install 'marsctl[gpu]'") from None
        return transformers

    def _load(self, path: str) -> None:
        """Load tokenizer and model from a local directory (seeded first: the new score layer is random)."""
        import torch

        transformers = self._imports()
        if not Path(path).is_dir():
            msg = f"the transformer head's model_path {path}: no such directory"
            raise ConfigError(msg, hint="pass a local Hugging Face model directory with -p model_path=DIR")
        # Never unpickle: a directory without safetensors weights is refused before anything loads.
        check_safetensors_dir(path, "the transformer head's model", auto="AutoModelForSequenceClassification")
        torch.manual_seed(self.seed)
        random.seed(self.seed)
        try:
            tok = transformers.AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as e:
            msg = f"model {path}: cannot load its tokenizer ({_first_line(e)})"
            raise ConfigError(msg, hint="pass a Hugging Face model directory saved with save_pretrained") from None
        model = self._load_model(transformers, path)
        model.float()  # fp32 master weights; mixed precision is autocast
        self.tokenizer_, self.model_ = tok, model
        self._ensure_pad_token()
        self._resolve_template()
        self._resolve_max_length()

    def _load_model(self, transformers: Any, path: str) -> Any:
        """The sequence classifier, from safetensors only, with every parameter checked to be finite."""
        import torch
        from safetensors import SafetensorError

        weights = Path(path) / "model.safetensors"
        where = weights if weights.exists() else f"model {path}"
        log = transformers.logging
        verbosity, bars = log.get_verbosity(), log.is_progress_bar_enabled()
        log.set_verbosity_error()  # "some weights newly initialised" is expected: the score layer is new
        log.disable_progress_bar()
        try:
            model = transformers.AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=1, use_safetensors=True)
        except (SafetensorError, OSError, ValueError, RuntimeError, KeyError) as e:
            msg = f"{where}: cannot load the model's weights ({_first_line(e)})"
            raise ConfigError(msg, hint="the model's files are damaged or incomplete: restore them, or "
                                        "save the model again with save_pretrained") from None
        finally:
            log.set_verbosity(verbosity)
            if bars:
                log.enable_progress_bar()
        for name, p in model.named_parameters():
            if p.is_floating_point() and not bool(torch.isfinite(p).all()):
                msg = f"{where}: parameter {name!r} holds NaN or infinite values (damaged weights)"
                raise ConfigError(msg, hint="restore the model's files, or train it again")
        return model

    def _ensure_pad_token(self) -> None:
        from marsctl import ui

        tok, model = self.tokenizer_, self.model_
        if tok.pad_token is None:
            if tok.eos_token is not None:
                tok.pad_token = tok.eos_token
            else:
                tok.add_special_tokens({"pad_token": "[PAD]"})
            self.added_pad_token_ = tok.pad_token
            if self.is_main_process():
                ui.warn(f"the tokenizer has no pad token; using {tok.pad_token!r} (saved with the model)")
        if len(tok) > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(tok))
        model.config.pad_token_id = tok.pad_token_id

    def _resolve_template(self) -> None:
        has_chat = bool(getattr(self.tokenizer_, "chat_template", None))
        t = self.config.template
        if t == "chat" and not has_chat:
            msg = f"template 'chat': the tokenizer of {self.backbone_ or 'the model'} has no chat template"
            raise ConfigError(msg, hint="use -p template=pair (or auto)")
        self.template_ = ("chat" if has_chat else "pair") if t == "auto" else t

    def _resolve_max_length(self) -> None:
        from marsctl import ui

        limit = getattr(self.model_.config, "max_position_embeddings", None)
        tok_max = getattr(self.tokenizer_, "model_max_length", None)
        if isinstance(tok_max, int) and tok_max < 1_000_000:
            limit = min(limit or tok_max, tok_max)
        self.max_length_ = self.config.max_length
        if limit and self.max_length_ > limit:
            if self.is_main_process():
                ui.warn(f"max_length={self.max_length_} is more than the model reads; using {limit}")
            self.max_length_ = int(limit)

    def _ensure_model(self) -> None:
        if self.model_ is None:
            from marsctl.embed import default_encoder_path

            self.backbone_ = self.config.model_path or default_encoder_path()
            self._load(self.backbone_)

    def encoder(self) -> PairEncoder:
        """The encoder that turns texts into this head's exact input ids."""
        self._ensure_model()
        return PairEncoder(self.tokenizer_, self.max_length_, self.template_)

    def _precision(self, device_type: str) -> str:
        import torch

        p = self.config.precision
        if p == "auto":
            env = os.environ.get("ACCELERATE_MIXED_PRECISION")
            if env in ("no", "bf16", "fp16"):
                return env
            if device_type == "cuda" and torch.cuda.is_bf16_supported():
                return "bf16"
            return "no"
        if p == "fp16" and device_type != "cuda":
            msg = "precision fp16 needs a CUDA device"
            raise ConfigError(msg, hint="use -p precision=bf16 or fp32 on CPU")
        return _MP[p]

    def _device_type(self) -> str:
        import torch

        if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
            return "cpu"
        return "cuda" if torch.cuda.is_available() else "cpu"

    def _get_accelerator(self) -> Any:
        if self._acc is None:
            dtype = self._device_type()
            self._acc = _accelerator("cpu" if dtype == "cpu" else None, self._precision(dtype))
        return self._acc

    def is_main_process(self) -> bool:
        """False on the non-main ranks of a multi-process run (accelerate launch, torchrun)."""
        if self._acc is not None:
            return bool(self._acc.is_main_process)
        return int(os.environ.get("RANK", "0") or 0) == 0

    # -- training ---------------------------------------------------------------------------------
    def _features(self, pairs: list[dict[str, Any]]) -> tuple[list[tuple[Any, Any, float]], dict[str, int]]:
        enc = self.encoder()
        prompts = [p["prompt"] for p in pairs]
        chosen, cut_c = enc.encode(prompts, [p["chosen"] for p in pairs])
        rejected, cut_r = enc.encode(prompts, [p["rejected"] for p in pairs])
        margins = [float(p.get("margin", 0.0) or 0.0) if self.config.margin_field else 0.0 for p in pairs]
        stats = {
            "truncated_pairs": sum(1 for c, r in zip(cut_c, cut_r, strict=True) if c or r),
            "identical_after_truncation": sum(
                1 for p, c, r in zip(pairs, chosen, rejected, strict=True)
                if c["input_ids"] == r["input_ids"] and p["chosen"] != p["rejected"]),
            "identical_texts": sum(1 for p in pairs if p["chosen"] == p["rejected"]),
        }
        return list(zip(chosen, rejected, margins, strict=True)), stats

    def _report_encoding(self, stats: dict[str, int], n: int, what: str) -> None:
        from marsctl import ui

        if not self.is_main_process():
            return
        if stats["truncated_pairs"]:
            ui.info(f"{what}: {stats['truncated_pairs']} of {n} pairs longer than max_length="
                    f"{self.max_length_} tokens; cut the prompt's start first (responses kept)")
        if stats["identical_after_truncation"]:
            ui.warn(f"{what}: {stats['identical_after_truncation']} of {n} pairs have identical chosen and "
                    f"rejected inputs after truncation (kept; they carry no signal). Raise max_length.")
        if stats["identical_texts"]:
            ui.warn(f"{what}: {stats['identical_texts']} of {n} pairs have the same chosen and rejected text")

    def _collate(self, feats: list[dict[str, list[int]]], device: Any) -> dict[str, Any]:
        batch = self.tokenizer_.pad(feats, padding=True, return_tensors="pt")
        return {k: v.to(device) for k, v in batch.items()}

    def _optimizer(self, model: Any) -> Any:
        import torch

        decay, no_decay = [], []
        for p in model.parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 else no_decay).append(p)
        groups = [{"params": decay, "weight_decay": self.config.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        try:  # the fused kernel (CPU and CUDA), as transformers' Trainer uses by default
            return torch.optim.AdamW(groups, lr=self.config.lr, fused=True)
        except (RuntimeError, TypeError, ValueError):
            return torch.optim.AdamW(groups, lr=self.config.lr)

    def _set_dropout(self, model: Any) -> None:
        import torch

        if self.config.dropout >= 0:
            for m in model.modules():
                if isinstance(m, torch.nn.Dropout):
                    m.p = self.config.dropout

    def _loss(self, model: Any, acc: Any, items: list[tuple[Any, Any, float]], scale: float) -> Any:
        """Loss of one micro-batch (scaled to the global step) and its detached (loss sum, correct)."""
        import torch
        import torch.nn.functional as F

        from marsctl.losses import bt_loss

        feats = [c for c, _, _ in items] + [r for _, r, _ in items]
        batch = self._collate(feats, acc.device)
        with acc.autocast():
            rewards = model(**batch).logits.squeeze(-1).float()  # [2B]: chosen then rejected
        r_chosen, r_rejected = rewards[: len(items)], rewards[len(items) :]
        target = None
        if self.config.margin_field:
            target = torch.tensor([m for _, _, m in items], device=rewards.device)
        # bt_loss is a mean over this micro-batch; scale makes it a share of the global step's mean.
        loss = bt_loss(r_chosen, r_rejected, target, self.config.center_rewards) * len(items)
        with torch.no_grad():
            delta = r_chosen - r_rejected - (target if target is not None else 0.0)
            stats = torch.stack([-F.logsigmoid(delta).sum(), (r_chosen > r_rejected).float().sum()])
        return loss * scale, stats

    def _shard(self, idx: list[int], world: int, rank: int) -> tuple[list[int], int]:
        """This rank's part of one global step, and how many pairs were repeated to give every rank one."""
        padded = 0
        if len(idx) < world:
            padded = world - len(idx)
            idx = idx + [idx[i % len(idx)] for i in range(padded)]
        base, extra = divmod(len(idx), world)
        start = rank * base + min(rank, extra)
        return idx[start : start + base + (1 if rank < extra else 0)], padded

    def fit(self, pairs: list[dict[str, Any]], *, epochs: int | None = None) -> TransformerHead:
        """Fine-tune on pairs (continuing from the current weights); returns ``self``.

        Parameters
        ----------
        pairs : list of dict
            Records with prompt, chosen, rejected (and ``margin`` when ``margin_field`` is on).
        epochs : int, optional
            Passes over the pairs; default ``config.epochs``.

        Returns
        -------
        TransformerHead
            ``self``, with ``history_`` (loss and accuracy per epoch) and ``manifest_``.
        """
        import torch

        t0 = time.perf_counter()
        self._ensure_model()
        acc = self._get_accelerator()
        epochs = self.config.epochs if epochs is None else epochs
        torch.manual_seed(derive_seed(self.seed, "fit", self._fits) % 2**32)
        items, enc_stats = self._features(pairs)
        self._report_encoding(enc_stats, len(items), "train")
        world, rank = acc.num_processes, acc.process_index
        per_step = self.config.batch_size * world * self.config.grad_accum
        steps_per_epoch = math.ceil(len(items) / per_step) if items else 0
        total = steps_per_epoch * epochs
        model = self.model_
        self._set_dropout(model)
        if self.config.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        optimizer = self._optimizer(model)
        model, optimizer = acc.prepare(model, optimizer)
        scheduler = self._scheduler(optimizer, total)
        padded = 0
        t_train = time.perf_counter()
        from marsctl import ui

        with ui.progress("training", total if acc.is_main_process else 0, "steps") as advance:
            for epoch in range(epochs):
                order = list(range(len(items)))
                random.Random(derive_seed(self.seed, "order", self._fits, epoch)).shuffle(order)
                sums = torch.zeros(3, device=acc.device)
                for s in range(steps_per_epoch):
                    step_idx = order[s * per_step : (s + 1) * per_step]
                    mine, pad = self._shard(step_idx, world, rank)
                    padded += pad
                    sums += self._train_step(model, optimizer, scheduler, acc, [items[i] for i in mine],
                                             world / (len(step_idx) + pad))
                    advance(1)
                sums = acc.reduce(sums, reduction="sum")
                n = max(float(sums[2]), 1.0)
                self.history_.append({"epoch": len(self.history_) + 1, "loss": round(float(sums[0]) / n, 6),
                                      "accuracy": round(float(sums[1]) / n, 6)})
        train_seconds = time.perf_counter() - t_train
        self._finish(acc, model)
        self._fits += 1
        self.manifest_ = {
            "seed": self.seed, "n_pairs": len(items), "epochs": epochs, "steps": total,
            "global_batch": per_step, "world_size": world, "precision": acc.mixed_precision,
            "device": str(acc.device), "backbone": self.backbone_, "template": self.template_,
            "max_length": self.max_length_, "truncation": TRUNCATION_RULE, **enc_stats,
            "final_loss": self.history_[-1]["loss"] if self.history_ else None,
            "padded_pairs": padded, "train_seconds": round(train_seconds, 3),
            "pairs_per_second": round(len(items) * epochs / train_seconds, 3) if train_seconds > 0 else None,
            "wall_seconds": round(time.perf_counter() - t0, 3),
        }
        return self

    def _scheduler(self, optimizer: Any, total: int) -> Any:
        import torch

        warmup = math.ceil(self.config.warmup_ratio * total)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return max(0.0, (total - step) / max(1, total - warmup))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def _train_step(self, model: Any, optimizer: Any, scheduler: Any, acc: Any,
                    mine: list[Any], scale: float) -> Any:
        """One optimiser step over this rank's pairs of the global step; returns (loss sum, correct, n)."""
        import torch

        bs = self.config.batch_size
        micro = [mine[i : i + bs] for i in range(0, len(mine), bs)]
        sums = torch.zeros(3, device=acc.device)
        for j, chunk in enumerate(micro):
            last = j == len(micro) - 1
            ctx = acc.no_sync(model) if not last else _null()
            with ctx:
                loss, stats = self._loss(model, acc, chunk, scale)
                acc.backward(loss)
            sums[:2] += stats
            sums[2] += len(chunk)
        if self.config.max_grad_norm > 0:
            acc.clip_grad_norm_(model.parameters(), self.config.max_grad_norm)
        _step_on(acc, optimizer)
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return sums

    def _finish(self, acc: Any, model: Any) -> None:
        """Unwrap the trained model (gathering a full state dict under FSDP) and put it in eval mode."""
        self._state_dict_ = None
        if "FSDP" in str(acc.distributed_type):
            self._state_dict_ = acc.get_state_dict(model)  # a collective: every rank calls it
        self.model_ = acc.unwrap_model(model)
        if self.config.gradient_checkpointing:
            self.model_.gradient_checkpointing_disable()
        self.model_.eval()
        acc.wait_for_everyone()
        acc.free_memory()

    # -- scoring ----------------------------------------------------------------------------------
    def _score_device(self) -> Any:
        import torch

        if self._acc is not None:
            return self._acc.device
        if self._device_type() == "cuda":
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0") or 0))
        return torch.device("cpu")

    def score(self, records: list[dict[str, Any]], batch_size: int | None = None) -> list[dict[str, Any]]:
        """Score records in length-sorted batches of ``batch_size`` texts (default ``eval_batch_size``)."""
        self._score_bs = batch_size or self.config.eval_batch_size
        try:
            return super().score(records, batch_size=max(1, len(records)))
        finally:
            self._score_bs = None

    def score_batch(self, prompts: list[str], responses: list[str]) -> list[float]:
        """Rewards r(x, y), computed in length-sorted batches."""
        import contextlib

        import torch

        from marsctl import ui

        self._ensure_model()
        feats, cut = self.encoder().encode(prompts, responses)
        if any(cut) and self.is_main_process():
            ui.info(f"score: {sum(cut)} of {len(cut)} inputs longer than max_length={self.max_length_} "
                    "tokens; cut the prompt's start first")
        bs = getattr(self, "_score_bs", None) or self.config.eval_batch_size
        device = self._score_device()
        model = self.model_.to(device)
        model.eval()
        mp = self._precision(device.type) if device.type == "cuda" else "no"
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16 if mp == "bf16" else torch.float16)
                    if mp != "no" else contextlib.nullcontext())
        order = sorted(range(len(feats)), key=lambda i: len(feats[i]["input_ids"]))
        out = [0.0] * len(feats)
        show = len(feats) if self.is_main_process() and len(feats) > bs else 0
        with ui.progress("scoring", show, "texts") as advance, torch.inference_mode(), autocast:
            for i in range(0, len(order), bs):
                idx = order[i : i + bs]
                batch = self._collate([feats[k] for k in idx], device)
                rewards = model(**batch).logits.squeeze(-1).float().cpu().tolist()
                for k, r in zip(idx, rewards, strict=True):
                    out[k] = float(r)
                advance(len(idx))
        return out

    # -- saving -----------------------------------------------------------------------------------
    def save_weights(self, path: Path) -> None:
        """``save_pretrained`` model and tokenizer (safetensors) into ``path``."""
        self._ensure_model()
        state = getattr(self, "_state_dict_", None)
        kwargs = {"state_dict": state} if state is not None else {}
        log = self._imports().logging
        bars = log.is_progress_bar_enabled()
        log.disable_progress_bar()
        try:
            self.model_.save_pretrained(str(path), **kwargs)
        finally:
            if bars:
                log.enable_progress_bar()
        self.tokenizer_.save_pretrained(str(path))

    def load_weights(self, path: Path) -> None:
        """Load a directory written by ``save_weights`` (any Hugging Face classifier dir works too)."""
        self.backbone_ = self.config.model_path or ""
        self._load(str(path))
        self.model_.eval()

    def extra_config(self) -> dict[str, Any]:
        """Facts for the metadata file: backbone, template, effective max_length, truncation rule."""
        return {"backbone": self.backbone_ or self.config.model_path, "template": self.template_,
                "max_length": self.max_length_, "truncation": TRUNCATION_RULE,
                "added_pad_token": self.added_pad_token_, "hf_format": True}


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def _null() -> Any:
    import contextlib

    return contextlib.nullcontext()
