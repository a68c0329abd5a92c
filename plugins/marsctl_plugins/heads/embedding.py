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

from marsctl.embed import BACKENDS, PRECISIONS, Encoder, get_encoder
from marsctl.losses import BTLossConfig, pair_weights, positive_weights
from marsctl.modeldir import check_state, read_safetensors
from marsctl.params import check_choice, check_interval
from marsctl.plugin import Head, PairRewards, derive_seed, mean_over_members


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
MAX_ENSEMBLE = 64
LENGTH_TERMS = ("off", "term")
LENGTH_INITS = ("zero", "fit")


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
        "help": "Torch threads while training and scoring (0: torch's default). 1 was measured on a busy 2-core "
                "machine: 6.7 s vs 111 s with 2 threads to train; half the CPU time to score."})
    encoder: str = field(default="", metadata={
        "help": "Local sentence-transformers directory; empty means the bundled all-MiniLM-L6-v2."})
    max_seq_length: int = field(default=256, metadata={"help": "Word pieces the encoder reads per text."})
    encoder_backend: str = field(default="torch", metadata={
        "help": "How the encoder runs: " + "; ".join(f"{k}: {v}" for k, v in BACKENDS.items()) + "."})
    # auto: bf16 kept cosine >= 0.99992 to fp32 and a 5-seed compare within 0.3 points on the three shared sets
    # (benchmarks/results/precision.md, compare_precision/; issue 20).
    encoder_precision: str = field(default="auto", metadata={
        "help": "The encoder's arithmetic (torch backend; bf16 vectors are cached apart, and a model dir "
                "records it and scores with it): " + "; ".join(f"{k}: {v}" for k, v in PRECISIONS.items()) + "."})
    # length=term: +0.2, +5.2 and +3.9 points over off on the three shared sets (benchmarks/heads.py).
    length: str = field(default="term", metadata={
        "help": "Length term: off | term (reward = quality(x, y) + a*z + b*z^2, z the standardised log1p of the "
                "response's characters, learned jointly; score writes both parts)."})
    # 0.05: the best of 0.02, 0.05 and 0.1 on average over the shared sets (benchmarks/heads.py).
    length_lr: float = field(default=0.05, metadata={"help": "Learning rate of the length term's a and b."})
    length_decay: float = field(default=0.0, metadata={"help": "Weight decay of the length term's a and b."})
    length_init: str = field(default="zero", metadata={
        "help": "Where a new length term starts: zero, or fit (a and b fitted first by the BT loss on the "
                "training pairs with the length term alone, then trained jointly with the quality network)."})
    ensemble: int = field(default=1, metadata={
        "help": "Networks trained on seeds derived from the head's seed; the reward is their mean and score "
                "writes the spread of their margins (pred_margin_std)."})
    ensemble_resample: bool = field(default=False, metadata={
        "help": "Train each ensemble member on a bootstrap resample of the pairs."})

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = self.owner
        check_choice(self.features, "features", owner, list(FEATURES))
        check_choice(self.length, "length", owner, list(LENGTH_TERMS))
        check_interval(self.length_lr, "length_lr", owner, low=0)
        check_interval(self.length_decay, "length_decay", owner, low=0)
        check_choice(self.length_init, "length_init", owner, list(LENGTH_INITS))
        check_interval(self.ensemble, "ensemble", owner, kind=int, low=1, high=MAX_ENSEMBLE)
        check_choice(self.encoder_backend, "encoder_backend", owner, list(BACKENDS))
        check_choice(self.encoder_precision, "encoder_precision", owner, list(PRECISIONS))
        check_interval(self.epochs, "epochs", owner, kind=int, low=0, high=MAX_EPOCHS)
        check_interval(self.lr, "lr", owner, low=0, closed="right")
        check_interval(self.weight_decay, "weight_decay", owner, low=0)
        check_interval(self.batch_size, "batch_size", owner, kind=int, low=1, high=MAX_BATCH)
        check_interval(self.threads, "threads", owner, kind=int, low=0, high=MAX_THREADS)
        check_interval(self.max_seq_length, "max_seq_length", owner, kind=int, low=8, high=8192)


@dataclass
class MLPConfig(LinearConfig):
    """Hyper-parameters of the MLP head."""

    # 3 epochs: with length=term, above the better length baseline on all three shared sets and the best mean of
    # 2, 3, 4, 5, 8 (5 was below it on PandaLM; benchmarks/epochs.py, benchmarks/results/epochs.md).
    epochs: int = field(default=3, metadata={"help": "Passes over the training pairs."})
    hidden: int = field(default=256, metadata={"help": "Hidden units of the MLP."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout after the hidden layer."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_interval(self.hidden, "hidden", self.owner, kind=int, low=1, high=MAX_HIDDEN)
        check_interval(self.dropout, "dropout", self.owner, low=0, high=1, closed="left")


def _blocks(blocks: tuple[str, ...], p: Any, r: Any) -> list[Any]:
    """The feature blocks (``FEATURES``) of float32 prompt vectors ``p`` and response vectors ``r``."""
    import numpy as np

    make = {"r": lambda: r, "p": lambda: p, "p*r": lambda: p * r, "|p-r|": lambda: np.abs(p - r)}
    return [make[b]() for b in blocks]


class LinearHead(Head):
    """A linear Bradley–Terry head on frozen sentence-embedding features."""

    name: ClassVar[str] = "linear"
    version: ClassVar[str] = "0.1.0"
    Config: ClassVar[type] = LinearConfig

    def __init__(self, config: Any = None, *, seed: int = 0, encoder: Encoder | None = None):
        super().__init__(config, seed=seed)
        self.encoder = encoder or get_encoder(self.config.encoder or None, self.config.max_seq_length,
                                              backend=self.config.encoder_backend,
                                              precision=self.config.encoder_precision)
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
        """The quality network: one linear unit."""
        import torch

        return torch.nn.Linear(in_dim, 1)

    def _in_dim(self) -> int:
        return self.encoder.dim * len(FEATURES[self.config.features])

    def _ensure_model(self) -> Any:
        if self.model_ is None:
            self.model_ = self._new_network()
        return self.model_

    def _new_network(self) -> Any:
        """The ensemble (``nets.Ensemble``), member 0 initialised from the head's seed.

        Member 0 is built as a single head is (this reseeds torch, whose stream dropout draws from);
        the others from seeds derived from the head's, without moving torch's stream.
        """
        import torch

        from marsctl_plugins.heads.nets import Ensemble, Member

        length = self.config.length == "term"
        torch.manual_seed(derive_seed(self.seed, "init") % (2**31))
        members = [Member(self.build(self._in_dim()), length)]
        for k in range(1, self.config.ensemble):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(self.seed, "init", k) % (2**31))
                members.append(Member(self.build(self._in_dim()), length))
        return Ensemble(members)

    def reseed_as_loaded(self) -> None:
        """Leave torch's random stream where loading this head leaves it (a load builds a new network first)."""
        self._new_network()

    # -- training ----------------------------------------------------------------------------------
    def fit(self, pairs: list[dict[str, Any]], *, epochs: int | None = None) -> LinearHead:
        """Train with the (weighted) BT loss, continuing from the current weights; each member in turn."""
        import numpy as np

        t0 = time.perf_counter()
        epochs = self.config.epochs if epochs is None else epochs
        weights = pair_weights(pairs)
        xc, xr = self._pair_features(pairs)
        lengths = (np.array([len(p["chosen"]) for p in pairs], dtype=np.float32),
                   np.array([len(p["rejected"]) for p in pairs], dtype=np.float32))
        t_feat = time.perf_counter() - t0
        model = self._ensure_model()
        data = self._tensors(xc, xr, lengths, pairs)
        with torch_threads(self.config.threads):
            runs = [self._train_member(k, m, data, weights, epochs) for k, m in enumerate(model.members)]
        for e in range(epochs):
            loss = sum(losses[e] for _, losses in runs) / len(runs)
            self.history_.append({"epoch": len(self.history_) + 1, "loss": round(loss, 6)})
        self.manifest_.update({
            "n_pairs": len(pairs), "epochs": epochs, "steps": runs[0][0],
            "feature_seconds": round(t_feat, 3), "train_seconds": round(time.perf_counter() - t0 - t_feat, 3),
            "final_loss": self.history_[-1]["loss"] if self.history_ else None,
        })
        if len(runs) > 1:
            self.manifest_["member_steps"] = [steps for steps, _ in runs]
        return self

    def _tensors(self, xc: Any, xr: Any, lengths: tuple[Any, Any], pairs: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        return {"xc": torch.from_numpy(xc), "xr": torch.from_numpy(xr), "lc": torch.from_numpy(lengths[0]),
                "lr": torch.from_numpy(lengths[1]), "target": torch.tensor(self.config.target_margins(pairs))}

    def _train_member(self, k: int, member: Any, data: dict[str, Any], weights: list[float],
                      epochs: int) -> tuple[int, list[float]]:
        """Train member ``k`` on its pairs (all, or a bootstrap resample); (optimiser steps, loss per epoch).

        Member 0 draws from torch's stream as a single head does; the others on a stream of their own.
        """
        import torch

        # Standardisation and resample from the pairs of positive weight: weight 0 trains as without the pair.
        used, _ = positive_weights(weights)
        if member.length is not None:
            member.length.set_standardisation(torch.cat([data["lc"][used], data["lr"][used]]))
        if self.config.ensemble_resample:
            weights = list(weights)
            for i, c in zip(used, self._bootstrap_counts(k, len(used)), strict=True):
                weights[i] *= c
        idx, w = positive_weights(weights)
        rows = {key: v[idx] for key, v in data.items()} if len(idx) < len(weights) else dict(data)
        rows["w"] = None if w is None else torch.tensor(w)
        if member.length is not None and self.config.length_init == "fit":
            self._fit_length(member.length, rows)
        shuffle = derive_seed(self.seed, "shuffle", *([k] if k else []))
        if k == 0:
            return self._train_loop(member, rows, epochs, shuffle)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, "dropout", k) % (2**31))
            return self._train_loop(member, rows, epochs, shuffle)

    def _fit_length(self, term: Any, rows: dict[str, Any]) -> None:
        """Fit a new length term's a and b alone (weighted BT loss, L-BFGS); a trained one is left as it is.

        The quality network then learns what length does not explain. Deterministic: L-BFGS draws nothing.
        """
        import torch

        from marsctl.losses import bt_loss

        if bool(term.coef.detach().any()):
            return  # continuing from a trained head: its length term carries forward
        opt = torch.optim.LBFGS(term.parameters(), lr=1.0, max_iter=100, line_search_fn="strong_wolfe")

        def closure() -> Any:
            opt.zero_grad()
            loss = bt_loss(term(rows["lc"]), term(rows["lr"]), rows["target"], self.config.center_rewards, rows["w"])
            loss.backward()
            return loss

        opt.step(closure)

    def _bootstrap_counts(self, k: int, n: int) -> list[int]:
        """How often each of ``n`` pairs is drawn in member ``k``'s bootstrap resample (n draws)."""
        import numpy as np

        rng = np.random.default_rng(derive_seed(self.seed, "bootstrap", k))
        return np.bincount(rng.integers(0, n, n), minlength=n).tolist()

    def _optimizer(self, member: Any) -> Any:
        """AdamW: the quality network at lr/weight_decay, the length term at its own length_lr/length_decay.

        ``nets.AdamW``: torch's arithmetic, bit for bit, without ``torch.optim``'s 1.7 s import of torch._dynamo.
        """
        from marsctl_plugins.heads.nets import AdamW

        groups = [{"params": list(member.quality.parameters())}]
        if member.length is not None:
            groups.append({"params": list(member.length.parameters()), "lr": self.config.length_lr,
                           "weight_decay": self.config.length_decay})
        return AdamW(groups, lr=self.config.lr, weight_decay=self.config.weight_decay)

    def _train_loop(self, member: Any, rows: dict[str, Any], epochs: int, shuffle: int) -> tuple[int, list[float]]:
        """Mini-batch AdamW on the weighted BT loss; (optimiser steps, weighted mean loss per epoch)."""
        import torch

        from marsctl.losses import bt_loss

        opt = self._optimizer(member)
        gen = torch.Generator().manual_seed(shuffle % (2**31))
        w = rows["w"]
        n, bs, steps, losses = len(rows["xc"]), self.config.batch_size, 0, []
        for _ in range(epochs):
            member.train()
            order = torch.randperm(n, generator=gen)
            total = 0.0
            for i in range(0, n, bs):
                idx = order[i : i + bs]
                qc, lc = member(rows["xc"][idx], rows["lc"][idx])
                qr, lr = member(rows["xr"][idx], rows["lr"][idx])
                wb = None if w is None else w[idx]
                loss = bt_loss(qc + lc, qr + lr, rows["target"][idx], self.config.center_rewards, wb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * (len(idx) if wb is None else float(wb.sum()))
                steps += 1
            losses.append(total / (n if w is None else float(w.sum())))
        return steps, losses

    # -- scoring -----------------------------------------------------------------------------------
    def _float64_model(self) -> Any:
        """A float64 copy of the network in eval mode, made once and again only when its weights change.

        Training steps and ``load_state_dict`` bump each tensor's version counter, so the copy is made
        again after them; copying per batch cost more than the scoring itself.
        """
        import copy

        model = self._ensure_model()
        versions = [t._version for t in model.state_dict(keep_vars=True).values()]
        cached = getattr(self, "_scoring_copy", None)
        if cached is None or cached[0] is not model or cached[1] != versions:
            copied = copy.deepcopy(model).double()
            copied.eval()
            self._scoring_copy = (model, versions, copied)
        return self._scoring_copy[2]

    def _member_rewards(self, prompts: list[str], responses: list[str]) -> tuple[list[list[float]], list[list[float]]]:
        """Each member's reward and its length part, [K][n], computed in float64 on a float64 copy.

        A float32 matrix product gives row results that differ by ~1e-7 with the number of rows, so
        scores would depend on the batch size; in float64 they agree far below the 6 decimals written.
        """
        import torch

        model = self._float64_model()
        feats = self._features(prompts, responses)  # texts not in the cache are embedded on torch's own threads
        with torch.no_grad(), torch_threads(self.config.threads):  # 1 thread: half the CPU on a busy machine
            x = torch.from_numpy(feats).double()
            chars = torch.tensor([float(len(r)) for r in responses], dtype=torch.float64)
            parts = [m(x, chars) for m in model.members]
            return [(q + ell).tolist() for q, ell in parts], [ell.tolist() for _, ell in parts]

    def score_batch(self, prompts: list[str], responses: list[str]) -> list[float]:
        """Rewards for aligned prompts and responses: the mean of the members' (quality + length)."""
        full, _ = self._member_rewards(prompts, responses)
        return mean_over_members(full)

    def score_members(self, prompts: list[str], chosen: list[str], rejected: list[str],
                      batch_size: int | None = None) -> PairRewards:
        """Each member's rewards of chosen and rejected, and their length parts (None with length=off).

        When every text is in the embedding cache, the features of all the pairs are looked up at once
        (:meth:`_warm_rewards`); else batch by batch, each batch's new texts embedded as they come. Both
        run the float64 network on the same batches of ``batch_size`` pairs, so they give the same bits.
        """
        size = batch_size or self.score_batch_size
        warm = self._warm_rewards(prompts, chosen, rejected, size)
        if warm is not None:
            return warm
        out = PairRewards([[] for _ in self._ensure_model().members], [[] for _ in self.model_.members],
                          [[] for _ in self.model_.members], [[] for _ in self.model_.members])
        for i in range(0, len(prompts), size):
            for side, lside, texts in ((out.chosen, out.length_chosen, chosen),
                                       (out.rejected, out.length_rejected, rejected)):
                full, length = self._member_rewards(prompts[i : i + size], texts[i : i + size])
                for k in range(len(full)):
                    side[k] += full[k]
                    lside[k] += length[k]  # type: ignore[index]
        if self.config.length != "term":
            out.length_chosen = out.length_rejected = None
        return out

    def _warm_rewards(self, prompts: list[str], chosen: list[str], rejected: list[str],
                      size: int) -> PairRewards | None:
        """:meth:`score_members` when every text is cached (None when one is not): one look-up per side.

        The network runs on the batches of ``size`` pairs the batch-by-batch path uses (their features
        made batch by batch, so memory holds the chunk's float32 vectors and one batch's float64
        features), and the encoder's hit counts grow as they would there (a batch's prompts are asked
        for once per side).
        """
        import numpy as np
        import torch

        blocks = FEATURES[self.config.features]
        enc = self.encoder
        if not hasattr(enc, "cached"):  # an encoder object of another kind: the batch-by-batch path
            return None
        p = None
        if any("p" in b for b in blocks):
            p = enc.cached(prompts, "prompt")
            if p is None:
                return None
        vecs = []
        for texts in (chosen, rejected):
            r = enc.cached(texts, "response")
            if r is None:
                return None
            vecs.append(r)
        enc.stats["hits"] += 2 * len(prompts) * (2 if p is not None else 1)
        model = self._float64_model()
        full: list[list[list[float]]] = []
        length: list[list[list[float]]] = []
        with torch.no_grad(), torch_threads(self.config.threads):
            for r, texts in zip(vecs, (chosen, rejected), strict=True):
                chars = torch.tensor([float(len(t)) for t in texts], dtype=torch.float64)
                runs: list[list[Any]] = [[] for _ in model.members]
                for i in range(0, len(texts), size):
                    parts = _blocks(blocks, None if p is None else p[i : i + size], r[i : i + size])
                    # the float32 features _features makes, widened to float64 in the same copy
                    x = torch.from_numpy(np.concatenate(parts, axis=1, dtype=np.float64))
                    for k, m in enumerate(model.members):
                        runs[k].append(m(x, chars[i : i + size]))
                full.append([torch.cat([q + ell for q, ell in run]).tolist() if run else [] for run in runs])
                length.append([torch.cat([ell for _, ell in run]).tolist() if run else [] for run in runs])
        if self.config.length != "term":
            return PairRewards(full[0], full[1])
        return PairRewards(full[0], full[1], length[0], length[1])

    def last_hidden(self, prompts: list[str], responses: list[str]) -> Any:
        """Inputs to the last linear layer (for the curvature trace); None for an ensemble of several networks."""
        if self.config.ensemble > 1:
            return None
        return self._features(prompts, responses)

    # -- persistence -------------------------------------------------------------------------------
    def save_weights(self, path: Path) -> None:
        """model.safetensors (names: ``nets.Ensemble.file_names``)."""
        from safetensors.torch import save_file

        save_file(self._ensure_model().file_state(), str(path / "model.safetensors"))

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
        check_state(f, state, model.file_state(), f"the {self.name} head's config")
        model.load_file_state(state)

    def extra_config(self) -> dict[str, Any]:
        """Encoder (its identity: name and fingerprint; the path is a hint) and feature spec."""
        return {"encoder": self.encoder.describe(), "features": list(FEATURES[self.config.features]),
                "input_dim": self._in_dim()}

    @classmethod
    def config_for_dir(cls, config: Any, meta: dict[str, Any], path: Path) -> Any:
        """The saved config with its encoder found by the recorded identity (the bundled one is kept as '').

        The encoder precision is the recorded one (what the model was trained on; fp32 for directories
        written before precisions existed) unless the config, or an override, names fp32 or bf16: ``auto``
        does not re-decide per machine. A bf16 model on a machine without native bf16 scores with fp32
        vectors, with a warning (emulated bf16 is slower than fp32).
        """
        import dataclasses

        from marsctl import ui
        from marsctl.embed import is_bundled, precision, resolve_encoder
        from marsctl.errors import ConfigError

        if not isinstance(meta.get("encoder"), dict):  # written before the encoder was recorded: as saved
            return config
        found = resolve_encoder(meta["encoder"], config.encoder, f"model dir {path}")
        recorded = meta["encoder"].get("precision", "fp32")
        if recorded not in ("fp32", "bf16"):
            msg = f"model dir {path}: config.json field 'encoder.precision' must be fp32 or bf16; got {recorded!r}"
            raise ConfigError(msg, hint="restore config.json, or train the model again")
        want = recorded if config.encoder_precision == "auto" else config.encoder_precision
        if (want == recorded == "bf16" and config.encoder_backend == "torch"
                and not precision.native_bf16()):
            ui.warn(f"model dir {path} was trained on bf16 encoder vectors, but this CPU has no native bf16 "
                    f"({' or '.join(precision.BF16_CPU_FLAGS)}): scoring with fp32 vectors instead (per-text "
                    "cosine >= 0.999 to bf16, so scores may differ in their last decimals)")
            want = "fp32"
        return dataclasses.replace(config, encoder="" if is_bundled(found) else found, encoder_precision=want)


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
        """Activations feeding the last linear layer; None for an ensemble of several networks."""
        import torch

        if self.config.ensemble > 1:
            return None
        quality = self._ensure_model().members[0].quality
        quality.eval()
        with torch.no_grad():
            x = torch.from_numpy(self._features(prompts, responses))
            return quality[:-1](x).numpy()
