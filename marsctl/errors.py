"""Typed errors shown to users; the CLI catches them in one place."""

from __future__ import annotations


class MarsError(Exception):
    """An error with a message meant for the user, and an optional hint."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class DataError(MarsError):
    """Bad input data: a file, a line, a field."""

    exit_code = 2


class ConfigError(MarsError):
    """A bad flag, parameter value or model directory."""

    exit_code = 2


class PluginError(MarsError):
    """An unknown or broken plugin."""

    exit_code = 2
