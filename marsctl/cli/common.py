"""Shared CLI pieces: the error boundary and option helpers."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from marsctl.errors import MarsError

F = TypeVar("F", bound=Callable[..., Any])

PARAM_HELP = "Plugin parameter key=value (repeatable); see 'marsctl plugins show KIND NAME'."


def handle_errors(func: F) -> F:
    """The one boundary where MarsError becomes 'Error: …' (+ 'Hint: …') on stderr and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MarsError as e:
            typer.echo(f"Error: {e}", err=True)
            if e.hint:
                typer.echo(f"Hint: {e.hint}", err=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("Interrupted: no partial output was written.", err=True)
            raise typer.Exit(130) from None
        except BrokenPipeError:
            sys.stderr.close()
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def read_input(path: str, *, allow_empty: bool = False) -> tuple[list[dict[str, Any]], str]:
    """Read pairs from a path or '-' and return them with the display name.

    A closed stdin (``<&-``) is refused by ``read_pairs``; a terminal is refused here.
    """
    from marsctl.records import read_pairs

    name = "<stdin>" if path == "-" else path
    open_stdin = sys.stdin is not None and not sys.stdin.closed
    if path == "-" and open_stdin and sys.stdin.isatty():
        from marsctl.errors import DataError

        msg = "no input: give a JSONL file or pipe records into stdin"
        raise DataError(msg, hint="marsctl COMMAND pairs.jsonl, or ... | marsctl COMMAND -")
    return read_pairs(path, allow_empty=allow_empty), name
