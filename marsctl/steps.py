"""The model's verbs as library functions: train a reward head, and score pairs with it.

Scoring comes whole (:func:`score`), streamed (:func:`iter_score`) and as the CLI's checked passes over
a file (:func:`score_pass`, :func:`score_slim`; :func:`scan_pairs` checks a file first). Every CLI
command is a thin wrapper over one of these or of :mod:`marsctl.augmentation` (select, augment); they
work from Python without Typer. Their inputs are checked before any work (:mod:`marsctl.checks`).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from marsctl import registry
from marsctl.checks import report_identical, warn_identical
from marsctl.errors import ConfigError, DataError
from marsctl.losses import pair_weights
from marsctl.modeldir import load_head
from marsctl.params import check_interval
from marsctl.plugin import Head
from marsctl.records import count_identical, is_identical, iter_pairs, records_sha256


def train(
    pairs: list[dict[str, Any]],
    *,
    head: str | None = None,
    params: list[str] | dict[str, Any] | None = None,
    epochs: int | None = None,
    seed: int = 0,
    init: Head | str | Path | None = None,
    init_name: str | None = None,
    name: str | None = None,
    warn_identical: bool = True,
) -> Head:
    """Train a reward head on pairs; with ``init``, continue from a head object or a saved model directory.

    Pairs with chosen == rejected carry no preference signal: they are left out of training, with a
    warning on stderr (unless ``warn_identical`` is false) and ``n_identical_dropped`` in the manifest.

    Parameters
    ----------
    pairs : list of dict
        Records with prompt, chosen, rejected.
    head : str, optional
        Plugin name (default ``mlp``; with ``init``, the saved head's kind).
    params : list of ``key=value`` or dict, optional
        Head configuration (see ``marsctl plugins show head NAME``).
    epochs : int, optional
        Override the head's default number of epochs.
    seed : int
        Seed for initialisation and shuffling.
    init : Head or path, optional
        A head object or a model directory to continue from (weights carry forward). A head object
        is trained in place, exactly as its saved directory would be (``Head.reseed_as_loaded``).
    init_name : str, optional
        What the manifest records as ``init``: default the directory given as ``init``; with a head
        object, pass the directory it was saved to (else None is recorded).
    name : str, optional
        The input's name for messages (a file name).
    warn_identical : bool
        Warn about pairs with chosen == rejected (refine warns once per run instead).

    Returns
    -------
    Head
        The fitted head; ``head.save(dir)`` writes it.
    """
    from marsctl.params import MAX_EPOCHS, check_seed

    check_seed(seed, "seed", "train")
    if epochs is not None:
        check_interval(epochs, "epochs", "train", kind=int, low=0, high=MAX_EPOCHS)
    model = _start(init, head, params, seed)
    if init_name is None and init is not None and not isinstance(init, Head):
        init_name = str(init)
    given = pairs
    pairs, n_identical = _trainable(pairs, name, warn_identical)  # after the head is known good: no stray warning
    pair_weights(pairs, name)  # a bad 'weight' field is named with its file and line before any training
    model.history_ = list(model.history_)
    previous = dict(model.manifest_) if init is not None else {}
    model.manifest_ = {}
    model.fit(pairs, epochs=epochs)
    model.manifest_.update({
        "seed": seed,
        "data_sha256": records_sha256(given),
        "n_pairs": len(pairs),
        "n_identical_dropped": n_identical,
        "n_synthetic": sum(1 for p in pairs if p.get("source") == "synthetic"),
        "init": init_name,
    })
    if previous:
        model.manifest_["init_training"] = {k: previous.get(k) for k in ("seed", "data_sha256", "n_pairs",
                                                                        "epochs")}
    return model


def _start(init: Head | str | Path | None, head: str | None, params: Any, seed: int) -> Head:
    """The head to train: a new one, one loaded from ``init``, or the head object ``init`` reseeded as if loaded."""
    if init is None:
        return registry.create("head", head or "mlp", params, seed=seed)
    if not isinstance(init, Head):
        model = load_head(init, expect=head, overrides=params)
    elif head is not None and init.name != head:
        msg = f"train: the head to continue is a {init.name!r} head, not {head!r}"
        raise ConfigError(msg, hint=f"pass head={init.name!r}, or train a new head without init")
    elif params:
        msg = "train: params cannot change the config of a head object"
        raise ConfigError(msg, hint="continue from its saved directory (init=DIR) to override its config")
    else:
        model = init
        model.reseed_as_loaded()
    model.seed = seed
    return model


def _trainable(pairs: list[dict[str, Any]], name: str | None, warn: bool) -> tuple[list[dict[str, Any]], int]:
    """The pairs to train on (chosen != rejected) and how many were left out."""
    n = (report_identical(pairs, name, "train", "left out of training") if warn else count_identical(pairs))["n"]
    if not n:
        return pairs, 0
    kept = [p for p in pairs if not is_identical(p)]
    if not kept:
        msg = f"{name or 'train'}: every pair has chosen == rejected; there is nothing to learn a preference from"
        raise DataError(msg)
    return kept, n


def score(records: list[dict[str, Any]], model: Head | str | Path,
          batch_size: int | None = None, name: str | None = None, length_free: bool = False) -> list[dict[str, Any]]:
    """Score records with a head (or a model directory): adds score fields and pred_margin.

    Pairs with chosen == rejected are scored and kept, with a warning on stderr. ``length_free``:
    the scores of the quality part alone (``Head.score``).
    """
    head = model if isinstance(model, Head) else load_head(model)
    report_identical(records, name, "score", "kept in the output")
    return head.score(records, batch_size=batch_size, length_free=length_free)


SCORE_CHUNK = 4096  # pairs a streaming score holds at once; the scores do not depend on it


def iter_score(records: Iterable[dict[str, Any]], model: Head, batch_size: int | None = None,
               chunk: int = SCORE_CHUNK, length_free: bool = False) -> Iterator[dict[str, Any]]:
    """Score a stream of records ``chunk`` pairs at a time (``Head.score``), so memory is bounded by a chunk.

    Each pair's scores are the same whatever ``chunk`` and ``batch_size`` (tests/test_streaming.py). It
    does not warn about pairs with chosen == rejected: a streaming caller counts them in its checking pass
    (:func:`scan_pairs`).
    """
    it = iter(records)
    while part := list(itertools.islice(it, chunk)):
        yield from model.score(part, batch_size=batch_size, length_free=length_free)


def score_pass(path: str, name: str, model: Head, write: Callable[[dict[str, Any]], None],
               batch_size: int | None = None, length_free: bool = False) -> dict[str, Any]:
    """Check, score and ``write`` every pair of a pairs file in one pass: ``{"pairs", "positive", "identical"}``.

    ``write`` must keep what it gets from the caller's output until the pass is done (``records.record_writer``
    with ``hold``), so bad input on a late line still leaves no partial output; what is said on stderr
    meanwhile is held back too (``ui.held``). ``positive`` counts pairs with ``pred_margin > 0``;
    ``identical`` is ``records.count_identical``'s answer, for the caller to warn about.
    """
    from marsctl import ui

    same: dict[str, Any] = {"n": 0, "first_line": None}
    n = positive = 0
    with ui.held():
        for rec in iter_score(_counting_identical(path, name, same), model, batch_size=batch_size,
                              length_free=length_free):
            write(rec)
            n += 1
            positive += rec["pred_margin"] > 0
    return {"pairs": n, "positive": positive, "identical": same}


def scan_pairs(path: str, name: str) -> dict[str, Any]:
    """Check every record of a pairs file (``records.iter_pairs``), keeping none: ``{"pairs": n, "identical": ...}``.

    ``identical`` is ``records.count_identical``'s answer. A command that streams its output runs this
    first, so bad input fails before anything is written.
    """
    same: dict[str, Any] = {"n": 0, "first_line": None}
    n = sum(1 for _ in _counting_identical(path, name, same))
    return {"pairs": n, "identical": same}


def _counting_identical(path: str, name: str, same: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The checked records of a pairs file (announced), counting those with chosen == rejected into ``same``."""
    for rec in iter_pairs(path, name=name, announce=True):
        if is_identical(rec):
            same["n"] += 1
            same["first_line"] = same["first_line"] or rec["_line"]
        yield rec


def score_slim(path: str, name: str, model: Head, scored_out: str | None = None,
               batch_size: int | None = None) -> list[dict[str, Any]]:
    """Score a pairs file in bounded memory for the metrics: the rows without their texts (``lengths.slim_row``).

    The whole file is checked first (:func:`scan_pairs`); with ``scored_out``, each scored row is
    written there as it comes (``records.record_writer``: atomic for a file). An input that can be read
    only once (a pipe, ``-``) is copied first, as it is read twice (``inputs.rereadable``).
    """
    from marsctl.inputs import rereadable
    from marsctl.lengths import slim_row
    from marsctl.records import record_writer

    with rereadable(path) as (src, _):
        warn_identical(scan_pairs(src, name)["identical"], name, "score", "kept in the output")
        slim = []
        with record_writer(scored_out) if scored_out else contextlib.nullcontext(None) as write:
            for rec in iter_score(iter_pairs(src, name=name), model, batch_size=batch_size):
                if write is not None:
                    write(rec)
                slim.append(slim_row(rec))
    return slim
