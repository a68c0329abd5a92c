"""Compare augmenters on a subset of a shared dataset: acceptance after filters, time, novelty.

Novelty is the Pearson correlation, over base pairs, between a pair's predicted margin and the mean
predicted margin of its synthetic rows (near 1: the rows are near-copies that re-weight the pair;
lower: the rows carry information of their own). Margins come from a ``linear`` head trained on
other pairs of the same dataset (a logistic Bradley–Terry model on embedding differences when the
head plugin is missing). Acceptance applies the shared filters of the generative augmenters to every
backend's variants, eda included, so the rates are comparable.

    HF_HUB_OFFLINE=1 python scripts/bench_augmenters.py --data /work/shared/data/pandalm_testset/pairs.jsonl \\
        --n-pairs 30 --augmenters eda rewrite openai -p rewrite:max_new_tokens=64

The ``openai`` backend needs a server (bash scripts/llama_server.sh). A JSON summary goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from typing import Any

import numpy as np


def load_pairs(path: str) -> list[dict[str, Any]]:
    """Every record of a pairs.jsonl file."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def margin_model(train: list[dict[str, Any]], encoder: Any, seed: int) -> tuple[Any, str]:
    """A function records -> predicted margins, and what it is."""
    try:
        from marsctl import registry

        head = registry.create("head", "linear", seed=seed, encoder=encoder)
        head.fit(train)
        return (lambda recs: np.array([r["pred_margin"] for r in head.score(recs)])), "linear head"
    except Exception as e:  # the head plugin is missing or broken: fall back, and say so
        print(f"linear head unavailable ({e}); using a logistic BT model on embedding differences",
              file=sys.stderr)
    from sklearn.linear_model import LogisticRegression

    def feats(recs: list[dict[str, Any]]) -> np.ndarray:
        c = encoder.encode([r["chosen"] for r in recs], side="response")
        r = encoder.encode([r["rejected"] for r in recs], side="response")
        return c - r

    x = feats(train)
    clf = LogisticRegression(C=1.0, fit_intercept=False, max_iter=1000).fit(
        np.vstack([x, -x]), np.r_[np.ones(len(x)), np.zeros(len(x))])
    return (lambda recs: feats(recs) @ clf.coef_[0]), "logistic BT on e(chosen) - e(rejected)"


def acceptance(aug: Any, pairs: list[dict[str, Any]], encoder: Any) -> tuple[dict[str, int], list[list[str]]]:
    """Filter stats over every variant the augmenter makes (generative ones report their own)."""
    from marsctl_plugins.augmenters.filters import FilterRequest, QualityFilter
    from marsctl_plugins.augmenters.generative import GenerativeAugmenter

    items = [(p[role], role) for p in pairs for role in ("prompt", "chosen", "rejected")]
    cps = [other for p in pairs for other in (None, p["rejected"], p["chosen"])]
    n = aug.config.n_variants
    if isinstance(aug, GenerativeAugmenter):
        made = aug.variants_batch(items, n, counterparts=cps)
        return dict(aug.filter_.stats), made
    made = aug.variants_batch(items, n)
    flt = QualityFilter(encoder)
    flt.run([FilterRequest(t, r, v, cp) for (t, r), v, cp in zip(items, made, cps, strict=True)])
    return dict(flt.stats), made


def bench_one(name: str, params: list[str], pairs: list[dict[str, Any]], margins: Any, encoder: Any,
              seed: int) -> dict[str, Any]:
    """Acceptance, wall time and novelty of one augmenter on ``pairs``."""
    from marsctl import registry

    kwargs = {"seed": seed}
    cls = registry.load("augmenter", name)
    if "encoder" in cls.__init__.__code__.co_varnames:
        kwargs["encoder"] = encoder
    aug = registry.create("augmenter", name, params, **kwargs)
    t0 = time.perf_counter()
    stats, _ = acceptance(aug, pairs, encoder)
    rows = aug.augment(pairs, [-1] * len(pairs), round=0)  # whole pools; variants come from the cache
    seconds = time.perf_counter() - t0
    base = margins(pairs)
    per_pair = []
    flat = [r for rs in rows for r in rs]
    syn = margins(flat) if flat else np.zeros(0)
    k = 0
    for i, rs in enumerate(rows):
        if rs:
            per_pair.append((base[i], float(np.mean(syn[k : k + len(rs)]))))
        k += len(rs)
    corr = float(np.corrcoef(np.array(per_pair).T)[0, 1]) if len(per_pair) > 2 else float("nan")
    gen = stats.get("generated", 0)
    return {"augmenter": name, "params": params, "pairs": len(pairs), "seconds": round(seconds, 1),
            "variants_generated": gen, "variants_kept": stats.get("kept", 0),
            "acceptance": round(stats.get("kept", 0) / gen, 4) if gen else None,
            "pairs_with_rows": len(per_pair), "rows": len(flat),
            "novelty_corr": round(corr, 4), "filter_stats": stats}


def main() -> None:
    """Parse arguments, run every augmenter, print a table on stderr and JSON on stdout."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/work/shared/data/pandalm_testset/pairs.jsonl")
    ap.add_argument("--n-pairs", type=int, default=30)
    ap.add_argument("--train-pairs", type=int, default=400, help="other pairs the margin model learns from")
    ap.add_argument("--augmenters", nargs="+", default=["eda", "rewrite"])
    ap.add_argument("-p", "--param", action="append", default=[],
                    help="NAME:key=value for one augmenter, e.g. rewrite:max_new_tokens=64")
    ap.add_argument("--n-variants", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from marsctl.embed import Encoder

    encoder = Encoder()
    all_pairs = load_pairs(args.data)
    random.Random(args.seed).shuffle(all_pairs)
    pairs = all_pairs[: args.n_pairs]
    train = all_pairs[args.n_pairs : args.n_pairs + args.train_pairs]
    margins, how = margin_model(train, encoder, args.seed)
    results = []
    for name in args.augmenters:
        params = [f"n_variants={args.n_variants}"] + [p.split(":", 1)[1] for p in args.param
                                                      if p.startswith(name + ":")]
        print(f"== {name} {params}", file=sys.stderr)
        results.append(bench_one(name, params, pairs, margins, encoder, args.seed))
    print(f"\n{args.data}: {len(pairs)} pairs, margins from a {how} trained on {len(train)} other pairs",
          file=sys.stderr)
    print(f"{'augmenter':<10}{'seconds':>9}{'generated':>11}{'kept':>7}{'accept':>8}{'rows':>7}{'novelty r':>11}",
          file=sys.stderr)
    for r in results:
        acc = "" if r["acceptance"] is None else f"{r['acceptance']:.2f}"
        print(f"{r['augmenter']:<10}{r['seconds']:>9}{r['variants_generated']:>11}{r['variants_kept']:>7}"
              f"{acc:>8}{r['rows']:>7}{r['novelty_corr']:>11.3f}", file=sys.stderr)
    json.dump({"data": args.data, "pairs": len(pairs), "margin_model": how, "results": results},
              sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
