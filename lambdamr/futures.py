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
"""

from __future__ import annotations

import concurrent.futures
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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lambdamr.driver.job import Job


class LambdaFuture(concurrent.futures.Future):
    """The future of one call: ``job`` is the job it belongs to, ``task_id`` its task."""

    def __init__(self, job: Job, task_id: int, index: int = 0) -> None:
        super().__init__()
        self.job = job
        self.task_id = task_id
        self.index = index  # position of the call within its task (map's chunksize)
        self._arrived_traceback: TracebackType | None = None

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
        task = self.job.tasks[self.task_id]
        return (task.logs or "") if task.done else None

    def __repr__(self) -> str:
        with self._condition:  # worded like the stdlib's: state=finished raised ValueError
            state = "cancelled" if self._state.startswith("CANCELLED") else self._state.lower()
            if self._state == "FINISHED":
                outcome = self._exception if self._exception is not None else self._result
                state += f" {'raised' if self._exception is not None else 'returned'} {type(outcome).__name__}"
        return f"<LambdaFuture job={self.job.job_id} task={self.task_id} state={state}>"


FuturesTimeoutError = TimeoutError


__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "CancelledError",
    "FuturesTimeoutError",
    "InvalidStateError",
    "LambdaFuture",
    "TimeoutError",
    "as_completed",
    "wait",
]
