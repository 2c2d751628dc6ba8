"""The iterator ``LambdaExecutor.map`` returns, and the zip that feeds it."""

from __future__ import annotations

import math
import numbers
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from .errors import ConfigurationError
from .job import Job

T = TypeVar("T")

#: the most calls one map() takes: beyond it the iterable is most likely endless (and its
#: arguments would not fit in the driver's memory anyway); split bigger inputs into several maps
MAX_MAP_CALLS = 10_000_000


class MapIterator(Iterator[T]):
    """The results of ``LambdaExecutor.map`` in input order; ``.job`` is the job behind them.

    Like ``concurrent.futures``: a result is returned, or its exception raised, when
    iteration reaches it; ``timeout`` bounds the whole iteration; closing the iterator early
    (or an exception) cancels the calls not yet started.
    """

    def __init__(self, job: Job | None, timeout: float | None, verbose: bool) -> None:
        self.job = job
        self._futures = list(job.futures) if job else []
        self._index = 0
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._verbose = verbose

    def __iter__(self) -> MapIterator[T]:
        return self

    def __next__(self) -> T:
        if self._index >= len(self._futures):
            self._finish()
            raise StopIteration
        future = self._futures[self._index]
        remaining = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
        try:
            value = future.result(remaining)
        except BaseException:
            self.close()
            raise
        self._index += 1
        return value

    def __len__(self) -> int:
        return len(self._futures) - self._index

    def close(self) -> None:
        """Cancel every call not started yet."""
        for future in self._futures[self._index :]:
            future.cancel()
        self._index = len(self._futures)

    def _finish(self) -> None:
        if self._verbose and self.job is not None:
            print(self.job.summary(), file=sys.stderr)
            self._verbose = False


def check_map_timeout(timeout: Any) -> None:
    """``map(timeout=...)``: None, or a finite number of seconds >= 0 (checked before launch)."""
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not math.isfinite(timeout) or timeout < 0:
        raise ConfigurationError(
            f"map(timeout={timeout!r}): give the seconds the whole iteration may take (a number >= 0), or None"
        )


def _column(iterable: Iterable[Any], position: int, limit: int | None = None) -> list[Any]:
    # A Python-level loop, not list(iterable): list() over a C iterator such as
    # itertools.count() never returns to the interpreter, so Ctrl-C could not stop it.
    column: list[Any] = []
    append = column.append
    for item in iterable:
        append(item)
        if limit is not None and len(column) >= limit:
            break  # already longer than the first iterable: refused below, whatever its length
        if len(column) > MAX_MAP_CALLS:
            raise ConfigurationError(
                f"map() iterable {position} yielded more than {MAX_MAP_CALLS:,} items: is it endless (itertools.count, "
                "a generator that never stops)? Pass a finite iterable, or split the input over several maps"
            )
    return column


def zip_strict(iterables: tuple[Iterable[Any], ...]) -> list[tuple]:
    """Zip iterables, refusing ones of different lengths (a silent truncation loses work)."""
    first = _column(iterables[0], 0)
    columns = [first] + [_column(it, position, len(first) + 1) for position, it in enumerate(iterables[1:], 1)]
    lengths = {len(c) for c in columns}
    if len(lengths) > 1:
        raise ConfigurationError(
            "map() got iterables of different lengths ("
            + ", ".join(str(len(c)) if len(c) <= len(first) else f"more than {len(first)}" for c in columns)
            + "); pass iterables of equal length, or zip/truncate them yourself"
        )
    return list(zip(*columns))
