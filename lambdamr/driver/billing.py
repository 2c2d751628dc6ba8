"""What each attempt of a job is billed: for the summary's cost and for the budget guard.

The attempt whose result settled its task is billed from its record's timings (its run, plus
a cold start's INIT phase: ``summary.task_billed_ms``), at the memory it ran with. Every other
attempt — one that timed out, ran out of memory, raised an error ``retry_on`` re-ran, lost to a
backup, or vanished — is billed from what is known of it, at its own memory:

* past its timeout: exactly its timeout (Lambda bills a timed-out invocation its timeout);
* a run its record describes (a user error re-run): the record's timings;
* a log tail with Lambda's REPORT line: its ``Billed Duration``;
* else the backend's start and end of it, when the backend measured them;
* else nothing is known (lost on the way, a backup that lost the race): the summary bills
  it 0 s, the budget guard its whole timeout.

``AttemptLedger`` holds the attempts of one job in flight (launched, not yet ended); the
first end of an attempt counts, a later report of it (a late or duplicate result) does not.
"""

from __future__ import annotations

import re
from typing import Any

from lambdamr.cost import billed_ms
from lambdamr.driver.budget import JobBudget
from lambdamr.driver.summary import task_billed_ms
from lambdamr.errors import TaskError, TaskTimeoutError

_BILLED_RE = re.compile(r"Billed Duration: (\d+) ms")


def failed_attempt_seconds(
    error: BaseException | None, timeout_s: float, started_at: float | None = None, ended_at: float | None = None
) -> float | None:
    """Billed seconds of an attempt that ended with ``error`` (see the module); None: unknown."""
    if isinstance(error, TaskTimeoutError):
        return timeout_s
    logs = error.logs if isinstance(error, TaskError) else None
    if logs:
        billed = _BILLED_RE.findall(logs)
        if billed:
            return int(billed[-1]) / 1000.0
    if started_at is not None and ended_at is not None and ended_at >= started_at:
        return min(ended_at - started_at, timeout_s)
    return None


def record_seconds(timings: dict[str, Any] | None) -> float | None:
    """Billed seconds of an attempt its result record describes."""
    if not timings or "finished" not in timings or "started" not in timings:
        return None
    return task_billed_ms(timings) / 1000.0


class AttemptLedger:
    """The attempts of one job in flight, and the bills of those that did not settle their task."""

    def __init__(self, timeout_s: float, budget: JobBudget | None = None) -> None:
        self.timeout_s = timeout_s
        self.budget = budget
        self._open: dict[tuple[int, int], int] = {}  # (task, attempt) -> its memory
        #: memory_mb -> billed milliseconds of the attempts that ended without settling their
        #: task (known seconds only): a sum, so a job's memory does not grow with its failures
        self.failed_billed_ms: dict[int, int] = {}

    def launched(self, task_id: int, attempt: int, memory_mb: int) -> None:
        """An attempt was launched with ``memory_mb``."""
        self._open[(task_id, attempt)] = memory_mb
        if self.budget is not None:
            self.budget.launched(task_id, attempt, memory_mb, self.timeout_s)

    def ended(
        self,
        task_id: int,
        attempt: int,
        seconds: float | None,
        *,
        settled: bool = False,
        requests: dict[str, int] | None = None,
    ) -> None:
        """An attempt ended, billed ``seconds`` (None: unknown). ``settled``: its result settled
        the task (priced from the task's timings, not from here). ``requests``: the storage
        requests its runtime reported."""
        memory = self._open.pop((task_id, attempt), None)
        if memory is None:
            return  # ended before (a late or duplicate report), or launched by another driver
        if not settled and seconds is not None:
            self.failed_billed_ms[memory] = self.failed_billed_ms.get(memory, 0) + billed_ms(seconds)
        if self.budget is not None:
            compute = None if seconds is None else self.budget.compute_usd(seconds, memory)
            self.budget.ended(task_id, attempt, compute, requests)

    def in_flight(self) -> int:
        """Attempts launched and not yet ended."""
        return len(self._open)
