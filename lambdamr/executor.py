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

import atexit
import concurrent.futures
import itertools
import logging
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .access import referenced_reads
from .backends import Backend, backend_class
from .bound_executor import BoundExecutor
from .callables import check_plain_function
from .config import ExecutorConfig, JobOptions, is_whole_number
from .errors import ConfigurationError, LambdaMRError
from .futures import LambdaFuture
from .job import Job, JobSummary
from .lease import SessionLease
from .manifest import ManifestWriter
from .map_iterator import MapIterator, check_map_timeout, zip_strict
from .progress import JobProgress, progress_enabled
from .recovery import collect_stored_results, job_prefix_of, load_job, write_task_manifest
from .scheduler import Scheduler
from .shared import Shared
from .signing import Signer
from .staging import Stager
from .storage import Storage, storage_from_url

T = TypeVar("T")
log = logging.getLogger("lambdamr")


class LambdaExecutor(concurrent.futures.Executor):
    """Run Python functions on AWS Lambda or the local backend, the ``concurrent.futures`` way.

    Args:
        backend: ``"local"`` (default: worker processes on this machine), ``"aws"`` (Lambda,
            after ``lambdamr deploy``), ``"inline"`` (threads; for debugging), or a ``Backend``.
        storage: where bytes live: ``"s3://bucket/prefix"``, a folder, or a ``Storage``.
        **options: any ``ExecutorConfig`` field (memory_mb, timeout_s, workers, retries,
            keep_temp, progress, verbose, prefix, region, endpoint_url...). Unset options come
            from ``LAMBDAMR_*`` environment variables, then defaults.

    Raises:
        ConfigurationError: an option is unknown or out of range.
    """

    def __init__(self, backend: str | Backend | None = None, *, storage: str | Storage | None = None, **options: Any) -> None:
        backend_name = backend.name if isinstance(backend, Backend) else backend
        storage_url = storage if isinstance(storage, str) else None
        self.config = ExecutorConfig.resolve(backend=backend_name, storage=storage_url, **options)
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
        self._adopted_prefixes: list[str] = []  # jobs of earlier drivers collected by attach()
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
        self._lock = threading.Lock()
        self._started = False
        self._shutdown = False
        self.jobs: list[Job] = []
        self._manifests = ManifestWriter(self.storage, self.signer, keep_logs=self.config.keep_temp)  # {job}/job.json
        self._lease = SessionLease(self.storage, self.session_prefix)  # what `lambdamr clean` spares
        _live_executors.add(self)

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
        return self._run_job(fn, [[(args, kwargs)]]).futures[0]

    def map(  # type: ignore[override]
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        memory_mb: int | None = None,
        timeout_s: float | None = None,
    ) -> MapIterator[T]:
        """Apply ``fn`` to every item of ``iterables`` as ONE job; results in input order.

        Args:
            timeout: seconds the whole iteration may take (``concurrent.futures`` semantics).
            chunksize: calls per task; raise it when calls are much shorter than an invoke.
            memory_mb / timeout_s: this job's Lambda memory and per-task timeout.

        Raises:
            ConfigurationError: iterables of different lengths, or a bad option.
            SerializationError: ``fn`` or an argument cannot be pickled (names the culprit).
        """
        return self._map(fn, iterables, timeout, chunksize, JobOptions(memory_mb=memory_mb, timeout_s=timeout_s))

    def _map(
        self, fn: Callable[..., T], iterables: tuple, timeout: float | None, chunksize: int, options: JobOptions
    ) -> MapIterator[T]:
        if not iterables:
            raise ConfigurationError("map() needs at least one iterable of arguments")
        if not is_whole_number(chunksize) or chunksize < 1:
            raise ConfigurationError(f"chunksize={chunksize!r}: give a whole number >= 1")
        check_map_timeout(timeout)
        check_plain_function(fn)
        items = zip_strict(iterables)
        if not items:
            return MapIterator(None, timeout, False)
        chunks: list[list[tuple[tuple, dict]]] = [
            [(args, {}) for args in items[i : i + chunksize]] for i in range(0, len(items), chunksize)
        ]
        job = self._run_job(fn, chunks, options, progress=True)
        return MapIterator(job, timeout, self.config.verbose)

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
        from .shuffle import MapReduceOptions, run_map_reduce

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
        from .shuffle import run_map_then_reduce

        return run_map_then_reduce(
            self, map_fn, inputs, reduce_fn,
            retries=retries, keep_intermediate=keep_intermediate, memory_mb=memory_mb, timeout_s=timeout_s,
        )

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the executor and delete its temp objects (unless ``keep_temp``).

        With ``cancel_futures`` pending calls are cancelled; with ``wait`` the call returns
        when running ones have finished. Without ``wait`` running calls are abandoned and
        their futures fail with ``BackendError``.
        """
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
        if cancel_futures or not wait:
            for job in self.jobs:
                for future in job.futures:
                    future.cancel()
        if wait:
            for job in self.jobs:
                job.wait()
        if self._started:
            self._scheduler.stop()
            self.backend.shutdown(wait=wait)
        self._manifests.close(flush=self.config.keep_temp)  # before cleanup deletes them
        self._lease.release(delete_adopted=not self.config.keep_temp)
        if not self.config.keep_temp:
            self.cleanup()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # Ctrl-C (or any non-Exception interruption) must not wait for running tasks: cancel
        # what has not started, abandon the rest, stop the workers, delete temp objects.
        interrupted = exc_type is not None and not issubclass(exc_type, Exception)
        self.shutdown(wait=not interrupted, cancel_futures=interrupted)

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
        with self._lock:
            self._check_open()
            self._adopted_prefixes.append(job_prefix)
            self.jobs.append(job)
            if remaining and not self._started:
                self._scheduler.start()
                self._started = True
        if remaining:
            self._scheduler.submit(job)
        else:
            job.notify_done()  # every result was already there: the job's numbers are final
        return job

    def cleanup(self) -> int:
        """Delete every object this executor wrote; return how many were deleted."""
        try:
            for prefix in self._adopted_prefixes:
                self.storage.delete_prefix(prefix + "/")
            return self.storage.delete_prefix(self.session_prefix + "/")
        except LambdaMRError as exc:
            log.warning("lambdamr: could not delete temp objects under %s: %s", self.storage.url(self.session_prefix), exc)
            return 0

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
    def last_job(self) -> Job | None:
        """The most recent job (for ``.summary()``)."""
        return self.jobs[-1] if self.jobs else None

    def summary(self) -> JobSummary | None:
        """The summary of the most recent job."""
        job = self.last_job
        return job.summary() if job is not None else None

    # ---- internals ------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")

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

        ``overrides`` are ``JobOptions`` fields (memory_mb, timeout_s, retries, ...).
        """
        self._check_open()
        check_plain_function(fn)
        settings = (options or JobOptions()).merged(**overrides).resolve(self.config)
        self.backend.check_access(reads=referenced_reads(calls))
        self._lease.hold()
        function_key = self._stager.stage_function(fn)
        number = next(self._job_numbers)
        job = Job(
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
        )
        tasks = [job.new_task(len(task_calls)) for task_calls in calls]
        self._stager.stage_calls(job.prefix, tasks, calls)
        if self.durable:
            write_task_manifest(self.storage, job, self.signer)
        if progress and progress_enabled(self.config.progress):
            JobProgress(job, getattr(fn, "__name__", "map"))
        with self._lock:
            self._check_open()
            if not self._started:
                self._scheduler.start()
                self._started = True
            self.jobs.append(job)
        self._manifests.job_submitted(job, fn)
        self._scheduler.submit(job)
        return job

    def __repr__(self) -> str:
        return f"<LambdaExecutor backend={self.backend.name} storage={self.storage.url(self.session_prefix)}>"


_live_executors: weakref.WeakSet[LambdaExecutor] = weakref.WeakSet()


@atexit.register
def _shutdown_at_exit() -> None:
    """An executor never shut down (no ``with``, an interrupted script) still stops its
    workers and deletes its temp objects when the interpreter exits."""
    for executor in list(_live_executors):
        try:
            executor.shutdown(wait=False, cancel_futures=True)
        except Exception as exc:  # nothing can be raised to anyone at exit
            log.warning("lambdamr: shutting down %r at exit failed: %s", executor, exc)
