"""marsctl export MODEL_DIR --to onnx -o rm.onnx."""

from __future__ import annotations

import typer

from marsctl.cli.common import handle_errors


def register(app: typer.Typer) -> None:
    """Add the command."""

    @app.command("export")
    @handle_errors
    def export_cmd(
        model: str = typer.Argument(..., help="Model directory from 'marsctl train' (an mlp or linear head)."),
        to: str = typer.Option("onnx", "--to", help="Format: onnx (encoder + head in one graph; the tokenizer is "
                                                    "stored in its metadata; see docs/model-dir.md)."),
        output: str = typer.Option(..., "-o", "--output", help="The file to write, e.g. rm.onnx."),
    ) -> None:
        """Write a model directory as one file that runs without marsctl (checked against marsctl's scores)."""
        from marsctl import ui
        from marsctl.errors import ConfigError
        from marsctl.export import FORMATS, export_onnx
        from marsctl.params import check_choice

        check_choice(to, "to", "export", FORMATS)
        if output == "-":
            raise ConfigError("export writes a binary file: give -o FILE, not '-'", hint="e.g. -o rm.onnx")
        info = export_onnx(model, output)
        ui.info(f"exported {model} → {info['output']} ({info['bytes'] / 1e6:.1f} MB; inputs: "
                f"{', '.join(info['inputs'])}; largest difference to marsctl score with the encoder in fp32: "
                f"{info['max_abs_diff']:.1e})")
