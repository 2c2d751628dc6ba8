"""Futures as arguments: a call waits, in the driver, for the futures among its arguments.

``ex.submit(g, fut)``, ``ex.map(g, [fut1, fut2])``, ``ex.map(g, ex.map(f, xs))`` (``map``
reads a ``MapIterator`` input through its ``futures()``): each such call's task is created at
once — its future is the caller's as usual — but staged and launched only when ITS upstream
futures are done, whatever their order::

    upstream future ──done-callback──► WaitingTask: counts the upstream futures still pending
       the last one succeeded ──────► Launcher thread: values put in place of the futures,
                                      staged, handed to the scheduler (PipelineHost.launch_resolved)
       one failed / was cancelled ──► the task's futures fail with UpstreamError (cause chained)
    the task's own futures all cancelled while it waits ──► settled at once, nothing runs

Futures are found as arguments and inside lists, tuples (named tuples too) and dict values,
nested up to ``MAX_NESTING`` levels; a future elsewhere (a set, an object's attribute, a dict key) is left to
pickling, which refuses it and says where a future may go. Any ``concurrent.futures.Future``
works — this executor's, another executor's, a ``ThreadPoolExecutor``'s: the values travel
from the driver in the call's arguments, like any other argument (but see below).

Where every result record is stored anyway (fire-and-forget Lambda, durable jobs), a value
of this session's own calls is not shipped: the downstream call gets a reference to the
upstream record (``data.stored_result``), reads it and verifies its signature itself.

The launcher thread runs only while there is work (one per session at most), so failures
cascading down a chain of pipelined calls go through its queue, not through nested callbacks.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future
from typing import Any, NamedTuple, Protocol

from lambdamr.data.stored_result import StoredResult
from lambdamr.driver.inputs import Call
from lambdamr.driver.job import Job, Task
from lambdamr.driver.jobstore import result_key
from lambdamr.driver.results import own_copy
from lambdamr.driver.unfinished import settle_future
from lambdamr.errors import BackendError, SerializationError, UpstreamError
from lambdamr.futures import LambdaFuture, MapIterator
from lambdamr.protocol import session_of

log = logging.getLogger("lambdamr")

#: what stands in a call's arguments for a done future: a stored reference to its value, or
#: None to ship the value itself
Reference = Callable[[Future[Any]], Any]


# ---- finding futures and putting their values in place ----------------------------------------
#: levels of nested lists, tuples and dicts searched for futures (a list holding itself ends there)
MAX_NESTING = 32
#: types known to hold no future (ints, strings, arrays...): the types a program passes, a few
#: dozen, so a call of plain arguments passes with one subset test; forgotten past the cap (a
#: program that makes classes on the fly)
_PLAIN_KINDS: set[type] = set()
_PLAIN_KINDS_MAX = 1024


def futures_in(calls: Sequence[Call]) -> list[Future[Any]]:
    """The distinct futures among the calls' arguments (see the module docstring for where).

    Searched a level at a time, by the set of types at each level (C speed): a list of a
    million numbers costs about as much as pickling it, not a Python call per item.

    Raises:
        SerializationError: a ``MapIterator`` is nested in an argument (pass it to ``map`` as
            an iterable, or its ``futures()`` in a list).
    """
    kinds: set[type] = set()
    for args, kwargs in calls:  # the common case first: plain arguments, one subset test
        kinds.update(map(type, args))
        if kwargs:
            kinds.update(map(type, kwargs.values()))
    if kinds <= _PLAIN_KINDS:
        return []
    found: dict[int, Future[Any]] = {}
    items: list[Any] = [value for args, kwargs in calls for value in (*args, *kwargs.values())]
    for _ in range(MAX_NESTING):
        kinds = set(map(type, items))
        if kinds <= _PLAIN_KINDS:
            break
        if any(issubclass(kind, MapIterator) for kind in kinds):
            raise SerializationError(
                "a map iterator cannot be an argument: pass it to map() as an iterable (each call then "
                "waits for its own upstream call), or list(it.futures()) to one call that waits for all"
            )
        future_kinds = {kind for kind in kinds if issubclass(kind, Future)}
        if future_kinds:
            for item in items:
                if type(item) in future_kinds:
                    found.setdefault(id(item), item)
        container_kinds = {kind for kind in kinds if _is_container(kind)}
        if len(_PLAIN_KINDS) > _PLAIN_KINDS_MAX:
            _PLAIN_KINDS.clear()
        _PLAIN_KINDS.update(kinds - future_kinds - container_kinds)
        if not container_kinds:
            break
        containers = [item for item in items if type(item) in container_kinds]
        items = list(itertools.chain.from_iterable(c.values() if type(c) is dict else c for c in containers))
    return list(found.values())


def _is_container(kind: type) -> bool:
    """Whether futures inside a value of this type are found and replaced."""
    return kind is list or kind is tuple or kind is dict or (issubclass(kind, tuple) and hasattr(kind, "_fields"))


def with_values(calls: Sequence[Call], reference: Reference | None = None) -> list[Call]:
    """The calls with every future among their arguments (all done, none failed) replaced by
    its result, or by what ``reference`` returns for it when that is not None."""
    values: dict[int, Any] = {}  # one replacement per future: pickled once, one object remotely too

    def value_of(future: Future[Any]) -> Any:
        if id(future) not in values:
            stored = reference(future) if reference is not None else None
            values[id(future)] = stored if stored is not None else future.result()
        return values[id(future)]

    def resolved(value: Any) -> Any:
        if isinstance(value, Future):
            return value_of(value)
        kind = type(value)
        if kind is list:
            return [resolved(item) for item in value]
        if kind is tuple:
            return tuple(resolved(item) for item in value)
        if isinstance(value, tuple) and hasattr(kind, "_fields"):
            return kind(*(resolved(item) for item in value))
        if kind is dict:
            return {key: resolved(item) for key, item in value.items()}
        return value

    return [(tuple(resolved(a) for a in args), {k: resolved(v) for k, v in kwargs.items()}) for args, kwargs in calls]


class StoredResults:
    """``Reference`` for a session whose every result record is stored (fire-and-forget
    Lambda, durable jobs): a call of this session that returned is passed on as a
    ``StoredResult``, which the downstream task reads and verifies itself."""

    def __init__(self, storage_spec: dict[str, Any], session_id: str) -> None:
        self.storage_spec = storage_spec
        self.session_id = session_id

    def __call__(self, future: Future[Any]) -> StoredResult | None:
        job = getattr(future, "job", None)
        if not isinstance(future, LambdaFuture) or not isinstance(job, Job) or session_of(job.job_id) != self.session_id:
            return None  # another executor's, or a job attach() adopted: its value travels
        attempt = future.attempt  # the attempt whose stored record settled it (None: not stored)
        if attempt is None:
            return None
        key = result_key(job.prefix, future.task_id, attempt)
        return StoredResult(self.storage_spec, key, job.job_id, future.task_id, attempt, future.index)


def failed_upstream(futures: Sequence[Future[Any]]) -> tuple[Future[Any], BaseException] | None:
    """The first done future among ``futures`` that failed or was cancelled, with why."""
    for future in futures:
        if not future.done():
            continue
        if future.cancelled():
            return future, CancelledError()
        error = future.exception()
        if error is not None:
            return future, error
    return None


def upstream_error(future: Future[Any], cause: BaseException) -> UpstreamError:
    """The error of a call that never ran because ``future``, one of its arguments, failed."""
    if isinstance(cause, CancelledError):
        what = "was cancelled"
    else:
        text = (str(cause).splitlines() or [""])[0]
        what = f"failed with {type(cause).__name__}: {text}" if text else f"failed with {type(cause).__name__}"
    error = UpstreamError(
        f"the call did not run: {future!r}, among its arguments, {what}", upstream=future,
    )
    error.__cause__ = cause
    return error


# ---- waiting --------------------------------------------------------------------------------------
class WaitingCalls(NamedTuple):
    """A task whose calls have futures among their arguments, some not done yet."""

    task: Task
    calls: list[Call]
    upstream: list[Future[Any]]


class TaskBatch(NamedTuple):
    """Tasks just added to a job: every one in id order, those staged, those waiting."""

    tasks: list[Task]
    ready: list[Task]
    waiting: list[WaitingCalls]


class PipelineHost(Protocol):
    """What the launcher asks of the session whose tasks wait (``driver.launching.TaskLaunch``)."""

    def launch_resolved(self, job: Job, tasks: list[Task], calls: list[list[Call]]) -> None: ...

    def settle_unlaunched(self, job: Job, task: Task) -> None: ...


class WaitingTask:
    """One task of pipelined calls, from its creation until it is launched or settled."""

    def __init__(self, task: Task, calls: list[Call], upstream: list[Future[Any]], launcher: Launcher) -> None:
        self.task = task
        self.calls: list[Call] | None = calls
        self.upstream = upstream
        self._pending = len(upstream)
        self._launcher: Launcher | None = launcher  # None once handed over (decided exactly once)
        self._lock = threading.Lock()

    def watch(self) -> None:
        """Start listening (upstream callbacks of done futures run now, in this thread)."""
        for own in self.task.futures:  # cancelled while waiting: no need to wait any more
            own.add_done_callback(self._own_done)
        for upstream in self.upstream:
            upstream.add_done_callback(self._upstream_done)

    def _upstream_done(self, future: Future[Any]) -> None:
        with self._lock:
            if self._launcher is None:
                return
            self._pending -= 1
            if self._pending and not future.cancelled() and future.exception() is None:
                return
            launcher, self._launcher = self._launcher, None
        launcher.put(self)

    def _own_done(self, _future: Future[Any]) -> None:
        with self._lock:
            if self._launcher is None or not all(f.done() for f in self.task.futures):
                return
            launcher, self._launcher = self._launcher, None
        launcher.put(self)

    def release(self) -> None:
        """Let go of the arguments and the upstream futures (the task is launched or settled)."""
        self.calls = None
        self.upstream = []


class Launcher:
    """Launches waiting tasks whose upstream futures are done, on a thread of its own that
    runs only while there is work; fails or settles the others."""

    def __init__(self, host: PipelineHost, reference: Reference | None = None) -> None:
        self._host = host
        self.reference = reference
        self._queue: list[WaitingTask] = []
        self._waiting: set[WaitingTask] = set()  # not handed over yet
        self._lock = threading.Lock()
        self._running = False

    def wait_for(self, waiting: list[WaitingCalls]) -> None:
        """Launch each task once its upstream futures are done (at once when they are)."""
        for task, calls, upstream in waiting:
            waiting_task = WaitingTask(task, calls, upstream, self)
            with self._lock:
                self._waiting.add(waiting_task)
            waiting_task.watch()

    def cancel_waiting(self) -> None:
        """Cancel every call still waiting for its upstream futures (``shutdown(cancel_futures=True)``,
        Ctrl-C): done before the pending upstream calls are cancelled, so that these end
        cancelled rather than failed by their cancelled upstream."""
        with self._lock:
            waiting = list(self._waiting)
        for waiting_task in waiting:
            for future in waiting_task.task.futures:
                future.cancel()

    def put(self, waiting: WaitingTask) -> None:
        """``waiting`` is decided: launch, fail or settle it on the launcher thread."""
        with self._lock:
            self._waiting.discard(waiting)
            self._queue.append(waiting)
            if self._running:
                return
            self._running = True
        try:
            threading.Thread(target=self._run, name="lambdamr-pipeline", daemon=True).start()
        except RuntimeError:  # no new thread at interpreter exit: the exit waits for these calls
            self._run()

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._running = False
                    return
                batch, self._queue = self._queue, []
            try:
                self._handle(batch)
            except BaseException as exc:  # noqa: BLE001 - no waiting task may be left pending
                log.exception("lambdamr: the pipeline launcher failed")
                for waiting in batch:
                    if waiting.calls is not None:  # neither launched nor settled yet
                        self._fail(waiting, BackendError(f"lambdamr could not launch the pipelined call: {exc!r}"))

    def _handle(self, batch: list[WaitingTask]) -> None:
        ready: dict[int, tuple[Job, list[WaitingTask]]] = {}
        for waiting in batch:
            task = waiting.task
            if task.done:  # failed meanwhile (the scheduler thread died)
                waiting.release()
            elif all(f.done() for f in task.futures):  # cancelled while waiting
                self._settle(waiting)
            elif (bad := failed_upstream(waiting.upstream)) is not None:
                self._fail(waiting, upstream_error(*bad))
            else:
                ready.setdefault(id(task.job), (task.job, []))[1].append(waiting)
        for job, waiting_tasks in ready.values():  # in task order: one manifest part per run of tasks
            self._launch(job, sorted(waiting_tasks, key=lambda w: w.task.task_id))

    def _launch(self, job: Job, batch: list[WaitingTask]) -> None:
        try:
            self._host.launch_resolved(job, [w.task for w in batch], [with_values(w.calls or [], self.reference) for w in batch])
        except BaseException as exc:  # noqa: BLE001 - one call's bad value must not fail the others
            if len(batch) > 1:
                for waiting in batch:  # find the culprits: each alone
                    self._launch(job, [waiting])
                return
            self._fail(batch[0], exc)
            return
        for waiting in batch:
            waiting.release()

    def _fail(self, waiting: WaitingTask, error: BaseException) -> None:
        for index, future in enumerate(waiting.task.futures):
            settle_future(future, None, error if index == 0 else own_copy(error))
        self._settle(waiting)

    def _settle(self, waiting: WaitingTask) -> None:
        waiting.release()
        try:
            self._host.settle_unlaunched(waiting.task.job, waiting.task)
        except BaseException:  # noqa: BLE001 - its futures are settled; only the job's numbers wait
            log.exception("lambdamr: could not settle pipelined task %s", waiting.task.task_id)
