"""``LambdaExecutor``: ``concurrent.futures`` for AWS Lambda (and its local stand-ins).

How a call travels::

    driver: ex.map(fn, items)
      │ cloudpickle fn once ──────────────► storage  {prefix}/{session}/fn/{sha256}
      │ pickle each task's calls: small ──► inside the invocation event
      │                           large ──► storage  {prefix}/{session}/{job}/args (one object, byte ranges)
      │ scheduler: ≤ capacity events in flight
      ▼
    backend.invoke(event) ── Lambda Invoke / local worker socket ──► runtime.handler(event, context)
                                                                       │ fn = get(function key)   (cached while warm)
                                                                       │ args = event / ranged get
                                                                       │ run; catch exception + traceback
                                                                       ▼
                               result record ◄── storage {job}/results/{task}.{attempt}  (and/or the response)
      ▲
    scheduler: response or listing → decode → LambdaFuture.set_result / set_exception

The executor knows neither AWS nor the local machine: it talks to a ``Backend`` and a
``Storage`` chosen by name from their registries.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import logging
import random
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from lambdamr.backends import Backend, backend_class, executor_config
from lambdamr.config import JobOptions, is_whole_number
from lambdamr.data.shared import Shared
from lambdamr.driver.access import referenced_reads
from lambdamr.driver.attach import collect_stored_results, job_prefix_of, load_job, write_task_manifest
from lambdamr.driver.bound_executor import BoundExecutor
from lambdamr.driver.callables import check_plain_function
from lambdamr.driver.history import JobHistory
from lambdamr.driver.job import Job, JobSummary, Task
from lambdamr.driver.jobstore import ManifestWriter
from lambdamr.driver.lease import SessionLease
from lambdamr.driver.lifecycle import ExecutorResources, interpreter_exiting
from lambdamr.driver.progress import JobProgress, progress_enabled
from lambdamr.driver.scheduler import Scheduler
from lambdamr.driver.staging import Stager
from lambdamr.errors import ConfigurationError, StorageUnavailable
from lambdamr.futures import LambdaFuture
from lambdamr.map_iterator import (
    MapIterator,
    check_buffersize,
    check_map_timeout,
    chunks_of,
    default_buffersize,
    strict_rows,
)
from lambdamr.report import SummaryPrinter
from lambdamr.signing import Signer
from lambdamr.storage import Storage, storage_from_url

T = TypeVar("T")
log = logging.getLogger("lambdamr")

#: waits between attempts to stage a batch of tasks while the store is throttling
STAGING_BACKOFF_S = (0.05, 0.2, 0.8)
#: jobs ``LambdaExecutor.jobs`` remembers (their timings and outcomes, never their results)
JOB_HISTORY = 100


class LambdaExecutor(concurrent.futures.Executor):
    """Run Python functions on AWS Lambda or the local backend, the ``concurrent.futures`` way.

    Args:
        backend: ``"local"`` (default: worker processes on this machine), ``"aws"`` (Lambda,
            after ``lambdamr deploy``), ``"inline"`` (threads; for debugging), or a ``Backend``.
        storage: where bytes live: ``"s3://bucket/prefix"``, a folder, or a ``Storage``.
        initializer / initargs: ``initializer(*initargs)`` runs once in every worker process
            or warm Lambda container before its first task (as in ``ProcessPoolExecutor``;
            the inline backend runs it once in this process). When it raises, the tasks sent
            there fail with ``InitializerError`` naming it.
        **options: any ``ExecutorConfig`` field (memory_mb, timeout_s, retries, keep_temp,
            progress, verbose, prefix, region, endpoint_url...) or an option of the chosen
            backend (local: workers; aws: function_name, invocation_type, max_concurrency,
            lambda_endpoint_url). Unset options come from ``LAMBDAMR_*`` environment
            variables, then defaults.

    Raises:
        ConfigurationError: an option is unknown or out of range.
        TypeError: ``initializer`` is not callable.

    Shut it down (or use ``with``) to release its workers and temp objects: submitted calls
    finish first unless ``cancel_futures``; an executor garbage collected or still open at
    interpreter exit is released the same way once its calls have finished.
    """

    def __init__(
        self,
        backend: str | Backend | None = None,
        *,
        storage: str | Storage | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
        **options: Any,
    ) -> None:
        if initializer is not None:
            check_plain_function(initializer, "initializer")
        self._initializer = (initializer, tuple(initargs)) if initializer is not None else None
        backend_name = backend.name if isinstance(backend, Backend) else backend
        storage_url = storage if isinstance(storage, str) else None
        self.config = executor_config(backend=backend_name, storage=storage_url, **options)
        self.storage, base_prefix = self._open_storage(storage)
        if isinstance(backend, Backend):
            self.backend = backend
        else:
            cls = backend_class(self.config.backend)
            if self.storage.kind == "local" and not cls.supports_local_storage:
                raise ConfigurationError(
                    f"the {self.config.backend!r} backend cannot read a local folder: give S3 storage, "
                    "e.g. storage='s3://BUCKET/lambdamr' (created by `lambdamr deploy`)"
                )
            self.backend = cls.from_config(self.config, self.storage)
        self.session_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)
        prefix = "/".join(p for p in (base_prefix, self.config.prefix) if p)
        self.key_prefix = prefix
        self.session_prefix = f"{prefix}/{self.session_id}"
        self.durable = self.config.durable if self.config.durable is not None else not self.backend.reports_outcomes
        temp = self.storage.url(f"{prefix}/") + "*"  # every session's objects, not just this one's
        self.backend.check_access(reads=[temp], writes=[temp])
        self.signer = Signer(self.backend.signing_key())
        self._stager = Stager(
            self.storage,
            self.session_prefix,
            self.signer,
            inline_args_max=self.config.inline_args_max,
            max_payload_bytes=self.backend.max_payload_bytes,
        )
        self._scheduler = Scheduler(self.backend, self.storage, self.config, self.signer)
        self._job_numbers = itertools.count(1)
        self._lock = threading.RLock()  # reentrant: a streaming map stages and launches under it
        self._shutdown = False
        self._history: collections.deque[Job] = collections.deque(maxlen=JOB_HISTORY)
        self._manifests = ManifestWriter(self.storage, self.signer, keep_logs=self.config.keep_temp)  # {job}/job.json
        self._lease = SessionLease(self.storage, self.session_prefix)  # what `lambdamr clean` spares
        self._job_history = JobHistory(self.storage, self.signer, prefix)  # {prefix}/history/: outlives the session
        self._resources = ExecutorResources(
            scheduler=self._scheduler, backend=self.backend, storage=self.storage, manifests=self._manifests,
            lease=self._lease, history=self._job_history, session_prefix=self.session_prefix, keep_temp=self.config.keep_temp,
        )
        # Garbage collected: released once its calls finish, like ProcessPoolExecutor. Exit is
        # lifecycle's hook, which waits for the calls first.
        self._finalizer = weakref.finalize(self, self._resources.close_in_background)
        self._finalizer.atexit = False

    def _open_storage(self, storage: str | Storage | None) -> tuple[Storage, str]:
        if isinstance(storage, Storage):
            return storage, ""
        url = self.config.storage
        if not url:
            url = backend_class(self.config.backend).default_storage_url(self.config) or self.config.storage_url
        return storage_from_url(url, region=self.config.region, endpoint_url=self.config.endpoint_url)

    # ---- concurrent.futures API -----------------------------------------------------------
    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> LambdaFuture:
        """Run ``fn(*args, **kwargs)`` remotely; return its future (a one-task job)."""
        return self._submit(fn, args, kwargs, None)

    def _submit(self, fn: Callable[..., Any], args: tuple, kwargs: dict, options: JobOptions | None) -> LambdaFuture:
        job = self._new_job(fn, options)
        tasks = self._add_tasks(job, [[(args, kwargs)]])
        future = tasks[0].futures[0]  # held here before launch: once settled the job lets go of it
        job.claim(future)
        self._launch(job, tasks, fn)
        return future

    def map(  # type: ignore[override]
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        memory_mb: int | None = None,
        timeout_s: float | None = None,
    ) -> MapIterator[T]:
        """Apply ``fn`` to every item of ``iterables`` as ONE job; results in input order.

        The input is read as the results are consumed: at most ``buffersize`` tasks are
        launched ahead of the one being consumed, so an endless iterator streams and a
        result leaves the driver's memory once consumed and dropped.

        Args:
            timeout: seconds the whole iteration may take, from this call
                (``concurrent.futures`` semantics).
            chunksize: calls per task; raise it when calls are much shorter than an invoke.
            buffersize: tasks launched ahead (Python 3.14's ``Executor.map`` option); default
                twice the backend's capacity (its slots stay busy), at least 16.
            memory_mb / timeout_s: this job's Lambda memory and per-task timeout.

        Raises:
            ConfigurationError: iterables of different lengths, or a bad option.
            SerializationError: ``fn`` or an argument cannot be pickled (names the culprit).
            Errors of input read later (a pickling error, different lengths) are raised by
            the iteration when it reaches them, after the results before them.
        """
        options = JobOptions(memory_mb=memory_mb, timeout_s=timeout_s)
        return self._map(fn, iterables, timeout, chunksize, options, buffersize)

    def _map(
        self,
        fn: Callable[..., T],
        iterables: tuple,
        timeout: float | None,
        chunksize: int,
        options: JobOptions,
        buffersize: int | None = None,
    ) -> MapIterator[T]:
        called = time.monotonic()  # timeout counts from the call, as in concurrent.futures
        if not iterables:
            raise ConfigurationError("map() needs at least one iterable of arguments")
        if not is_whole_number(chunksize) or chunksize < 1:
            raise ConfigurationError(f"chunksize={chunksize!r}: give a whole number >= 1")
        check_map_timeout(timeout)
        deadline = None if timeout is None else called + timeout
        check_buffersize(buffersize)
        check_plain_function(fn)
        window = int(buffersize) if buffersize is not None else default_buffersize(self.backend.capacity)
        chunks = chunks_of(strict_rows(iterables), int(chunksize))
        first = list(itertools.islice(chunks, window))  # read before launch: its errors are raised here
        if not first:
            return MapIterator.empty()
        job = self._new_job(fn, options, sealed=False)
        tasks = self._add_tasks(job, first)
        progress = JobProgress(job, getattr(fn, "__name__", "map")) if progress_enabled(self.config.progress) else None
        self._launch(job, tasks, fn, sealed=len(first) < window)

        def feed(n: int) -> list[Task]:
            batch = list(itertools.islice(chunks, n))  # the user's iterator: read outside the lock
            if not batch:  # the input ended (after a shutdown too: that is no error)
                self._seal(job)
                return []
            with self._lock:  # staged and launched before a shutdown seals the job, or not at all
                self._check_open()
                more = self._add_tasks(job, batch) if batch else []
                self._launch(job, more, sealed=len(batch) < n)
            if progress is not None:
                progress.track(more)
            return more

        return MapIterator(
            job, tasks, feed, lambda: self._seal(job),
            buffersize=window, exhausted=len(first) < window, deadline=deadline, verbose=self.config.verbose,
        )

    def share(self, obj: T) -> Shared[T]:
        """Store ``obj`` once for every task to read through the returned handle's ``.value``."""
        self._check_open()
        self._lease.hold()
        return self._stager.share(obj)

    def map_reduce(
        self,
        map_fn: Callable[[Any], Iterable[tuple[Any, Any]]],
        inputs: Iterable[Any],
        reduce_fn: Callable[[Any, list[Any]], Any],
        *,
        reducers: int | None = None,
        partition: Callable[[Any, int], int] | None = None,
        combine: Callable[[Any, list[Any]], Any] | None = None,
        output: str | None = None,
        output_format: str = "pickle",
        mappers: int | None = None,
        retries: int = 2,
        keep_intermediate: bool = False,
        reduce_budget_mb: float | None = None,
        memory_mb: int | None = None,
        timeout_s: float | None = None,
    ) -> dict[Any, Any]:
        """Keyed MapReduce with a shuffle through storage: ``reduce_fn(key, values)`` per key.

        ``map_fn(item)`` yields (or returns a list or dict of) ``(key, value)`` pairs; every
        value of a key reaches one ``reduce_fn(key, values)`` call. Many mappers, many
        reducers: each mapper writes ONE object holding every reducer's partition, each reducer
        reads its part of each with ranged GETs. For ``reduce_fn(list_of_map_results)`` run
        once over whole results, use ``map_then_reduce``.

        Args:
            inputs: Python objects (one mapper each), or ``lambdamr.objects("s3://b/p/")``.
            reducers: how many reduce tasks (default: about sqrt(mappers)).
            partition: ``partition(key, reducers) -> int``; default a stable hash (never the
                salted ``hash()``); ``lambdamr.shuffle.RangePartitioner`` for sorted output.
            combine: ``combine(key, values) -> value`` pre-reduces inside each mapper; it may
                run zero or more times per key, so it must return what ``map_fn`` emits.
            output: ``s3://bucket/prefix`` or a folder: each reducer writes ``part-NNNNN``
                there (``output_format`` "pickle", "text" or "raw") instead of returning.
            mappers: group the items into this many map tasks (default: one per item).
            retries: re-runs of a map or reduce task that raised (mappers are never re-run
                because a reducer failed).
            keep_intermediate: keep the temp objects (for debugging) instead of deleting them.
            reduce_budget_mb: partition memory above which a reducer merges from /tmp
                (default: half its memory_mb, less the runtime's own).
            memory_mb / timeout_s: Lambda memory and per-task timeout of both phases.

        Returns:
            A ``MapReduceResult``: a dict ``key -> reduced value`` (empty with ``output``,
            then ``.output_keys``), with ``.stats`` (requests, bytes shuffled, times).

        Raises:
            The first task error that retries did not cure, after deleting the temp objects
            (also on Ctrl-C); ``SerializationError`` for pairs that are not pairs or keys
            that cannot be hashed or pickled, naming the item.
        """
        from lambdamr.driver.map_reduce import run_map_reduce
        from lambdamr.shuffle.plan import MapReduceOptions

        options = MapReduceOptions(
            reducers=reducers, partition=partition, combine=combine, output=output, output_format=output_format,
            mappers=mappers, retries=retries, keep_intermediate=keep_intermediate,
            reduce_budget_mb=reduce_budget_mb, memory_mb=memory_mb, timeout_s=timeout_s,
        )
        return run_map_reduce(self, map_fn, inputs, reduce_fn, options)

    def map_then_reduce(
        self,
        map_fn: Callable[[Any], T],
        inputs: Iterable[Any],
        reduce_fn: Callable[[list[T]], Any],
        *,
        retries: int = 2,
        keep_intermediate: bool = False,
        memory_mb: int | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """Whole-result reduction: return ``reduce_fn([map_fn(x) for x in inputs])``, all remote.

        One task per input runs ``map_fn`` and stores its result; then ONE remote task
        receives the list of every result, in input order (tiles to stitch, trees to vote),
        reading them from storage — they never pass through the driver. No keys, no shuffle:
        for per-key reduction use ``map_reduce``.
        """
        from lambdamr.driver.map_reduce import run_map_then_reduce

        return run_map_then_reduce(
            self, map_fn, inputs, reduce_fn,
            retries=retries, keep_intermediate=keep_intermediate, memory_mb=memory_mb, timeout_s=timeout_s,
        )

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more work; release the workers and delete the temp objects (unless
        ``keep_temp``) once every submitted call has finished.

        Args:
            wait: return only once that is done; without it, the calls finish and the
                executor is released on a background thread (and before interpreter exit).
            cancel_futures: first cancel every call no worker or container has yet.
        """
        with self._lock:
            self._shutdown = True
        if cancel_futures:
            self._resources.cancel_pending()
        if wait:
            self._resources.close()
        else:
            self._resources.close_in_background()

    def terminate_workers(self) -> None:
        """Shut down without waiting for anything (Python 3.14's ``ProcessPoolExecutor``
        has the same): calls not started are cancelled, running ones fail with
        ``BackendError``, the workers are stopped and the temp objects deleted."""
        with self._lock:
            self._shutdown = True
        if self._started:
            self._scheduler.seal_all()
        self._resources.close(abandon=True)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None and not issubclass(exc_type, Exception):
            # Ctrl-C (or any non-Exception interruption) must not wait for running tasks.
            self.terminate_workers()
        else:
            self.shutdown(wait=True)

    @property
    def _started(self) -> bool:
        return self._resources.started

    def attach(self, job_id: str) -> Job:
        """Collect a durable job started by another, perhaps dead, driver on the same storage.

        Futures of tasks whose results are stored settle at once; the other tasks run again
        on this executor's backend. The job's objects are deleted at this executor's shutdown
        (unless ``keep_temp``).

        Raises:
            ConfigurationError: not a job id, or the job was not durable or is gone.
            IntegrityError: its task manifest is unsigned, modified or another job's (stored
                results that do not verify are not an error: their tasks run again).
        """
        self._check_open()
        job_prefix = job_prefix_of(self.key_prefix, job_id)
        job = load_job(self.storage, job_prefix, job_id, self.signer, backend=self.backend.name, region=self.config.region)
        self._lease.hold_session_of(job_prefix)  # the dead driver's lease has lapsed: this one keeps it
        remaining = collect_stored_results(self.storage, job, self.signer)
        self._manifests.job_attached(job)
        self._job_history.track(job)
        with self._lock:
            self._check_open()
            self._resources.adopted_prefixes.append(job_prefix)
            self._remember(job)
            if remaining:
                self._start()
        if remaining:
            self._scheduler.submit(job)
        else:
            job.notify_done()  # every result was already there: the job's numbers are final
        return job

    def cleanup(self) -> int:
        """Delete every object this executor wrote; return how many were deleted."""
        return self._resources.cleanup()

    # ---- options and reporting ----------------------------------------------------------
    def with_options(
        self,
        *,
        memory_mb: int | None = None,
        timeout_s: float | None = None,
        retries: int | None = None,
        retry_on: tuple[type[BaseException], ...] | None = None,
        speculate: bool | None = None,
    ) -> BoundExecutor:
        """A view of this executor whose submit/map use other per-job settings.

        Args:
            memory_mb / timeout_s: Lambda memory and per-task timeout.
            retries / retry_on: re-run a task up to ``retries`` times when it raises one of the
                ``retry_on`` exception types (infrastructure failures are always retried).
            speculate: launch a backup of straggling tasks near the end of the job.
        """
        options = JobOptions(memory_mb=memory_mb, timeout_s=timeout_s, retries=retries, retry_on=retry_on, speculate=speculate)
        return BoundExecutor(self, options)

    @property
    def jobs(self) -> list[Job]:
        """The most recent jobs, oldest first (at most ``JOB_HISTORY``): their summaries,
        timings and logs. A job keeps no result its caller consumed (see ``lambdamr.driver.job.Task``)."""
        return list(self._history)

    @property
    def last_job(self) -> Job | None:
        """The most recent job (for ``.summary()``)."""
        return self._history[-1] if self._history else None

    def dashboard(self, port: int = 0, *, host: str = "127.0.0.1") -> Any:
        """Serve the live dashboard of this executor's storage (every job there, any driver's)
        and return it: ``.url``, ``.close()``; a notebook shows it inline (``lambdamr.dashboard``)."""
        from lambdamr.dashboard import open_dashboard
        from lambdamr.storage import reopen_storage

        # a connection of its own: the page's reads must not count in this executor's jobs
        return open_dashboard(reopen_storage(self.storage), self.key_prefix, self.signer, host=host, port=port)

    def summary(self) -> JobSummary | None:
        """The summary of the most recent job."""
        job = self.last_job
        return job.summary() if job is not None else None

    # ---- internals ------------------------------------------------------------------------
    def _check_open(self) -> None:
        if interpreter_exiting():
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        self._scheduler.check_alive()

    def _start(self) -> None:
        """Start the scheduler and backend before the first job (called holding ``_lock``);
        stage the initializer, which every event of the executor names."""
        if self._initializer is not None and self._scheduler.initializer_key is None:
            self._scheduler.initializer_key = self._stager.stage_function(self._initializer)
        self._resources.start()

    def _run_job(
        self,
        fn: Callable[..., Any],
        calls: list[list[tuple[tuple, dict]]],
        options: JobOptions | None = None,
        *,
        progress: bool = False,
        **overrides: Any,
    ) -> Job:
        """Stage ``fn`` and its calls (one task per inner list) and hand the job to the scheduler.

        ``overrides`` are ``JobOptions`` fields (memory_mb, timeout_s, retries, ...). The
        job's futures are nobody's yet: it keeps them until it leaves the history.
        """
        job = self._new_job(fn, options, **overrides)
        tasks = self._add_tasks(job, calls)
        if progress and progress_enabled(self.config.progress):
            JobProgress(job, getattr(fn, "__name__", "map"))
        if progress and self.config.verbose:  # a map_reduce phase: its summary when it ends
            SummaryPrinter(job)
        self._launch(job, tasks, fn)
        return job

    def _new_job(self, fn: Callable[..., Any], options: JobOptions | None, *, sealed: bool = True, **overrides: Any) -> Job:
        """A job with no task yet, its function staged; ``sealed=False`` for a streaming map."""
        self._check_open()
        check_plain_function(fn)
        settings = (options or JobOptions()).merged(**overrides).resolve(self.config)
        self._lease.hold()
        function_key = self._stager.stage_function(fn)
        number = next(self._job_numbers)
        return Job(
            f"{self.session_id}-{number:04d}",
            f"{self.session_prefix}/{number:04d}",
            function_key,
            memory_mb=settings.memory_mb,
            timeout_s=settings.timeout_s,
            backend=self.backend.name,
            region=getattr(self.backend, "region", None) or self.config.region,
            architecture=getattr(self.backend, "architecture", "x86_64"),  # priced by the cost model
            max_retries=settings.retries,
            retry_on=settings.retry_on,
            speculate=settings.speculate,
            sealed=sealed,
        )

    def _add_tasks(self, job: Job, calls: list[list[tuple[tuple, dict]]]) -> list[Task]:
        """Add one task per inner list of calls to ``job``, staged (and, durable, in its manifest)."""
        self.backend.check_access(reads=referenced_reads(calls))
        first = len(job.tasks)
        tasks = [job.new_task(len(task_calls)) for task_calls in calls]
        try:
            # A streaming map stages while results flow: a busy store (503) is waited out, as
            # result reads are, rather than failing the rest of the map. Writes are idempotent.
            for delay in (*STAGING_BACKOFF_S, None):
                try:
                    self._stager.stage_calls(job.prefix, tasks, calls)
                    if self.durable:
                        write_task_manifest(self.storage, job, self.signer, tasks)
                    break
                except StorageUnavailable:
                    if delay is None:
                        raise
                    time.sleep(delay * (0.5 + random.random()))
        except BaseException:
            del job.tasks[first:]  # never launched: the job must not wait for them
            raise
        return tasks

    def _launch(self, job: Job, tasks: list[Task], fn: Callable[..., Any] | None = None, *, sealed: bool = False) -> None:
        """Hand ``tasks`` to the scheduler; ``fn`` on a job's first launch (it joins the
        history); ``sealed`` when no task will follow (a streaming map's input ended)."""
        with self._lock:
            self._check_open()
            self._start()
            if fn is not None:
                self._remember(job)
            if tasks:
                self._scheduler.submit(job, tasks)
            if sealed and not job.sealed:
                self._scheduler.seal(job)
        if fn is not None:
            self._manifests.job_submitted(job, fn)
            self._job_history.track(job, fn)

    def _remember(self, job: Job) -> None:
        self._history.append(job)  # the oldest falls out: a bounded history

    def _seal(self, job: Job) -> None:
        """A streaming map stops reading its input (its iterator was closed or dropped)."""
        if self._started:
            self._scheduler.seal(job)

    def __repr__(self) -> str:
        return f"<LambdaExecutor backend={self.backend.name} storage={self.storage.url(self.session_prefix)}>"

