"""marsctl convert IN -o OUT --to FORMAT."""

from __future__ import annotations

import typer

from marsctl.cli.common import handle_errors, output_option
from marsctl.cli.inputs import format_option, read_input, split_option


def register(app: typer.Typer) -> None:
    """Add the command."""
    from marsctl.layouts import TARGETS

    @app.command("convert")
    @handle_errors
    def convert_cmd(
        pairs: str = typer.Argument("-", help="Any readable pairs (a marsctl output too) or '-' for stdin."),
        to: str = typer.Option(..., "--to", help="The layout to write: " + "; ".join(
            f"{k}: {v}" for k, v in TARGETS.items()) + "."),
        output: str = output_option(),
        fmt: str = format_option(),
        split: str = split_option(),
    ) -> None:
        """Write pairs in a published layout, for TRL's RewardTrainer, OpenAI fine-tuning or RewardBench."""
        from marsctl import ui
        from marsctl.layouts import to_layout
        from marsctl.outputs import check_file_output
        from marsctl.params import check_choice
        from marsctl.records import write_records

        check_choice(to, "to", "convert", list(TARGETS))
        check_file_output(output, [pairs], records=True)
        records, name = read_input(pairs, format=fmt, split=split)
        n = write_records((to_layout(r, to) for r in records), output)
        ui.info(f"wrote {n} pairs from {name} as {to} to {'stdout' if output == '-' else output}")
