"""Pieces shared by the CLI subcommands."""

from __future__ import annotations


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""
