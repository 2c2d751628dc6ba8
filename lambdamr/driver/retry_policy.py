"""Which failed attempts run again, and with how much memory: retries that learn.

A task's attempt that failed for an infrastructure reason the error calls ``retryable`` (a
lost worker or container, a runtime failure) runs again, up to the job's ``retries``. Two
more reasons, both counted against ``retries`` too:

* **on request**: a failure the backend reports (``TaskTimeoutError``, ``TaskOutOfMemoryError``,
  any ``TaskError``) runs again when ``retry_on`` names its class or a base of it that is a
  ``TaskError``. ``retry_on=(Exception,)`` keeps meaning the user's own exceptions: a timeout
  is retried only when asked for by name, because it most likely happens again.
* **escalation** (``escalate_memory=True``): a task that ran out of memory, or out of time,
  runs again with twice the memory, up to ``max_memory_mb`` (default Lambda's 10,240 MB).
  Lambda gives a function CPU in proportion to its memory (a full vCPU at 1,769 MB), so more
  memory often cures a timeout too. At the cap, the failure is final unless ``retry_on``
  names it (then it runs again at the cap).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from lambdamr.config import MAX_MEMORY_MB
from lambdamr.errors import TaskError, TaskOutOfMemoryError, TaskTimeoutError

if TYPE_CHECKING:
    from lambdamr.driver.job import Job, Task

#: failures that more memory may cure
ESCALATED_ON: tuple[type[TaskError], ...] = (TaskOutOfMemoryError, TaskTimeoutError)
#: each escalation multiplies the memory by this
GROWTH = 2


class RetryPlan(NamedTuple):
    """What to do with a task whose attempt failed."""

    retry: bool
    memory_mb: int | None = None  # the memory of the next attempt, when it is escalated


def task_memory(task: Task) -> int:
    """The memory the task's next attempt runs with (its own once escalated)."""
    return task.memory_mb or task.job.memory_mb


def escalated(memory_mb: int, cap_mb: int | None) -> int | None:
    """The next memory size after ``memory_mb``: doubled, at most the cap; None at the cap."""
    cap = cap_mb or MAX_MEMORY_MB
    grown = min(cap, memory_mb * GROWTH)
    return grown if grown > memory_mb else None


def retried_on_request(job: Job, error: BaseException) -> bool:
    """Whether ``retry_on`` names this backend-reported failure (by a ``TaskError`` class)."""
    if not isinstance(error, TaskError) or not job.retry_on:
        return False
    return any(issubclass(kind, TaskError) and isinstance(error, kind) for kind in job.retry_on)


def plan_retry(task: Task, error: BaseException, force: bool = False) -> RetryPlan:
    """Whether ``task`` runs again after ``error`` (``force``: the caller decided it is
    retryable), and with what memory; ``retries`` bounds every reason alike."""
    job = task.job
    if task.failures >= job.max_retries:
        return RetryPlan(False)
    if job.escalate_memory and isinstance(error, ESCALATED_ON):
        memory = escalated(task_memory(task), job.max_memory_mb)
        if memory is not None:
            return RetryPlan(True, memory)
    retry = force or bool(getattr(error, "retryable", False)) or retried_on_request(job, error)
    return RetryPlan(retry)
