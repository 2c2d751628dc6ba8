"""What a job keeps of a settled task: one immutable ``bytes`` record, read through a view.

A job keeps the record of every settled task it samples (all of them in a job of up to
``task_ledger.FIRST_KEPT`` tasks), so that each call's ``future.timing()`` and
``future.logs()`` answer and the job's timeline, logs and history can be drawn. A live
``Task`` with its times and the runtime's timings as Python objects took about 0.7 KB; the
same facts as one ``marshal``-ed tuple take about 180 bytes (no object per float, no
dict, no slot for what only a running attempt needs)::

    Task (live, the scheduler's) ──settles──► pack_task ──► bytes ──► SettledTask (a view, made on demand)

``marshal`` writes only what the driver itself packed here (numbers, strings, ``None``,
``Ellipsis`` for a timing the record did not have, tuples and the JSON types of a result
header), and only this process reads it back: it never crosses a trust boundary.
"""

from __future__ import annotations

import marshal
from typing import Any, Generic, NamedTuple, TypeVar, overload

from lambdamr.futures import LambdaFuture
from lambdamr.protocol import ArgsRange

#: what a settled task keeps of the runtime's description of itself
RUNTIME_KEPT = ("request_id", "pid")
#: the timings a record keeps in this order (a record with other keys keeps its dict as it came)
TIMING_KEYS = ("started", "loaded", "finished", "cold", "init_ms", "peak_rss_mb", "attempt", "fetched", "memory_mb")
_TIMING_KEY_SET = frozenset(TIMING_KEYS)
_ABSENT = ...  # a timing the record did not have (marshal writes Ellipsis as one byte)
_NO_ATTEMPTS: frozenset[int] = frozenset()
#: the futures a settled task holds once it let go of all of them (shared)
NO_CALLS: tuple[Any, ...] = ()
V = TypeVar("V")  # the type of a packed field (``_Field``)
#: a task's futures: its one call's future itself (a submit's: no list around it), one per
#: call in a list (None once let go), or ``NO_CALLS``
HeldFutures = LambdaFuture | list[LambdaFuture | None] | tuple[Any, ...]


def held_futures(held: HeldFutures) -> list[LambdaFuture]:
    """The futures ``held`` still holds, in call order."""
    if isinstance(held, LambdaFuture):
        return [held]
    return [f for f in held if f is not None]


def let_go(held: HeldFutures, index: int) -> HeldFutures | None:
    """``held`` without call ``index``'s future, if it holds it and it is done; else None."""
    if isinstance(held, LambdaFuture):
        return NO_CALLS if index == 0 and held.done() else None
    future = held[index] if index < len(held) else None
    if future is None or not future.done():
        return None
    held[index] = None  # type: ignore[index]  # a list: it holds a future
    return held


class TaskOutcome(NamedTuple):
    """How a settled task's calls ended: what its record keeps once the futures are gone."""

    succeeded: int
    failed: int
    cancelled: int
    error: str | None  # "Type: message" (first line) of the first call that raised
    traceback: str | None = None  # that call's traceback as printed (the job history shows it)


_COMMON_OUTCOMES: dict[tuple[Any, ...], TaskOutcome] = {}  # "n calls, all ok", by value: one object each


def _outcome(fields: tuple[Any, ...]) -> TaskOutcome:
    common = _COMMON_OUTCOMES.get(fields)
    if common is not None:
        return common
    outcome = TaskOutcome(*fields)
    if not outcome.failed and not outcome.cancelled and outcome.succeeded <= 64:
        _COMMON_OUTCOMES[fields] = outcome
    return outcome


def common_outcome(outcome: TaskOutcome) -> TaskOutcome:
    """The one shared object of an outcome most tasks have (every call ok), else ``outcome``."""
    return _outcome(tuple(outcome))


def pack_task(task: Any) -> bytes:
    """The record of ``task`` (a ``driver.job.Task`` whose outcome is recorded) as bytes."""
    timings = task.timings
    if timings is not None and timings.keys() <= _TIMING_KEY_SET:
        timings = tuple(timings.get(k, _ABSENT) for k in TIMING_KEYS)
    runtime = task.runtime  # what ``task_timing`` reports of it, not the rest of every response
    if runtime is not None:
        runtime = tuple(runtime.get(k, _ABSENT) for k in RUNTIME_KEPT)
    outcome = task.outcome
    fields = (
        task.calls, task.attempt, task.attempt_base, task.failures, task.memory_mb,
        task.first_dispatched_at, task.dispatched_at, task.completed_at,
        timings, runtime, tuple(sorted(task.backup_attempts)), task.logs,
        tuple(outcome) if outcome is not None else None,
        (packed.key, packed.start, packed.length) if (packed := task.args_range) is not None else None,
    )
    try:
        return marshal.dumps(fields)
    except ValueError:  # a value marshal cannot write (a backend's odd timing): as its repr
        return marshal.dumps(_marshallable(fields))


def _marshallable(value: Any) -> Any:
    if value is None or value is _ABSENT or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, dict):
        return {str(k): _marshallable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_marshallable(v) for v in value)
    return repr(value)


def decoded(record: bytes) -> tuple[Any, ...]:
    """The fields ``pack_task`` packed in ``record`` (a view decodes them on first use)."""
    fields: tuple[Any, ...] = marshal.loads(record)
    return fields


class FutureHolder:
    """The futures a task holds (a live ``Task``, then its ``SettledTask`` view): in the
    ``_held`` and ``_kept`` slots of the class that uses it."""

    __slots__ = ()
    _held: HeldFutures  # its calls' futures (``HeldFutures``)
    _kept: int  # how many of them it still holds

    @property
    def futures(self) -> list[LambdaFuture]:
        """Every call's future while the task is unsettled; then those nobody claimed."""
        return held_futures(self._held)

    @property
    def holds_futures(self) -> bool:
        """Whether the task still holds a future (every one while unsettled, then those nobody claimed)."""
        return self._kept > 0

    def _release(self, index: int) -> None:
        """Let go of call ``index``'s future, if the task holds it and it is done."""
        held = let_go(self._held, index)
        if held is not None:  # (the slots are the subclass's: mypy sees only these empty ones)
            self._kept -= 1  # type: ignore[misc]
            self._held = held if self._kept else NO_CALLS  # type: ignore[misc]  # nothing left: not even a slot per call


class _Field(Generic[V]):
    """An attribute of a ``SettledTask`` read as it was packed: field ``index`` of its record."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    @overload
    def __get__(self, view: None, owner: type[Any]) -> _Field[V]: ...
    @overload
    def __get__(self, view: SettledTask, owner: type[Any]) -> V: ...
    def __get__(self, view: SettledTask | None, owner: type[Any]) -> _Field[V] | V:
        if view is None:
            return self
        value: V = view._read()[self.index]
        return value


class SettledTask(FutureHolder):
    """A settled task as its job keeps it: the same read-only attributes as a ``Task``.

    ``record`` is what the job stores (``pack_task``); the view decodes it on first use.
    While the task holds futures nobody claimed (a ``map`` whose iterator has not yielded
    them yet) the view holds them too, and lets go of each one as it is claimed.
    """

    __slots__ = ("job", "task_id", "record", "_fields", "_held", "_kept")

    done = True
    args_inline: bytes | None = None  # a settled task runs no attempt: its calls are not kept
    invocation = None
    live: frozenset[int] = _NO_ATTEMPTS
    # the fields ``pack_task`` packs as they are (the rest below are rebuilt from theirs)
    calls: _Field[int] = _Field(0)
    attempt: _Field[int] = _Field(1)
    attempt_base: _Field[int] = _Field(2)
    failures: _Field[int] = _Field(3)
    memory_mb: _Field[int | None] = _Field(4)
    first_dispatched_at: _Field[float | None] = _Field(5)
    dispatched_at: _Field[float | None] = _Field(6)
    completed_at: _Field[float | None] = _Field(7)
    logs: _Field[str | None] = _Field(11)  # captured stdout, stderr and logging records (the runtime's)

    def __init__(self, job: Any, task_id: int, record: bytes, held: HeldFutures = NO_CALLS, kept: int = 0) -> None:
        self.job = job
        self.task_id = task_id
        self.record = record
        self._fields: tuple[Any, ...] | None = None
        self._held = held
        self._kept = kept

    def _read(self) -> tuple[Any, ...]:
        fields = self._fields
        if fields is None:
            fields = self._fields = decoded(self.record)
        return fields

    @property
    def timings(self) -> dict[str, Any] | None:
        """The winning record's timings (started, loaded, finished, cold...), with its attempt."""
        packed = self._read()[8]
        if isinstance(packed, tuple):
            return {k: v for k, v in zip(TIMING_KEYS, packed) if v is not _ABSENT}
        return packed  # type: ignore[no-any-return]

    @property
    def runtime(self) -> dict[str, Any] | None:
        """What the runtime said of itself (its request id and pid)."""
        packed = self._read()[9]
        if packed is None:
            return None
        return {k: v for k, v in zip(RUNTIME_KEPT, packed) if v is not _ABSENT}

    @property
    def backup_attempts(self) -> frozenset[int]:
        backups = self._read()[10]
        return frozenset(backups) if backups else _NO_ATTEMPTS

    @property
    def outcome(self) -> TaskOutcome | None:
        fields = self._read()[12]
        return None if fields is None else _outcome(fields)

    @property
    def args_range(self) -> ArgsRange | None:
        """Where its calls were in the job's packed argument object, if they were not inline."""
        packed = self._read()[13]
        return None if packed is None else ArgsRange(*packed)

    def claim(self, index: int) -> None:
        """The caller holds call ``index``'s future from now on: let go of it."""
        self._release(index)

    def __repr__(self) -> str:
        return f"<SettledTask {self.task_id} of job {getattr(self.job, 'job_id', '?')}>"
