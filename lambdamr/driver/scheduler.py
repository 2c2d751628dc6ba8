"""The driver's scheduler: one thread that moves tasks from pending to done.

It keeps at most ``backend.capacity`` invocations in flight, turns backend outcomes and
stored result records into future results, retries infrastructure failures (and user
exceptions the job lists in ``retry_on``) with a new attempt number, launches backups of
stragglers when the job asks for speculation, and — for fire-and-forget backends — lists
each running job's result prefix to learn of completions and re-invokes tasks whose result
is overdue. Results are write-once per attempt; the first to arrive wins and any later one
counts as a duplicate. Which failures run again, and with how much memory, is
``driver.retry_policy``'s to say; each attempt's bill goes to its job's ``AttemptLedger``
(``driver.billing``), which a job with a ``budget_usd`` asks before each launch
(``driver.budget``).

Everything that touches a task's state runs on the scheduler thread, so tasks need no locks;
other threads talk to it through one queue. The one exception is ``claim``: a backend that
queues invocations itself asks it, from its own thread, as it hands one to a worker; the
calls' futures turn RUNNING then (until then they can be cancelled), or — when every call
was cancelled meanwhile — the invocation is dropped and the thread told.

The thread survives whatever a task, a result, a callback or a backend throws at it: an
error handling one message or one task fails that task, never the thread. Should the thread
die all the same, every unfinished future fails with a ``BackendError`` saying so, and later
submissions raise it instead of waiting forever.
"""

from __future__ import annotations

import base64
import collections
import logging
import queue
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lambdamr.backends.base import Backend, Invocation, InvocationOutcome
from lambdamr.config import ExecutorConfig
from lambdamr.data.buffers import BUFFERS_OPTION
from lambdamr.driver.billing import failed_attempt_seconds, record_seconds
from lambdamr.driver.job import Job, Task
from lambdamr.driver.jobstore import parse_result_key, result_key, results_before, results_prefix
from lambdamr.driver.results import open_record, own_copy
from lambdamr.driver.retry_policy import plan_retry, task_memory
from lambdamr.driver.speculation import stragglers
from lambdamr.driver.unfinished import UnfinishedJobs, settle_future
from lambdamr.errors import (
    BackendError,
    IntegrityError,
    LambdaMRError,
    ObjectNotFound,
    ResultLostError,
    StorageUnavailable,
    WorkerLostError,
)
from lambdamr.protocol import INITIALIZER_OPTION, TaskEvent
from lambdamr.signing import Signer
from lambdamr.storage import Storage

log = logging.getLogger("lambdamr")

#: extra time past a task's timeout before a fire-and-forget invocation is presumed lost
LOST_GRACE_S = 10.0
#: waits between attempts to read a result the store is too busy to serve
FETCH_BACKOFF_S = (0.05, 0.2, 0.8)
#: consecutive failed result listings of a job before it is logged as a warning
LIST_FAILURES_TO_WARN = 3
#: how often running jobs that speculate are checked for stragglers
SPECULATION_CHECK_S = 0.25
_FETCH_THREADS = 16


def lost_limit(job: Job) -> float:
    """Seconds after its invocation past which an attempt that left no result is presumed lost."""
    return job.timeout_s + max(LOST_GRACE_S, 0.1 * job.timeout_s)


def event_deadline(job: Job, dispatched_at: float) -> float:
    """The latest moment an asynchronous attempt may still start (``TaskEvent.deadline``):
    by then the driver has presumed it lost and re-run it. One more timeout leaves room for
    a delivery queued behind another and for clocks some seconds apart."""
    return dispatched_at + job.timeout_s + lost_limit(job)


class Scheduler:
    """Dispatches the tasks of every job of one executor and settles their futures."""

    def __init__(self, backend: Backend, storage: Storage, config: ExecutorConfig, signer: Signer) -> None:
        self.backend = backend
        self.signer = signer
        self.storage = storage
        self.config = config
        self._storage_spec = storage.spec()
        self._store_result = not backend.reports_outcomes or bool(config.durable)
        self._reply_inline_max = min(config.reply_inline_max, backend.max_response_bytes) if backend.reports_outcomes else 0
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._pending: collections.deque[Task] = collections.deque()
        self._in_flight: dict[tuple[str, int], Task] = {}  # tasks with a live attempt
        self._live = 0  # attempts in flight, backups included
        self._jobs: dict[str, Job] = {}
        self._seen_keys: dict[str, set[str]] = {}
        self._fetcher = ThreadPoolExecutor(_FETCH_THREADS, thread_name_prefix="lambdamr-fetch")
        self._thread: threading.Thread | None = None
        self._last_poll = 0.0
        self._list_failures: dict[str, int] = {}  # consecutive failed polls, by job
        self._unfinished = UnfinishedJobs()  # for other threads: shutdown, the thread's death
        self._claim_lock = threading.Lock()
        #: the stored ``(initializer, initargs)`` every event names (``TaskEvent.options``)
        self.initializer_key: str | None = None
        #: the session's scratch folder for result buffers (``BUFFERS_OPTION``), if it has one
        self.buffer_scratch: str | None = None
        self._options: dict[str, Any] = {}  # _event_options, made for the values in _options_for
        self._options_for: tuple[str | None, str | None] = (None, None)

    # ---- called from other threads ------------------------------------------------------
    def start(self) -> None:
        """Start the backend and the scheduler thread."""
        if self._thread is not None:
            return
        self.backend.prepare(self.storage)
        self.backend.set_claim(self._claim)
        self.backend.set_outcomes_callback(self._on_outcomes)
        self.backend.start(self._on_outcome)
        self._thread = threading.Thread(target=self._run, name="lambdamr-scheduler", daemon=True)
        self._thread.start()

    def submit(self, job: Job, tasks: list[Task] | None = None) -> None:
        """Queue ``tasks`` of ``job`` (default: all of them); a streaming map sends more later.

        Raises:
            BackendError: the scheduler thread died (the executor cannot run anything more).
        """
        if not job.storage_before:
            job.storage_before = self.storage.stats.snapshot()
        batch = list(job.tasks) if tasks is None else tasks
        self._unfinished.add(job, lambda added: self._inbox.put(("job", (added, batch))))

    def seal(self, job: Job) -> None:
        """No more tasks of ``job`` will come: it finishes once the queued ones settle."""
        self._inbox.put(("seal", job))

    def seal_all(self) -> None:
        """Seal every unfinished job: shutdown ends streaming maps with the tasks they have."""
        for job in self._unfinished.jobs():
            if not job.sealed:
                self.seal(job)

    def on_own_thread(self) -> bool:
        """Whether the caller runs on the scheduler thread (a future's done-callback)."""
        return self._thread is not None and threading.current_thread() is self._thread

    def check_alive(self) -> None:
        """Raise the ``BackendError`` the scheduler thread died with, if it did."""
        self._unfinished.check_alive()

    def cancel_pending(self) -> None:
        """Cancel every call no worker or container has yet (``shutdown(cancel_futures=True)``)."""
        self._unfinished.cancel_pending()
        self._inbox.put(("wake", None))  # drop what was cancelled without waiting for a result

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted job has finished; return whether they have."""
        return self._unfinished.wait_empty(timeout)

    def stop(self) -> None:
        """Stop the thread; tasks not yet settled fail with ``BackendError``."""
        if self._thread is None:
            return
        self._inbox.put(("stop", None))
        self._thread.join()
        self._thread = None
        self._fetcher.shutdown(wait=True)

    def _on_outcome(self, outcome: InvocationOutcome) -> None:
        self._inbox.put(("outcome", outcome))

    def _on_outcomes(self, outcomes: list[InvocationOutcome]) -> None:
        self._inbox.put(("outcomes", outcomes))  # one message (one wake-up) for a frame of them

    def _claim(self, invocation: Invocation) -> bool:
        """Called by a backend, on its own thread, as it hands ``invocation`` to a worker."""
        event = invocation.event
        task = self._in_flight.get((event.job_id, event.task_id))
        if task is None or task.done:
            return False  # settled meanwhile (failed, abandoned): nothing to run
        if self._start_calls(task):
            return True
        self._inbox.put(("cancelled", (task, event.attempt)))
        return False

    def _start_calls(self, task: Task) -> bool:
        """Mark the task's calls running; False when every one of them was cancelled first.
        Calls of a retry or a backup are running already (and those of an invocation a lost
        worker held unstarted: the backend hands it out again)."""
        started = False
        with self._claim_lock:
            for future in task.futures:
                if future.running():
                    started = True
                elif not future.done():
                    started = future.set_running_or_notify_cancel() or started
        return started

    # ---- the scheduler thread -----------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - a dead scheduler must not leave futures waiting forever
            self._die(exc)

    def _loop(self) -> None:
        while True:
            try:
                message = self._inbox.get(timeout=self._wait_time())
            except queue.Empty:
                message = None
            while message is not None:
                if message[0] == "stop":
                    self._abandon_all()
                    return
                self._handle(message)
                try:
                    message = self._inbox.get_nowait()
                except queue.Empty:
                    message = None
            self._dispatch()
            if not self.backend.reports_outcomes and self._in_flight:
                self._poll_if_due()
                self._expire_lost()
                self._dispatch()  # re-run what expired without waiting for another message
            if self._in_flight:
                self._launch_backups()

    def _wait_time(self) -> float | None:
        if not self._in_flight:
            return None
        if not self.backend.reports_outcomes:
            return self.config.poll_interval_s
        if any(job.speculate for job in self._jobs.values()):  # a few jobs, not every task in flight
            return SPECULATION_CHECK_S
        return None

    def _handle(self, message: tuple[str, Any]) -> None:
        kind, payload = message
        if kind == "outcomes":
            for outcome in payload:
                try:  # each on its own: an error fails its task only
                    self._handle_outcome(outcome)
                except BaseException:  # noqa: BLE001 - as in the "outcome" message below
                    log.exception("lambdamr scheduler: error while handling outcome")
                    self._fail_after_error(outcome)
            return
        try:
            if kind == "job":
                job, tasks = payload
                if job.job_id not in self._jobs:
                    self._jobs[job.job_id] = job  # its _seen_keys: made by its first poll (fire-and-forget only)
                if job.budget is not None and job.budget.stopped:
                    for task in tasks:  # the budget is spent: a streaming map's later tasks never run
                        self._refuse(task)
                else:
                    self._pending.extend(tasks)
            elif kind == "seal":
                payload.seal()
                self._maybe_finish_job(payload)
            elif kind == "outcome":
                self._handle_outcome(payload)
            elif kind == "lost":
                task, attempt, error = payload
                task.job.attempts.ended(task.task_id, attempt, failed_attempt_seconds(error, task.job.timeout_s))
                if not task.done and not task.live:  # no other attempt took over meanwhile
                    self._fail_or_retry(task, error)
            elif kind == "record":
                task, attempt, data, error = payload
                if error is not None:
                    if not task.done:
                        self._drop_attempt(task, attempt, None)
                        if not task.live:
                            self._fail_or_retry(task, error)
                else:
                    self._complete(task, attempt, data)
            elif kind == "cancelled":  # every call was cancelled before a worker took it
                task, attempt = payload
                self._drop_attempt(task, attempt, 0.0)
                if not task.done and not task.live:
                    self._settle(task)
        except BaseException:  # noqa: BLE001 - a bug or a SystemExit here must not kill the thread
            log.exception("lambdamr scheduler: error while handling %s", kind)
            if kind in ("outcome", "lost", "record", "cancelled"):
                self._fail_after_error(payload)

    def _fail_after_error(self, payload: Any) -> None:
        """Fail the task a message that could not be handled was about (it would wait forever)."""
        task: Task | None
        if isinstance(payload, InvocationOutcome):
            task = self._in_flight.get((payload.invocation.event.job_id, payload.invocation.event.task_id))
        else:
            task = payload[0]
        if task is None or task.done:
            return
        try:
            self._fail(task, BackendError(
                "the lambdamr scheduler failed while settling this task (see the log for the error)",
            ))
        except BaseException:  # noqa: BLE001
            log.exception("lambdamr scheduler: could not fail task %s", getattr(task, "task_id", "?"))

    def _dispatch(self) -> None:
        batch: list[Invocation] = []
        room = self.backend.capacity - self._live
        held: list[Task] = []  # waiting for their job's attempts in flight to free budget
        while self._pending and len(batch) < room:
            task = self._pending.popleft()
            if task.done:
                continue
            if task.job.budget is not None and not self._within_budget(task):
                if not task.done:
                    held.append(task)
                continue
            if task.attempt == 0:
                # A backend that claims at handover marks the calls running itself; for the
                # others (AWS) a call is running once it is invoked.
                if self.backend.claims_handover:
                    live = not all(f.cancelled() for f in task.futures)
                else:
                    live = self._start_calls(task)
                if not live:  # every call was cancelled while pending
                    task.job.mark_task_done(task)
                    self._maybe_finish_job(task.job)
                    continue
            try:
                batch.append(self._launch(task))
            except BaseException as exc:  # noqa: BLE001 - one task's bad event must not stop the others
                log.exception("lambdamr scheduler: could not launch task %s of job %s", task.task_id, task.job.job_id)
                self._fail(task, BackendError(f"lambdamr could not launch the task: {type(exc).__name__}: {exc}"))
        self._pending.extendleft(reversed(held))
        self._invoke(batch)

    def _within_budget(self, task: Task) -> bool:
        """Whether ``task`` may launch now under its job's budget. When it may not and
        nothing of the job is in flight, the budget is spent: the job is stopped and every
        call of it not launched fails with ``BudgetExceededError`` (``driver.budget``)."""
        job = task.job
        budget = job.budget
        assert budget is not None
        memory = task_memory(task)
        if not budget.stopped and budget.admits(memory, job.timeout_s):
            return True
        if not budget.stopped and job.attempts.in_flight():
            return False  # what runs usually costs far less than its reservation: wait for it
        if not budget.stopped:
            budget.stop()
            log.warning("lambdamr: job %s: %s", job.job_id, budget.refusal(memory, job.timeout_s))
        for pending in [t for t in self._pending if t.job is job and not t.done]:
            self._refuse(pending)
        self._refuse(task)
        return False

    def _refuse(self, task: Task) -> None:
        """Fail a task the budget of its job does not let launch (``BudgetExceededError``)."""
        budget = task.job.budget
        assert budget is not None
        error = budget.refusal(task_memory(task), task.job.timeout_s)
        budget.refused_tasks += 1
        budget.refused_calls += task.calls
        self._fail(task, error)

    def _launch(self, task: Task) -> Invocation:
        """Start a new attempt of ``task`` (the invocation still has to be sent)."""
        task.attempt += 1
        now = time.time()
        task.dispatched_at = now
        task.first_dispatched_at = task.first_dispatched_at or now
        if task.live:
            task.live.add(task.attempt)
        else:  # maybe the shared empty frozenset of a task never launched: a set of its own
            task.live = {task.attempt}
        self._live += 1
        self._in_flight[(task.job.job_id, task.task_id)] = task
        memory_mb = task_memory(task)
        task.job.attempts.launched(task.task_id, task.attempt, memory_mb)
        invocation = task.invocation = Invocation(self._event(task, memory_mb))
        return invocation

    def _invoke(self, batch: list[Invocation]) -> None:
        if not batch:
            return
        try:
            self.backend.invoke(batch)
        except BaseException as exc:  # noqa: BLE001 - whatever the backend raised, its tasks fail
            if not isinstance(exc, LambdaMRError):
                log.exception("lambdamr scheduler: the %s backend failed to invoke", self.backend.name)
                error = BackendError(f"the {self.backend.name} backend failed to invoke: {type(exc).__name__}: {exc}")
                error.__cause__ = exc
                exc = error
            for invocation in batch:
                task = self._in_flight.get((invocation.event.job_id, invocation.event.task_id))
                if task is not None and not task.done:
                    self._fail(task, exc)

    def _drop_attempt(self, task: Task, attempt: int, billed_s: float | None) -> None:
        """``attempt`` of ``task`` ended without settling it, billed ``billed_s`` (None: unknown)."""
        task.job.attempts.ended(task.task_id, attempt, billed_s)
        if attempt in task.live:
            task.live.discard(attempt)
            self._live -= 1

    def _end_live(self, task: Task) -> None:
        """Every attempt of ``task`` still in flight is left to itself (a backup that lost,
        a task failed or re-run): billed as unknown (``driver.billing``)."""
        if task.live:  # a settled task holds the shared empty set
            for attempt in task.live:
                task.job.attempts.ended(task.task_id, attempt, None)
            self._live -= len(task.live)
            task.live.clear()

    def _launch_backups(self) -> None:
        if self._pending or self._live >= self.backend.capacity:
            return  # backups only use slots nobody else is waiting for
        jobs = {task.job for task in self._in_flight.values() if task.job.speculate}
        batch: list[Invocation] = []
        for job in jobs:
            for task in stragglers(job, list(self._in_flight.values())):
                if self._live + len(batch) >= self.backend.capacity:
                    break
                if job.budget is not None and not job.budget.admits(task_memory(task), job.timeout_s):
                    break  # a backup is a second bill: only within the budget
                invocation = self._launch(task)
                task.backup_attempts = task.backup_attempts | {task.attempt}
                job.backups += 1
                log.info("lambdamr: task %s of job %s is a straggler; launched backup attempt %s",
                         task.task_id, job.job_id, task.attempt)
                batch.append(invocation)
        self._invoke(batch)

    def _event(self, task: Task, memory_mb: int | None = None) -> TaskEvent:
        job = task.job
        return TaskEvent.assemble(  # one per attempt: without the dataclass __init__ (its values are the driver's own)
            job_id=job.job_id,
            task_id=task.task_id,
            attempt=task.attempt,
            storage=self._storage_spec,
            function_key=job.function_key,
            result_key=result_key(job.prefix, task.task_id, task.attempt),
            timeout_s=job.timeout_s,
            memory_mb=task_memory(task) if memory_mb is None else memory_mb,
            args_raw=task.args_inline,  # the event base64-encodes it only for a JSON transport
            args_range=task.args_range,
            store_result=self._store_result,
            reply_inline_max=self._reply_inline_max,
            # Only fire-and-forget deliveries can start late unseen; a backend that reports
            # every outcome has the driver watching (and may queue an attempt behind others).
            deadline=None if self.backend.reports_outcomes else event_deadline(job, task.dispatched_at or time.time()),
            options=self._event_options(),
            extra_env=job.extra_env,
        )

    def _event_options(self) -> dict[str, Any]:
        """The options every event carries: one dict while they stay the same (events never
        change theirs), so that neither this thread nor a backend rebuilds them per attempt."""
        values = (self.initializer_key, self.buffer_scratch)
        if values != self._options_for:
            options: dict[str, Any] = {INITIALIZER_OPTION: self.initializer_key} if self.initializer_key else {}
            if self.buffer_scratch is not None:
                options[BUFFERS_OPTION] = self.buffer_scratch
            self._options, self._options_for = options, values
        return self._options

    def _handle_outcome(self, outcome: InvocationOutcome) -> None:
        event = outcome.invocation.event
        task = self._in_flight.get((event.job_id, event.task_id))
        if task is None or task.done:
            job = self._jobs.get(event.job_id)
            if job is not None:
                job.duplicates += 1
            return
        if outcome.error is not None:
            billed = failed_attempt_seconds(outcome.error, event.timeout_s, outcome.started_at, outcome.ended_at)
            self._drop_attempt(task, event.attempt, billed)
            if not task.live:  # while another attempt runs, this failure changes nothing
                self._fail_or_retry(task, outcome.error)
            return
        if outcome.record is not None:  # authenticated by the backend (the local wire)
            self._complete(task, event.attempt, outcome.record, authenticated=True)
            return
        response = outcome.response or {}
        if response.get("expired"):
            self._drop_attempt(task, event.attempt, 0.0)
            if not task.live:
                self._fail_or_retry(task, WorkerLostError(
                    f"the runtime refused the invocation: it started {response.get('late_s', 0):.0f} s after its "
                    "deadline (delivered late by the backend; or the driver's clock is far off: check it)",
                    job_id=event.job_id, task_id=event.task_id, attempt=event.attempt,
                ))
            return
        if response.get("record"):
            self._complete(task, event.attempt, base64.b64decode(response["record"]))
        elif response.get("result_key"):
            self._fetch(task, event.attempt, response["result_key"])
        elif not self.backend.reports_outcomes:
            return  # accepted for later: the result will show up in storage
        else:
            self._drop_attempt(task, event.attempt, None)
            self._fail_or_retry(task, WorkerLostError(
                f"the runtime answered without a result: {response!r}",
                job_id=event.job_id, task_id=event.task_id, attempt=event.attempt,
            ))

    def _fetch(self, task: Task, attempt: int, key: str) -> None:
        def fetch() -> None:
            for delay in (*FETCH_BACKOFF_S, None):
                try:
                    data = self.storage.get(key)
                except StorageUnavailable as exc:
                    if delay is None:  # the task runs again rather than losing its result
                        self._inbox.put(("record", (task, attempt, None, exc)))
                        return
                    time.sleep(delay * (0.5 + random.random()))
                except ObjectNotFound as exc:  # deleted between the runtime's write and this read
                    lost = ResultLostError(
                        f"the stored result {self.storage.url(key)} was gone when the driver read it "
                        "(deleted or expired meanwhile): running the task again",
                        job_id=task.job.job_id, task_id=task.task_id, attempt=attempt,
                    )
                    lost.__cause__ = exc
                    self._inbox.put(("record", (task, attempt, None, lost)))
                    return
                except Exception as exc:
                    self._inbox.put(("record", (task, attempt, None, exc)))
                    return
                else:
                    self._inbox.put(("record", (task, attempt, data, None)))
                    return

        self._fetcher.submit(fetch)

    def _complete(self, task: Task, attempt: int, data: bytes | memoryview, authenticated: bool = False) -> None:
        if task.done:
            task.job.duplicates += 1
            return
        job = task.job
        try:
            record = open_record(  # the key is only part of what a record's signature covers
                None if authenticated else self.signer, data, job_id=job.job_id, task_id=task.task_id,
                attempt=attempt, key="" if authenticated else result_key(job.prefix, task.task_id, attempt),
                expected_calls=task.calls,
            )
        except LambdaMRError as exc:
            self._drop_attempt(task, attempt, None)
            if isinstance(exc, IntegrityError):
                # A record that fails its signature or context is refused, never settled: the
                # task runs again under a new write-once key (and fails once retries run out).
                log.warning("lambdamr: %s", exc)
            if not task.live:
                self._fail_or_retry(task, exc, force=isinstance(exc, IntegrityError))
            return
        retry_error = self._user_error_to_retry(task, record)
        if retry_error is not None:
            self._drop_attempt(task, attempt, record_seconds(record.timings))
            if not task.live:
                self._fail_or_retry(task, retry_error, force=True)
            return
        if attempt in task.backup_attempts:
            job.backups_won += 1
        header = record.header
        requests = header.get("requests", {})
        timings = record.timings  # a dict of its own: completed here, then kept by the task
        # A settled attempt's seconds are priced from the task's timings; only a budget reads them here.
        seconds = record_seconds(timings) if job.attempts.budget is not None else None
        job.attempts.ended(task.task_id, attempt, seconds, settled=True, requests=requests)
        timings["attempt"] = attempt
        timings["fetched"] = time.time()  # decoded here
        if task.memory_mb:  # escalated: the summary prices the winner at the memory it ran with
            timings["memory_mb"] = task.memory_mb
        task.timings = timings
        task.runtime = record.runtime
        task.logs = header.get("logs")
        for kind, count in requests.items():
            if count:  # most are 0 (a small task makes no request)
                job.runtime_requests[kind] += count
        for future, call in zip(task.futures, record.calls):
            future.attempt = attempt  # whose record: a pipelined call may read it (driver.pipeline)
            settle_future(future, call.value, call.exception if not call.ok else None)
        self._settle(task)

    @staticmethod
    def _user_error_to_retry(task: Task, record: Any) -> BaseException | None:
        """The first user exception of the record that the job asked to retry on, if any."""
        if not task.job.retry_on or task.failures >= task.job.max_retries:
            return None
        for call in record.calls:
            if not call.ok and isinstance(call.exception, task.job.retry_on):
                return call.exception
        return None

    def _fail_or_retry(self, task: Task, error: BaseException, force: bool = False) -> None:
        plan = plan_retry(task, error, force)
        if plan.retry:
            task.failures += 1
            task.job.retries += 1
            self._end_live(task)
            self._in_flight.pop((task.job.job_id, task.task_id), None)
            self._pending.appendleft(task)
            if plan.memory_mb is not None:
                log.info("lambdamr: running task %s of job %s again with %s MB (was %s MB) after: %s",
                         task.task_id, task.job.job_id, plan.memory_mb, task_memory(task), error)
                task.memory_mb = plan.memory_mb
            else:
                log.info("lambdamr: retrying task %s of job %s after: %s", task.task_id, task.job.job_id, error)
            return
        self._fail(task, error)

    def _fail(self, task: Task, error: BaseException) -> None:
        for index, future in enumerate(task.futures):
            # Each future its own exception object: one shared would collect every raise's frames.
            settle_future(future, None, error if index == 0 else own_copy(error))
        self._settle(task)

    def _settle(self, task: Task) -> None:
        self._end_live(task)
        self._in_flight.pop((task.job.job_id, task.task_id), None)
        task.job.mark_task_done(task)
        self._maybe_finish_job(task.job)

    def _maybe_finish_job(self, job: Job) -> None:
        if not job.done() or job.job_id not in self._jobs:
            return
        job.storage_after = self.storage.stats.snapshot()
        del self._jobs[job.job_id]
        self._seen_keys.pop(job.job_id, None)
        try:
            job.notify_done()  # its numbers are final: job manifest, user callbacks
        finally:
            self._unfinished.remove(job)

    # ---- fire-and-forget backends -------------------------------------------------------
    def _poll_if_due(self) -> None:
        now = time.monotonic()
        if now - self._last_poll < self.config.poll_interval_s:
            return
        self._last_poll = now
        first_running: dict[str, Task] = {}
        for task in self._in_flight.values():
            if task.job.job_id not in first_running or task.task_id < first_running[task.job.job_id].task_id:
                first_running[task.job.job_id] = task
        for job_id, first in first_running.items():
            job = first.job
            seen = self._seen_keys.setdefault(job_id, set())
            # Keys sort by task id: nothing before the first running task needs reading again,
            # which keeps a poll of a long job to a page or two instead of all its results.
            try:
                after = results_before(job.prefix, first.task_id)
                listing = list(self.storage.list(results_prefix(job.prefix), start_after=after))
            except LambdaMRError as exc:
                # One failed poll only delays results to the next; say so loudly once it repeats.
                failures = self._list_failures[job_id] = self._list_failures.get(job_id, 0) + 1
                level = logging.WARNING if failures >= LIST_FAILURES_TO_WARN else logging.DEBUG
                log.log(level, "lambdamr: listing results of job %s failed (%d in a row): %s", job_id, failures, exc)
                continue
            self._list_failures.pop(job_id, None)
            for info in listing:
                if info.key in seen:
                    continue
                seen.add(info.key)
                parsed = parse_result_key(info.key)
                if parsed is None:
                    continue
                task_id, attempt = parsed
                settling = self._in_flight.get((job.job_id, task_id))
                if settling is None:
                    job.duplicates += 1
                    continue
                self._fetch(settling, attempt, info.key)

    def _expire_lost(self) -> None:
        now = time.time()
        for task in list(self._in_flight.values()):
            if not task.live:
                continue  # already expired; the backend is being asked why
            limit = lost_limit(task.job)
            if task.dispatched_at is not None and now - task.dispatched_at > limit:
                self._live -= len(task.live)
                task.live.clear()
                self._explain_lost(task, task.attempt, limit)

    def _explain_lost(self, task: Task, attempt: int, limit: float) -> None:
        """Ask the backend (off this thread: it may read logs) why the attempt left no result;
        a result that still arrives meanwhile settles the task as usual."""
        invocation = task.invocation

        def explain() -> None:
            error: BaseException | None = None
            try:
                error = self.backend.explain_lost(invocation) if invocation is not None else None
            except Exception as exc:  # an explanation that fails leaves the plain one
                log.warning("lambdamr: could not learn why task %s was lost: %s", task.task_id, exc)
            if error is None:
                error = WorkerLostError(
                    f"no result arrived within {limit:.0f} s of the invocation (timeout "
                    f"{task.job.timeout_s:g} s): the invocation was lost or its container died",
                    job_id=task.job.job_id, task_id=task.task_id, attempt=attempt,
                )
            self._inbox.put(("lost", (task, attempt, error)))

        self._fetcher.submit(explain)

    def _abandon_all(self) -> None:
        error = BackendError("the executor was shut down before this task finished")
        for task in list(self._in_flight.values()) + list(self._pending):
            if task.done:
                continue
            for future in task.futures:
                if not future.cancel():
                    settle_future(future, None, own_copy(error))
            self._settle(task)
        self._pending.clear()

    def _die(self, exc: BaseException) -> None:
        """The thread is ending on an error nothing caught: fail everything that waits on it."""
        error = BackendError(
            f"the lambdamr scheduler thread stopped on an unexpected error ({type(exc).__name__}: {exc}); "
            "this executor cannot run tasks any more: shut it down and create a new one"
        )
        error.__cause__ = exc
        log.critical("lambdamr: %s", error, exc_info=exc)
        self._unfinished.fail_all(error)  # submit() raises from now on
