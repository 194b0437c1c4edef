"""The ``structmat`` command: argparse subcommands, one module each.

Every subcommand module has ``register(subparsers)``, which adds its parser and
sets ``func(args) -> int``. Errors a user can cause (bad files, bad flags) are
printed as one line on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from structmat.cli import cost, frechet, retrieve, train
from structmat.cli._common import CLIError

__all__ = ["CLIError", "main"]

# One entry per subcommand; a new command is one import and one entry here.
_COMMANDS = [cost, frechet, retrieve, train]


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (no usage dump), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="structmat",
        description="Structured-matrix methods for fast sequence models and retrieval.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in _COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 user error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): return, don't exit
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except (CLIError, ValueError) as err:
        msg = " ".join(str(err).split())  # one line, whatever the message held
        print(f"structmat {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"structmat {args.command}: interrupted", file=sys.stderr)
        return 130
