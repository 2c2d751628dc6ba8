"""``LambdaFuture``: a real ``concurrent.futures.Future`` for one call run by lambdamr.

``concurrent.futures.wait``, ``as_completed``, ``result(timeout)``, ``exception()``,
``done()``, ``cancel()`` and ``add_done_callback`` behave exactly as for a
``ProcessPoolExecutor``'s futures; the stdlib helpers are re-exported here and from
``lambdamr`` so user code needs no other import.

A future is PENDING until a worker or container has its task — until then ``cancel()``
succeeds and the call never runs — and RUNNING until its result arrives (see
``docs/futures.md`` for what "has" means on each backend).

Unlike the stdlib's futures, raising a failed future's exception again does not make its
traceback grow: ``result()`` re-raises it with the traceback it arrived with each time.

``TimeoutError`` here is ``concurrent.futures.TimeoutError`` (on Python 3.10 it is not the
builtin one); ``FuturesTimeoutError`` is the same class under a name that does not shadow it.

``MapIterator`` is what ``LambdaExecutor.map`` returns: the results in input order, over a
bounded window. ``map`` reads its input lazily, like ``Executor.map(buffersize=...)`` of
Python 3.14: at most ``buffersize`` tasks are launched and not yet consumed. Each result handed
to the caller makes room for more, read from the input then (so ``itertools.count()``
streams and the driver's memory stays flat)::

    input ──read chunksize items──► task ──► scheduler ──► future ─┐
      ▲                                                          window (≤ buffersize tasks)
      └────────── top up when a quarter of the window is free ◄── __next__ yields, lets go

A future leaves the window, and the job's strong hold (``Job.claim``), once its value is
yielded: the value then lives only as long as the caller keeps it (CPython's bpo-14406).

Nothing here imports the driver: a future knows its job as a ``FutureOwner`` (what
``lambdamr.driver.job.Job`` provides), so the driver builds on this module, never the reverse.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    CancelledError,
    InvalidStateError,
    TimeoutError,
    as_completed,
    wait,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from lambdamr.report import SummaryPrinter

T = TypeVar("T")


class FutureOwner(Protocol):
    """What a future and a map iterator ask of the job they belong to (``driver.job.Job``)."""

    @property
    def job_id(self) -> str: ...

    def task_timing(self, task_id: int) -> dict[str, Any] | None: ...

    def task_logs(self, task_id: int) -> str | None: ...

    def claim(self, future: LambdaFuture) -> None: ...

    def summary(self) -> Any: ...


class FutureCondition(threading.Condition):
    """The ``threading.Condition`` of one future: the stdlib's, at a sixth of its memory.

    ``threading.Condition`` copies five bound methods of its lock into its ``__dict__``
    (about 70 B each) and makes its waiters' deque at once (about 760 B: a deque allocates a
    block of 64 slots), 1.1 KB of the 1.6 KB a ``concurrent.futures.Future`` takes. A call's
    future that nobody waits on while it is pending (most of a burst of submits) needs
    neither: here the methods are the class's own, calling the lock's, and the deque is made
    by the first ``wait`` and dropped once no thread waits (under the lock, like every use of
    it). Still one reentrant lock per future, and every method the stdlib's ``Future``,
    ``wait`` and ``as_completed`` call behaves as ``threading.Condition``'s.
    """

    _waiters: Any = ()  # nobody waits: the class's empty tuple; a deque of its own from the first wait

    def __init__(self) -> None:  # not the stdlib's: it would make what this leaves out
        self._lock = threading.RLock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    # What Condition.wait calls on its lock (the C RLock's own: CPython's threading.Condition
    # binds the same three methods of an RLock in its __init__).
    def _release_save(self) -> Any:
        return self._lock._release_save()  # type: ignore[attr-defined]

    def _acquire_restore(self, state: Any) -> None:
        self._lock._acquire_restore(state)  # type: ignore[attr-defined]

    def _is_owned(self) -> bool:
        return bool(self._lock._is_owned())  # type: ignore[attr-defined]

    def wait(self, timeout: float | None = None) -> bool:
        if not self._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        if not self._waiters:
            self._waiters = collections.deque()
        try:
            return super().wait(timeout)
        finally:  # holding the lock again: the last waiter out lets go of the deque
            if not self._waiters:
                self._waiters = ()

    def notify(self, n: int = 1) -> None:
        if self._waiters:
            super().notify(n)
        elif not self._is_owned():  # as threading.Condition's: only under the lock
            raise RuntimeError("cannot notify on un-acquired lock")


class LambdaFuture(concurrent.futures.Future[Any]):
    """The future of one call: ``job`` is the job it belongs to, ``task_id`` its task."""

    def __init__(self, job: FutureOwner, task_id: int, index: int = 0) -> None:
        # Future.__init__'s attributes, its condition a FutureCondition (Future.__init__ would
        # make a threading.Condition first, for nothing).
        self._condition = FutureCondition()
        self._state = "PENDING"
        self._result = None
        self._exception: BaseException | None = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Callable[[concurrent.futures.Future[Any]], object]] = []
        self.job = job
        self.task_id = task_id
        self.index = index  # position of the call within its task (map's chunksize)
        self.attempt: int | None = None  # the attempt whose result record settled it (the scheduler sets it)
        self._arrived_traceback: TracebackType | None = None

    def cancel(self) -> bool:
        """Cancel the call unless it is running or done; return whether it is cancelled.

        ``wait`` and ``as_completed`` learn of it at once: a stdlib executor notifies them
        when its worker thread picks the cancelled call up, and no lambdamr thread does.
        """
        with self._condition:  # reentrant: set_running_or_notify_cancel takes it again
            if not super().cancel():
                return False
            if self._state == "CANCELLED":  # not notified yet (by this call or an earlier one)
                self.set_running_or_notify_cancel()
            return True

    def set_running_or_notify_cancel(self) -> bool:
        """As the stdlib's: False for a cancelled call (whose waiters ``cancel`` told already)."""
        with self._condition:
            if self._state == "CANCELLED_AND_NOTIFIED":
                return False
            return super().set_running_or_notify_cancel()

    def set_exception(self, exception: BaseException | None) -> None:
        """Fail the future (the scheduler calls this); ``result()`` re-raises ``exception``
        with the traceback it has now, however often it is called."""
        self._arrived_traceback = exception.__traceback__ if exception is not None else None
        super().set_exception(exception)

    def result(self, timeout: float | None = None) -> Any:
        """The call's return value, or its exception raised (``concurrent.futures`` semantics).

        Raises:
            CancelledError: the call was cancelled.
            TimeoutError: it did not finish within ``timeout`` seconds.
            the call's own exception, as itself.
        """
        error = self.exception(timeout)
        if error is None:
            return self._result
        try:
            raise error.with_traceback(self._arrived_traceback)
        finally:
            error = None  # noqa: F841 - no reference cycle through this frame

    @property
    def job_id(self) -> str:
        """The id of the job this call belongs to."""
        return self.job.job_id

    def timing(self) -> dict[str, Any] | None:
        """The task's timings (submitted, started, finished, cold start...) once done."""
        return self.job.task_timing(self.task_id)

    def logs(self) -> str | None:
        """What the task printed or logged (stdout, stderr, ``logging``) once done, else None.

        A task with ``chunksize`` > 1 runs several calls: they share one log.
        """
        return self.job.task_logs(self.task_id)

    def __repr__(self) -> str:
        with self._condition:  # worded like the stdlib's: state=finished raised ValueError
            state = "cancelled" if self._state.startswith("CANCELLED") else self._state.lower()
            if self._state == "FINISHED":
                outcome = self._exception if self._exception is not None else self._result
                state += f" {'raised' if self._exception is not None else 'returned'} {type(outcome).__name__}"
        return f"<LambdaFuture job={self.job.job_id} task={self.task_id} state={state}>"


FuturesTimeoutError = TimeoutError

#: ``feed(n)``: read, stage and launch up to ``n`` more tasks, returning each one's futures;
#: fewer means the input ended (the job is then sealed). ``seal()``: stop reading.
Feed = Callable[[int], list[list[LambdaFuture]]]


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
        job: FutureOwner | None,
        first: list[list[LambdaFuture]],
        feed: Feed | None,
        seal: Callable[[], None] | None,
        *,
        buffersize: int,
        exhausted: bool,
        deadline: float | None,
        summary: SummaryPrinter | None = None,
    ) -> None:
        self.job = job
        # feed and seal hold the executor: dropped once the input ended, so that an executor
        # the user dropped is garbage collected (and its workers released) while its last
        # map's results are still being consumed.
        self._feed = None if exhausted else feed
        self._seal = None if exhausted else seal
        self._buffersize = buffersize
        self._exhausted = exhausted or feed is None
        self._window: collections.deque[tuple[LambdaFuture, bool]] = collections.deque()  # (future, its task's last)
        self._open_tasks = 0  # tasks with a future in the window
        self._deadline = deadline
        self._summary = summary  # verbose=True: prints the job's summary once
        self._input_error: Exception | None = None  # raised once the results before it are consumed
        self._add(first)

    @classmethod
    def empty(cls) -> MapIterator[Any]:
        """The iterator of a map over empty input."""
        return cls(None, [], None, None, buffersize=1, exhausted=True, deadline=None)

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
        future, last_of_task = self._window[0]
        remaining = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
        try:
            value: T = future.result(remaining)
        except BaseException:
            self.close()
            raise
        self._window.popleft()
        if last_of_task:
            self._open_tasks -= 1
        future.job.claim(future)  # the value is the caller's now: the job lets go of it
        return value

    def futures(self) -> Iterator[LambdaFuture]:
        """The calls' futures in input order instead of their results, without waiting.

        Each future leaves the window as it is handed over (whoever takes it holds it), and
        the input is topped up as for ``__next__``: the taker reads at most ``buffersize``
        tasks ahead of what it took. ``map`` reads a ``MapIterator`` given as its input this
        way, so each downstream call starts when its own upstream call finished. Closing
        this generator closes the iterator (calls still in its window are cancelled).
        """
        try:
            while True:
                self._top_up()
                if not self._window:
                    if self._input_error is not None:
                        error, self._input_error = self._input_error, None
                        raise error
                    return
                future, last_of_task = self._window.popleft()
                if last_of_task:
                    self._open_tasks -= 1
                future.job.claim(future)
                yield future
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Cancel every call not started yet and stop reading the input."""
        while self._window:
            future, _ = self._window.popleft()
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

    def _add(self, tasks: list[list[LambdaFuture]]) -> None:
        for futures in tasks:
            self._window.extend((future, i == len(futures) - 1) for i, future in enumerate(futures))
        self._open_tasks += len(tasks)




__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "CancelledError",
    "FuturesTimeoutError",
    "InvalidStateError",
    "LambdaFuture",
    "MapIterator",
    "TimeoutError",
    "as_completed",
    "wait",
]
