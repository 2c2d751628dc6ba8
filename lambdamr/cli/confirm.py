"""Asking before a destructive command acts: one rule for ``teardown``, ``clean`` and
``rotate-key``.

On a terminal the user is shown what will go and answers ``y``; ``--yes`` answers for a
script. Without a terminal and without ``--yes`` the command refuses (a cron job or a CI
step never deletes because nobody was there to say no).
"""

from __future__ import annotations

import sys

from lambdamr.errors import ConfigurationError

YES_FLAG_HELP = "do not ask for confirmation (needed when not on a terminal)"


def confirm(question: str, *, yes: bool, command: str) -> bool:
    """Whether to go ahead: ``yes`` (``--yes``), else the user's answer on a terminal.

    Args:
        question: what is asked, e.g. "Delete these 12 objects?" (``[y/N]`` is appended).
        yes: the command's ``--yes``.
        command: the command line as typed, repeated in the refusal with ``--yes`` added.

    Raises:
        ConfigurationError: not on a terminal and no ``--yes``: nothing may be done.
    """
    if yes:
        return True
    if not sys.stdin.isatty():
        raise ConfigurationError(f"not on a terminal, so pass --yes to go ahead (`{command} --yes`); nothing was changed")
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:  # the terminal closed: no answer is no
        return False
    return answer.strip().lower() in ("y", "yes")


__all__ = ["YES_FLAG_HELP", "confirm"]
