"""The transformer head itself: loading the classifier, fine-tuning it with the BT loss, scoring, saving.

Several processes: every optimiser step sees the same global batch of
``batch_size * processes * grad_accum`` pairs whatever the number of processes, and the loss is
normalised by that global count, so 2 processes x 8 pairs train like 1 x 16. Only the main process
writes (``is_main_process``); metrics are summed across processes.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from pathlib import Path
from typing import Any, ClassVar

from marsctl.errors import ConfigError
from marsctl.losses import pair_weights, positive_weights
from marsctl.params import check_safetensors_dir
from marsctl.plugin import Head, derive_seed
from marsctl_plugins.heads.transformer.config import TransformerConfig
from marsctl_plugins.heads.transformer.distributed import (
    accelerator,
    attention_name,
    cpu_training_attention,
    default_device_type,
    env_local_rank,
    env_rank,
    loaded_precision,
    optimizer_step,
    precision_name,
    resolve_precision,
)
from marsctl_plugins.heads.transformer.encoding import (
    TRUNCATION_RULE,
    Feature,
    PairEncoder,
    PairItem,
    encode_pairs,
    report_encoding,
)


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
        self._acc: Any = None  # the accelerator of the first fit (None before it)
        self._fits = 0  # fits so far: seeds each fit's shuffling differently
        self._state_dict_: dict[str, Any] | None = None  # the full state dict gathered after an FSDP fit

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

    def _get_accelerator(self) -> Any:
        if self._acc is None:
            dtype = default_device_type()
            self._acc = accelerator("cpu" if dtype == "cpu" else None, resolve_precision(self.config.precision, dtype))
        return self._acc

    def is_main_process(self) -> bool:
        """False on the non-main ranks of a multi-process run (accelerate launch, torchrun)."""
        if self._acc is not None:
            return bool(self._acc.is_main_process)
        return env_rank() == 0

    # -- training ---------------------------------------------------------------------------------
    def _collate(self, feats: list[Feature], device: Any) -> dict[str, Any]:
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

    def _loss(self, model: Any, acc: Any, items: list[PairItem], scale: float,
              weights: list[float] | None = None) -> Any:
        """Loss of one micro-batch (scaled to the global step) and its detached (loss sum, correct, n).

        With ``weights``, each pair's term is weighted and the sums are weighted sums (n: the weights' sum).
        """
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
        # bt_loss is a (weighted) mean over this micro-batch; times the micro-batch's weight it is a sum,
        # and scale (processes / the global step's total weight) makes it a share of the global step's mean.
        if weights is None:
            loss = bt_loss(r_chosen, r_rejected, target, self.config.center_rewards) * len(items)
            w = torch.ones_like(r_chosen)
        else:
            w = torch.tensor(weights, device=rewards.device, dtype=rewards.dtype)
            loss = bt_loss(r_chosen, r_rejected, target, self.config.center_rewards, w) * w.sum()
        with torch.no_grad():
            delta = r_chosen - r_rejected - (target if target is not None else 0.0)
            stats = torch.stack([-(w * F.logsigmoid(delta)).sum(), (w * (r_chosen > r_rejected).float()).sum(),
                                 w.sum()])
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
            Records with prompt, chosen, rejected (and ``margin`` when ``margin_field`` is on); a
            ``weight`` field multiplies the pair's loss term (``marsctl.losses``; weight 0 leaves it out).
        epochs : int, optional
            Passes over the pairs; default ``config.epochs``.

        Returns
        -------
        TransformerHead
            ``self``, with ``history_`` (loss and accuracy per epoch) and ``manifest_``.
        """
        import torch

        t0 = time.perf_counter()
        keep, weights = positive_weights(pair_weights(pairs))  # weight 0: left out, as if not there
        pairs = [pairs[i] for i in keep] if len(keep) < len(pairs) else pairs
        self._ensure_model()
        acc = self._get_accelerator()
        epochs = self.config.epochs if epochs is None else epochs
        torch.manual_seed(derive_seed(self.seed, "fit", self._fits) % 2**32)
        items, enc_stats = encode_pairs(self.encoder(), pairs, self.config)
        if self.is_main_process():
            report_encoding(enc_stats, len(items), "train", self.max_length_)
        world, rank = acc.num_processes, acc.process_index
        per_step = self.config.batch_size * world * self.config.grad_accum
        steps_per_epoch = math.ceil(len(items) / per_step) if items else 0
        total = steps_per_epoch * epochs
        model = self.model_
        attention = cpu_training_attention(model, acc.mixed_precision, acc.device.type)
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
                                             world / _step_weight(step_idx, pad, weights),
                                             None if weights is None else [weights[i] for i in mine])
                    advance(1)
                sums = acc.reduce(sums, reduction="sum")
                n = max(float(sums[2]), 1.0)
                self.history_.append({"epoch": len(self.history_) + 1, "loss": round(float(sums[0]) / n, 6),
                                      "accuracy": round(float(sums[1]) / n, 6)})
        train_seconds = time.perf_counter() - t_train
        self._finish(acc, model)
        if attention is not None:  # scoring (and the saved model) keep the model's own attention
            self.model_.set_attn_implementation(attention)
        self._fits += 1
        self.manifest_ = {
            "seed": self.seed, "n_pairs": len(items), "epochs": epochs, "steps": total,
            "global_batch": per_step, "world_size": world, "precision": precision_name(acc.mixed_precision),
            "attention": attention_name(self.model_, attention),
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
                    mine: list[PairItem], scale: float, weights: list[float] | None = None) -> Any:
        """One optimiser step over this rank's pairs of the global step; returns (loss sum, correct, n)."""
        import torch

        bs = self.config.batch_size
        micro = range(0, len(mine), bs)
        sums = torch.zeros(3, device=acc.device)
        for j, i in enumerate(micro):
            last = j == len(micro) - 1
            with acc.no_sync(model) if not last else contextlib.nullcontext():
                loss, stats = self._loss(model, acc, mine[i : i + bs], scale,
                                         None if weights is None else weights[i : i + bs])
                acc.backward(loss)
            sums += stats
        if self.config.max_grad_norm > 0:
            acc.clip_grad_norm_(model.parameters(), self.config.max_grad_norm)
        optimizer_step(acc, optimizer)
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
        if default_device_type() == "cuda":
            return torch.device("cuda", env_local_rank())
        return torch.device("cpu")

    def score_pairs(self, prompts: list[str], chosen: list[str], rejected: list[str],
                    batch_size: int | None = None) -> tuple[list[float], list[float]]:
        """Rewards of chosen and rejected, each side in length-sorted batches of ``batch_size`` texts.

        ``batch_size`` defaults to ``eval_batch_size``; every text of a side is sorted together.
        """
        if not prompts:
            return [], []
        bs = batch_size or self.config.eval_batch_size
        return self._rewards(prompts, chosen, bs), self._rewards(prompts, rejected, bs)

    def score_batch(self, prompts: list[str], responses: list[str]) -> list[float]:
        """Rewards r(x, y), computed in length-sorted batches of ``eval_batch_size`` texts."""
        return self._rewards(prompts, responses, self.config.eval_batch_size)

    def _score_precision(self, device_type: str) -> str:
        """accelerate's mixed_precision for scoring: the fit's, else ``precision`` resolved here (fp16: CUDA only)."""
        if self._acc is not None:
            return str(self._acc.mixed_precision)
        if self.config.precision == "fp16" and device_type != "cuda":
            return "no"
        return resolve_precision(self.config.precision, device_type)

    def precision(self) -> str:
        """The precision this head trains and scores in here: fp32, bf16 or fp16 (recorded as ``precision``)."""
        return precision_name(self._score_precision(self._score_device().type))

    def _rewards(self, prompts: list[str], responses: list[str], bs: int) -> list[float]:
        import torch

        from marsctl import ui

        self._ensure_model()
        feats, cut = self.encoder().encode(prompts, responses)
        if any(cut) and self.is_main_process():
            ui.info(f"score: {sum(cut)} of {len(cut)} inputs longer than max_length={self.max_length_} "
                    "tokens; cut the prompt's start first")
        device = self._score_device()
        model = self.model_.to(device)
        model.eval()
        mp = self._score_precision(device.type)
        autocast = (torch.autocast(device.type, dtype=torch.bfloat16 if mp == "bf16" else torch.float16)
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
        kwargs = {"state_dict": self._state_dict_} if self._state_dict_ is not None else {}
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

    def reseed_as_loaded(self) -> None:
        """Seed as ``_load`` does, and count fits from zero as a loaded head does (each fit's seed uses it)."""
        import torch

        torch.manual_seed(self.seed)
        random.seed(self.seed)
        self._fits = 0

    def extra_config(self) -> dict[str, Any]:
        """Facts for the metadata file: backbone, template, effective max_length, truncation rule."""
        return {"backbone": self.backbone_ or self.config.model_path, "template": self.template_,
                "max_length": self.max_length_, "truncation": TRUNCATION_RULE,
                "added_pad_token": self.added_pad_token_, "hf_format": True, "precision": self.precision()}

    @classmethod
    def config_for_dir(cls, config: Any, meta: dict[str, Any], path: Path) -> Any:
        """The saved config, with ``precision`` the recorded one under ``auto`` (``distributed.loaded_precision``)."""
        import dataclasses

        if meta.get("precision") is None:  # written before the precision was recorded: as saved
            return config
        where = f"model dir {path}: {cls.meta_file}"
        return dataclasses.replace(config, precision=loaded_precision(config.precision, meta["precision"], where))


def _step_weight(step_idx: list[int], pad: int, weights: list[float] | None) -> float:
    """The total weight of one global step: its pairs, and the ``pad`` repeats that give every rank one.

    >>> _step_weight([3, 4], 1, None), _step_weight([0, 1], 1, [2.0, 0.5])
    (3, 4.5)
    """
    if weights is None:
        return len(step_idx) + pad
    return sum(weights[i] for i in step_idx) + sum(weights[step_idx[i % len(step_idx)]] for i in range(pad))


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
