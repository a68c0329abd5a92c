"""marsctl plugins [list|show]: what is installed, without importing it (the tables go to stdout)."""

from __future__ import annotations

import json
from typing import Any

import typer

from marsctl.cli.common import handle_errors

app = typer.Typer(help="List installed heads, augmenters and selectors.", invoke_without_command=True,
                  rich_markup_mode=None)


@app.callback()
@handle_errors
def plugins_root(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """List every installed plugin with its version (same as 'plugins list')."""
    if ctx.invoked_subcommand is None:
        _list(as_json)


@app.command("list")
@handle_errors
def list_cmd(as_json: bool = typer.Option(False, "--json", help="JSON on stdout.")) -> None:
    """List every installed plugin with its version."""
    _list(as_json)


def _list(as_json: bool) -> None:
    from marsctl import registry, ui

    infos = registry.list_plugins()
    if as_json:
        typer.echo(json.dumps([i.__dict__ for i in infos], indent=2))
        return
    with ui.on_stdout():
        ui.table("installed plugins", ["kind", "name", "distribution", "version", "entry point"],
                 [[i.kind, i.name, i.distribution, i.version, i.value] for i in infos])


@app.command("show")
@handle_errors
def show_cmd(kind: str = typer.Argument(..., help="head, augmenter or selector."),
             name: str = typer.Argument(..., help="Plugin name.")) -> None:
    """Show one plugin's parameters (for -p key=value) and their defaults."""
    from marsctl import registry, ui
    from marsctl.params import describe_config

    cls: Any = registry.load(kind, name)
    typer.echo((cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else name)
    with ui.on_stdout():
        ui.table(f"{kind} {name!r} parameters", ["name", "type", "default", "help"],
                 [list(r) for r in describe_config(cls.Config)])
