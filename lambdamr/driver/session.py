"""What one executor session owns, and ``run_job``: the one seam every job goes through.

A session is one ``LambdaExecutor``'s life: its storage and backend, its prefix
(``{prefix}/{session_id}``) under which every object it writes lives, the stager that writes
functions and arguments there, the scheduler that runs the tasks, the job records and lease,
the history of its jobs, and what releases all of it (``driver.lifecycle``). The executor is
its public face; ``map_reduce``'s phases use it too, through ``run_job`` — so nothing outside
this module builds, stages or launches a job.

A session is released once garbage collected (as ``ProcessPoolExecutor`` is): a streaming map
still reading its input holds the session, not the executor, and keeps it alive.
"""

from __future__ import annotations

import collections
import itertools
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from lambdamr.backends import Backend
from lambdamr.backends.local_options import LocalOptions
from lambdamr.config import ExecutorConfig, JobOptions, JobSettings, is_whole_number
from lambdamr.data.refs import trust_signer
from lambdamr.data.shared import Shared
from lambdamr.driver.attach import collect_stored_results
from lambdamr.driver.budget import JobBudget
from lambdamr.driver.callables import check_plain_function
from lambdamr.driver.history import JobHistory
from lambdamr.driver.inputs import (
    Call,
    UnpackMode,
    check_buffersize,
    check_map_timeout,
    check_unpack,
    default_buffersize,
    map_calls,
)
from lambdamr.driver.job import Job, Task
from lambdamr.driver.jobstore import job_prefix_of, load_job
from lambdamr.driver.launching import TaskLaunch
from lambdamr.driver.lease import SessionLease
from lambdamr.driver.lifecycle import ExecutorResources, interpreter_exiting
from lambdamr.driver.map_reduce_job import MapReduceJob
from lambdamr.driver.pipeline import Launcher, StoredResults, TaskBatch, WaitingCalls, futures_in, with_values
from lambdamr.driver.progress import JobProgress, progress_enabled
from lambdamr.driver.record_writer import JobRecordWriter
from lambdamr.driver.scheduler import Scheduler
from lambdamr.driver.staging import Stager
from lambdamr.driver.task_ledger import FIRST_KEPT
from lambdamr.errors import ConfigurationError
from lambdamr.futures import LambdaFuture, MapIterator
from lambdamr.report import SummaryPrinter
from lambdamr.signing import Signer
from lambdamr.storage import Storage
from lambdamr.storage.scratch import SessionScratch

T = TypeVar("T")

#: one task's calls
Calls = list[Call]

#: jobs ``LambdaExecutor.jobs`` remembers (their timings and outcomes, never their results)
JOB_HISTORY = 100
#: tasks a job of submits takes; the submit after them starts a job of its own. No more than
#: the task ledger keeps every record of: each submit's future keeps its timing() and logs()
SUBMITS_PER_JOB = FIRST_KEPT
#: what submits joining one job share: the stored function and the job's settings
SubmitsKey = tuple[str, JobSettings]


def new_session_id() -> str:
    """A session id: the UTC time it started and 6 random hex digits (sorts by age)."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


class Session:
    """One executor's storage, backend, staging, scheduler, job records, lease and jobs.

    Args:
        config: the executor's resolved configuration.
        storage / base_prefix: the store and the key prefix its URL carried.
        backend: where tasks run.
        initializer: ``(initializer, initargs)`` every worker runs before its first task.
    """

    def __init__(
        self,
        config: ExecutorConfig,
        storage: Storage,
        base_prefix: str,
        backend: Backend,
        initializer: tuple[Callable[..., Any], tuple[Any, ...]] | None = None,
    ) -> None:
        self.config = config
        self.storage = storage
        self.backend = backend
        self.session_id = new_session_id()
        self.key_prefix = "/".join(p for p in (base_prefix, config.prefix) if p)  # every session's
        self.prefix = f"{self.key_prefix}/{self.session_id}"  # this session's
        self.durable = config.durable if config.durable is not None else not backend.reports_outcomes
        temp = storage.url(f"{self.key_prefix}/") + "*"  # every session's objects, not just this one's
        backend.check_access(reads=[temp], writes=[temp])
        self.signer = Signer(backend.signing_key())
        trust_signer(self.signer)  # the ValueRefs its tasks return open in this process
        # Big buffers that only this host's processes read go to a folder in RAM (storage.scratch).
        scratch_base = LocalOptions.of(config).scratch_base() if backend.supports_local_storage and not self.durable else None
        self.scratch = SessionScratch.open(self.session_id, scratch_base) if scratch_base else None
        self.stager = Stager(
            storage, self.prefix, self.signer,
            inline_args_max=config.inline_args_max, max_payload_bytes=backend.max_payload_bytes,
            scratch=self.scratch.store if self.scratch else None,
        )
        self.scheduler = Scheduler(backend, storage, config, self.signer)
        self.scheduler.buffer_scratch = str(self.scratch.root) if self.scratch else None
        self._tasks = TaskLaunch(
            storage=storage, stager=self.stager, scheduler=self.scheduler, signer=self.signer,
            backend=backend, durable=self.durable,
        )
        # Calls waiting for the futures among their arguments; where every result record is
        # stored, the downstream task reads an upstream value from its record itself.
        stored = not backend.reports_outcomes or self.durable
        self._pipeline = Launcher(self._tasks, StoredResults(storage.spec(), self.session_id) if stored else None)
        self._initializer = initializer
        self._job_numbers = itertools.count(1)
        self._open_submits: tuple[Job, SubmitsKey] | None = None  # the job later submits may join
        self._lock = threading.RLock()  # reentrant: a streaming map stages and launches under it
        self._closed = False
        self._history: collections.deque[Job | MapReduceJob] = collections.deque(maxlen=JOB_HISTORY)
        self._records = JobRecordWriter(storage, self.signer, keep_logs=config.keep_temp)  # {job}/job.json
        self._lease = SessionLease(storage, self.prefix)  # what `lambdamr clean` spares
        self._job_history = JobHistory(storage, self.signer, self.key_prefix)  # {prefix}-history/: outlives the session
        self._resources = ExecutorResources(
            scheduler=self.scheduler, backend=backend, storage=storage, manifests=self._records,
            lease=self._lease, history=self._job_history, session_prefix=self.prefix, keep_temp=config.keep_temp,
            scratch=self.scratch,
        )
        # Garbage collected: released once its calls finish. Exit is lifecycle's hook, which
        # waits for the calls first.
        self._finalizer = weakref.finalize(self, self._resources.close_in_background)
        self._finalizer.atexit = False

    # ---- the one seam: a job of calls --------------------------------------------------------
    def run_job(
        self, fn: Callable[..., Any], calls: list[Calls], options: JobOptions | None = None, *, progress: bool = False
    ) -> Job:
        """Stage ``fn`` and its calls (one task per inner list) and hand the job to the scheduler.

        The job's futures are nobody's yet: it keeps them until it leaves the history.
        ``progress`` shows a progress bar when the executor's ``progress`` option allows.

        Raises:
            RuntimeError: the session is shut down.
            SerializationError: ``fn`` or an argument cannot be pickled.
        """
        job = self._new_job(fn, options)
        batch = self._add_tasks(job, calls)
        if progress and progress_enabled(self.config.progress):
            JobProgress(job, getattr(fn, "__name__", "map"))
        if progress and self.config.verbose:  # a map_reduce phase: its summary when it ends
            SummaryPrinter(job)
        self._launch(job, batch, fn)
        return job

    def submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], options: JobOptions | None
    ) -> LambdaFuture:
        """``fn(*args, **kwargs)`` as a task of a job of submits; its future is the caller's alone.
        With futures among the arguments it starts once they are done (``driver.pipeline``).

        A submit joins the job of the submits just before it when they have the same function
        (the same pickle) and settings, no budget, and that job's newest call is not done yet:
        a burst of submits is a few jobs (at most ``SUBMITS_PER_JOB`` tasks each), not one job,
        one job record and one history record per call. A submit made once every earlier one
        is done, or after any other job, starts a job of its own.
        """
        settings = self._job_settings(fn, options)
        function_key = self.stager.stage_function(fn)
        key = (function_key, settings) if settings.budget_usd is None else None  # a budget is per call
        with self._lock:  # joins one at a time: a task that fails staging is the job's last
            self.check_open()
            joined = self._join_submits(key)
            if joined is not None:
                job, task = joined
                try:
                    batch = self._add_tasks(job, [[(args, kwargs)]], joined=task)
                except BaseException:
                    self._close_submits()  # its other tasks finish it
                    raise
                future = task.futures[0]  # held here: once settled the job lets go of it
                job.claim(future)
                self._launch(job, batch)
                return future
        job = self._new_job(
            fn, options, sealed=key is None, submits=key is not None, settings=settings, function_key=function_key
        )
        batch = self._add_tasks(job, [[(args, kwargs)]])
        future = batch.tasks[0].futures[0]  # held here before launch: once settled the job lets go of it
        job.claim(future)
        self._launch(job, batch, fn, submits=key)
        return future

    def map(
        self,
        fn: Callable[..., T],
        iterables: tuple[Iterable[Any], ...],
        *,
        timeout: float | None,
        chunksize: int,
        options: JobOptions,
        buffersize: int | None,
        unpack: UnpackMode | None = None,
    ) -> MapIterator[T]:
        """A streaming map: one job, its input read as its results are consumed (``LambdaExecutor.map``)."""
        called = time.monotonic()  # timeout counts from the call, as in concurrent.futures
        if not iterables:
            raise ConfigurationError("map() needs at least one iterable of arguments")
        if not is_whole_number(chunksize) or chunksize < 1:
            raise ConfigurationError(f"chunksize={chunksize!r}: give a whole number >= 1")
        check_map_timeout(timeout)
        deadline = None if timeout is None else called + timeout
        check_buffersize(buffersize)
        check_unpack(unpack, iterables)
        check_plain_function(fn)
        window = int(buffersize) if buffersize is not None else default_buffersize(self.backend.capacity)
        # An upstream map is read as its futures: each call then waits for its own upstream call only.
        inputs = tuple(it.futures() if isinstance(it, MapIterator) else it for it in iterables)
        chunks = map_calls(fn, inputs, int(chunksize), unpack, self.config)
        first = list(itertools.islice(chunks, window))  # read before launch: its errors are raised here
        if not first:
            return MapIterator.empty()
        job = self._new_job(fn, options, sealed=False)
        added = self._add_tasks(job, first)
        tasks = added.tasks
        progress = JobProgress(job, getattr(fn, "__name__", "map")) if progress_enabled(self.config.progress) else None
        self._launch(job, added, fn, sealed=len(first) < window)

        def feed(n: int) -> list[list[LambdaFuture]]:
            batch = list(itertools.islice(chunks, n))  # the user's iterator: read outside the lock
            if not batch:  # the input ended (after a shutdown too: that is no error)
                self.seal(job)
                return []
            with self._lock:  # staged and launched before a shutdown seals the job, or not at all
                self.check_open()
                more = self._add_tasks(job, batch)
                self._launch(job, more, sealed=len(batch) < n)
            if progress is not None:
                progress.track(more.tasks)
            return [task.futures for task in more.tasks]

        return MapIterator(
            job, [task.futures for task in tasks], feed, lambda: self.seal(job),
            buffersize=window, exhausted=len(first) < window, deadline=deadline,
            summary=SummaryPrinter(job) if self.config.verbose else None,
        )

    def seal(self, job: Job) -> None:
        """No task will be added to ``job`` (a streaming map's iterator was closed or dropped)."""
        if self._resources.started:
            self.scheduler.seal(job)

    def share(self, obj: T) -> Shared[T]:
        """Store ``obj`` once for every task to read through the handle's ``.value``."""
        self.check_open()
        self._lease.hold()
        return self.stager.share(obj)

    def attach(self, job_id: str) -> Job:
        """Collect a durable job of another driver on this storage (``LambdaExecutor.attach``)."""
        self.check_open()
        job_prefix = job_prefix_of(self.key_prefix, job_id)
        job = load_job(self.storage, job_prefix, job_id, self.signer, backend=self.backend.name, region=self.config.region)
        self._lease.hold_session_of(job_prefix)  # the dead driver's lease has lapsed: this one keeps it
        remaining = collect_stored_results(self.storage, job, self.signer)
        self._records.job_attached(job)
        self._job_history.track(job)
        with self._lock:
            self.check_open()
            self._resources.adopted_prefixes.append(job_prefix)
            self.remember(job)
            if remaining:
                self._start()
        if remaining:
            self.scheduler.submit(job)
        else:
            job.notify_done()  # every result was already there: the job's numbers are final
        return job

    # ---- history -----------------------------------------------------------------------------
    @property
    def jobs(self) -> list[Job | MapReduceJob]:
        """The most recent jobs, oldest first (at most ``JOB_HISTORY``)."""
        return list(self._history)

    def remember(self, job: Job | MapReduceJob) -> None:
        """Add ``job`` to the history (the oldest falls out): a map_reduce adds its whole job.
        Submits no longer join the job of submits before it (``ex.last_job`` is this one)."""
        with self._lock:
            if self._open_submits is not None and self._open_submits[0] is not job:
                self._close_submits()
            self._history.append(job)

    def forget(self, jobs: Iterable[Job]) -> None:
        """Take ``jobs`` out of the history (a map_reduce's phases, once its whole job is in)."""
        gone = {id(job) for job in jobs}
        kept = [job for job in self._history if id(job) not in gone]
        self._history.clear()
        self._history.extend(kept)

    # ---- lifecycle ---------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        """Whether the scheduler and backend were started (by the first job)."""
        return self._resources.started

    def check_open(self) -> None:
        """Raise ``RuntimeError`` when no new work may start (shut down, interpreter exiting)."""
        if interpreter_exiting():
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        self.scheduler.check_alive()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more work; release everything once the submitted calls have finished."""
        with self._lock:
            self._closed = True
        if cancel_futures:
            self._pipeline.cancel_waiting()  # first: cancelled, not failed by a cancelled upstream
            self._resources.cancel_pending()
        if wait:
            self._resources.close()
        else:
            self._resources.close_in_background()

    def terminate(self) -> None:
        """Release everything now: calls not started are cancelled, running ones fail."""
        with self._lock:
            self._closed = True
        self._pipeline.cancel_waiting()
        if self._resources.started:
            self.scheduler.seal_all()
        self._resources.close(abandon=True)

    def cleanup(self) -> int:
        """Delete every object this session wrote; return how many were deleted."""
        return self._resources.cleanup()

    # ---- building and launching jobs ---------------------------------------------------------
    def _join_submits(self, key: SubmitsKey | None) -> tuple[Job, Task] | None:
        """The job of submits a submit of ``key`` joins and its new task; else None, and the
        job of submits (if any) is closed: this submit starts a job of its own (called holding ``_lock``)."""
        if key is not None and self._open_submits is not None:
            job, open_key = self._open_submits
            if open_key == key:
                task = job.join_task(SUBMITS_PER_JOB)
                if task is not None:
                    return job, task
        self._close_submits()
        return None

    def _close_submits(self) -> None:
        """No submit joins the job of submits any more: it finishes once its tasks settle."""
        with self._lock:
            opened, self._open_submits = self._open_submits, None
        if opened is not None and not opened[0].seal_unless_idle():
            self.seal(opened[0])  # every task settled (one that failed staging was discarded): finish it now

    def _start(self) -> None:
        """Start the scheduler and backend before the first job (called holding ``_lock``);
        stage the initializer, which every event of the session names."""
        if self._initializer is not None and self.scheduler.initializer_key is None:
            self.scheduler.initializer_key = self.stager.stage_function(self._initializer)
        self._resources.start()

    def _job_settings(self, fn: Callable[..., Any], options: JobOptions | None) -> JobSettings:
        """The settings a job of ``fn`` runs with, once the session takes it (the lease held)."""
        self.check_open()
        check_plain_function(fn)
        settings = (options or JobOptions()).resolve(self.config)
        if settings.extra_env and self.backend.shares_driver_process:
            raise ConfigurationError(
                f"extra_env ({', '.join(settings.extra_env)}) needs tasks in processes of their own: the "
                f"{self.backend.name} backend runs them as threads of this driver, whose environment they "
                "would change. Use backend='local' (worker processes) or 'aws'"
            )
        self._lease.hold()
        return settings

    def _new_job(
        self,
        fn: Callable[..., Any],
        options: JobOptions | None,
        *,
        sealed: bool = True,
        submits: bool = False,
        settings: JobSettings | None = None,
        function_key: str | None = None,
    ) -> Job:
        """A job with no task yet, its function staged; ``sealed=False`` for a streaming map,
        ``submits`` for a job later submits may join (``settings`` and ``function_key``: resolved)."""
        settings = settings if settings is not None else self._job_settings(fn, options)
        function_key = function_key if function_key is not None else self.stager.stage_function(fn)
        region = getattr(self.backend, "region", None) or self.config.region
        architecture = getattr(self.backend, "architecture", "x86_64")  # priced by the cost model
        budget = None if settings.budget_usd is None else JobBudget.for_job(settings.budget_usd, region, architecture)
        number = next(self._job_numbers)
        job = Job(
            f"{self.session_id}-{number:04d}",
            f"{self.prefix}/{number:04d}",
            function_key,
            memory_mb=settings.memory_mb,
            timeout_s=settings.timeout_s,
            backend=self.backend.name,
            region=region,
            architecture=architecture,
            max_retries=settings.retries,
            retry_on=settings.retry_on,
            speculate=settings.speculate,
            sealed=sealed,
            extra_env=settings.extra_env,
            escalate_memory=settings.escalate_memory,
            max_memory_mb=settings.max_memory_mb,
            budget=budget,
            seals_when_idle=submits,
            arguments_signer=self.signer,
        )
        if self.scratch is not None:  # its arguments' big buffers, once no attempt needs them
            job.add_done_callback(self.scratch.release_arguments)
        return job

    def _add_tasks(self, job: Job, calls: list[Calls], *, joined: Task | None = None) -> TaskBatch:
        """Add one task per inner list of calls to ``job``: staged (and, durable, in its
        manifest) unless a future among its arguments is still pending; such a task waits
        for its futures (``driver.pipeline``) once ``_launch`` gave the job to the scheduler.
        ``joined``: the task a submit already added for its one call (``Job.join_task``)."""
        first = job.task_count if joined is None else joined.task_id
        added: list[Task] = []
        ready: list[Task] = []
        ready_calls: list[Calls] = []
        waiting: list[WaitingCalls] = []
        try:
            for task_calls in calls:
                task = joined if joined is not None else job.new_task(len(task_calls))
                added.append(task)
                upstream = futures_in(task_calls)
                if not upstream:
                    ready.append(task)
                    ready_calls.append(task_calls)
                elif all(f.done() and not f.cancelled() and f.exception() is None for f in upstream):
                    ready.append(task)
                    ready_calls.append(with_values(task_calls, self._pipeline.reference))
                else:
                    waiting.append(WaitingCalls(task, task_calls, upstream))
            if ready:
                self._tasks.stage(job, ready, ready_calls)
        except BaseException:
            job.discard_tasks_from(first)  # never launched: the job must not wait for them
            raise
        return TaskBatch(added, ready, waiting)

    def _launch(
        self,
        job: Job,
        batch: TaskBatch,
        fn: Callable[..., Any] | None = None,
        *,
        sealed: bool = False,
        submits: SubmitsKey | None = None,
    ) -> None:
        """Hand ``batch``'s staged tasks to the scheduler, and its waiting ones to the pipeline;
        ``fn`` on a job's first launch (it joins the history); ``sealed`` when no task will
        follow (a streaming map's input ended); ``submits``: later submits of this function
        and these settings may join the job."""
        with self._lock:
            self.check_open()
            self._start()
            if fn is not None:
                self.remember(job)
            if batch.ready or fn is not None:  # the first launch registers the job, even with every task waiting
                self.scheduler.submit(job, batch.ready)
            if sealed and not job.sealed:
                self.scheduler.seal(job)
            if submits is not None:
                self._open_submits = (job, submits)
        if batch.waiting:  # after the job is the scheduler's: a task settled at once may finish it
            self._pipeline.wait_for(batch.waiting)
        if fn is not None:
            self._records.job_submitted(job, fn)
            self._job_history.track(job, fn)
