"""A job — one ``map``, a run of ``submit`` calls (``join_task``), or one phase of ``map_reduce`` — and its tasks.

A job owns its tasks (each task: one invocation of the runtime with one or more calls), the
futures of their calls, their timings and the counters its summary reports. What it keeps
is bounded by what is in flight, not by how many tasks it ran::

    new_task ──► live (unsettled: the scheduler runs it) ──settles──► TaskLedger.add
                                                           │  exact totals, duration samples,
                                                           │  a bounded sample of records
                                                           └► holding, while it holds a future
                                                              nobody claimed (job.futures)
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Union

from lambdamr.driver.billing import AttemptLedger
from lambdamr.driver.budget import JobBudget
from lambdamr.driver.settled_task import (
    NO_CALLS,
    FutureHolder,
    HeldFutures,
    SettledTask,
    TaskOutcome,
    common_outcome,
    pack_task,
)
from lambdamr.driver.summary import JobSummary, estimate_cost, task_billed_ms
from lambdamr.driver.task_ledger import TaskLedger, TaskTotals, task_state
from lambdamr.futures import LambdaFuture
from lambdamr.protocol import NO_EXTRA_ENV, ArgsRange, ExtraEnv, arguments_context
from lambdamr.report import exception_traceback
from lambdamr.signing import Signer

_NO_ATTEMPTS: frozenset[int] = frozenset()  # shared by every task never backed up, and until launched
_FIRST_CLAIMED = (0,)  # the claims of a task whose one call's future was claimed (a submit's): shared

#: a task as the job hands it out: live (the scheduler's) or a view of a settled one's record
TaskView = Union["Task", SettledTask]


@dataclass(eq=False, slots=True)  # slots: one per task in flight
class Task(FutureHolder):
    """One unit of invocation: a function applied to ``calls`` argument tuples.

    Until it settles the task holds its futures (the scheduler settles them); then its job
    keeps its record instead (``driver.settled_task``: its timings, logs and ``outcome``, for
    the job's summary and each future's ``timing()`` and ``logs()``) and lets go of the
    futures someone claimed (``claim``: the user got them from ``submit``, or a
    ``MapIterator`` yielded them), so a consumed and dropped result leaves the driver's memory.

    A task's calls are held pickled and unsigned while it waits (``hold_arguments``) and are
    signed for its job and task when an attempt's event reads ``args_inline``: a waiting call
    then costs its pickle, not the signature and signed context around it too.
    """

    job: Job
    task_id: int
    calls: int
    _args_signed: bytes | None = None  # the signed pickled calls (from a task manifest), raw
    _args_unsigned: bytes | None = None  # the pickled calls, signed when read (``args_inline``)
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
    timings: dict[str, Any] | None = None  # the winning result record's (started, loaded, finished, cold...)
    runtime: dict[str, Any] | None = None  # what the runtime said of itself (request id, pid)
    logs: str | None = None  # captured stdout, stderr and logging records (the runtime's)
    outcome: TaskOutcome | None = None  # once settled
    _held: HeldFutures = NO_CALLS  # its calls' futures (``settled_task.HeldFutures``)
    _kept: int = 0  # futures _held still holds
    _claimed: list[int] | tuple[int, ...] = ()  # calls whose future someone else holds (a list from the first)

    @property
    def args_inline(self) -> bytes | None:
        """The task's calls as signed for its event (inline, bound to its job and task), or None."""
        if self._args_unsigned is not None:
            signer = self.job.arguments_signer
            assert signer is not None, "a job that holds unsigned arguments has a signer"
            return signer.sign(self._args_unsigned, arguments_context(self.job.job_id, self.task_id, None))
        return self._args_signed

    @args_inline.setter
    def args_inline(self, value: bytes | None) -> None:
        self._args_signed, self._args_unsigned = value, None

    def hold_arguments(self, payload: bytes) -> None:
        """Keep the pickled calls unsigned: ``args_inline`` signs them when an event reads them."""
        self._args_signed, self._args_unsigned = None, payload

    def claim(self, index: int) -> None:
        """The caller holds call ``index``'s future from now on: once settled, the task lets go."""
        if self.done:
            self._release(index)
        elif not self._claimed:
            self._claimed = _FIRST_CLAIMED if index == 0 else [index]
        elif isinstance(self._claimed, tuple):
            self._claimed = [*self._claimed, index]
        else:
            self._claimed.append(index)

    def settle_record(self) -> None:
        """Called once settled: record the outcome, drop what only a new attempt would need
        and the futures that were claimed (the job's lock is held)."""
        succeeded = failed = cancelled = 0
        error = error_traceback = None
        for future in self.futures:
            try:
                exc = future.exception(0)  # one look at its state (done, cancelled, failed), not three
            except CancelledError:
                cancelled += 1
                continue
            except FutureTimeoutError:
                continue  # not done
            if exc is not None:
                failed += 1
                if error is None:
                    error = (f"{type(exc).__name__}: {exc}".splitlines() or [""])[0]
                    error_traceback = exception_traceback(exc)
            else:
                succeeded += 1
        # Most tasks end alike (every call ok): they share one outcome object.
        self.outcome = common_outcome(TaskOutcome(succeeded, failed, cancelled, error, error_traceback))
        self._args_signed = self._args_unsigned = None  # read only by a new attempt
        self.invocation = None
        self.live = _NO_ATTEMPTS  # type: ignore[assignment]  # a settled task runs no attempt
        for index in self._claimed:
            self._release(index)
        self._claimed = ()


class Job:
    """The tasks and futures of one batch of invocations of one function.

    A job is *sealed* once no task will be added to it: at once for the phases of
    ``map_reduce``; for a streaming ``map`` when its input is exhausted or its iterator is
    closed or dropped; for a job of ``submit`` calls (``seals_when_idle``) once every task it
    has settled, or when the session closes it (``driver.session``: a submit that cannot join
    it, another job, shutdown). It is done when it is sealed and every task has settled.

    A settled task is folded into the job's ``TaskLedger`` (``driver.task_ledger``): exact
    totals for ``summary()``, and a bounded sample of task records for ``tasks``,
    ``plot()``, ``logs()`` and ``task_timing`` (every record of a job of up to
    ``FIRST_KEPT`` tasks; at most 1,025 of any job). A settled task that still holds a
    future nobody claimed stays too (``futures``). So a job costs what its unsettled tasks
    cost, plus at most about 0.5 MB once it has settled.
    """

    # Slots: a submit that joins no job is a job of its own, and its attributes' dict was 1.6 KB of it.
    __slots__ = (
        "job_id", "prefix", "function_key", "memory_mb", "timeout_s", "backend", "region", "architecture",
        "max_retries", "retry_on", "speculate", "sealed", "task_count", "calls", "_live", "_holding", "_ledger",
        "submitted_at", "finished_at", "retries", "backups", "backups_won", "duplicates", "storage_before",
        "storage_after", "runtime_requests", "_settled", "_finished", "_finished_event", "_lock",
        "_done_callbacks", "extra_env", "escalate_memory", "max_memory_mb", "budget", "attempts", "seals_when_idle",
        "arguments_signer", "__weakref__",
    )

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
        seals_when_idle: bool = False,
        arguments_signer: Signer | None = None,
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
        self.attempts = AttemptLedger(timeout_s, budget)  # attempts in flight; bills of the failed ones
        self.sealed = sealed  # no task will be added (see the class docstring)
        self.seals_when_idle = seals_when_idle  # submits join it while a task is unsettled (``join_task``)
        self.arguments_signer = arguments_signer  # signs a task's held arguments for its event (``Task.args_inline``)
        self.task_count = 0  # tasks added so far
        self.calls = 0  # calls those tasks hold
        self._live: dict[int, Task] = {}  # unsettled tasks, by id
        self._holding: dict[int, SettledTask] = {}  # settled tasks that hold futures nobody claimed
        self._ledger: TaskLedger[bytes] | None = None  # made when the first task settles; keeps records
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

    # ---- building -------------------------------------------------------------------------
    def new_task(self, calls: int) -> Task:
        """Add a task of ``calls`` calls, with a future per call."""
        with self._lock:
            return self._add_task(calls)

    def _add_task(self, calls: int) -> Task:
        task_id = self.task_count
        task = Task(self, task_id, calls)
        # One call (a submit's, a map's with chunksize 1): its future without a list around it
        task._held = LambdaFuture(self, task_id) if calls == 1 else [LambdaFuture(self, task_id, i) for i in range(calls)]
        task._kept = calls
        self._live[task_id] = task
        self.task_count += 1
        self.calls += calls
        return task

    def join_task(self, limit: int) -> Task | None:
        """A one-call task added to this job of submits, or None when the call must start a
        job of its own: the job is sealed, has ``limit`` tasks, or every call it has is done
        (so a submit made once every earlier one is done is always a job of its own).
        Atomic with the seal that settling its last task brings (``mark_task_done``)."""
        with self._lock:
            if self.sealed or self.task_count >= limit:
                return None
            # Newest first: in a burst the newest call is still pending, so this looks at one task.
            if not any(not f.done() for task in reversed(self._live.values()) for f in task.futures):
                return None
            return self._add_task(1)

    def seal_unless_idle(self) -> bool:
        """Seal a job with unsettled tasks here (the last to settle finishes it); False when
        every task has settled: then only the scheduler's ``seal`` finishes the job."""
        with self._lock:
            if self._settled == self.task_count:
                return self.sealed and self._finished
            self.sealed = True
            return True

    def discard_tasks_from(self, first: int) -> None:
        """Forget the tasks numbered ``first`` and after, never launched (staging failed)."""
        with self._lock:
            for task_id in range(first, self.task_count):
                task = self._live.pop(task_id)
                self.calls -= task.calls
            self.task_count = min(self.task_count, first)

    @property
    def tasks(self) -> list[TaskView]:
        """The tasks the job keeps, in task order: every unsettled one and a bounded sample
        of the settled (all of them in a job of up to ``task_ledger.FIRST_KEPT`` tasks), each
        settled one as a view of its record (``driver.settled_task``). ``task_count`` is how
        many the job has."""
        with self._lock:
            records = self._ledger.sample.records() if self._ledger else []
            kept: dict[int, TaskView] = {task_id: SettledTask(self, task_id, record) for task_id, record in records}
            kept.update(self._holding)
            kept.update(self._live)
        return [kept[task_id] for task_id in sorted(kept)]

    @property
    def live_tasks(self) -> list[Task]:
        """The tasks not settled yet, in task order."""
        with self._lock:
            return sorted(self._live.values(), key=lambda task: task.task_id)

    def task(self, task_id: int) -> TaskView | None:
        """Task ``task_id`` if the job keeps it (unsettled, sampled, or holding a future); a
        settled one as a view of its record."""
        with self._lock:
            found: TaskView | None = self._live.get(task_id) or self._holding.get(task_id)
            if found is None and self._ledger is not None:
                record = self._ledger.sample.get(task_id)
                found = SettledTask(self, task_id, record) if record is not None else None
            return found

    @property
    def settled(self) -> int:
        """How many tasks have settled."""
        return self._settled

    @property
    def futures(self) -> list[LambdaFuture]:
        """The calls' futures in submission order: every one of an unsettled task, and of a
        settled task those nobody claimed (a future from ``submit`` or one a ``map``
        iterator yielded is its caller's alone once settled; see ``Task``)."""
        with self._lock:
            holders: dict[int, TaskView] = {**self._holding, **self._live}
        return [f for task_id in sorted(holders) for f in holders[task_id].futures]

    @property
    def invocations(self) -> int:
        """Invocations billed so far: every attempt launched, retries and backups included
        (not those of a dead driver whose job ``attach`` collected: its attempts start at 1001)."""
        with self._lock:
            live = list(self._live.values())
            settled = self._ledger.totals.invocations if self._ledger else 0
        return settled + sum(task.attempt - task.attempt_base for task in live)

    def claim(self, future: LambdaFuture) -> None:
        """``future`` is the caller's from now on: once settled, the job lets go of it (its
        value leaves memory when the caller drops it)."""
        with self._lock:
            task_id = future.task_id
            task = self._live.get(task_id) or self._holding.get(task_id)
            if task is None:  # settled, and let go of every future already
                return
            task.claim(future.index)
            if task.done and not task.holds_futures:
                del self._holding[task_id]

    # ---- progress -------------------------------------------------------------------------
    def mark_task_done(self, task: Task) -> None:
        """Record that ``task`` is settled; completes the job when it was the last."""
        with self._lock:
            if task.done:
                return
            task.done = True
            task.completed_at = time.time()
            task.settle_record()
            if self._live.pop(task.task_id, None) is None:
                return  # discarded before launch (discard_tasks_from)
            record = pack_task(task)
            if task.holds_futures:  # the view shares the task's list of futures, letting go of each as claimed
                self._holding[task.task_id] = SettledTask(self, task.task_id, record, task._held, task._kept)
            if self._ledger is None:
                self._ledger = TaskLedger[bytes](seed=self.job_id)
            self._ledger.add(task, record)
            self._settled += 1
            if self.seals_when_idle and self._settled == self.task_count:
                self.sealed = True  # idle: a later submit starts a job of its own (join_task)
            self._finish_if_complete(task.completed_at)

    def seal(self) -> None:
        """No task will be added: the job is done once the ones it has settle. The scheduler
        calls this (on its thread) for a streaming map; a job built whole starts sealed."""
        with self._lock:
            self.sealed = True
            self._finish_if_complete(None)

    def _finish_if_complete(self, last_completed: float | None) -> None:
        if self.sealed and self._settled == self.task_count and not self._finished:
            if last_completed is None:  # sealed after its tasks settled: it ended with the last one
                last_completed = (self._ledger.totals.last_completed if self._ledger else 0.0) or time.time()
            self.finished_at = last_completed
            self._finished = True
            if self._ledger is not None:
                self._ledger.close()
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
        """What one task printed or logged once it has settled, else None (also once the
        task's record left a big job's sample: ``task``)."""
        task = self.task(task_id)
        return (task.logs or "") if task is not None and task.done else None

    def task_timing(self, task_id: int) -> dict[str, Any] | None:
        """Timings of one task: driver-side (submitted, dispatched, completed) and runtime-side;
        None while it runs (and once its record left a big job's sample: ``task``)."""
        task = self.task(task_id)
        if task is None or not task.done:
            return None
        timing = {
            "submitted": self.submitted_at,
            "dispatched": task.first_dispatched_at,
            "last_dispatched": task.dispatched_at,
            "completed": task.completed_at,
            "attempts": task.attempt,
        }
        timings = task.timings
        if timings:
            timing.update(timings)
            # Only the latest attempt's dispatch time is kept: when an earlier one (a backup's
            # original) won, its invoke time is unknown.
            won_latest = timings.get("attempt", task.attempt) == task.attempt
            timing["invoked"] = task.dispatched_at if won_latest else None
            timing["billed_ms"] = task_billed_ms(timings)
        runtime = task.runtime
        if runtime:
            timing["request_id"] = runtime.get("request_id")
        return timing

    # ---- reporting ------------------------------------------------------------------------
    def summary(self) -> JobSummary:
        """Counts, times, storage requests and the estimated Lambda cost of this job (exact:
        running totals of every settled task, plus the unsettled tasks as they are now)."""
        with self._lock:
            live = list(self._live.values())
            ledger = self._ledger
            totals = replace(ledger.totals) if ledger is not None else TaskTotals()
            peak = ledger.concurrency.peak() if ledger is not None else 0
            tasks, calls = self.task_count, self.calls
            # copies: the ledger's dicts go on growing once the lock is let go
            billed, run_billed = dict(totals.billed_ms), dict(totals.run_billed_ms)
            escalated = collections.Counter(totals.escalated)
        escalated.update(task.memory_mb for task in live if task.memory_mb)
        succeeded, failed, cancelled = totals.succeeded, totals.failed, totals.cancelled
        for task in live:  # not settled: count its futures as they are now
            for f in task.futures:
                if f.cancelled():
                    cancelled += 1
                elif f.done():
                    if f.exception() is None:
                        succeeded += 1
                    else:
                        failed += 1
        end = self.finished_at or time.time()
        after = self.storage_after or self.storage_before
        requests = {
            k: after.get(k, 0) - self.storage_before.get(k, 0) + self.runtime_requests.get(k, 0)
            for k in ("puts", "gets", "lists", "deletes")
        }
        invocations = totals.invocations + sum(task.attempt - task.attempt_base for task in live)
        return JobSummary(
            job_id=self.job_id,
            backend=self.backend,
            tasks=tasks,
            calls=calls,
            succeeded=succeeded,
            failed=failed,
            cancelled=cancelled,
            retries=self.retries,
            duplicates=self.duplicates,
            cold_starts=totals.cold_starts,
            wall_s=end - self.submitted_at,
            task_seconds=totals.task_seconds,
            max_task_s=totals.max_task_s,
            memory_mb=self.memory_mb,
            storage_requests=requests,
            cost=estimate_cost(self, billed, run_billed, invocations, requests, self.attempts.failed_billed_ms),
            backups=self.backups,
            backups_won=self.backups_won,
            peak_concurrency=peak,
            peak_memory_mb=totals.peak_memory_mb,
            escalated=dict(sorted(escalated.items())),
            budget_usd=self.budget.limit_usd if self.budget is not None else None,
            budget_note=self.budget.describe() if self.budget is not None else None,
        )

    def task_states(self) -> dict[str, int]:
        """How many tasks are ``pending``, ``running``, ``ok``, ``failed`` and ``cancelled``."""
        with self._lock:
            live = list(self._live.values())
            settled = dict(self._ledger.totals.states) if self._ledger else {}
        counts = {name: settled.get(name, 0) for name in ("pending", "running", "ok", "failed", "cancelled")}
        for task in live:
            counts[task_state(task)] += 1
        return counts

    def finished_turnaround(self) -> tuple[int, float | None]:
        """How many tasks settled with a result, and the median of their seconds from
        dispatch to settling (of a uniform sample beyond ``RESERVOIR_SIZE`` tasks)."""
        with self._lock:
            if self._ledger is None:
                return 0, None
            sample = self._ledger.turnaround_seconds
            return sample.seen, sample.quantile(0.5)

    def run_seconds_sample(self) -> list[float]:
        """The runtime's run times of the settled tasks (a uniform sample beyond ``RESERVOIR_SIZE``)."""
        with self._lock:
            return list(self._ledger.run_seconds.values) if self._ledger else []

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
        return f"<Job {self.job_id}: {self.task_count} tasks, {'done' if self.done() else 'running'}>"
