"""The reward-head base: fit, score_batch, batching and saving written once; seeding helpers."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from marsctl import FORMAT_VERSION, __version__
from marsctl.errors import ConfigError
from marsctl.params import NoConfig
from marsctl.records import file_sha256


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed derived from any parts (stable across runs and platforms).

    >>> derive_seed(42, "pair-1") == derive_seed(42, "pair-1")
    True
    """
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") >> 1


def sigmoid(x: float) -> float:
    """The logistic function, stable for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


# ----------------------------------------------------------------------------------------------- heads
class Head(ABC):
    """A Bradley–Terry reward head: ``fit`` on pairs, ``score_batch`` (prompt, response) texts.

    Parameters
    ----------
    config : Config dataclass instance, optional
        The head's hyper-parameters (``Config`` declares them with help strings).
    seed : int
        Seed for initialisation and shuffling.

    Subclasses implement ``fit``, ``score_batch``, ``save_weights`` and ``load_weights``;
    learned state ends in ``_``. Optional hooks, each with a working default:

    - ``score_pairs`` (or just ``score_batch_size``): how ``score`` batches chosen and rejected texts;
    - ``last_hidden``: the inputs to the last linear layer, for refine's curvature trace;
    - ``default_epochs``: the epochs ``fit`` trains for when given none.
    """

    name: ClassVar[str] = "?"
    version: ClassVar[str] = __version__
    requires_gpu: ClassVar[bool] = False
    Config: ClassVar[type] = NoConfig
    meta_file: ClassVar[str] = "config.json"  # marsctl's metadata file in the model directory
    score_batch_size: ClassVar[int] = 256  # pairs per score_batch call when score() is given no batch_size

    def __init__(self, config: Any = None, *, seed: int = 0):
        self.config = config if config is not None else self.Config()
        self.seed = seed
        self.manifest_: dict[str, Any] = {}
        self.history_: list[dict[str, float]] = []

    @abstractmethod
    def fit(self, pairs: list[dict[str, Any]], *, epochs: int | None = None) -> Head:
        """Train on pairs (dicts with prompt, chosen, rejected); continue from current weights."""

    @abstractmethod
    def score_batch(self, prompts: list[str], responses: list[str]) -> list[float]:
        """Rewards r(x, y) for aligned lists of prompts and responses."""

    def save_weights(self, path: Path) -> None:
        """Write the learned weights into directory ``path`` (safetensors, no pickle)."""
        msg = f"the {self.name} head cannot be saved"
        raise ConfigError(msg)

    def load_weights(self, path: Path) -> None:
        """Read weights written by ``save_weights``."""
        msg = f"the {self.name} head cannot be loaded"
        raise ConfigError(msg)

    def extra_config(self) -> dict[str, Any]:
        """Extra facts for config.json (encoder, feature spec)."""
        return {}

    def is_main_process(self) -> bool:
        """False on the non-main ranks of a multi-process run: only the main process writes files."""
        return True

    # -- optional hooks ----------------------------------------------------------------------------
    def score_pairs(self, prompts: list[str], chosen: list[str], rejected: list[str],
                    batch_size: int | None = None) -> tuple[list[float], list[float]]:
        """Rewards of the chosen and of the rejected responses, for aligned lists; ``score`` calls it once.

        The default calls ``score_batch`` on ``batch_size`` pairs at a time (default
        ``score_batch_size``), chosen then rejected. Override it to batch otherwise; the
        transformer head sorts all texts by length, and reads ``batch_size`` as texts per forward pass.
        """
        size = batch_size or self.score_batch_size
        sc: list[float] = []
        sr: list[float] = []
        for i in range(0, len(prompts), size):
            sc += self.score_batch(prompts[i : i + size], chosen[i : i + size])
            sr += self.score_batch(prompts[i : i + size], rejected[i : i + size])
        return sc, sr

    def last_hidden(self, prompts: list[str], responses: list[str]) -> Any:
        """The inputs to the last linear layer, one row per (prompt, response), or None (the default).

        A head that returns a 2-d numpy array gets refine's ``train_curvature_trace`` metric
        (``marsctl.metrics.curvature_trace``); None leaves it out.
        """
        return None

    @classmethod
    def default_epochs(cls) -> int | None:
        """The epochs ``fit`` trains for when given none, or None when the head does not count epochs.

        The default reads the default of the ``epochs`` field of ``Config`` when it declares one;
        refine scales it with the size of each round's training set.
        """
        for f in dataclasses.fields(cls.Config):
            if f.name == "epochs" and isinstance(f.default, int) and not isinstance(f.default, bool):
                return f.default
        return None

    def reseed_as_loaded(self) -> None:
        """Reset what loading this head from its saved directory resets (random streams, fit counters).

        ``steps.train`` calls it before it trains a head object again (``init=head``, before the new
        seed is set), so that continuing in memory trains exactly as continuing from the saved
        directory. The default does nothing (right for a head whose ``fit`` seeds everything it draws).
        """
        return

    # -- done once, here ---------------------------------------------------------------------------
    def score(self, records: list[dict[str, Any]], batch_size: int | None = None) -> list[dict[str, Any]]:
        """Return copies of ``records`` with score_chosen, score_rejected, pred_margin, p_chosen.

        ``batch_size`` is handed to ``score_pairs`` (None: the head's default).
        """
        prompts = [r["prompt"] for r in records]
        out: list[dict[str, Any]] = []
        sc, sr = self.score_pairs(prompts, [r["chosen"] for r in records], [r["rejected"] for r in records],
                                  batch_size)
        for rec, c, r in zip(records, sc, sr, strict=True):
            if not (math.isfinite(c) and math.isfinite(r)):
                where = f"line {rec['_line']}" if "_line" in rec else f"pair {rec.get('id', '?')!r}"
                msg = f"the {self.name} head gave a non-finite reward ({c}, {r}) for {where}"
                raise ConfigError(msg, hint="the model's weights are damaged or diverged; retrain it")
            new = dict(rec)
            new["score_chosen"] = round(float(c), 6)
            new["score_rejected"] = round(float(r), 6)
            new["pred_margin"] = round(float(c) - float(r), 6)
            new["p_chosen"] = round(sigmoid(float(c) - float(r)), 6)
            out.append(new)
        return out

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Save the metadata file and the weights as a new model directory.

        The directory is built beside ``path`` and renamed into place when complete. An existing
        ``path`` is replaced only when it is empty, or when it is a marsctl model directory holding
        nothing but marsctl's files and ``overwrite`` is true (``marsctl.outputs``).
        """
        import shutil

        from marsctl.outputs import check_model_dir_output, install_dir, new_temp_dir, write_failed

        target = Path(path)
        check_model_dir_output(target, overwrite=overwrite)
        try:
            tmp = new_temp_dir(target)
        except OSError as e:
            raise write_failed(target, e) from None
        try:
            self.save_weights(tmp)
            config = {
                "format_version": FORMAT_VERSION,
                "marsctl_version": __version__,
                "head": self.name,
                "head_version": self.version,
                "config": dataclasses.asdict(self.config),
                **self.extra_config(),
                "training": self.manifest_,
                "history": self.history_,
                "files": sorted([p.name for p in tmp.iterdir()] + [self.meta_file]),
                "sha256": {p.name: file_sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()},
            }
            text = json.dumps(config, indent=2, allow_nan=False) + "\n"
            (tmp / self.meta_file).write_text(text, encoding="utf-8")
            install_dir(tmp, target)
        except BaseException as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(e, OSError):
                raise write_failed(target, e) from None
            raise
        return target
