"""The help format of ``lambdamr`` and of the example and benchmark scripts.

Descriptions are printed as written (a docstring's example command lines stay one per line),
and every option's help ends with its default — unless the help already says what the
default is (``default: the function's bucket``), or the option is an on/off flag.
"""

from __future__ import annotations

import argparse

_FLAGS = (
    argparse._StoreTrueAction,
    argparse._StoreFalseAction,
    argparse._HelpAction,
    argparse._VersionAction,
    argparse.BooleanOptionalAction,
)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``RawDescriptionHelpFormatter`` that shows each option's default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.help is argparse.SUPPRESS or "default" in text or isinstance(action, _FLAGS):
            return action.help
        if action.default is None or action.default is argparse.SUPPRESS:
            return action.help  # an option without a default must say so itself (a test checks)
        shown = "none" if action.default in ([], ()) else "%(default)s"
        return f"{text} (default: {shown})".lstrip()


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
        if "default" not in text:
            missing.append(action.option_strings[-1])
    return missing


__all__ = ["HelpFormatter", "options_without_default"]
