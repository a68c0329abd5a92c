"""Shared output of the benchmark scripts: rows as JSONL and a mean ± std Markdown table."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

DATASETS = ["hh_rlhf_harmless_base_test", "pandalm_testset", "llmbar"]
HEADS = ("mlp", "linear")


def write_results(rows: list[dict[str, Any]], out: Path, name: str, column: str, values: list[Any],
                  labels: list[str]) -> str:
    """Write NAME.jsonl and NAME.md (dataset × head rows, one column per value); return the table."""
    (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = ["| dataset | head | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(values)]
    for ds in DATASETS:
        for head in HEADS:
            cells = []
            for v in values:
                accs = [r["accuracy"] for r in rows if (r["dataset"], r["head"], r[column]) == (ds, head, v)]
                cells.append(f"{statistics.mean(accs):.3f} ± {statistics.pstdev(accs):.3f}")
            lines.append(f"| {ds} | {head} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    (out / f"{name}.md").write_text(table)
    return table
