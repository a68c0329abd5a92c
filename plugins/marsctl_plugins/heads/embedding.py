"""Reward heads on frozen sentence embeddings: ``mlp`` (the CPU default) and ``linear``.

A pair (x, y) becomes features of the cached MiniLM embeddings e(x) of the prompt and e(y) of the
response; the head maps them to a scalar reward and trains with the Bradley–Terry loss.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from marsctl.embed import Encoder, get_encoder
from marsctl.encoders import BACKENDS
from marsctl.losses import BTLossConfig
from marsctl.modeldir import check_state, read_safetensors
from marsctl.params import check_choice, check_interval
from marsctl.plugin import Head, derive_seed


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block on ``n`` torch threads (0: leave torch's setting alone)."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


FEATURES = {
    # name: the blocks concatenated, each one embedding wide (so the input is len(blocks) x the embedding dim)
    "response": ("r",),
    "prompt-response": ("p", "r"),
    "interaction": ("r", "p*r"),
    "full": ("p", "r", "p*r", "|p-r|"),
}


# Upper bounds, so that a config (a -p flag or a model dir's config.json) cannot make marsctl allocate
# unbounded memory: hidden=65536 on the 'full' features of a 384-d encoder is 100M weights (400 MB).
MAX_HIDDEN = 65536
MAX_BATCH = 1 << 20
MAX_EPOCHS = 10_000
MAX_THREADS = 1024


@dataclass
class LinearConfig(BTLossConfig):
    """Hyper-parameters of the linear head."""

    features: str = field(default="interaction", metadata={
        "help": "Pair features: response | prompt-response | interaction (e(r), e(p)*e(r)) | full."})
    # 20 epochs for the linear head: it does not overfit in 20 (benchmarks/epochs.py).
    epochs: int = field(default=20, metadata={"help": "Passes over the training pairs."})
    lr: float = field(default=1e-3, metadata={"help": "Learning rate (AdamW)."})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay."})
    batch_size: int = field(default=64, metadata={"help": "Pairs per optimiser step."})
    threads: int = field(default=1, metadata={
        "help": "Torch threads while training (0: torch's default). 1 was measured on a busy 2-core machine: "
                "6.7 s vs 111 s with 2 threads."})
    encoder: str = field(default="", metadata={
        "help": "Local sentence-transformers directory; empty means the bundled all-MiniLM-L6-v2."})
    max_seq_length: int = field(default=256, metadata={"help": "Word pieces the encoder reads per text."})
    encoder_backend: str = field(default="torch", metadata={
        "help": "How the encoder runs: " + "; ".join(f"{k}: {v}" for k, v in BACKENDS.items()) + "."})

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = self.owner
        check_choice(self.features, "features", owner, list(FEATURES))
        check_choice(self.encoder_backend, "encoder_backend", owner, list(BACKENDS))
        check_interval(self.epochs, "epochs", owner, kind=int, low=0, high=MAX_EPOCHS)
        check_interval(self.lr, "lr", owner, low=0, closed="right")
        check_interval(self.weight_decay, "weight_decay", owner, low=0)
        check_interval(self.batch_size, "batch_size", owner, kind=int, low=1, high=MAX_BATCH)
        check_interval(self.threads, "threads", owner, kind=int, low=0, high=MAX_THREADS)
        check_interval(self.max_seq_length, "max_seq_length", owner, kind=int, low=8, high=8192)


@dataclass
class MLPConfig(LinearConfig):
    """Hyper-parameters of the MLP head."""

    # 5 epochs: held-out accuracy peaks there on all three shared datasets (benchmarks/epochs.py).
    epochs: int = field(default=5, metadata={"help": "Passes over the training pairs."})
    hidden: int = field(default=256, metadata={"help": "Hidden units of the MLP."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout after the hidden layer."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_interval(self.hidden, "hidden", self.owner, kind=int, low=1, high=MAX_HIDDEN)
        check_interval(self.dropout, "dropout", self.owner, low=0, high=1, closed="left")


class LinearHead(Head):
    """A linear Bradley–Terry head on frozen sentence-embedding features."""

    name: ClassVar[str] = "linear"
    version: ClassVar[str] = "0.1.0"
    Config: ClassVar[type] = LinearConfig

    def __init__(self, config: Any = None, *, seed: int = 0, encoder: Encoder | None = None):
        super().__init__(config, seed=seed)
        self.encoder = encoder or get_encoder(self.config.encoder or None, self.config.max_seq_length,
                                              backend=self.config.encoder_backend)
        self.model_: Any = None

    # -- features ----------------------------------------------------------------------------------
    def _features(self, prompts: list[str], responses: list[str]) -> Any:
        import numpy as np

        blocks = FEATURES[self.config.features]
        p = self.encoder.encode(prompts, side="prompt") if any("p" in b for b in blocks) else None
        r = self.encoder.encode(responses, side="response")
        parts = {"r": lambda: r, "p": lambda: p, "p*r": lambda: p * r, "|p-r|": lambda: np.abs(p - r)}
        return np.concatenate([parts[b]() for b in blocks], axis=1).astype(np.float32)

    def _pair_features(self, pairs: list[dict[str, Any]]) -> tuple[Any, Any]:
        prompts = [p["prompt"] for p in pairs]
        xc = self._features(prompts, [p["chosen"] for p in pairs])
        xr = self._features(prompts, [p["rejected"] for p in pairs])
        return xc, xr

    def build(self, in_dim: int) -> Any:
        """The network: one linear unit."""
        import torch

        return torch.nn.Linear(in_dim, 1)

    def _in_dim(self) -> int:
        return self.encoder.dim * len(FEATURES[self.config.features])

    def _ensure_model(self) -> Any:
        if self.model_ is None:
            self.model_ = self._new_network()
        return self.model_

    def _new_network(self) -> Any:
        """A network initialised from the head's seed (this reseeds torch, whose stream dropout draws from)."""
        import torch

        torch.manual_seed(derive_seed(self.seed, "init") % (2**31))
        return self.build(self._in_dim())

    def reseed_as_loaded(self) -> None:
        """Leave torch's random stream where loading this head leaves it (a load builds a new network first)."""
        self._new_network()

    # -- training ----------------------------------------------------------------------------------
    def fit(self, pairs: list[dict[str, Any]], *, epochs: int | None = None) -> LinearHead:
        """Train with the BT loss, continuing from the current weights."""
        t0 = time.perf_counter()
        epochs = self.config.epochs if epochs is None else epochs
        xc, xr = self._pair_features(pairs)
        t_feat = time.perf_counter() - t0
        model = self._ensure_model()
        with torch_threads(self.config.threads):
            steps = self._train_loop(model, xc, xr, pairs, epochs)
        self.manifest_.update({
            "n_pairs": len(pairs), "epochs": epochs, "steps": steps,
            "feature_seconds": round(t_feat, 3), "train_seconds": round(time.perf_counter() - t0 - t_feat, 3),
            "final_loss": self.history_[-1]["loss"] if self.history_ else None,
        })
        return self

    def _train_loop(self, model: Any, xc: Any, xr: Any, pairs: list[dict[str, Any]], epochs: int) -> int:
        """Mini-batch AdamW on the BT loss; returns the number of optimiser steps."""
        import torch

        from marsctl.losses import bt_loss

        xc_t, xr_t = torch.from_numpy(xc), torch.from_numpy(xr)
        target = torch.tensor(self.config.target_margins(pairs))
        opt = torch.optim.AdamW(model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "shuffle") % (2**31))
        n, bs, steps = len(pairs), self.config.batch_size, 0
        for _ in range(epochs):
            model.train()
            order = torch.randperm(n, generator=gen)
            total = 0.0
            for i in range(0, n, bs):
                idx = order[i : i + bs]
                r_chosen = model(xc_t[idx]).squeeze(-1)
                r_rejected = model(xr_t[idx]).squeeze(-1)
                loss = bt_loss(r_chosen, r_rejected, target[idx], self.config.center_rewards)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
                steps += 1
            self.history_.append({"epoch": len(self.history_) + 1, "loss": round(total / n, 6)})
        return steps

    def score_batch(self, prompts: list[str], responses: list[str]) -> list[float]:
        """Rewards for aligned prompts and responses.

        Computed in float64 on a float64 copy of the weights: a float32 matrix product gives row
        results that differ by ~1e-7 with the number of rows, so scores would depend on the batch
        size; in float64 they agree far below the 6 decimals written.
        """
        import copy

        import torch

        model = copy.deepcopy(self._ensure_model()).double()
        model.eval()
        with torch.no_grad():
            x = torch.from_numpy(self._features(prompts, responses)).double()
            return model(x).squeeze(-1).tolist()

    def last_hidden(self, prompts: list[str], responses: list[str]) -> Any:
        """Inputs to the last linear layer (for the curvature trace)."""
        return self._features(prompts, responses)

    # -- persistence -------------------------------------------------------------------------------
    def save_weights(self, path: Path) -> None:
        """model.safetensors."""
        from safetensors.torch import save_file

        model = self._ensure_model()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))

    def load_weights(self, path: Path) -> None:
        """Read model.safetensors written by save_weights (names, shapes, dtypes and finiteness checked)."""
        from marsctl.errors import ConfigError

        f = path / "model.safetensors"
        if not f.is_file():
            msg = f"model dir {path}: no model.safetensors"
            raise ConfigError(msg)
        self.model_ = None
        model = self._ensure_model()
        state = read_safetensors(f)
        check_state(f, state, model.state_dict(), f"the {self.name} head's config")
        model.load_state_dict(state)

    def extra_config(self) -> dict[str, Any]:
        """Encoder and feature spec."""
        return {"encoder": self.encoder.describe(), "features": list(FEATURES[self.config.features]),
                "input_dim": self._in_dim()}


class MLPHead(LinearHead):
    """A small MLP (Linear → GELU → Dropout → Linear) on frozen sentence-embedding features."""

    name: ClassVar[str] = "mlp"
    version: ClassVar[str] = "0.1.0"
    Config: ClassVar[type] = MLPConfig

    def build(self, in_dim: int) -> Any:
        """The network."""
        import torch

        return torch.nn.Sequential(
            torch.nn.Linear(in_dim, self.config.hidden),
            torch.nn.GELU(),
            torch.nn.Dropout(self.config.dropout),
            torch.nn.Linear(self.config.hidden, 1),
        )

    def last_hidden(self, prompts: list[str], responses: list[str]) -> Any:
        """Activations feeding the last linear layer."""
        import torch

        model = self._ensure_model()
        model.eval()
        with torch.no_grad():
            x = torch.from_numpy(self._features(prompts, responses))
            return model[:-1](x).numpy()
