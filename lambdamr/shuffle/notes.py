"""Say where in the user's code an exception was raised, on every Python Lambda runs, and
show the values involved short enough to read."""

from __future__ import annotations

from typing import Any


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)`` where it exists (Python 3.11+); on 3.10 the exception goes as it is.

    Lambda still offers python3.10, where a bare ``add_note`` call would replace the user's
    exception with an ``AttributeError``.
    """
    if hasattr(exc, "add_note"):  # not on python3.10
        exc.add_note(note)


#: characters of a value's repr an error message shows
SHORT_REPR_CHARS = 80


def short_repr(obj: Any, limit: int = SHORT_REPR_CHARS) -> str:
    """``repr(obj)`` cut to ``limit`` characters; a placeholder when ``repr`` itself raises
    (an error message about a user's object must never fail on that object)."""
    try:
        text = repr(obj)
    except Exception:
        text = f"<{type(obj).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
