"""Plugin bases: reward heads, augmenters and selectors.

Each base has one or two abstract methods; the base class does the rest (batching, pools,
provenance, saving the config). Third-party packages subclass these and register them under the
entry-point groups ``marsctl.heads``, ``marsctl.augmenters`` and ``marsctl.selectors``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from marsctl import FORMAT_VERSION, __version__
from marsctl.errors import ConfigError
from marsctl.params import NoConfig, build_config
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
    learned state ends in ``_``.
    """

    name: ClassVar[str] = "?"
    version: ClassVar[str] = __version__
    requires_gpu: ClassVar[bool] = False
    Config: ClassVar[type] = NoConfig
    meta_file: ClassVar[str] = "config.json"  # marsctl's metadata file in the model directory

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

    # -- done once, here ---------------------------------------------------------------------------
    def score(self, records: list[dict[str, Any]], batch_size: int | None = None) -> list[dict[str, Any]]:
        """Return copies of ``records`` with score_chosen, score_rejected, pred_margin, p_chosen."""
        batch_size = batch_size or 256
        prompts = [r["prompt"] for r in records]
        out: list[dict[str, Any]] = []
        sc: list[float] = []
        sr: list[float] = []
        for i in range(0, len(records), batch_size):
            p = prompts[i : i + batch_size]
            sc += self.score_batch(p, [r["chosen"] for r in records[i : i + batch_size]])
            sr += self.score_batch(p, [r["rejected"] for r in records[i : i + batch_size]])
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


# Fields of a model directory's metadata file and their JSON types (the rest is informational).
_META_TYPES: dict[str, tuple[type, str]] = {
    "head": (str, "a string"), "format_version": (int, "an integer"), "config": (dict, "an object"),
    "training": (dict, "an object"), "history": (list, "an array"), "encoder": (dict, "an object"),
}
_JSON_NAMES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
               float: "a number", type(None): "null"}


def _model_config_path(p: Path) -> Path:
    return p / "marsctl.json" if (p / "marsctl.json").exists() else p / "config.json"


def _check_meta_types(cfg: dict[str, Any], cfg_path: Path) -> None:
    """Each known field of a model's metadata has its JSON type (a bool is not an integer)."""
    for key, (typ, name) in _META_TYPES.items():
        if key not in cfg:
            continue
        value = cfg[key]
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)) or value == "":
            got = "an empty string" if value == "" else _JSON_NAMES.get(type(value), type(value).__name__)
            msg = f"{cfg_path}: field {key!r} must be {name}, not {got}"
            raise ConfigError(msg, hint="the file is damaged or was edited: restore it, or train the model again")
    seed = cfg.get("training", {}).get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        msg = f"{cfg_path}: field 'training.seed' must be an integer, not {_JSON_NAMES.get(type(seed), '?')}"
        raise ConfigError(msg, hint="the file is damaged or was edited: restore it, or train the model again")


def read_model_config(path: str | Path) -> dict[str, Any]:
    """Read a model directory's config.json with clear errors (every known field type-checked)."""
    p = Path(path)
    cfg_path = _model_config_path(p)
    if not p.is_dir():
        msg = f"model dir {p}: no such directory"
        raise ConfigError(msg, hint="train one with: marsctl train PAIRS -o MODEL_DIR")
    if not cfg_path.exists():
        msg = f"model dir {p}: no config.json or marsctl.json (not a marsctl model directory)"
        raise ConfigError(msg)
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        msg = f"{cfg_path}: invalid JSON ({e.msg} at line {e.lineno})"
        raise ConfigError(msg) from None
    except (UnicodeDecodeError, OSError) as e:
        msg = f"{cfg_path}: cannot read it ({type(e).__name__}: {str(e)[:120]})"
        raise ConfigError(msg) from None
    if not isinstance(cfg, dict) or "head" not in cfg:
        msg = f"{cfg_path}: missing field 'head' (not a marsctl model directory)"
        raise ConfigError(msg)
    _check_meta_types(cfg, cfg_path)
    if cfg.get("format_version", 1) > FORMAT_VERSION:
        msg = f"{cfg_path}: format_version {cfg['format_version']} is newer than this marsctl understands"
        raise ConfigError(msg, hint="upgrade marsctl")
    return cfg


def verify_checksums(path: Path, cfg: dict[str, Any]) -> None:
    """Check the files of a model directory against the sha256s its metadata recorded when saved.

    Catches damage that still parses (a flipped bit in a weight). Directories saved before
    checksums were recorded have none and are not checked.
    """
    sums = cfg.get("sha256")
    if sums is None:
        return
    if not isinstance(sums, dict):
        msg = f"{_model_config_path(path)}: field 'sha256' must be an object of file name → sha256"
        raise ConfigError(msg)
    for name, want in sums.items():
        f = path / str(name)
        if not f.is_file():
            msg = f"model dir {path}: {name} is missing (it was saved with the model)"
            raise ConfigError(msg, hint="restore the file, or train the model again")
        if file_sha256(f) != want:
            msg = f"{f}: the file is damaged (its sha256 differs from the one recorded when it was saved)"
            raise ConfigError(msg, hint="restore the file, or train the model again")


def load_head(path: str | Path, expect: str | None = None, overrides: Any = None) -> Head:
    """Load a head from a model directory; ``expect`` checks the head kind.

    ``overrides`` (``key=value`` list or dict) change the saved config, e.g. the learning rate
    before continuing training; a change that alters the weights' shapes is refused.
    """
    from marsctl import registry

    cfg = read_model_config(path)
    kind = cfg["head"]
    if expect is not None and kind != expect:
        msg = f"model dir {path} holds a {kind!r} head, not {expect!r}"
        raise ConfigError(msg, hint=f"use --head {kind}, or train a new model without --init")
    cls = registry.load("head", kind)
    owner = f"the head {kind!r}"
    cfg_path = _model_config_path(Path(path))
    try:  # the saved config alone first, so that its errors name the file
        config = build_config(cls.Config, cfg.get("config", {}), owner=owner)
    except ConfigError as e:
        msg = f"{cfg_path}, field 'config': {e}"
        raise ConfigError(msg, hint="the file is damaged or was edited: restore it, or train the model again") from None
    if overrides:
        new = dataclasses.asdict(build_config(cls.Config, overrides, owner))
        given = dict(overrides) if isinstance(overrides, dict) else dict(o.split("=", 1) for o in overrides)
        saved = {**dataclasses.asdict(config), **{k.strip(): new[k.strip()] for k in given}}
        config = build_config(cls.Config, saved, owner=owner)
    verify_checksums(Path(path), cfg)
    head = cls(config, seed=cfg.get("training", {}).get("seed", 0))
    head.load_weights(Path(path))
    head.manifest_ = cfg.get("training", {})
    head.history_ = cfg.get("history", [])
    return head


# ------------------------------------------------------------------------------------------ selectors
class Selector(ABC):
    """Turns predicted margins of base pairs into allocation weights q (summing to 1).

    The core (``marsctl.alloc``) turns q into integer budgets with largest-remainder rounding.
    ``pick`` says how augment draws rows from a pair's pool: ``random`` or ``top-margin``
    (score the pool with the current model and keep the highest predicted margins).
    """

    name: ClassVar[str] = "?"
    version: ClassVar[str] = __version__
    Config: ClassVar[type] = NoConfig
    pick: ClassVar[str] = "random"

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.Config()

    @abstractmethod
    def weights(self, margins: list[float]) -> list[float]:
        """Allocation weights q_i >= 0 over base pairs, summing to 1."""


# ----------------------------------------------------------------------------------------- augmenters
@dataclasses.dataclass
class PoolConfig:
    """Pool settings shared by augmenters."""

    n_variants: int = dataclasses.field(
        default=5, metadata={"help": "Variants made of each of prompt, chosen and rejected (pool = n²)."}
    )

    def __post_init__(self) -> None:
        from marsctl.params import check_interval

        check_interval(self.n_variants, "n_variants", "the augmenter", kind=int, low=1, high=50)


class Augmenter(ABC):
    """Makes label-preserving variants of texts; the base builds the per-pair pool and draws from it.

    Pool recipe (MARS): ``n`` variants each of prompt, chosen and rejected; combination
    (chosen c, rejected r, prompt (c + r) mod n) gives n² rows per pair; a pair with budget b
    draws b rows without replacement while b <= n² (beyond that the pool is cycled, and counted).

    Subclasses implement ``variants``; override ``variants_batch`` to batch generation.
    """

    name: ClassVar[str] = "?"
    version: ClassVar[str] = __version__
    Config: ClassVar[type] = PoolConfig

    def __init__(self, config: Any = None, *, seed: int = 0, draw_seed: int | None = None):
        self.config = config if config is not None else self.Config()
        self.seed = seed  # seeds the variants (the pool)
        self.draw_seed = seed if draw_seed is None else draw_seed  # seeds which pool rows are drawn
        self.stats_: dict[str, int] = {"pairs": 0, "rows": 0, "cycled_rows": 0, "short_pools": 0}

    @abstractmethod
    def variants(self, text: str, n: int, rng: random.Random, role: str) -> list[str]:
        """Up to ``n`` label-preserving variants of ``text`` (role: prompt, chosen or rejected)."""

    def variants_batch(self, items: list[tuple[str, str]], n: int) -> list[list[str]]:
        """Variants for many (text, role) items; each item's RNG is seeded from seed, role and text."""
        out = []
        for text, role in items:
            rng = random.Random(derive_seed(self.seed, role, text))
            out.append(self.variants(text, n, rng, role))
        return out

    def pool(self, pair: dict[str, Any], texts: dict[str, list[str]]) -> list[dict[str, Any]]:
        """The pool of candidate rows for one pair, from its variants (``texts[role]``)."""
        n = self.config.n_variants
        prompts = texts["prompt"] or [pair["prompt"]]
        rows = []
        seen = {(pair["prompt"], pair["chosen"], pair["rejected"])}
        for c, chosen in enumerate(texts["chosen"] or [pair["chosen"]]):
            for r, rejected in enumerate(texts["rejected"] or [pair["rejected"]]):
                k = (c + r) % n % len(prompts)
                key = (prompts[k], chosen, rejected)
                if chosen == rejected or key in seen:
                    continue
                seen.add(key)
                rows.append({"prompt": prompts[k], "chosen": chosen, "rejected": rejected,
                             "variant": {"prompt": k, "chosen": c, "rejected": r}})
        return rows

    def augment(
        self, pairs: list[dict[str, Any]], counts: list[int], *, round: int = 0, progress: Any = None
    ) -> list[list[dict[str, Any]]]:
        """For each pair, ``counts[i]`` new synthetic pairs with provenance (or its whole pool if -1)."""
        n = self.config.n_variants
        todo = [i for i, b in enumerate(counts) if b != 0]
        items = []
        for i in todo:
            items += [(pairs[i]["prompt"], "prompt"), (pairs[i]["chosen"], "chosen"),
                      (pairs[i]["rejected"], "rejected")]
        made = self.variants_batch(items, n) if items else []
        out: list[list[dict[str, Any]]] = [[] for _ in pairs]
        for j, i in enumerate(todo):
            texts = dict(zip(("prompt", "chosen", "rejected"), made[3 * j : 3 * j + 3], strict=True))
            pool = self.pool(pairs[i], texts)
            out[i] = self._draw(pairs[i], pool, counts[i], round)
            if progress is not None:
                progress(1)
        return out

    def _draw(self, pair: dict[str, Any], pool: list[dict[str, Any]], b: int, round: int) -> list[dict]:
        self.stats_["pairs"] += 1
        if not pool:
            self.stats_["short_pools"] += 1
            return []
        rng = random.Random(derive_seed(self.draw_seed, "draw", round, pair["id"]))
        if b < 0:  # the whole pool, in order
            picks = list(range(len(pool)))
        else:
            picks = []
            while len(picks) < b:
                order = list(range(len(pool)))
                rng.shuffle(order)
                picks += order[: b - len(picks)]
            self.stats_["cycled_rows"] += max(0, b - len(pool))
            if len(pool) < b:
                self.stats_["short_pools"] += 1
        rows = []
        for k, idx in enumerate(picks):
            row = self.provenance(pair, pool[idx], round, k)
            rows.append(row)
        self.stats_["rows"] += len(rows)
        return rows

    def provenance(self, pair: dict[str, Any], cand: dict[str, Any], round: int, k: int) -> dict[str, Any]:
        """A synthetic record: the candidate texts plus parent id, round, augmenter and variant."""
        row = {
            "id": f"{pair['id']}~r{round}~{k}",
            "prompt": cand["prompt"],
            "chosen": cand["chosen"],
            "rejected": cand["rejected"],
            "source": "synthetic",
            "parent_id": pair["id"],
            "round": round,
            "augmenter": {"name": self.name, "version": self.version},
            "variant": cand["variant"],
        }
        for key in ("subset",):
            if key in pair:
                row[key] = pair[key]
        return row
