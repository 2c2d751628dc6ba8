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
import itertools
import logging
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from .backends import Backend, backend_class
from .config import ExecutorConfig, validate_memory, validate_timeout
from .errors import ConfigurationError, LambdaMRError
from .futures import LambdaFuture
from .job import Job, JobSummary
from .progress import JobProgress, progress_enabled
from .scheduler import Scheduler
from .shared import Shared
from .staging import Stager
from .storage import Storage, storage_from_url

T = TypeVar("T")
log = logging.getLogger("lambdamr")


class MapIterator(Iterator[T]):
    """The results of ``LambdaExecutor.map`` in input order; ``.job`` is the job behind them.

    Like ``concurrent.futures``: a result is returned, or its exception raised, when
    iteration reaches it; ``timeout`` bounds the whole iteration; closing the iterator early
    (or an exception) cancels the calls not yet started.
    """

    def __init__(self, job: Job | None, timeout: float | None, verbose: bool) -> None:
        self.job = job
        self._futures = list(job.futures) if job else []
        self._index = 0
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._verbose = verbose

    def __iter__(self) -> MapIterator[T]:
        return self

    def __next__(self) -> T:
        if self._index >= len(self._futures):
            self._finish()
            raise StopIteration
        future = self._futures[self._index]
        remaining = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
        try:
            value = future.result(remaining)
        except BaseException:
            self.close()
            raise
        self._index += 1
        return value

    def __len__(self) -> int:
        return len(self._futures) - self._index

    def close(self) -> None:
        """Cancel every call not started yet."""
        for future in self._futures[self._index :]:
            future.cancel()
        self._index = len(self._futures)

    def _finish(self) -> None:
        if self._verbose and self.job is not None:
            print(self.job.summary(), file=sys.stderr)
            self._verbose = False


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
        self.session_prefix = f"{prefix}/{self.session_id}"
        self._stager = Stager(
            self.storage,
            self.session_prefix,
            inline_args_max=self.config.inline_args_max,
            max_payload_bytes=self.backend.max_payload_bytes,
        )
        self._scheduler = Scheduler(self.backend, self.storage, self.config)
        self._job_numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._started = False
        self._shutdown = False
        self.jobs: list[Job] = []

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
        job = self._run_job(fn, [[(args, kwargs)]], memory_mb=None, timeout_s=None)
        return job.futures[0]

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
        if not iterables:
            raise ConfigurationError("map() needs at least one iterable of arguments")
        if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
            raise ConfigurationError(f"chunksize={chunksize!r}: give a whole number >= 1")
        items = _zip_strict(iterables)
        if not items:
            return MapIterator(None, timeout, False)
        chunks = [[(args, {}) for args in items[i : i + chunksize]] for i in range(0, len(items), chunksize)]
        job = self._run_job(fn, chunks, memory_mb=memory_mb, timeout_s=timeout_s, progress=True)
        return MapIterator(job, timeout, self.config.verbose)

    def share(self, obj: T) -> Shared[T]:
        """Store ``obj`` once for every task to read through the returned handle's ``.value``."""
        self._check_open()
        return self._stager.share(obj)

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
        if not self.config.keep_temp:
            self.cleanup()

    def cleanup(self) -> int:
        """Delete every object this executor wrote; return how many were deleted."""
        try:
            return self.storage.delete_prefix(self.session_prefix + "/")
        except LambdaMRError as exc:
            log.warning("lambdamr: could not delete temp objects under %s: %s", self.storage.url(self.session_prefix), exc)
            return 0

    # ---- options and reporting ----------------------------------------------------------
    def with_options(self, *, memory_mb: int | None = None, timeout_s: float | None = None) -> _BoundExecutor:
        """A view of this executor whose submit/map use another memory size or timeout."""
        return _BoundExecutor(self, memory_mb, timeout_s)

    @property
    def last_job(self) -> Job | None:
        """The most recent job (for ``.summary()``)."""
        return self.jobs[-1] if self.jobs else None

    def summary(self) -> JobSummary | None:
        """The summary of the most recent job."""
        return self.last_job.summary() if self.jobs else None

    # ---- internals ------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def _run_job(
        self,
        fn: Callable[..., Any],
        calls: list[list[tuple[tuple, dict]]],
        *,
        memory_mb: int | None,
        timeout_s: float | None,
        progress: bool = False,
    ) -> Job:
        self._check_open()
        if not callable(fn):
            raise TypeError(f"the function to run must be callable, got {type(fn).__name__} {fn!r}")
        memory = validate_memory(self.config.memory_mb if memory_mb is None else memory_mb)
        timeout = validate_timeout(self.config.timeout_s if timeout_s is None else timeout_s)
        function_key = self._stager.stage_function(fn)
        number = next(self._job_numbers)
        job = Job(
            f"{self.session_id}-{number:04d}",
            f"{self.session_prefix}/{number:04d}",
            function_key,
            memory_mb=memory,
            timeout_s=timeout,
            backend=self.backend.name,
            region=self.config.region,
        )
        tasks = [job.new_task(len(task_calls)) for task_calls in calls]
        self._stager.stage_calls(job.prefix, tasks, calls)
        if progress and progress_enabled(self.config.progress):
            JobProgress(job, getattr(fn, "__name__", "map"))
        with self._lock:
            self._check_open()
            if not self._started:
                self._scheduler.start()
                self._started = True
            self.jobs.append(job)
        self._scheduler.submit(job)
        return job

    def __repr__(self) -> str:
        return f"<LambdaExecutor backend={self.backend.name} storage={self.storage.url(self.session_prefix)}>"


class _BoundExecutor:
    """``LambdaExecutor.with_options(...)``: submit and map with a set memory and timeout."""

    def __init__(self, executor: LambdaExecutor, memory_mb: int | None, timeout_s: float | None) -> None:
        if memory_mb is not None:
            validate_memory(memory_mb)
        if timeout_s is not None:
            validate_timeout(timeout_s)
        self.executor = executor
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> LambdaFuture:
        """``LambdaExecutor.submit`` with this view's options."""
        job = self.executor._run_job(fn, [[(args, kwargs)]], memory_mb=self.memory_mb, timeout_s=self.timeout_s)
        return job.futures[0]

    def map(self, fn: Callable[..., T], *iterables: Iterable[Any], **kwargs: Any) -> MapIterator[T]:
        """``LambdaExecutor.map`` with this view's options."""
        kwargs.setdefault("memory_mb", self.memory_mb)
        kwargs.setdefault("timeout_s", self.timeout_s)
        return self.executor.map(fn, *iterables, **kwargs)


def _zip_strict(iterables: tuple[Iterable[Any], ...]) -> list[tuple]:
    """Zip iterables, refusing ones of different lengths (a silent truncation loses work)."""
    columns = [list(it) for it in iterables]
    lengths = {len(c) for c in columns}
    if len(lengths) > 1:
        raise ConfigurationError(
            "map() got iterables of different lengths ("
            + ", ".join(str(len(c)) for c in columns)
            + "); pass iterables of equal length, or zip/truncate them yourself"
        )
    return list(zip(*columns))
