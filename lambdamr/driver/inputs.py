"""Reading ``map``'s input: checks of its options, rows zipped strictly, chunks of calls.

``map`` reads its input lazily, a window at a time (``futures.MapIterator``); ``map_reduce``
reads its input whole (``read_all``) because the shuffle plans every mapper first.

An item is one positional argument (``fn(item)``, as ``concurrent.futures`` does: a dict is
an argument like any other) unless ``map(..., unpack=...)`` says otherwise: ``"kwargs"``
calls ``fn(**item)`` for a dict of keyword arguments (Lithops' and PyWren's dict items),
``"args"`` calls ``fn(*item)`` for a tuple or list (``itertools.starmap``). Each unpacked
item is checked as it is read — its type, its keys, and that it binds to ``fn``'s signature —
so a bad one in the first window is refused before anything launches.
"""

from __future__ import annotations

import inspect
import itertools
import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from typing import Any, Literal

from lambdamr.config import ExecutorConfig
from lambdamr.data.objects import ObjectSource
from lambdamr.errors import ConfigurationError
from lambdamr.shuffle.notes import short_repr

#: one call: (args, kwargs)
Call = tuple[tuple[Any, ...], dict[str, Any]]
#: how ``map`` turns an item into a call: ``fn(*item)`` or ``fn(**item)``; None: ``fn(item)``
UnpackMode = Literal["args", "kwargs"]
UNPACK_MODES: tuple[UnpackMode, ...] = ("args", "kwargs")

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
    return calls_in_chunks(((args, {}) for args in rows), chunksize)


def calls_in_chunks(calls: Iterator[Call], chunksize: int) -> Iterator[list[Call]]:
    """``chunksize`` calls at a time: the calls of each task."""
    while True:
        chunk = list(itertools.islice(calls, chunksize))
        if not chunk:
            return
        yield chunk


def check_unpack(unpack: Any, iterables: tuple[Iterable[Any], ...]) -> None:
    """``map(unpack=...)``: None, ``"args"`` or ``"kwargs"``, over exactly one iterable."""
    if unpack is None:
        return
    if unpack not in UNPACK_MODES:
        raise ConfigurationError(
            f"map(unpack={unpack!r}): give 'kwargs' (each item a dict: fn(**item)), 'args' (each item a "
            "tuple or list: fn(*item)), or None (the default: fn(item), a dict or tuple is one argument)"
        )
    if len(iterables) != 1:
        raise ConfigurationError(
            f"map(unpack={unpack!r}) takes one iterable of items, got {len(iterables)}: put every call's "
            "arguments into one item (a dict for 'kwargs', a tuple for 'args'), e.g. with zip"
        )


def unpacked_calls(items: Iterable[Any], unpack: UnpackMode, fn: Callable[..., Any]) -> Iterator[Call]:
    """The call each item stands for, checked against ``fn``'s signature as it is read.

    Raises (when the item is read):
        ConfigurationError: an item of the wrong type, a key that is not an identifier, or
            arguments ``fn`` does not take (naming the item's position).
    """
    signature = _signature(fn)
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    for position, item in enumerate(items):
        call = _kwargs_call(item, position) if unpack == "kwargs" else _args_call(item, position)
        if signature is not None:
            try:
                signature.bind(*call[0], **call[1])
            except TypeError as exc:
                raise ConfigurationError(
                    f"map(unpack={unpack!r}): item {position} ({short_repr(item)}) does not fit "
                    f"{name}{signature}: {exc}"
                ) from None
        yield call


def _kwargs_call(item: Any, position: int) -> Call:
    if not isinstance(item, Mapping):
        raise ConfigurationError(
            f"map(unpack='kwargs'): item {position} is a {type(item).__name__} ({short_repr(item)}), not a dict of "
            "keyword arguments; give dicts such as {'x': 1}, or drop unpack= to pass items as they are"
        )
    for key in item:
        if not isinstance(key, str) or not key.isidentifier():
            raise ConfigurationError(
                f"map(unpack='kwargs'): item {position} has the key {short_repr(key)}, which is not a Python "
                "identifier and so cannot name a keyword argument; rename it"
            )
    return (), dict(item)


def _args_call(item: Any, position: int) -> Call:
    if not isinstance(item, (tuple, list)):
        raise ConfigurationError(
            f"map(unpack='args'): item {position} is a {type(item).__name__} ({short_repr(item)}), not a tuple or "
            "list of positional arguments; wrap it (tuple(item), or (item,) for one argument)"
        )
    return tuple(item), {}


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    """``fn``'s signature, or None when Python cannot tell it (some builtins): then unchecked."""
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def map_calls(
    fn: Callable[..., Any],
    iterables: tuple[Iterable[Any], ...],
    chunksize: int,
    unpack: UnpackMode | None,
    config: ExecutorConfig,
) -> Iterator[list[Call]]:
    """The calls of each task of ``map(fn, *iterables)``: an ``objects()`` source among the
    iterables is listed with the executor's region and endpoint; items are unpacked when
    ``unpack`` says so (``check_unpack`` first)."""
    resolved = tuple(
        it.resolve(region=config.region, endpoint_url=config.endpoint_url) if isinstance(it, ObjectSource) else it
        for it in iterables
    )
    if unpack is None:
        return chunks_of(strict_rows(resolved), chunksize)
    return calls_in_chunks(unpacked_calls(resolved[0], unpack, fn), chunksize)


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
