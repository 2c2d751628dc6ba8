"""The jobs a scheduler was given and has not finished, as the executor's other threads see
them: ``shutdown`` waits for them or cancels their pending calls, and should the scheduler
thread die, they are failed here so that nothing waits forever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import InvalidStateError
from typing import Any

from lambdamr.driver.job import Job
from lambdamr.driver.results import own_copy
from lambdamr.errors import BackendError
from lambdamr.futures import LambdaFuture

log = logging.getLogger("lambdamr")


class UnfinishedJobs:
    """Thread-safe: jobs in, jobs out, and the one error that refuses any more."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._changed = threading.Condition()
        self._refusal: BackendError | None = None  # why no job is taken any more

    def add(self, job: Job, hand_over: Callable[[Job], None]) -> None:
        """Register ``job`` and ``hand_over`` it to the scheduler thread, atomically with
        respect to ``fail_all``: a job is either refused or failed, never forgotten.

        Raises:
            BackendError: the scheduler thread died.
        """
        with self._changed:
            self.check_alive()
            self._jobs[job.job_id] = job
            hand_over(job)

    def remove(self, job: Job) -> None:
        """The job is finished (its numbers are final)."""
        with self._changed:
            self._jobs.pop(job.job_id, None)
            self._changed.notify_all()

    def jobs(self) -> list[Job]:
        """The unfinished jobs, now."""
        with self._changed:
            return list(self._jobs.values())

    def check_alive(self) -> None:
        """Raise the error the scheduler thread died with, if it did."""
        if self._refusal is not None:
            raise self._refusal

    def cancel_pending(self) -> None:
        """Cancel every call not claimed by a worker or container yet."""
        for job in self.jobs():
            for task in job.live_tasks:
                if not task.done:
                    for future in task.futures:
                        future.cancel()

    def wait_empty(self, timeout: float | None = None) -> bool:
        """Block until every job has finished; return whether they have."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while self._jobs:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    def fail_all(self, error: BackendError) -> None:
        """Refuse every later job with ``error`` and fail every unfinished call with it."""
        with self._changed:
            self._refusal = error
            jobs = list(self._jobs.values())
        for job in jobs:
            for task in job.live_tasks:
                if task.done:
                    continue
                for future in task.futures:
                    settle_future(future, None, own_copy(error))
                job.mark_task_done(task)
            self.remove(job)


def settle_future(future: LambdaFuture, value: Any, error: BaseException | None) -> None:
    """Set a call's result or exception, unless the call was cancelled or settled meanwhile;
    a done-callback that raises (even ``SystemExit``) is the caller's bug, logged, not ours."""
    try:
        if error is None:
            future.set_result(value)  # refuses a settled or cancelled call itself (InvalidStateError)
        elif not future.done():  # set_exception would first replace the traceback a settled call keeps
            future.set_exception(error)
    except InvalidStateError:
        pass  # cancelled by the user between the check and now
    except BaseException:  # noqa: BLE001
        log.exception("lambdamr: a done-callback of %r raised", future)
