"""The iterator ``LambdaExecutor.map`` returns: results in input order, over a bounded window.

``map`` reads its input lazily, like ``Executor.map(buffersize=...)`` of Python 3.14: at
most ``buffersize`` tasks are launched and not yet consumed. Each result handed to the
caller makes room for more, read from the input then (so ``itertools.count()`` streams and
the driver's memory stays flat)::

    input ──read chunksize items──► task ──► scheduler ──► future ─┐
      ▲                                                          window (≤ buffersize tasks)
      └────────── top up when a quarter of the window is free ◄── __next__ yields, lets go

A future leaves the window, and the job's strong hold (``Job.claim``), once its value is
yielded: the value then lives only as long as the caller keeps it (CPython's bpo-14406).
"""

from __future__ import annotations

import collections
import itertools
import math
import numbers
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from lambdamr.driver.job import Job, Task
from lambdamr.errors import ConfigurationError
from lambdamr.futures import LambdaFuture
from lambdamr.report import SummaryPrinter

T = TypeVar("T")

#: the most items a whole-input reader takes (``map_reduce`` inputs; ``map`` streams and has
#: no limit): beyond it the iterable is most likely endless, and would not fit in memory anyway
MAX_MATERIALISED_ITEMS = 10_000_000
#: the smallest default window, in tasks, whatever the backend's capacity
MIN_BUFFERSIZE = 16

#: ``feed(n)``: read, stage and launch up to ``n`` more tasks; fewer means the input ended
#: (the job is then sealed). ``seal()``: stop reading; the job ends with the tasks it has.
Feed = Callable[[int], list[Task]]


class MapIterator(Iterator[T]):
    """The results of ``LambdaExecutor.map`` in input order; ``.job`` is the job behind them.

    Like ``concurrent.futures``: a result is returned, or its exception raised, when
    iteration reaches it; ``timeout`` bounds the whole iteration from the ``map`` call;
    ``close()`` (or an exception) cancels the calls not started yet and stops reading the
    input. An error reading or staging the input (an argument that cannot be pickled,
    iterables of different lengths) is raised after the results of the items before it.
    Dropping the iterator unfinished stops reading the input too; the calls already
    launched run on and their futures stay with ``job``.
    """

    def __init__(
        self,
        job: Job | None,
        first: list[Task],
        feed: Feed | None,
        seal: Callable[[], None] | None,
        *,
        buffersize: int,
        exhausted: bool,
        deadline: float | None,
        verbose: bool,
    ) -> None:
        self.job = job
        # feed and seal hold the executor: dropped once the input ended, so that an executor
        # the user dropped is garbage collected (and its workers released) while its last
        # map's results are still being consumed.
        self._feed = None if exhausted else feed
        self._seal = None if exhausted else seal
        self._buffersize = buffersize
        self._exhausted = exhausted or feed is None
        self._window: collections.deque[LambdaFuture] = collections.deque()
        self._open_tasks = 0  # tasks with a future in the window
        self._deadline = deadline
        self._summary = SummaryPrinter(job) if verbose and job is not None else None
        self._input_error: Exception | None = None  # raised once the results before it are consumed
        self._add(first)

    @classmethod
    def empty(cls) -> MapIterator[Any]:
        """The iterator of a map over empty input."""
        return cls(None, [], None, None, buffersize=1, exhausted=True, deadline=None, verbose=False)

    def __iter__(self) -> MapIterator[T]:
        return self

    def __next__(self) -> T:
        try:
            self._top_up()
        except BaseException:
            self.close()
            raise
        if not self._window:
            if self._input_error is not None:
                error, self._input_error = self._input_error, None
                raise error
            if self._summary is not None:
                self._summary.print()
            raise StopIteration
        future = self._window[0]
        remaining = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
        try:
            value = future.result(remaining)
        except BaseException:
            self.close()
            raise
        self._window.popleft()
        if future.index == future.job.tasks[future.task_id].calls - 1:
            self._open_tasks -= 1
        future.job.claim(future)  # the value is the caller's now: the job lets go of it
        return value

    def close(self) -> None:
        """Cancel every call not started yet and stop reading the input."""
        while self._window:
            future = self._window.popleft()
            future.cancel()
            future.job.claim(future)
        self._open_tasks = 0
        self._stop_reading()

    def __del__(self) -> None:
        try:
            self._stop_reading()
        except Exception:  # at interpreter exit the executor may be half gone
            pass

    def _stop_reading(self) -> None:
        seal, self._seal, self._feed = self._seal, None, None
        if not self._exhausted:
            self._exhausted = True
            if seal is not None:
                seal()

    def _top_up(self) -> None:
        room = self._buffersize - self._open_tasks
        # In batches (a quarter of the window) rather than one task per result: each batch is
        # one staging pass, one scheduler message and, for durable jobs, one manifest part.
        if self._exhausted or self._feed is None or room < max(1, self._buffersize // 4) and self._window:
            return
        try:
            tasks = self._feed(room)
        except Exception as exc:  # bad input further on: first hand out the results before it
            self._input_error = exc
            self._stop_reading()
            return
        if len(tasks) < room:  # the input ended; feed sealed the job
            self._exhausted = True
            self._feed = self._seal = None
        self._add(tasks)

    def _add(self, tasks: list[Task]) -> None:
        for task in tasks:
            self._window.extend(task.futures)
        self._open_tasks += len(tasks)


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


def strict_rows(iterables: tuple[Iterable[Any], ...]) -> Iterator[tuple]:
    """Zip iterables lazily, refusing ones of different lengths (a silent truncation loses
    work) when the shortest ends. Sized inputs are compared before anything is read."""
    sizes = [len(it) if hasattr(it, "__len__") else None for it in iterables]  # type: ignore[arg-type]
    if None not in sizes and len(set(sizes)) > 1:
        raise _different_lengths([str(s) for s in sizes])
    return _rows([iter(it) for it in iterables])


def _rows(iterators: list[Iterator[Any]]) -> Iterator[tuple]:
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


def chunks_of(rows: Iterator[tuple], chunksize: int) -> Iterator[list[tuple[tuple, dict]]]:
    """The calls of each task: ``chunksize`` rows at a time, as (args, kwargs) pairs."""
    while True:
        chunk: list[tuple[tuple, dict]] = [(args, {}) for args in itertools.islice(rows, chunksize)]
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
