"""What a job keeps of its settled tasks: exact running totals and a bounded sample of records.

A job of a million tasks must not keep a million records. As each task settles,
``TaskLedger.add`` folds it into:

* ``totals`` (exact): calls ok / failed / cancelled, tasks by state, invocations billed,
  cold starts, the sum and maximum of the runtime's run times, the largest peak RSS, the
  billed milliseconds the cost estimate prices, and the peak concurrency
  (``running_stats.PeakConcurrency``);
* two ``Reservoir`` samples of durations: the runtime's run time (the plot's histogram,
  quantiles) and the driver's dispatch-to-settle time (the median speculation compares
  stragglers with); exact up to ``RESERVOIR_SIZE`` tasks;
* ``TaskSample``: the records ``job.tasks``, ``plot()``, ``logs()`` and the history's task
  rows read (what the job keeps of a task: ``driver.settled_task`` packs it in bytes) —
  every task below ``FIRST_KEPT``, every failed one up to ``FAILED_KEPT``, the
  ``SLOWEST_KEPT`` slowest, and a uniform reservoir of ``UNIFORM_KEPT`` of the rest. A job
  of up to ``FIRST_KEPT`` tasks keeps them all; any job keeps at most
  ``FIRST_KEPT + FAILED_KEPT + SLOWEST_KEPT + UNIFORM_KEPT`` (1,025) records.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from lambdamr.cost import billed_ms
from lambdamr.driver.running_stats import PeakConcurrency, Reservoir
from lambdamr.driver.summary import task_billed_ms, task_init_s, task_run_s

#: tasks numbered below this are always kept: a small job keeps every record
FIRST_KEPT = 500
#: failed tasks kept beyond those (their error, traceback and logs: what a user looks for)
FAILED_KEPT = 250
#: the slowest tasks by run time kept beyond those (the stragglers of a timeline)
SLOWEST_KEPT = 25
#: a uniform sample of the other tasks
UNIFORM_KEPT = 250


class CallOutcome(Protocol):
    """How a settled task's calls ended (``driver.job.TaskOutcome``)."""

    @property
    def succeeded(self) -> int: ...

    @property
    def failed(self) -> int: ...

    @property
    def cancelled(self) -> int: ...


class TaskFacts(Protocol):
    """What the ledger reads of a settled task (``driver.job.Task``, ``driver.settled_task.SettledTask``):
    this module sits below the job."""

    @property
    def task_id(self) -> int: ...

    @property
    def done(self) -> bool: ...

    @property
    def attempt(self) -> int: ...

    @property
    def attempt_base(self) -> int: ...

    @property
    def dispatched_at(self) -> float | None: ...

    @property
    def completed_at(self) -> float | None: ...

    @property
    def timings(self) -> dict[str, Any] | None: ...

    @property
    def memory_mb(self) -> int | None: ...

    @property
    def outcome(self) -> CallOutcome | None: ...


T = TypeVar("T")  # what the job keeps of a sampled task


def task_state(task: TaskFacts) -> str:
    """``pending``, ``running``, ``ok``, ``failed`` or ``cancelled``."""
    outcome = task.outcome
    if task.done and outcome is not None:
        return "failed" if outcome.failed else "cancelled" if outcome.cancelled and not outcome.succeeded else "ok"
    return "running" if task.attempt > 0 else "pending"


@dataclass(slots=True)
class TaskTotals:
    """Exact sums over a job's settled tasks (``TaskLedger.add`` adds each once)."""

    settled: int = 0
    succeeded: int = 0  # calls
    failed: int = 0
    cancelled: int = 0
    states: dict[str, int] = field(default_factory=lambda: {"ok": 0, "failed": 0, "cancelled": 0})  # tasks
    invocations: int = 0  # attempts launched by this driver (attempt - attempt_base)
    attempts: int = 0  # attempt numbers summed (the history's change fingerprint)
    timed: int = 0  # tasks whose result record carried the runtime's timings
    cold_starts: int = 0
    task_seconds: float = 0.0
    max_task_s: float = 0.0
    peak_memory_mb: float = 0.0
    # memory_mb (0: the job's own) -> what Lambda bills, INIT phases included (the cost estimate's input)
    billed_ms: dict[int, int] = field(default_factory=dict)
    run_billed_ms: dict[int, int] = field(default_factory=dict)  # the same without INIT phases
    escalated: dict[int, int] = field(default_factory=dict)  # memory_mb -> tasks that ended escalated to it
    last_completed: float = 0.0


class TaskSample(Generic[T]):
    """A bounded set of settled tasks' records, by task id (see the module docstring)."""

    __slots__ = ("_kept", "_failed", "_slowest", "_uniform", "_offered", "_random", "_seed")

    def __init__(self, seed: str = "") -> None:
        self._kept: dict[int, T] = {}  # every record kept, whatever the reason
        self._failed = 0
        self._slowest: list[tuple[float, int]] = []  # a min-heap of (run seconds, task id)
        self._uniform: list[int] = []  # task ids
        self._offered = 0  # tasks offered to the uniform sample
        self._random: random.Random | None = None
        self._seed = seed

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, task_id: int) -> T | None:
        return self._kept.get(task_id)

    def records(self) -> list[tuple[int, T]]:
        """``(task id, record)`` of every task kept."""
        return list(self._kept.items())

    def add(self, task_id: int, record: T, failed: bool, run_s: float | None) -> None:
        self._kept[task_id] = record
        if task_id < FIRST_KEPT:
            return
        if failed and self._failed < FAILED_KEPT:
            self._failed += 1
            return
        if run_s is not None:
            if len(self._slowest) < SLOWEST_KEPT:
                heapq.heappush(self._slowest, (run_s, task_id))
                return
            if run_s > self._slowest[0][0]:
                _, task_id = heapq.heapreplace(self._slowest, (run_s, task_id))  # the evicted one goes on
        self._offer_uniform(task_id)

    def _offer_uniform(self, task_id: int) -> None:
        self._offered += 1
        if len(self._uniform) < UNIFORM_KEPT:
            self._uniform.append(task_id)
            return
        if self._random is None:
            self._random = random.Random(self._seed)
        slot = int(self._random.random() * self._offered)  # randrange without its Python layers
        if slot < UNIFORM_KEPT:
            self._uniform[slot], task_id = task_id, self._uniform[slot]
        del self._kept[task_id]  # the one left out: neither first, failed, slowest nor drawn


class TaskLedger(Generic[T]):
    """A job's settled tasks: ``totals``, duration samples and a record sample."""

    __slots__ = ("totals", "run_seconds", "turnaround_seconds", "concurrency", "sample")

    def __init__(self, seed: str = "") -> None:
        self.totals = TaskTotals()
        self.run_seconds = Reservoir(seed=seed)  # runtime's started..finished
        self.turnaround_seconds = Reservoir(seed=seed)  # driver's dispatched..settled, tasks with a result
        self.concurrency = PeakConcurrency()
        self.sample: TaskSample[T] = TaskSample(seed)

    def close(self) -> None:
        """The job ended: no task will settle, keep only what the summary reports."""
        self.concurrency.close()
        self.turnaround_seconds = Reservoir(0)  # only speculation, in a running job, reads it

    def add(self, task: TaskFacts, record: T) -> None:
        """Fold a task that has just settled (its outcome recorded) into the totals and samples;
        ``record`` is what the sample keeps of it."""
        totals = self.totals
        outcome = task.outcome
        totals.settled += 1
        if outcome is not None:
            totals.succeeded += outcome.succeeded
            totals.failed += outcome.failed
            totals.cancelled += outcome.cancelled
        state = task_state(task)
        totals.states[state] = totals.states.get(state, 0) + 1
        totals.invocations += task.attempt - task.attempt_base
        totals.attempts += task.attempt
        if task.memory_mb:  # escalated (driver.retry_policy): the memory its last attempt had
            totals.escalated[task.memory_mb] = totals.escalated.get(task.memory_mb, 0) + 1
        totals.last_completed = max(totals.last_completed, task.completed_at or 0.0)
        timings = task.timings
        run_s = self._add_timings(task, timings) if timings and "finished" in timings else None
        self.sample.add(task.task_id, record, state == "failed", run_s)

    def _add_timings(self, task: TaskFacts, timings: dict[str, Any]) -> float:
        totals = self.totals
        run_s = timings["finished"] - timings["started"]
        totals.timed += 1
        totals.cold_starts += bool(timings.get("cold"))
        totals.task_seconds += run_s
        totals.max_task_s = max(totals.max_task_s, run_s)
        totals.peak_memory_mb = max(totals.peak_memory_mb, timings.get("peak_rss_mb") or 0.0)
        if timings.get("billed_ms") is not None:  # a backend's billed figure (a REPORT line) holds INIT
            billed = run_billed = task_billed_ms(timings)
        else:
            task_s, init_s = task_run_s(timings), task_init_s(timings)
            run_billed = billed_ms(task_s)
            billed = billed_ms(task_s, init_s) if init_s else run_billed
        memory = int(timings.get("memory_mb") or 0)  # set when the winning attempt was escalated
        totals.billed_ms[memory] = totals.billed_ms.get(memory, 0) + billed
        totals.run_billed_ms[memory] = totals.run_billed_ms.get(memory, 0) + run_billed
        self.concurrency.add(timings["started"], timings["finished"])
        self.run_seconds.add(run_s)
        if task.completed_at is not None and task.dispatched_at is not None:
            self.turnaround_seconds.add(task.completed_at - task.dispatched_at)
        return float(run_s)
