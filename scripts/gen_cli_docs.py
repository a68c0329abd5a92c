"""Generate docs/cli.md from the CLI's --help (CI fails when it is stale).

    python scripts/gen_cli_docs.py          # write docs/cli.md
    python scripts/gen_cli_docs.py --check  # exit 1 if docs/cli.md differs
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["COLUMNS"] = "100"
os.environ["NO_COLOR"] = "1"
os.environ["TERM"] = "dumb"

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [[], ["train"], ["score"], ["select"], ["augment"], ["refine"], ["eval"], ["compare"], ["report"],
            ["convert"], ["export"], ["plugins"], ["plugins", "show"],
            ["query"], ["active", "simulate"]]  # issue 22


def render() -> str:
    from typer.testing import CliRunner

    from marsctl.cli.app import app

    runner = CliRunner()
    parts = ["# marsctl command reference", "", "Generated from `--help` by `scripts/gen_cli_docs.py`; "
             "do not edit by hand.", ""]
    for cmd in COMMANDS:
        result = runner.invoke(app, [*cmd, "--help"], prog_name="marsctl", terminal_width=100)
        if result.exit_code != 0:
            continue
        parts += [f"## marsctl {' '.join(cmd)}".rstrip(), "", "```", result.output.rstrip(), "```", ""]
    return "\n".join(parts)


def main() -> int:
    text = render()
    target = ROOT / "docs" / "cli.md"
    if "--check" in sys.argv:
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            print("docs/cli.md is stale: run python scripts/gen_cli_docs.py")
            return 1
        return 0
    target.parent.mkdir(exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
