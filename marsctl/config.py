"""The settings of a refine run and of a compare run: fields, defaults, help and checks, written once.

Each field's metadata drives its command-line option (``cli.common.config_option``): ``help``; ``flags``,
the option's names where they are not ``--field-name``; ``range``, the int bounds refused while the
options are parsed (shown by ``--help``, and checked again here). A list field's option is one
comma-separated string. This module imports only the parameter checks, so reading it (for ``--help``)
loads no numpy or torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from marsctl.errors import ConfigError
from marsctl.params import (
    MAX_EPOCHS,
    MAX_PAIR_BUDGET,
    MAX_ROUNDS,
    MAX_SEEDS,
    MAX_TRIES,
    SEED_MAX,
    check_choice,
    check_interval,
    check_seed,
)

NOISE_MODES = ["off", "flag", "soft", "drop"]


@dataclass
class RefineConfig:
    """Settings of a refine run (all recorded in the manifest)."""

    rounds: int = field(default=3, metadata={"help": "Augmentation rounds after round 0.",
                                             "flags": ("--rounds", "-r"), "range": (0, MAX_ROUNDS)})
    budget: int | None = field(default=None, metadata={
        "help": "Synthetic pairs per round (default: as many as the base pairs trained on).",
        "flags": ("--budget", "-b")})
    strategy: str = field(default="mars-abs", metadata={"flags": ("--strategy", "-s"), "help": (
        "Selector: mars-abs (v1: softmax(−α|Δ|), ambiguous pairs), mars (v2, signed: softmax(−αΔ); measured "
        "caveat: on noisy labels it favours likely label noise), mars-robust (|Δ| with pairs below −floor·std(Δ) "
        "skipped), uniform (the paper's baseline), won (West-of-N: equal share, keep each pool's highest-margin "
        "rows), uncertainty (softmax over the ensemble spread pred_margin_std; needs -p ensemble=K), or a plugin. "
        "Note: at the default budget (one row per pair) and α = 0.5 the default mars-abs behaves as uniform on "
        "the embedding heads: their margins are too flat to tilt the softmax, so every pair rounds to one row "
        "(metrics.json says so: selection.equals_uniform).")})
    selector_params: list[str] = field(default_factory=list, metadata={"help": "Selector parameters, key=value each."})
    head: str = field(default="mlp", metadata={"help": "Reward head plugin."})
    head_params: list[str] = field(default_factory=list, metadata={"help": "Head parameters, key=value each."})
    epochs: int | None = field(default=None, metadata={"help": "Epochs per round (default: the head's).",
                                                        "range": (0, MAX_EPOCHS)})
    backend: str = field(default="eda", metadata={"help": "Augmenter plugin (eda, or an installed one)."})
    augment_params: list[str] = field(default_factory=list, metadata={
        "help": "Augmenter parameters, key=value each."})
    merge: str = field(default="replace", metadata={
        "help": "replace: each round trains on base ∪ this round's synthetic (v2); accumulate: keep earlier "
                "rounds' synthetic pairs (v1)."})
    seed: int = field(default=0, metadata={"help": "Seed for everything in the run.", "range": (0, SEED_MAX)})
    cap: int | None = field(default=25, metadata={
        "help": "At most this many synthetic rows per pair and round (the eda pool holds 25).",
        "range": (1, MAX_PAIR_BUDGET)})
    mix_uniform: float = field(default=0.0, metadata={"help": "Blend the selection with uniform: (1−λ)q + λ/n."})
    # On by default: at equal epochs every augmented strategy lost to base-only training on HH-RLHF
    # beyond noise (over-training); at matched steps none did (README, Results).
    match_steps: bool = field(default=True, metadata={
        "help": "Scale each augmented round's epochs so its optimiser steps match base-only training (default), "
                "or train the same epochs every round (the paper's protocol; measured to over-train).",
        "flags": ("--match-steps/--same-epochs",)})
    crossfit: int = field(default=0, metadata={"help": "Select on K-fold cross-fitted margins (0: off)."})
    guard: bool = field(default=False, metadata={
        "help": "Fall back to uniform when a selection fails the guard (ESS, Δ<0 share)."})
    pool_seed: int | None = field(default=None, metadata={
        "help": "Seed of the synthetic pools (default: the run's seed)."})
    semantic_tries: int = field(default=0, metadata={
        "help": "Candidates per side when low-contrast pairs are rewritten first (MARS v2; 0: off)."})
    noise: str = field(default="off", metadata={"help": (
        "Label noise, each round k ≥ 1: margins cross-fitted over prompt-grouped folds (Δ_cf) flag pairs with "
        "Δ_cf < −noise_threshold·std(Δ_cf) as likely mislabeled; flagged pairs are written to suspect.jsonl and get "
        "no augmentation budget, and selection runs on Δ_cf. off: none of this (default); flag: only that; soft: "
        "also weight every base pair and its synthetic rows by σ(2·Δ_cf/std(Δ_cf)) in the loss; drop: also leave "
        "flagged pairs out of training.")})
    noise_threshold: float = field(default=1.0, metadata={
        "help": "--noise flags pairs with a cross-fitted margin below −this × std (std units)."})
    noise_folds: int = field(default=5, metadata={"help": "Prompt-grouped folds of --noise's cross-fitted margins."})

    def __post_init__(self) -> None:
        from marsctl.credentials import check_params_credentials

        check_range(self, "rounds", "refine")
        for kind in ("head", "selector", "augmenter"):  # recorded in the manifest: no credentials in URLs
            check_params_credentials(getattr(self, f"{kind.removesuffix('er')}_params"), kind, "refine")
        check_seed(self.seed, "seed", "refine")
        if self.pool_seed is not None:
            check_seed(self.pool_seed, "pool_seed", "refine")
        if self.epochs is not None:
            check_range(self, "epochs", "refine")
        check_interval(self.semantic_tries, "semantic_tries", "refine", kind=int, low=0, high=MAX_TRIES)
        if self.budget is not None:
            check_interval(self.budget, "budget", "refine", kind=int, low=1)
        if self.cap is not None:
            check_range(self, "cap", "refine")
        check_interval(self.mix_uniform, "mix_uniform", "refine", low=0, high=1)
        check_choice(self.merge, "merge", "refine", ["replace", "accumulate"])
        if self.crossfit:
            check_interval(self.crossfit, "crossfit", "refine", kind=int, low=2, high=20)
        check_choice(self.noise, "noise", "refine", NOISE_MODES)
        check_interval(self.noise_threshold, "noise_threshold", "refine", low=0)
        check_interval(self.noise_folds, "noise_folds", "refine", kind=int, low=2, high=20)
        if self.noise != "off" and self.crossfit:
            msg = "refine: crossfit and noise both cross-fit the margins; with noise on, selection already uses them"
            raise ConfigError(msg, hint="drop --crossfit (--noise-folds sets the folds)")


NONE = "none"  # strategy name of the no-augmentation control: later rounds train on base pairs only


PROTOCOLS = ["epochs", "steps"]  # same epochs per round (the paper's), matched optimiser steps
REFERENCES = ("uniform", NONE)  # every strategy gets a paired Δ against each of these


def _compare_refine() -> RefineConfig:
    # One synthetic pool for every seed and strategy (variants embedded once).
    return RefineConfig(rounds=1, pool_seed=0)


@dataclass
class CompareConfig:
    """Settings of a compare run: what varies between its runs, and the refine settings they share.

    Each run's refine config is ``refine`` with strategy, seed, match_steps (from the protocol),
    budget (default: the training split's size) and the parameters its selector declares set per run.
    """

    strategies: list[str] = field(default_factory=lambda: ["none", "uniform", "won", "mars", "mars-abs"], metadata={
        "help": "Comma-separated: none (base pairs only) and selector names."})
    seeds: int = field(default=5, metadata={"help": "Seeds (each: its own split, pool draw and init).",
                                            "range": (1, MAX_SEEDS)})
    protocols: list[str] = field(default_factory=lambda: list(PROTOCOLS), metadata={
        "help": "epochs (same epochs per round, the paper's) and/or steps (matched optimiser steps)."})
    test_frac: float = field(default=0.3, metadata={"help": "Test share of a split grouped by prompt."})
    n_boot: int = field(default=2000, metadata={"help": "Bootstrap resamples for the paired CIs."})
    refine: RefineConfig = field(default_factory=_compare_refine, metadata={
        "help": "The refine settings every run shares."})

    def __post_init__(self) -> None:
        from marsctl.params import MAX_N_BOOT, MIN_N_BOOT

        check_range(self, "seeds", "compare")
        check_interval(self.n_boot, "n_boot", "compare", kind=int, low=MIN_N_BOOT, high=MAX_N_BOOT)
        check_interval(self.refine.rounds, "rounds", "compare", kind=int, low=1)
        check_interval(self.test_frac, "test_frac", "compare", low=0, high=1, closed="neither")
        for p in self.protocols:
            check_choice(p, "protocol", "compare", PROTOCOLS)
        if not self.strategies:
            raise ConfigError("compare needs at least one strategy")
        declared: set[str] = set()
        for s in self.strategies:
            if s != NONE:
                declared |= _declared(s)
        unknown = [k for k in (_key(p) for p in self.refine.selector_params) if k is not None and k not in declared]
        if unknown:
            msg = (f"Unknown selector parameter {unknown[0]!r} for compare: none of the strategies "
                   f"{', '.join(self.strategies)} declares it. Allowed: {', '.join(sorted(declared)) or '(none)'}.")
            raise ConfigError(msg, hint="see 'marsctl plugins show selector NAME'")

    def selector_params(self, strategy: str) -> list[str]:
        """The shared selector parameters that ``strategy``'s Config declares (a selector gets only its own)."""
        if strategy == NONE:
            return []
        declared = _declared(strategy)
        return [p for p in self.refine.selector_params if _key(p) is None or _key(p) in declared]


def check_range(cfg: Any, name: str, owner: str) -> None:
    """Check an int field against the ``range`` its metadata declares (the bounds its CLI option shows).

    >>> RefineConfig(cap=0)
    Traceback (most recent call last):
    ...
    marsctl.errors.ConfigError: The 'cap' parameter of refine must be an int in the range [1, 100000]. Got 0 instead.
    """
    low, high = next(f for f in dataclasses.fields(cfg) if f.name == name).metadata["range"]
    check_interval(getattr(cfg, name), name, owner, kind=int, low=low, high=high)


def _declared(selector: str) -> set[str]:
    """The parameter names a selector's Config declares."""
    from marsctl import registry

    cls: Any = registry.load("selector", selector)
    return {f.name for f in dataclasses.fields(cls.Config)}


def _key(param: str) -> str | None:
    """The key of 'key=value' (None when malformed: the selector's own check then says how to write it)."""
    return param.split("=", 1)[0].strip() if "=" in param else None
