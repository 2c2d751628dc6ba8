"""Reading ``map``'s input: checks of its options, rows zipped strictly, chunks of calls.

``map`` reads its input lazily, a window at a time (``futures.MapIterator``); ``map_reduce``
reads its input whole (``read_all``) because the shuffle plans every mapper first.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Iterable, Iterator, Sized
from typing import Any

from lambdamr.errors import ConfigurationError

#: one call: (args, kwargs)
Call = tuple[tuple[Any, ...], dict[str, Any]]

#: the most items a whole-input reader takes (``map_reduce`` inputs; ``map`` streams and has
#: no limit): beyond it the iterable is most likely endless, and would not fit in memory anyway
MAX_MATERIALISED_ITEMS = 10_000_000
#: the smallest default window, in tasks, whatever the backend's capacity
MIN_BUFFERSIZE = 16


def check_map_timeout(timeout: Any) -> None:
    """``map(timeout=...)``: None, or a finite number of seconds >= 0 (checked before launch)."""
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not math.isfinite(timeout) or timeout < 0:
        raise ConfigurationError(
            f"map(timeout={timeout!r}): give the seconds the whole iteration may take (a number >= 0), or None"
        )


def check_buffersize(buffersize: Any) -> None:
    """``map(buffersize=...)``: None (the default window) or a whole number of tasks >= 1."""
    if buffersize is None:
        return
    if isinstance(buffersize, bool) or not isinstance(buffersize, numbers.Integral) or buffersize < 1:
        raise ConfigurationError(
            f"map(buffersize={buffersize!r}): give how many tasks may be launched ahead of the one "
            "being consumed (a whole number >= 1), or None for the default (twice the backend's capacity)"
        )


def default_buffersize(capacity: int) -> int:
    """Twice what the backend runs at once: every slot stays busy while the caller consumes."""
    return max(MIN_BUFFERSIZE, 2 * capacity)


def strict_rows(iterables: tuple[Iterable[Any], ...]) -> Iterator[tuple[Any, ...]]:
    """Zip iterables lazily, refusing ones of different lengths (a silent truncation loses
    work) when the shortest ends. Sized inputs are compared before anything is read."""
    sizes = [len(it) if isinstance(it, Sized) else None for it in iterables]
    if None not in sizes and len(set(sizes)) > 1:
        raise _different_lengths([str(s) for s in sizes])
    return _rows([iter(it) for it in iterables])


def _rows(iterators: list[Iterator[Any]]) -> Iterator[tuple[Any, ...]]:
    for count in itertools.count():
        row = []
        for position, iterator in enumerate(iterators):
            try:
                row.append(next(iterator))
            except StopIteration:
                longer = [p for p, other in enumerate(iterators) if p != position and _has_more(other)]
                if position == 0 and not longer:
                    return
                lengths = [
                    f"more than {count}" if p in longer else str(count + (1 if p < position else 0))
                    for p in range(len(iterators))
                ]
                raise _different_lengths(lengths) from None
        yield tuple(row)


def _has_more(iterator: Iterator[Any]) -> bool:
    try:
        next(iterator)
    except StopIteration:
        return False
    return True


def _different_lengths(lengths: list[str]) -> ConfigurationError:
    return ConfigurationError(
        f"map() got iterables of different lengths ({', '.join(lengths)}); pass iterables of equal "
        "length, or zip/truncate them yourself"
    )


def chunks_of(rows: Iterator[tuple[Any, ...]], chunksize: int) -> Iterator[list[Call]]:
    """The calls of each task: ``chunksize`` rows at a time, as (args, kwargs) pairs."""
    while True:
        chunk: list[Call] = [(args, {}) for args in itertools.islice(rows, chunksize)]
        if not chunk:
            return
        yield chunk


def read_all(iterable: Iterable[Any], what: str) -> list[Any]:
    """Every item of an input that must be read whole, refusing one that looks endless."""
    # A Python-level loop, not list(iterable): list() over a C iterator such as
    # itertools.count() never returns to the interpreter, so Ctrl-C could not stop it.
    items: list[Any] = []
    append = items.append
    for item in iterable:
        append(item)
        if len(items) > MAX_MATERIALISED_ITEMS:
            raise ConfigurationError(
                f"{what} yielded more than {MAX_MATERIALISED_ITEMS:,} items: is it endless (itertools.count, "
                "a generator that never stops)? They are read whole before launch: pass a finite iterable, or "
                "split the input over several calls"
            )
    return items
