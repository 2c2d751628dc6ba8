"""The help format of ``lambdamr`` and of the example and benchmark scripts.

A description is wrapped paragraph by paragraph, except paragraphs with indented or bulleted
lines, which are printed as written: a module docstring makes a whole description, its
example command lines one per line. Every option's help ends with its default — unless the
help already says it (``(default: the function's bucket)``), or the option is an on/off flag.
"""

from __future__ import annotations

import argparse
import re
import textwrap
from typing import Any

_FLAGS = (
    argparse._StoreTrueAction,
    argparse._StoreFalseAction,
    argparse._HelpAction,
    argparse._VersionAction,
    argparse.BooleanOptionalAction,
)


_SAYS_DEFAULT = re.compile(r"\(default[: ]|%\(default\)")
_AS_WRITTEN = re.compile(r"^(\s|[*-] )")


class HelpFormatter(argparse.HelpFormatter):
    """Descriptions kept whole (examples as written), and each option's default shown."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = textwrap.dedent(text).strip("\n").split("\n\n")
        filled = []
        for paragraph in paragraphs:
            lines = paragraph.splitlines()
            if any(_AS_WRITTEN.match(line) for line in lines):
                filled.append("\n".join(indent + line for line in lines))
            else:
                filled.append(textwrap.fill(" ".join(lines), width, initial_indent=indent, subsequent_indent=indent))
        return "\n\n".join(filled)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.help is argparse.SUPPRESS or _SAYS_DEFAULT.search(text) or isinstance(action, _FLAGS):
            return action.help
        if action.default is None or action.default is argparse.SUPPRESS:
            return action.help  # an option without a default must say so itself (a test checks)
        shown = "none" if action.default in ([], ()) else "%(default)s"
        return f"{text} (default: {shown})".lstrip()


class CommandParser(argparse.ArgumentParser):
    """A parser whose help is formatted by ``HelpFormatter`` unless told otherwise (for
    ``add_subparsers(parser_class=...)``: every subcommand's help shows its defaults too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def options_without_default(parser: argparse.ArgumentParser) -> list[str]:
    """The options of ``parser`` (and of its subcommands) whose help shows no default: the
    test of "every option's help shows its default"."""
    missing = []
    formatter = HelpFormatter(parser.prog)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += [f"{name} {option}" for option in options_without_default(sub)]
            continue
        if not action.option_strings or action.help is argparse.SUPPRESS or isinstance(action, _FLAGS):
            continue
        text = formatter._get_help_string(action) or ""
        if not _SAYS_DEFAULT.search(text):
            missing.append(action.option_strings[-1])
    return missing


__all__ = ["CommandParser", "HelpFormatter", "options_without_default"]
