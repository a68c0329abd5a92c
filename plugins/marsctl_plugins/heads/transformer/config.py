"""The transformer head's hyper-parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from marsctl.losses import BTLossConfig
from marsctl.params import check_choice, check_interval

PRECISIONS = ["auto", "fp32", "bf16", "fp16"]
TEMPLATES = ["auto", "chat", "pair"]


@dataclass
class TransformerConfig(BTLossConfig):
    """Hyper-parameters of the transformer head."""

    owner: ClassVar[str] = "the transformer head"

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
        "help": "auto (bf16 where the CPU or GPU runs it natively, else fp32) | fp32 | bf16 (autocast, fp32 "
                "master weights; native units only) | fp16 (CUDA). Recorded in the model directory."})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "Recompute activations in the backward pass (less memory, ~30% slower)."})
    eval_batch_size: int = field(default=32, metadata={
        "help": "Texts per forward pass when scoring (length-sorted batches)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = self.owner
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
