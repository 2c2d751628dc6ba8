"""``LambdaFuture``: a real ``concurrent.futures.Future`` for one call run by lambdamr.

``concurrent.futures.wait``, ``as_completed``, ``result(timeout)``, ``exception()``,
``done()``, ``cancel()`` and ``add_done_callback`` behave exactly as for a
``ProcessPoolExecutor``'s futures; the stdlib helpers are re-exported here and from
``lambdamr`` so user code needs no other import.

A future is PENDING until its task is handed to the backend (only then can ``cancel()``
fail) and RUNNING until its result arrives.
"""

from __future__ import annotations

import concurrent.futures
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, CancelledError, as_completed, wait
from concurrent.futures import TimeoutError as FuturesTimeoutError
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .job import Job


class LambdaFuture(concurrent.futures.Future):
    """The future of one call: ``job`` is the job it belongs to, ``task_id`` its task."""

    def __init__(self, job: Job, task_id: int, index: int = 0) -> None:
        super().__init__()
        self.job = job
        self.task_id = task_id
        self.index = index  # position of the call within its task (map's chunksize)

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
        return f"<LambdaFuture job={self.job.job_id} task={self.task_id} state={self._state}>"


__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "CancelledError",
    "FuturesTimeoutError",
    "LambdaFuture",
    "as_completed",
    "wait",
]
