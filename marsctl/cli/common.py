"""Shared CLI pieces: the error boundary and option helpers."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import typer

from marsctl.errors import ConfigError, MarsError

F = TypeVar("F", bound=Callable[..., Any])

# The flag of each plugin kind's key=value parameters; -p is the shorthand of the command's main kind.
PARAM_FLAGS = {"head": "--head-param", "selector": "--selector-param", "augmenter": "--augment-param"}
SEMANTIC_TRIES = 5  # --refine-tries default


def _field(cfg: Any, name: str) -> dataclasses.Field:
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    return fields[name]


def help_of(cfg: Any, name: str) -> str:
    """The help a config dataclass (class or instance) declares for field ``name`` in its metadata."""
    return _field(cfg, name).metadata["help"]


def default_of(cfg: Any, name: str) -> Any:
    """A config field's default: an instance's value, or the class default (a default_factory is called)."""
    if not isinstance(cfg, type):
        return getattr(cfg, name)
    f = _field(cfg, name)
    if f.default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def option_from(cfg: Any, name: str, *decls: str, low: int | None = None, high: int | None = None,
                **kwargs: Any) -> Any:
    """A Typer option whose default and help are config field ``name``'s (each written once, in the config).

    ``low``/``high``: an int range, refused while the options are parsed (see :func:`bounded`).
    """
    return bounded(default_of(cfg, name), *decls, low=low, high=high, help=help_of(cfg, name), **kwargs)


def in_range(low: int, high: int) -> Callable[[Any], Any]:
    """A Typer callback that refuses an int outside [low, high] (None passes): exit 2, naming option and range.

    The message reads ``Error: Invalid value for '--rounds': must be an int in the range [0, 1000]. Got -1
    instead.``, before any work (it runs while the options are parsed).
    """

    def check(value: Any) -> Any:
        if value is not None and not low <= value <= high:
            msg = f"must be an int in the range [{low}, {high}]. Got {value} instead."
            raise typer.BadParameter(msg)
        return value

    return check


def bounded(default: Any, *decls: str, low: int | None = None, high: int | None = None, help: str = "",
            **kwargs: Any) -> Any:
    """A Typer option limited to the int range [low, high] (both or neither given); --help shows the range."""
    if low is None or high is None:
        return typer.Option(default, *decls, help=help, **kwargs)
    return typer.Option(default, *decls, callback=in_range(low, high), help=f"{help} Range: [{low}, {high}].",
                        **kwargs)


def param_option(kind: str, *, short: bool = False) -> Any:
    """--head-param / --selector-param / --augment-param key=value (repeatable); ``short`` adds -p."""
    decls = [PARAM_FLAGS[kind], "-p"] if short else [PARAM_FLAGS[kind]]
    return typer.Option(None, *decls, help=f"{kind.capitalize()} parameter key=value (repeatable); "
                                           f"see 'marsctl plugins show {kind} NAME'.")


def alias(*decls: str) -> Any:
    """A hidden option: an old spelling that keeps working (merge it with ``merged`` or ``merged_params``)."""
    return typer.Option(None, *decls, hidden=True)


def merged_params(new: list[str] | None, old: list[str] | None) -> list[str]:
    """A repeatable option given under its flag and its hidden old spelling: both add up."""
    return [*(new or []), *(old or [])]


def merged(new: Any, old: Any, flag: str, old_flag: str) -> Any:
    """The value of an option given under its flag or under its hidden old spelling (one of the two)."""
    if new is not None and old is not None:
        msg = f"{old_flag} is the old spelling of {flag}: give {flag} only"
        raise ConfigError(msg)
    return new if old is None else old


def alpha_option() -> Any:
    """--alpha A: shorthand for --selector-param alpha=A."""
    return typer.Option(None, "--alpha", help="Shorthand for --selector-param alpha=A: the softmax sharpness α of "
                                              "the mars selectors (default: 'marsctl plugins show selector NAME').")


def alpha_scale_option() -> Any:
    """--alpha-scale S: shorthand for --selector-param alpha_scale=S."""
    return typer.Option(None, "--alpha-scale", help="Shorthand for --selector-param alpha_scale=S: none, or std "
                                                    "(α_eff = α / std(Δ), scale-free).")


def selector_params(params: list[str] | None, alpha: float | None, alpha_scale: str | None) -> list[str]:
    """Fold --alpha/--alpha-scale into key=value selector parameters."""
    out = list(params or [])
    if alpha is not None:
        out.append(f"alpha={alpha}")
    if alpha_scale is not None:
        out.append(f"alpha_scale={alpha_scale}")
    return out


def semantic_option() -> Any:
    """--semantic-refine: rewrite low-contrast pairs before augmenting."""
    return typer.Option(False, "--semantic-refine",
                        help="MARS v2: first rewrite low-contrast pairs (needs the rewrite or openai backend).")


def tries_option() -> Any:
    """--refine-tries N: candidates per side for --semantic-refine."""
    from marsctl.params import MAX_TRIES

    return bounded(SEMANTIC_TRIES, "--refine-tries", low=1, high=MAX_TRIES,
                   help="Candidates per side for --semantic-refine.")


def seed_option(help: str) -> Any:
    """--seed S (default 0), an int in the one seed range (``params.SEED_MAX``), refused before any work."""
    from marsctl.params import SEED_MAX

    return bounded(0, "--seed", low=0, high=SEED_MAX, help=help)


def handle_errors(func: F) -> F:
    """The one boundary where MarsError becomes 'Error: …' (+ 'Hint: …') on stderr and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from marsctl import ui

        try:
            result = func(*args, **kwargs)
            ui.flush_notes()
            return result
        except MarsError as e:
            ui.drop_notes()
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


def format_option() -> Any:
    """--format NAME: the row shape of the input (default: detected row by row)."""
    from marsctl.shapes import SHAPES

    return typer.Option(None, "--format", metavar="SHAPE",
                        help="Read every row as this shape instead of detecting it row by row: "
                             f"{', '.join(SHAPES)} (pku-safer: PKU-SafeRLHF by safer_response_id). "
                             "The input may be JSONL (also .gz/.zst/.xz), Parquet, CSV, a JSON array, a "
                             "datasets save_to_disk folder or a dataset name in the local hub cache.")


def split_option() -> Any:
    """--split NAME: the split of a datasets folder or cached hub dataset to read."""
    return typer.Option(None, "--split", metavar="NAME",
                        help="The split to read from a datasets save_to_disk folder or a cached hub dataset "
                             "(e.g. train, test); needed when it holds several.")


def read_input(path: str, *, allow_empty: bool = False, format: str | None = None,
               split: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """Read pairs from any readable input or '-' and return them with the display name.

    One stderr line says which shapes were read and how many rows. A closed stdin (``<&-``) is refused
    by ``read_pairs``; a terminal is refused here.
    """
    from marsctl.records import read_pairs

    name = "<stdin>" if path == "-" else path
    _refuse_terminal(path)
    return read_pairs(path, allow_empty=allow_empty, format=format, split=split, announce=True), name


def _refuse_terminal(path: str) -> None:
    """Refuse '-' when stdin is a terminal: nobody types JSONL."""
    open_stdin = sys.stdin is not None and not sys.stdin.closed
    if path == "-" and open_stdin and sys.stdin.isatty():
        from marsctl.errors import DataError

        msg = "no input: give a JSONL file or pipe records into stdin"
        raise DataError(msg, hint="marsctl COMMAND pairs.jsonl, or ... | marsctl COMMAND -")


@contextlib.contextmanager
def input_file(path: str, *, format: str | None = None,
               split: str | None = None) -> Iterator[tuple[str, str]]:
    """``(a file to read with records.iter_pairs as often as needed, the display name)`` for a path or '-'.

    Streaming commands read their input twice: once to check every line (keeping nothing), then to
    work, so bad input fails before any output. Stdin, a pipe, a FIFO or a device is spooled to a temporary
    file (``jsonio.rereadable``), so it is read once.
    Any other input (Parquet, CSV, a datasets folder or hub name, or a forced ``format``) is read once into
    a temporary JSONL of flat pairs (conversational rows keep their messages), said on stderr.
    """
    from marsctl.formats import source_kind
    from marsctl.jsonio import rereadable

    _refuse_terminal(path)
    if format is None and split is None and source_kind(path) == "jsonl":
        with rereadable(path) as opened:
            yield opened
        return
    with rereadable(path) as (src, name), _spooled(src, name, format, split) as tmp:
        yield tmp, name


@contextlib.contextmanager
def _spooled(src: str, name: str, format: str | None, split: str | None) -> Iterator[str]:
    """The pairs of ``src`` as a temporary JSONL file (removed afterwards)."""
    import os
    import tempfile

    from marsctl.jsonio import record_writer
    from marsctl.records import iter_pairs

    fd, tmp = tempfile.mkstemp(prefix="marsctl-pairs-", suffix=".jsonl")
    os.close(fd)
    try:
        with record_writer(tmp) as write:
            for rec in iter_pairs(src, name=name, format=format, split=split, announce=True):
                write(rec)
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
