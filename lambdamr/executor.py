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

import concurrent.futures
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from lambdamr.backends import Backend, backend_class, executor_config
from lambdamr.config import JobOptions
from lambdamr.data.shared import Shared
from lambdamr.driver.bound_executor import BoundExecutor
from lambdamr.driver.callables import check_plain_function
from lambdamr.driver.inputs import UnpackMode
from lambdamr.driver.job import Job
from lambdamr.driver.map_reduce import run_map_reduce, run_map_then_reduce
from lambdamr.driver.map_reduce_job import MapReduceJob
from lambdamr.driver.session import JOB_HISTORY, Session
from lambdamr.driver.summary import JobSummary
from lambdamr.errors import ConfigurationError
from lambdamr.futures import LambdaFuture, MapIterator
from lambdamr.shuffle.plan import MapReduceOptions
from lambdamr.signing import Signer
from lambdamr.storage import Storage, storage_from_url

T = TypeVar("T")

__all__ = ["JOB_HISTORY", "LambdaExecutor"]


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
        backend_name = backend.name if isinstance(backend, Backend) else backend
        storage_url = storage if isinstance(storage, str) else None
        self.config = executor_config(backend=backend_name, storage=storage_url, **options)
        store, base_prefix = self._open_storage(storage)
        if not isinstance(backend, Backend):
            cls = backend_class(self.config.backend)
            if store.kind == "local" and not cls.supports_local_storage:
                raise ConfigurationError(
                    f"the {self.config.backend!r} backend cannot read a local folder: give S3 storage, "
                    "e.g. storage='s3://BUCKET/lambdamr' (created by `lambdamr deploy`)"
                )
            backend = cls.from_config(self.config, store)
        #: what this executor owns (storage, backend, scheduler, jobs); map_reduce runs on it too
        self.session = Session(
            self.config, store, base_prefix, backend, (initializer, tuple(initargs)) if initializer is not None else None
        )

    def _open_storage(self, storage: str | Storage | None) -> tuple[Storage, str]:
        if isinstance(storage, Storage):
            return storage, ""
        url = self.config.storage
        if not url:
            url = backend_class(self.config.backend).default_storage_url(self.config) or self.config.storage_url
        return storage_from_url(url, region=self.config.region, endpoint_url=self.config.endpoint_url)

    # ---- what the session holds, by name ----------------------------------------------------
    @property
    def storage(self) -> Storage:
        """Where this executor's bytes live."""
        return self.session.storage

    @property
    def backend(self) -> Backend:
        """Where its tasks run."""
        return self.session.backend

    @property
    def session_id(self) -> str:
        """This executor's session id (``{UTC time}-{6 hex digits}``)."""
        return self.session.session_id

    @property
    def session_prefix(self) -> str:
        """The key prefix under which every object of this executor lives."""
        return self.session.prefix

    @property
    def key_prefix(self) -> str:
        """The key prefix of every session on this storage (``attach`` looks there)."""
        return self.session.key_prefix

    @property
    def signer(self) -> Signer:
        """Signs and verifies every object this executor writes and reads."""
        return self.session.signer

    @property
    def durable(self) -> bool:
        """Whether jobs store every result and a task manifest (``attach`` can collect them)."""
        return self.session.durable

    # ---- concurrent.futures API -----------------------------------------------------------
    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> LambdaFuture:
        """Run ``fn(*args, **kwargs)`` remotely; return its future (a task of the job of the
        submits before it while that job runs, else of a job of its own: docs/futures.md)."""
        return self.session.submit(fn, args, kwargs, None)

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        memory_mb: int | None = None,
        timeout_s: float | None = None,
        extra_env: Mapping[str, str] | None = None,
        unpack: UnpackMode | None = None,
        budget_usd: float | None = None,
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
            extra_env: environment variables set around each of this job's tasks (added to
                the executor's ``extra_env``); never logged (``docs/task_storage.md``).
            unpack: ``"kwargs"``: each item (of one iterable) is a dict and the call is
                ``fn(**item)``; ``"args"``: a tuple or list, ``fn(*item)``. Default None:
                ``fn(item)``, a dict or tuple is one argument (``concurrent.futures``).
            budget_usd: this job's dollar budget: past it, the tasks not launched fail with
                ``BudgetExceededError`` (docs/budget.md).

        Raises:
            ConfigurationError: iterables of different lengths, or a bad option.
            SerializationError: ``fn`` or an argument cannot be pickled (names the culprit).
            Errors of input read later (a pickling error, different lengths) are raised by
            the iteration when it reaches them, after the results before them.
        """
        options = JobOptions(memory_mb=memory_mb, timeout_s=timeout_s, extra_env=extra_env, budget_usd=budget_usd)
        return self.session.map(
            fn, iterables, timeout=timeout, chunksize=chunksize, options=options, buffersize=buffersize, unpack=unpack
        )

    def share(self, obj: T) -> Shared[T]:
        """Store ``obj`` once for every task to read through the returned handle's ``.value``."""
        return self.session.share(obj)

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
        options = MapReduceOptions(
            reducers=reducers, partition=partition, combine=combine, output=output, output_format=output_format,
            mappers=mappers, retries=retries, keep_intermediate=keep_intermediate,
            reduce_budget_mb=reduce_budget_mb, memory_mb=memory_mb, timeout_s=timeout_s,
        )
        return run_map_reduce(self.session, map_fn, inputs, reduce_fn, options)

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
        return run_map_then_reduce(
            self.session, map_fn, inputs, reduce_fn,
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
        self.session.shutdown(wait, cancel_futures=cancel_futures)

    def terminate_workers(self) -> None:
        """Shut down without waiting for anything (Python 3.14's ``ProcessPoolExecutor``
        has the same): calls not started are cancelled, running ones fail with
        ``BackendError``, the workers are stopped and the temp objects deleted."""
        self.session.terminate()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None and not issubclass(exc_type, Exception):
            # Ctrl-C (or any non-Exception interruption) must not wait for running tasks.
            self.terminate_workers()
        else:
            self.shutdown(wait=True)

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
        return self.session.attach(job_id)

    def cleanup(self) -> int:
        """Delete every object this executor wrote; return how many were deleted."""
        return self.session.cleanup()

    # ---- options and reporting ----------------------------------------------------------
    def with_options(
        self,
        *,
        memory_mb: int | None = None,
        timeout_s: float | None = None,
        retries: int | None = None,
        retry_on: tuple[type[BaseException], ...] | None = None,
        speculate: bool | None = None,
        extra_env: Mapping[str, str] | None = None,
        escalate_memory: bool | None = None,
        max_memory_mb: int | None = None,
        budget_usd: float | None = None,
    ) -> BoundExecutor:
        """A view of this executor whose submit/map use other per-job settings.

        Args:
            memory_mb / timeout_s: Lambda memory and per-task timeout.
            retries / retry_on: re-run a task up to ``retries`` times when it raises one of the
                ``retry_on`` exception types (infrastructure failures are always retried);
                naming ``TaskTimeoutError`` or ``TaskOutOfMemoryError`` re-runs those too.
            speculate: launch a backup of straggling tasks near the end of the job.
            extra_env: environment variables of the view's tasks (added to the executor's).
            escalate_memory / max_memory_mb: re-run a task that ran out of memory or time with
                twice the memory, up to ``max_memory_mb`` (default 10,240 MB), within ``retries``.
            budget_usd: each job's dollar budget (docs/budget.md).
        """
        options = JobOptions(
            memory_mb=memory_mb, timeout_s=timeout_s, retries=retries, retry_on=retry_on, speculate=speculate,
            extra_env=extra_env, escalate_memory=escalate_memory, max_memory_mb=max_memory_mb, budget_usd=budget_usd,
        )
        return BoundExecutor(self.session, options, map_reduce=self.map_reduce, map_then_reduce=self.map_then_reduce)

    @property
    def jobs(self) -> list[Job | MapReduceJob]:
        """The most recent jobs, oldest first (at most ``JOB_HISTORY``): their summaries,
        timings and logs. A job keeps no result its caller consumed (see ``lambdamr.driver.job.Task``)."""
        return self.session.jobs

    @property
    def last_job(self) -> Job | MapReduceJob | None:
        """The most recent job (for ``.summary()``); after ``map_reduce``, the whole run."""
        jobs = self.session.jobs
        return jobs[-1] if jobs else None

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

    def __repr__(self) -> str:
        return f"<LambdaExecutor backend={self.backend.name} storage={self.storage.url(self.session_prefix)}>"
