"""Running one phase — every map task, or every reduce task — with task-level retries.

The scheduler already re-runs a task whose worker or container was lost (a ``TaskError``
it calls retryable), up to the job's ``retries``; the phase does not run those again. A phase
re-runs a task that *raised* (a flaky dependency, a storage hiccup, a first-attempt
failure), up to ``retries`` times, as a new one-task job whose attempt number is part of the
task's arguments — a retried mapper writes a new write-once key and cannot disturb what an
earlier attempt wrote. Errors that would recur (bad output shape, unpicklable keys, a task
over its time or memory limit) fail the phase at once.

Each future puts itself on the phase's queue when it completes (``add_done_callback``); the
phase waits on that queue and settles every completion at hand in one pass, so that the
retries of one pass go in one job. (``concurrent.futures.wait(FIRST_COMPLETED)`` over the
pending futures would install and remove a waiter on every one of them per completion:
O(n^2) for n tasks, 10 s of driver CPU for 5,000 tasks completing one at a time.)
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future
from concurrent.futures import wait as wait_futures
from typing import Any

from lambdamr.config import JobOptions
from lambdamr.driver.inputs import Call
from lambdamr.driver.job import Job, TaskView
from lambdamr.driver.session import Session
from lambdamr.errors import (
    BackendError,
    BudgetExceededError,
    ConfigurationError,
    IntegrityError,
    PayloadTooLargeError,
    RemoteError,
    SerializationError,
    TaskError,
    TaskOutOfMemoryError,
    TaskTimeoutError,
    ThrottledError,
)
from lambdamr.shuffle.notes import add_note

log = logging.getLogger("lambdamr")

#: errors that a re-run would meet again
NOT_RETRIED: tuple[type[BaseException], ...] = (
    ConfigurationError,
    IntegrityError,
    SerializationError,
    PayloadTooLargeError,
    TaskTimeoutError,
    TaskOutOfMemoryError,
    BudgetExceededError,  # a re-run would be a new job with a budget of its own: past the one that stopped it
)


def retried_by_scheduler(exc: BaseException) -> bool:
    """Whether ``exc`` is an infrastructure failure the scheduler re-runs itself (a lost
    worker or result, a runtime failure): it reaches the phase only once those retries are spent.
    A ``RemoteError`` is the user's own exception that could not cross: the phase's to retry."""
    return isinstance(exc, TaskError) and not isinstance(exc, RemoteError)


def is_retryable(exc: BaseException) -> bool:
    """Whether a task that failed with ``exc`` is worth running again by the phase."""
    if isinstance(exc, NOT_RETRIED) or isinstance(exc, CancelledError) or retried_by_scheduler(exc):
        return False
    if isinstance(exc, BackendError) and not isinstance(exc, ThrottledError):
        return False  # e.g. the executor was shut down
    return isinstance(exc, Exception)


class Phase:
    """The tasks of one phase: ``run(payloads)`` calls ``task_fn(index, attempt, payload)``."""

    def __init__(
        self,
        session: Session,
        task_fn: Callable[[int, int, Any], Any],
        name: str,
        *,
        memory_mb: int | None,
        timeout_s: float | None,
        retries: int,
    ) -> None:
        self.session = session
        self.task_fn = task_fn
        self.name = name
        self.options = JobOptions(memory_mb=memory_mb, timeout_s=timeout_s)
        self.retries = retries
        self.jobs: list[Job] = []
        self.executions = 0
        self.retried = 0
        self.wall_s = 0.0
        self._futures: dict[Future[Any], tuple[int, int, TaskView]] = {}  # future -> (index, attempt, task)
        self._completed: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()
        self._payloads: Sequence[Any] = ()

    def _submit(self, tasks: list[tuple[int, int]]) -> None:
        calls: list[list[Call]] = [[((index, attempt, self._payloads[index]), {})] for index, attempt in tasks]
        job = self.session.run_job(self.task_fn, calls, self.options, progress=True)
        self.jobs.append(job)
        self.executions += len(tasks)
        for task, (index, attempt) in zip(job.tasks, tasks):
            [future] = task.futures  # one call per task
            self._futures[future] = (index, attempt, task)
            future.add_done_callback(self._completed.put)

    def run(self, payloads: Sequence[Any]) -> list[Any]:
        """Run one task per payload; return their results in order.

        Raises the first error that is not retried (or still fails after ``retries`` re-runs),
        after cancelling the phase's tasks that have not started.
        """
        started = time.monotonic()
        self._payloads = payloads
        results: list[Any] = [None] * len(payloads)
        remaining = len(payloads)
        try:
            if remaining:
                self._submit([(i, 0) for i in range(len(payloads))])
            while remaining:
                done = self._completions_at_hand()
                again = []
                for future in sorted(done, key=lambda f: self._futures[f][:2]):  # task order: reproducible retries
                    index, attempt, _ = self._futures[future]
                    if future.cancelled():
                        raise CancelledError(f"{self.name} task {index} was cancelled (was the executor shut down?)")
                    exc = future.exception()
                    if exc is None:
                        results[index] = future.result()
                        remaining -= 1
                    elif attempt < self.retries and is_retryable(exc):
                        log.info(
                            "lambdamr: %s task %d failed (%s: %s); running it again", self.name, index, type(exc).__name__, exc
                        )
                        again.append((index, attempt + 1))
                    else:
                        self.cancel()
                        add_note(exc, f"(lambdamr map_reduce: {self.name} task {index} failed, {self._tries(future, exc)})")
                        raise exc
                if again:
                    self.retried += len(again)
                    self._submit(again)
        finally:
            self.wall_s = time.monotonic() - started
        return results

    def _completions_at_hand(self) -> list[Future[Any]]:
        """The futures completed since the last call: waits for one, then takes every other
        one already there."""
        done = [self._completed.get()]
        while True:
            try:
                done.append(self._completed.get_nowait())
            except queue.Empty:
                return done

    def _tries(self, future: Future[Any], exc: BaseException) -> str:
        _, attempt, task = self._futures[future]
        if retried_by_scheduler(exc):
            runs = task.attempt
            return f"after {runs} attempt{'s' if runs != 1 else ''} by the scheduler; not retried again"
        return f"attempt {attempt + 1} of {self.retries + 1}" if is_retryable(exc) else "not retried"

    def cancel(self) -> None:
        """Cancel every task of the phase that has not started."""
        for future in self._futures:
            future.cancel()

    def settle(self, timeout: float) -> bool:
        """Cancel what has not started and wait up to ``timeout`` s for the rest; return
        whether every task has ended (so none can still write a temp object)."""
        self.cancel()
        running = [f for f in self._futures if not f.done()]
        if not running:
            return True
        _, still = wait_futures(running, timeout=timeout)
        return not still
