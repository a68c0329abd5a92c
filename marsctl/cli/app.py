"""The marsctl command: subcommands are the MARS loop's verbs."""

from __future__ import annotations

import typer

from marsctl import __version__

app = typer.Typer(
    name="marsctl",
    help="Margin-aware reward modeling with self-refinement (MARS): train a Bradley–Terry reward model, "
    "find the pairs it is unsure of, augment those, retrain. Commands read JSONL from a file or '-' "
    "and write JSONL to -o or stdout; logs, progress and tables go to stderr.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"marsctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """marsctl."""


def _register() -> None:
    from marsctl.cli import augment, compare, evaluate, plugins, refine, score, select, train

    for mod in (train, score, select, augment, refine, evaluate, compare):
        mod.register(app)
    app.add_typer(plugins.app, name="plugins")


_register()


def main() -> None:
    """Console-script entry point."""
    app()
