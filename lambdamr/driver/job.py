"""A job — one ``map``, one ``submit``, or one phase of ``map_reduce`` — and its tasks.

A job owns its tasks (each task: one invocation of the runtime with one or more calls), the
futures of their calls, their timings and the counters its summary reports.
"""

from __future__ import annotations

import collections
import copy
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from lambdamr.driver.billing import AttemptLedger
from lambdamr.driver.budget import JobBudget
from lambdamr.driver.summary import JobSummary, estimate_cost, peak_concurrency, task_billed_ms
from lambdamr.futures import LambdaFuture
from lambdamr.protocol import NO_EXTRA_ENV, ArgsRange, ExtraEnv
from lambdamr.report import exception_traceback

#: what a settled task keeps of the runtime's description of itself
RUNTIME_KEPT = ("request_id", "pid")
#: the timings a task keeps, packed in this order into a tuple (a dict costs three times more)
TIMING_KEYS = ("started", "loaded", "finished", "cold", "init_ms", "peak_rss_mb", "attempt", "fetched", "memory_mb")
_ABSENT = object()  # a timing the record did not have
_NO_ATTEMPTS: frozenset[int] = frozenset()  # shared by every settled task, and by those never backed up
_NO_CALLS: tuple[Any, ...] = ()  # the futures a task holds once it let go of all of them (shared)
_TIMING_KEY_SET = frozenset(TIMING_KEYS)
_COMMON_OUTCOMES: dict[TaskOutcome, TaskOutcome] = {}  # "n calls, all ok" (n <= 64), by value
#: taken while a finished job's summary is computed, so the threads that want it at its end
#: (job record, history, verbose summary) compute it once between them
_FINAL_SUMMARY_LOCK = threading.Lock()


class TaskOutcome(NamedTuple):
    """How a settled task's calls ended: what its record keeps once the futures are gone."""

    succeeded: int
    failed: int
    cancelled: int
    error: str | None  # "Type: message" (first line) of the first call that raised
    traceback: str | None = None  # that call's traceback as printed (the job history shows it)


@dataclass(eq=False, slots=True)  # slots: a job in the history keeps one per task
class Task:
    """One unit of invocation: a function applied to ``calls`` argument tuples.

    Until it settles the task holds its futures (the scheduler settles them); then it lets
    go of those someone claimed (``claim``: the user got them from ``submit``, or a
    ``MapIterator`` yielded them), so a consumed and dropped result leaves the driver's
    memory. Its timings, logs and ``outcome`` stay for the job's summary.
    """

    job: Job
    task_id: int
    calls: int
    args_inline: str | None = None
    args_range: ArgsRange | None = None
    attempt: int = 0  # the latest attempt launched (0 before the first dispatch)
    attempt_base: int = 0  # attempts numbered below it were not launched by this driver (attach)
    failures: int = 0  # failed attempts so far (infrastructure, or user errors in retry_on)
    memory_mb: int | None = None  # its own memory once escalated (driver.retry_policy); None: the job's
    # attempts in flight: the shared empty frozenset until launched, a set of its own then
    live: set[int] = _NO_ATTEMPTS  # type: ignore[assignment]
    backup_attempts: frozenset[int] = _NO_ATTEMPTS  # attempts launched as backups
    invocation: Any = None  # the latest attempt's Invocation (to ask the backend why it was lost)
    done: bool = False
    dispatched_at: float | None = None
    first_dispatched_at: float | None = None
    completed_at: float | None = None
    _timings: tuple[Any, ...] | dict[str, Any] | None = None  # from the winning result record, packed
    _runtime: tuple[Any, ...] | dict[str, Any] | None = None
    logs: str | None = None  # captured stdout, stderr and logging records (the runtime's)
    outcome: TaskOutcome | None = None  # once settled
    _held: list[LambdaFuture | None] = field(default_factory=list)  # each call's future; None once let go
    _kept: int = 0  # entries of _held that are not None
    _claimed: list[int] = field(default_factory=list)  # calls whose future someone else holds

    @property
    def timings(self) -> dict[str, Any] | None:
        """The winning record's timings (started, loaded, finished, cold...), with its attempt."""
        packed = self._timings
        if isinstance(packed, tuple):
            return {k: v for k, v in zip(TIMING_KEYS, packed) if v is not _ABSENT}
        return packed

    @timings.setter
    def timings(self, value: dict[str, Any] | None) -> None:
        if value is not None and value.keys() <= _TIMING_KEY_SET:
            self._timings = tuple(value.get(k, _ABSENT) for k in TIMING_KEYS)
        else:  # other keys (a platform's billed figure): kept as they came
            self._timings = value

    @property
    def runtime(self) -> dict[str, Any] | None:
        """What the runtime said of itself (request id, pid once settled)."""
        packed = self._runtime
        if isinstance(packed, tuple):
            return {k: v for k, v in zip(RUNTIME_KEPT, packed) if v is not _ABSENT}
        return packed

    @runtime.setter
    def runtime(self, value: dict[str, Any] | None) -> None:
        self._runtime = value

    @property
    def futures(self) -> list[LambdaFuture]:
        """Every call's future while the task is unsettled; then those nobody claimed."""
        return [f for f in self._held if f is not None]

    def claim(self, index: int) -> None:
        """The caller holds call ``index``'s future from now on: once settled, the task lets go."""
        if self.done:
            self._release(index)
        else:
            self._claimed.append(index)

    def settle_record(self) -> None:
        """Called once settled: record the outcome, drop what only a new attempt would need
        and the futures that were claimed (the job's lock is held)."""
        succeeded = failed = cancelled = 0
        error = error_traceback = None
        for future in self.futures:
            if not future.done():
                continue
            if future.cancelled():
                cancelled += 1
            elif (exc := future.exception()) is not None:
                failed += 1
                if error is None:
                    error = (f"{type(exc).__name__}: {exc}".splitlines() or [""])[0]
                    error_traceback = exception_traceback(exc)
            else:
                succeeded += 1
        outcome = TaskOutcome(succeeded, failed, cancelled, error, error_traceback)
        # Most tasks end alike (every call ok): they share one outcome object.
        common = not failed and not cancelled and succeeded <= 64
        self.outcome = _COMMON_OUTCOMES.setdefault(outcome, outcome) if common else outcome
        self.args_inline = None  # re-read only by a new attempt; the invocation holds a copy too
        self.invocation = None
        self.live = _NO_ATTEMPTS  # type: ignore[assignment]  # a settled task runs no attempt
        runtime = self._runtime
        if isinstance(runtime, dict):  # what ``task_timing`` reports, not the rest of every response
            self._runtime = tuple(runtime.get(k, _ABSENT) for k in RUNTIME_KEPT)
        timings = self._timings
        if isinstance(timings, dict):  # each record decoded its own copy of the key strings: share one
            self._timings = {sys.intern(k): v for k, v in timings.items()}
        for index in self._claimed:
            self._release(index)
        self._claimed = _NO_CALLS  # type: ignore[assignment]

    def _release(self, index: int) -> None:
        held = self._held
        if index < len(held) and held[index] is not None and held[index].done():  # type: ignore[union-attr]
            held[index] = None
            self._kept -= 1
            if not self._kept:
                self._held = _NO_CALLS  # type: ignore[assignment]  # nothing left to keep: not even a slot per call


class Job:
    """The tasks and futures of one batch of invocations of one function.

    A job is *sealed* once no task will be added to it: at once for ``submit`` and the
    phases of ``map_reduce``; for a streaming ``map`` when its input is exhausted or its
    iterator is closed or dropped. It is done when it is sealed and every task has settled.
    Settled tasks keep their timings and outcome, not their results (``Task``), so a job in
    the executor's history (``LambdaExecutor.jobs``) costs a few hundred bytes per task.
    """

    def __init__(
        self,
        job_id: str,
        prefix: str,
        function_key: str,
        *,
        memory_mb: int,
        timeout_s: float,
        backend: str,
        region: str | None = None,
        architecture: str = "x86_64",
        max_retries: int = 2,
        retry_on: tuple[type[BaseException], ...] = (),
        speculate: bool = False,
        sealed: bool = True,
        extra_env: ExtraEnv = NO_EXTRA_ENV,
        escalate_memory: bool = False,
        max_memory_mb: int | None = None,
        budget: JobBudget | None = None,
    ) -> None:
        self.job_id = job_id
        self.prefix = prefix
        self.function_key = function_key
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self.backend = backend
        self.region = region
        self.architecture = architecture  # of the Lambda function, for the cost estimate
        self.max_retries = max_retries  # failed attempts a task may re-run after
        self.retry_on = retry_on  # user exception types that count as retryable
        self.speculate = speculate  # launch backups of stragglers
        self.extra_env = extra_env  # set around each task by the runtime; never stored or logged
        self.escalate_memory = escalate_memory  # re-run out-of-memory/time tasks with more memory
        self.max_memory_mb = max_memory_mb  # the cap of that (None: Lambda's largest)
        self.budget = budget  # the dollar budget guard (driver.budget), if the job has one
        self.ledger = AttemptLedger(timeout_s, budget)  # attempts in flight; bills of the failed ones
        self.sealed = sealed  # no task will be added (see the class docstring)
        self.tasks: list[Task] = []
        self.submitted_at = time.time()
        self.finished_at: float | None = None
        self.retries = 0
        self.backups = 0  # backup attempts launched for stragglers
        self.backups_won = 0  # tasks whose result came from a backup
        self.duplicates = 0
        self.storage_before: dict[str, int] = {}
        self.storage_after: dict[str, int] = {}
        self.runtime_requests: collections.Counter[str] = collections.Counter()  # made by the runtime
        self._settled = 0
        self._finished = False  # every task settled and the job sealed
        self._finished_event: threading.Event | None = None  # made for the first wait() (one per job is 1 KB)
        self._lock = threading.Lock()
        self._done_callbacks: list[Callable[[Job], None]] | None = []  # None once they ran
        self._final_summary: JobSummary | None = None  # once the numbers are final (done callbacks ran)

    # ---- building -------------------------------------------------------------------------
    def new_task(self, calls: int) -> Task:
        """Add a task of ``calls`` calls, with a future per call."""
        task_id = len(self.tasks)
        task = Task(self, task_id, calls)
        task._held = [LambdaFuture(self, task_id, i) for i in range(calls)]
        task._kept = calls
        self.tasks.append(task)
        return task

    @property
    def futures(self) -> list[LambdaFuture]:
        """The calls' futures in submission order: every one of an unsettled task, and of a
        settled task those nobody claimed (a future from ``submit`` or one a ``map``
        iterator yielded is its caller's alone once settled; see ``Task``)."""
        return [f for task in self.tasks for f in task.futures]

    @property
    def calls(self) -> int:
        """How many calls the job's tasks hold so far."""
        return sum(task.calls for task in self.tasks)

    @property
    def invocations(self) -> int:
        """Invocations billed so far: every attempt launched, retries and backups included
        (not those of a dead driver whose job ``attach`` collected: its attempts start at 1001)."""
        return sum(task.attempt - task.attempt_base for task in self.tasks)

    def claim(self, future: LambdaFuture) -> None:
        """``future`` is the caller's from now on: once settled, the job lets go of it (its
        value leaves memory when the caller drops it)."""
        with self._lock:
            self.tasks[future.task_id].claim(future.index)

    # ---- progress -------------------------------------------------------------------------
    def mark_task_done(self, task: Task) -> None:
        """Record that ``task`` is settled; completes the job when it was the last."""
        with self._lock:
            if task.done:
                return
            task.done = True
            task.completed_at = time.time()
            task.settle_record()
            self._settled += 1
            self._finish_if_complete(task.completed_at)

    def seal(self) -> None:
        """No task will be added: the job is done once the ones it has settle. The scheduler
        calls this (on its thread) for a streaming map; a job built whole starts sealed."""
        with self._lock:
            self.sealed = True
            self._finish_if_complete(None)

    def _finish_if_complete(self, last_completed: float | None) -> None:
        if self.sealed and self._settled == len(self.tasks) and not self._finished:
            if last_completed is None:  # sealed after its tasks settled: it ended with the last one
                last_completed = max((t.completed_at or 0.0 for t in self.tasks), default=0.0) or time.time()
            self.finished_at = last_completed
            self._finished = True
            if self._finished_event is not None:
                self._finished_event.set()

    def done(self) -> bool:
        """Whether every task has settled (result, error or cancellation)."""
        return self._finished

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is done; return whether it is."""
        with self._lock:
            if self._finished:
                return True
            if self._finished_event is None:
                self._finished_event = threading.Event()
            event = self._finished_event
        return event.wait(timeout)

    def add_done_callback(self, fn: Callable[[Job], None]) -> None:
        """Call ``fn(job)`` once the job is done and its numbers are final (at once if so)."""
        with self._lock:
            if self._done_callbacks is not None:
                self._done_callbacks.append(fn)
                return
        fn(self)

    def notify_done(self) -> None:
        """Run the done callbacks; the scheduler calls this once the job's numbers are final."""
        with self._lock:
            callbacks, self._done_callbacks = self._done_callbacks or [], None
        for fn in callbacks:
            try:
                fn(self)
            except Exception:  # a callback's bug must not stop the scheduler
                logging.getLogger("lambdamr").exception("lambdamr: a job done-callback failed")

    def task_logs(self, task_id: int) -> str | None:
        """What one task printed or logged once it has settled, else None."""
        task = self.tasks[task_id]
        return (task.logs or "") if task.done else None

    def task_timing(self, task_id: int) -> dict[str, Any] | None:
        """Timings of one task: driver-side (submitted, dispatched, completed) and runtime-side."""
        task = self.tasks[task_id]
        if not task.done:
            return None
        timing = {
            "submitted": self.submitted_at,
            "dispatched": task.first_dispatched_at,
            "last_dispatched": task.dispatched_at,
            "completed": task.completed_at,
            "attempts": task.attempt,
        }
        if task.timings:
            timing.update(task.timings)
            # Only the latest attempt's dispatch time is kept: when an earlier one (a backup's
            # original) won, its invoke time is unknown.
            won_latest = task.timings.get("attempt", task.attempt) == task.attempt
            timing["invoked"] = task.dispatched_at if won_latest else None
            timing["billed_ms"] = task_billed_ms(task.timings)
        if task.runtime:
            timing["request_id"] = task.runtime.get("request_id")
        return timing

    # ---- reporting ------------------------------------------------------------------------
    def summary(self) -> JobSummary:
        """Counts, times, storage requests and the estimated Lambda cost of this job."""
        if self._done_callbacks is not None:  # running, or its numbers not final yet
            return self._summarize()
        with _FINAL_SUMMARY_LOCK:  # final: computed once (it costs O(tasks)), by the first to ask
            if self._final_summary is None:
                self._final_summary = self._summarize()
        return copy.copy(self._final_summary)

    def _summarize(self) -> JobSummary:
        succeeded = failed = cancelled = 0
        for task in list(self.tasks):
            outcome = task.outcome  # set before a settled task lets go of its futures
            if outcome is None:  # not settled: count its futures as they are now
                futures = task.futures
                outcome = TaskOutcome(
                    sum(1 for f in futures if f.done() and not f.cancelled() and f.exception() is None),
                    sum(1 for f in futures if f.done() and not f.cancelled() and f.exception() is not None),
                    sum(1 for f in futures if f.cancelled()),
                    None,
                )
            succeeded += outcome.succeeded
            failed += outcome.failed
            cancelled += outcome.cancelled
        timed = [tm for t in self.tasks if (tm := t.timings) and "finished" in tm]  # unpacked once each
        durations = [tm["finished"] - tm["started"] for tm in timed]
        end = self.finished_at or time.time()
        after = self.storage_after or self.storage_before
        requests = {
            k: after.get(k, 0) - self.storage_before.get(k, 0) + self.runtime_requests.get(k, 0)
            for k in ("puts", "gets", "lists", "deletes")
        }
        return JobSummary(
            job_id=self.job_id,
            backend=self.backend,
            tasks=len(self.tasks),
            calls=self.calls,
            succeeded=succeeded,
            failed=failed,
            cancelled=cancelled,
            retries=self.retries,
            duplicates=self.duplicates,
            cold_starts=sum(1 for tm in timed if tm.get("cold")),
            wall_s=end - self.submitted_at,
            task_seconds=sum(durations),
            max_task_s=max(durations, default=0.0),
            memory_mb=self.memory_mb,
            storage_requests=requests,
            cost=estimate_cost(self, timed, requests, self.ledger.bills),
            backups=self.backups,
            backups_won=self.backups_won,
            peak_concurrency=peak_concurrency(timed),
            peak_memory_mb=max((tm.get("peak_rss_mb") or 0.0 for tm in timed), default=0.0),
            escalated=dict(sorted(collections.Counter(t.memory_mb for t in self.tasks if t.memory_mb).items())),
            budget_usd=self.budget.limit_usd if self.budget is not None else None,
            budget_note=self.budget.describe() if self.budget is not None else None,
        )

    def logs(self, task_id: int | None = None) -> str:
        """The captured output of one task, or of every task that printed or failed."""
        from lambdamr.report import job_logs

        return job_logs(self, task_id)

    def plot(self, path: str | Path | None = None) -> Any:
        """A timeline of every task and a histogram of task durations (matplotlib): saved
        at ``path`` (returned), or without one returned as a ``Figure`` (inline in a notebook)."""
        from lambdamr.report import plot_job

        return plot_job(self, path)

    def __repr__(self) -> str:
        return f"<Job {self.job_id}: {len(self.tasks)} tasks, {'done' if self.done() else 'running'}>"
