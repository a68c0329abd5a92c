"""Response lengths of scored pairs: per row, the length baseline, and reward against length.

A slim row (:func:`slim_row`: a scored row without its texts, to save memory) keeps the lengths, so
every figure here serves for it as for a full row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def response_lengths(row: dict[str, Any]) -> tuple[int, int]:
    """Characters in a row's chosen and rejected responses; a slim row (texts dropped) carries them.

    A row from which the texts were dropped to save memory (:func:`slim_row`) keeps the lengths as
    ``_len_chosen`` and ``_len_rejected``.

    >>> response_lengths({"chosen": "abc", "rejected": "a"})
    (3, 1)
    >>> response_lengths(slim_row({"prompt": "p", "chosen": "ab", "rejected": ""}))
    (2, 0)
    """
    if "_len_chosen" in row:
        return row["_len_chosen"], row["_len_rejected"]
    return len(row["chosen"]), len(row["rejected"])


SLIM_FIELDS = ("_len_chosen", "_len_rejected", "_identical")  # what slim_row keeps of the texts


def slim_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row without its prompt and response texts, keeping the response lengths the metrics need.

    It also keeps ``_identical`` (chosen == rejected, ``records.is_identical``), which select reports.
    """
    from marsctl.records import is_identical

    lc, lr = response_lengths(row)
    out = {k: v for k, v in row.items() if k not in ("prompt", "chosen", "rejected")}
    out["_len_chosen"], out["_len_rejected"] = lc, lr
    out["_identical"] = is_identical(row)
    return out


def length_baseline(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Accuracy of 'pick the longer response' and 'pick the shorter' on the same rows (ties: neither)."""
    import numpy as np

    lengths = [response_lengths(r) for r in records]
    lc = np.array([c for c, _ in lengths])
    lr = np.array([r for _, r in lengths])
    return {"longer": float((lc > lr).mean()), "shorter": float((lc < lr).mean()),
            "ties": float((lc == lr).mean())}


def correlation(x: Any, y: Any) -> dict[str, float | None]:
    """Spearman and Pearson correlation of x and y (scipy.stats); None where either is constant or n < 3.

    >>> correlation([1, 2, 3, 4], [1, 4, 9, 16])["spearman"]
    1.0
    """
    import numpy as np
    from scipy import stats

    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(xa) < 3 or np.ptp(xa) == 0 or np.ptp(ya) == 0:
        return {"spearman": None, "pearson": None}
    return {"spearman": float(stats.spearmanr(xa, ya).statistic), "pearson": float(stats.pearsonr(xa, ya).statistic)}


def _share(correct: Any, mask: Any) -> dict[str, Any]:
    n = int(mask.sum())
    return {"n": n, "accuracy": float(correct[mask].mean()) if n else None}


def length_diagnostics(rows: Sequence[dict[str, Any]], margins: Any) -> dict[str, Any]:
    """Reward against response length (characters), and accuracy by which response of the pair is longer.

    ``reward_vs_length`` pools chosen and rejected responses; ``margin_vs_length_difference`` is Δ against
    len(chosen) − len(rejected). Read ``chosen_longer``/``chosen_shorter`` beside the length baseline.
    """
    import numpy as np

    lengths = np.array([response_lengths(r) for r in rows], dtype=float).reshape(-1, 2)
    rewards = np.array([(r["score_chosen"], r["score_rejected"]) for r in rows], dtype=float).reshape(-1, 2)
    m = np.asarray(margins, dtype=float)
    correct = (m > 0).astype(float)
    diff = lengths[:, 0] - lengths[:, 1]
    return {"unit": "characters",
            "reward_vs_length": correlation(lengths.ravel(), rewards.ravel()),
            "margin_vs_length_difference": correlation(diff, m),
            "chosen_longer": _share(correct, diff > 0), "chosen_shorter": _share(correct, diff < 0),
            "equal_length": _share(correct, diff == 0)}
