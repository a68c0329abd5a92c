"""The marsctl command: subcommands are the MARS loop's verbs."""

from __future__ import annotations

import typer

from marsctl.version import __version__

app = typer.Typer(
    name="marsctl",
    help="Margin-aware reward modeling with self-refinement (MARS): train a Bradley–Terry reward model, "
    "find the pairs it is unsure of, augment those, retrain. Commands read pairs from a file or '-' "
    "(JSONL, also compressed, Parquet, CSV, a datasets folder or a cached hub dataset; see --format) and write "
    "JSONL to stdout, or the format -o's extension names (.jsonl, .jsonl.gz, .parquet, .csv); logs and progress "
    "go to stderr, and so do tables, except those of 'plugins' and of 'eval' without --json.",
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
    from marsctl.cli import (
        active,
        augment,
        compare,
        convert,
        evaluate,
        export,
        plugins,
        query,
        refine,
        report,
        score,
        select,
        train,
    )

    for mod in (train, score, select, augment, refine, evaluate, compare, convert, export, report, query):
        mod.register(app)
    app.add_typer(plugins.app, name="plugins")
    app.add_typer(active.app, name="active")  # marsctl active simulate: the labeling simulation


_register()


def main() -> None:
    """Console-script entry point."""
    app()
