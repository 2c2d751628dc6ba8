"""Text for error messages: values shown short enough to read (also runs remotely)."""

from __future__ import annotations

from typing import Any

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
