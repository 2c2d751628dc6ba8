"""Running one phase — every map task, or every reduce task — with task-level retries.

The scheduler already re-runs a task whose worker or container was lost. A phase also
re-runs a task that *raised* (a flaky dependency, a storage hiccup, a first-attempt
failure), up to ``retries`` times, as a new one-task job whose attempt number is part of the
task's arguments — a retried mapper writes a new write-once key and cannot disturb what an
earlier attempt wrote. Errors that would recur (bad output shape, unpicklable keys, a task
over its time or memory limit) fail the phase at once.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from concurrent.futures import wait as wait_futures
from typing import TYPE_CHECKING, Any

from lambdamr.driver.job import Job
from lambdamr.errors import (
    BackendError,
    ConfigurationError,
    IntegrityError,
    PayloadTooLargeError,
    SerializationError,
    TaskOutOfMemoryError,
    TaskTimeoutError,
    ThrottledError,
)
from lambdamr.futures import LambdaFuture

if TYPE_CHECKING:
    from lambdamr.executor import LambdaExecutor

log = logging.getLogger("lambdamr")

#: errors that a re-run would meet again
NOT_RETRIED: tuple[type[BaseException], ...] = (
    ConfigurationError,
    IntegrityError,
    SerializationError,
    PayloadTooLargeError,
    TaskTimeoutError,
    TaskOutOfMemoryError,
)


def is_retryable(exc: BaseException) -> bool:
    """Whether a task that failed with ``exc`` is worth running again."""
    if isinstance(exc, NOT_RETRIED) or isinstance(exc, CancelledError):
        return False
    if isinstance(exc, BackendError) and not isinstance(exc, ThrottledError):
        return False  # e.g. the executor was shut down
    return isinstance(exc, Exception)


class Phase:
    """The tasks of one phase: ``run(payloads)`` calls ``task_fn(index, attempt, payload)``."""

    def __init__(
        self,
        executor: LambdaExecutor,
        task_fn: Callable[[int, int, Any], Any],
        name: str,
        *,
        memory_mb: int | None,
        timeout_s: float | None,
        retries: int,
    ) -> None:
        self.executor = executor
        self.task_fn = task_fn
        self.name = name
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self.retries = retries
        self.jobs: list[Job] = []
        self.executions = 0
        self.retried = 0
        self.wall_s = 0.0
        self._futures: dict[LambdaFuture, tuple[int, int]] = {}
        self._done: queue.SimpleQueue[LambdaFuture] = queue.SimpleQueue()
        self._payloads: Sequence[Any] = ()

    def _submit(self, tasks: list[tuple[int, int]]) -> None:
        calls: list[list[tuple[tuple, dict]]] = [[((index, attempt, self._payloads[index]), {})] for index, attempt in tasks]
        job = self.executor._run_job(self.task_fn, calls, memory_mb=self.memory_mb, timeout_s=self.timeout_s, progress=True)
        self.jobs.append(job)
        self.executions += len(tasks)
        for future, task in zip(job.futures, tasks):
            self._futures[future] = task
            future.add_done_callback(self._on_done)

    def _on_done(self, future: Any) -> None:
        self._done.put(future)

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
                try:
                    done = [self._done.get(timeout=0.5)]  # a timeout keeps Ctrl-C responsive
                except queue.Empty:
                    continue
                while True:  # settle every completion at hand, so that retries go in one job
                    try:
                        done.append(self._done.get_nowait())
                    except queue.Empty:
                        break
                again = []
                for future in done:
                    index, attempt = self._futures[future]
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
                        tries = f"attempt {attempt + 1} of {self.retries + 1}" if is_retryable(exc) else "not retried"
                        exc.add_note(f"(lambdamr map_reduce: {self.name} task {index} failed, {tries})")
                        raise exc
                if again:
                    self.retried += len(again)
                    self._submit(again)
        finally:
            self.wall_s = time.monotonic() - started
        return results

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
