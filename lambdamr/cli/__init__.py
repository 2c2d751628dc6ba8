"""The ``lambdamr`` command line.

Each command module in ``COMMAND_MODULES`` registers its subcommands with
``register(subparsers)``; a subcommand sets ``func(args) -> int`` as its handler. A new group
of commands is one module and one line here.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from collections.abc import Sequence

from lambdamr._version import __version__
from lambdamr.cli.help import CommandParser
from lambdamr.errors import LambdaMRError

#: modules that add subcommands, in the order they appear in ``lambdamr --help``
COMMAND_MODULES: tuple[str, ...] = (
    "lambdamr.cli.deploy", "lambdamr.cli.cleanup", "lambdamr.cli.observe", "lambdamr.cli.dashboard"
)


def build_parser() -> argparse.ArgumentParser:
    """The parser with every registered subcommand."""
    parser = CommandParser(prog="lambdamr", description="Run Python functions on AWS Lambda, map/reduce style.")
    parser.add_argument("--version", action="version", version=f"lambdamr {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (errors print one clear line, no traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["lambdamr", *argv])  # to repeat it, e.g. with --yes
    try:
        return int(args.func(args) or 0)
    except LambdaMRError as exc:
        print(f"lambdamr {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"lambdamr {args.command}: interrupted", file=sys.stderr)
        return 130


__all__ = ["COMMAND_MODULES", "build_parser", "main"]
