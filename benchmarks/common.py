"""Shared output of the benchmark scripts: rows as JSONL and a mean ± std Markdown table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from marsctl.report import mean_std_markdown

DATASETS = ["hh_rlhf_harmless_base_test", "pandalm_testset", "llmbar"]
HEADS = ("mlp", "linear")


def write_results(rows: list[dict[str, Any]], out: Path, name: str, column: str, values: list[Any],
                  labels: list[str]) -> str:
    """Write NAME.jsonl and NAME.md (dataset × head rows, one column per value); return the table."""
    (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = mean_std_markdown(rows, {"dataset": DATASETS, "head": HEADS}, column, values, labels)
    (out / f"{name}.md").write_text(table)
    return table
