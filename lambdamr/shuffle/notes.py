"""Say where in the user's code an exception was raised, on every Python Lambda runs."""

from __future__ import annotations


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)`` where it exists (Python 3.11+); on 3.10 the exception goes as it is.

    Lambda still offers python3.10, where a bare ``add_note`` call would replace the user's
    exception with an ``AttributeError``.
    """
    if hasattr(exc, "add_note"):  # not on python3.10
        exc.add_note(note)
