"""Shared CLI pieces: the error boundary, and the options built from the config fields and shared by commands."""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable
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


def config_option(cfg: Any, name: str, *, low: int | None = None) -> Any:
    """The Typer option of config field ``name``, all of it declared once, in the field (``marsctl.config``).

    ``cfg`` is a config class, or an instance whose values are the defaults (compare's shared refine
    settings). The field's metadata gives the help, the flags (``--field-name`` unless it names
    ``flags``) and an int ``range`` refused while the options are parsed (see :func:`bounded`); ``low``
    raises that range's lower end for one command. A list default is shown comma-separated (the
    command reads the value with :func:`comma_list`).
    """
    meta = _field(cfg, name).metadata
    decls = meta.get("flags", ("--" + name.replace("_", "-"),))
    default = default_of(cfg, name)
    if isinstance(default, list):
        default = ",".join(default)
    bound_low, high = meta.get("range", (None, None))
    return bounded(default, *decls, low=bound_low if low is None else low, high=high, help=meta["help"])


def comma_list(text: str) -> list[str]:
    """The items of a comma-separated option value (a list field's option), blanks dropped."""
    return [s.strip() for s in text.split(",") if s.strip()]


# -o of the commands that write records (score, select, augment, convert): the extension decides the format.
OUTPUT_HELP = ("Output file (.jsonl, .jsonl.gz, .jsonl.zst, .parquet, .csv: the extension decides the format), "
               "or '-' for stdout (JSONL).")


def output_option() -> Any:
    """-o/--output PATH for records (default '-': stdout)."""
    return typer.Option("-", "-o", "--output", help=OUTPUT_HELP)


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
