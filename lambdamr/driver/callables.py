"""What the executor accepts as the function of a task: a plain (synchronous) callable."""

from __future__ import annotations

import inspect
from typing import Any

from lambdamr.errors import ConfigurationError


def check_plain_function(fn: Any, what: str = "the function to run") -> None:
    """Refuse what is not callable, and ``async def`` functions, before anything is launched.

    A coroutine function called in a task returns a coroutine that nobody awaits (and that
    cannot be pickled back), so it is refused here with the one-line wrapper that runs it.

    Raises:
        TypeError: ``fn`` is not callable.
        ConfigurationError: ``fn`` is an ``async def`` function (or a callable whose
            ``__call__`` is one).
    """
    if not callable(fn):
        raise TypeError(f"{what} must be callable, got {type(fn).__name__} {fn!r}")
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__):
        name = getattr(fn, "__name__", type(fn).__name__)
        raise ConfigurationError(
            f"{what} {name!r} is an async def function: tasks run plain functions. Wrap it, e.g. "
            f"def run(*args): return asyncio.run({name}(*args)), and map that"
        )
    if inspect.isasyncgenfunction(fn):
        name = getattr(fn, "__name__", type(fn).__name__)
        raise ConfigurationError(
            f"{what} {name!r} is an async generator function: tasks run plain functions; collect its "
            "items in a plain function with asyncio.run"
        )
