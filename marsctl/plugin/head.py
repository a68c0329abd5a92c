"""The reward-head base class: fit and score_batch to implement; batching, score fields and saving written once."""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from marsctl.errors import ConfigError
from marsctl.params import NoConfig
from marsctl.records import with_scores
from marsctl.scorefields import PairRewards, member_fields, score_fields
from marsctl.version import __version__


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
    - ``score_members``: the rewards of each ensemble member and their length parts, from which
      ``score`` writes ``pred_margin_std`` and the quality/length fields (and ``length_free`` scores);
    - ``last_hidden``: the inputs to the last linear layer, for refine's curvature trace;
    - ``default_epochs``: the epochs ``fit`` trains for when given none;
    - ``config_for_dir``: the config to build the head with when loading a saved directory.
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
        """Train on pairs (dicts with prompt, chosen, rejected); continue from current weights.

        A pair's ``weight`` field multiplies its BT loss term (``marsctl.losses.pair_weights`` reads and
        checks it, ``positive_weights`` leaves weight-0 pairs out, ``bt_loss(weight=...)`` weights the mean).
        """

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

    def score_members(self, prompts: list[str], chosen: list[str], rejected: list[str],
                      batch_size: int | None = None) -> PairRewards | None:
        """Each member's rewards (and length parts) for aligned lists, or None (the default: no members).

        A head that returns a ``PairRewards`` here gets, from ``score``, ``pred_margin_std`` (the
        spread of its members' margins; 0 for one member) and, when it gives length parts, the fields
        quality_chosen/quality_rejected/length_chosen/length_rejected and ``length_free`` scoring.
        ``score`` then calls this instead of ``score_pairs``; the mean of the members' rewards must be
        what ``score_batch`` gives.
        """
        return None

    def require_length_term(self) -> None:
        """Raise a ConfigError unless ``score_members`` gives length parts (``score(..., length_free=True)`` works)."""
        members = self.score_members([], [], [])
        if members is None or members.length_chosen is None:
            raise _no_length_term(self.name)

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

    @classmethod
    def config_for_dir(cls, config: Any, meta: dict[str, Any], path: Path) -> Any:
        """The config to build this head with when loading model directory ``path`` (``meta``: its metadata).

        ``load_head`` calls it after the checks, before building the head. The default returns ``config``;
        the embedding heads find their encoder by the identity ``meta`` recorded (``marsctl.embed.resolve_encoder``).
        """
        return config

    def reseed_as_loaded(self) -> None:
        """Reset what loading this head from its saved directory resets (random streams, fit counters).

        ``steps.train`` calls it before it trains a head object again (``init=head``, before the new
        seed is set), so that continuing in memory trains exactly as continuing from the saved
        directory. The default does nothing (right for a head whose ``fit`` seeds everything it draws).
        """
        return

    # -- done once, here ---------------------------------------------------------------------------
    def score(self, records: list[dict[str, Any]], batch_size: int | None = None, *,
              length_free: bool = False) -> list[dict[str, Any]]:
        """Return copies of ``records`` with score_chosen, score_rejected, pred_margin, p_chosen.

        ``batch_size`` is handed to ``score_pairs`` (None: the head's default). A head with members
        (``score_members``) also gets ``pred_margin_std``, and one with a length term the fields
        quality_chosen, quality_rejected, length_chosen and length_rejected, where
        score = quality + length. ``length_free``: score_chosen, score_rejected, pred_margin,
        p_chosen (and pred_margin_std) are of the quality part alone.
        """
        prompts = [r["prompt"] for r in records]
        chosen, rejected = [r["chosen"] for r in records], [r["rejected"] for r in records]
        members = self.score_members(prompts, chosen, rejected, batch_size)
        if length_free and (members is None or members.length_chosen is None):
            raise _no_length_term(self.name)
        if members is None:
            sc, sr = self.score_pairs(prompts, chosen, rejected, batch_size)
            rows = [score_fields(c, r) for c, r in zip(sc, sr, strict=True)]
        else:
            rows = member_fields(members, length_free)
        out: list[dict[str, Any]] = []
        for rec, fields in zip(records, rows, strict=True):
            if not all(math.isfinite(v) for v in fields.values()):
                where = f"line {rec['_line']}" if "_line" in rec else f"pair {rec.get('id', '?')!r}"
                got = (fields["score_chosen"], fields["score_rejected"])
                msg = f"the {self.name} head gave a non-finite reward {got} for {where}"
                raise ConfigError(msg, hint="the model's weights are damaged or diverged; retrain it")
            out.append(with_scores(rec, fields))  # never overwrites the user's score fields
        return out

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Save the metadata file and the weights as a new model directory (``marsctl.modeldir.save_head``).

        The directory is built beside ``path`` and renamed into place when complete. An existing
        ``path`` is replaced only when it is empty, or when it is a marsctl model directory holding
        nothing but marsctl's files and ``overwrite`` is true (``marsctl.outputs``).
        """
        from marsctl.modeldir import save_head

        return save_head(self, path, overwrite=overwrite)


def _no_length_term(head: str) -> ConfigError:
    msg = f"length-free scores: this {head} head has no length term to leave out"
    return ConfigError(msg, hint=f"train it with a length term (see 'marsctl plugins show head {head}'), "
                                 "or score without --length-free")
