"""The crash table: what breaks, where, and what the future raises (CPython's
ExecutorDeadlockTest and loky's crash matrix, plus what only a remote executor has: timeouts,
memory limits, signed objects, a runtime without the driver's modules).

Every row runs on every target of tests/targets.py (inline, local, aws over their storages)
and, as the control, on ``ProcessPoolExecutor``. The stdlib marks its pool broken
(``BrokenProcessPool``) for most rows; a LambdaExecutor fails only the call concerned, with
the task's own exception or an error naming what broke, and keeps running the next calls.
Neither hangs.

Rows a target cannot reproduce are not generated (``pytest_collection_modifyitems`` in
conftest.py; docs/futures.md lists them with the reason):

* on **inline** (tasks run on threads of the driver's own process): ``os._exit``, ``SIGKILL``
  and ``os._exit`` while unpickling the argument would end the test run itself; a thread
  cannot be stopped at its timeout or held to a memory size; and the driver's interpreter
  has every module the driver imported, so no import goes missing;
* on **ProcessPoolExecutor**: it has no per-call timeout or memory size, no signed objects,
  and pickles a call's arguments on a feeder thread after ``submit`` returned (so a module
  the worker lacks fails there, or in the driver, by timing).
"""

from __future__ import annotations

import concurrent.futures
import sys
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import pytest

from lambdamr import (
    IntegrityError,
    RemoteError,
    SerializationError,
    TaskOutOfMemoryError,
    TaskTimeoutError,
    WorkerLostError,
)

from . import tasks

WAIT_S = 120


def call(fn: Callable[..., Any], *args: Any) -> Callable[[Any], Future]:
    return lambda ex: ex.submit(fn, *args)


def past_its_timeout(ex: Any) -> Future:
    return ex.with_options(timeout_s=1, retries=0).submit(tasks.sleep_and_return, 30)


def over_its_memory(ex: Any) -> Future:
    return ex.with_options(memory_mb=256, retries=0).submit(tasks.allocate, 400)


def reading_a_tampered_object(ex: Any) -> Future:
    """A shared object changed in storage by someone without the key (a flipped byte)."""
    handle = ex.share([1, 2, 3])
    blob = bytearray(ex.storage.get(handle.key))
    blob[-1] ^= 0xFF
    ex.storage.put(handle.key, bytes(blob))
    return ex.submit(tasks.read_shared, handle)


def needing_a_module_the_runtime_lacks(ex: Any) -> Future:
    """An instance of a class of an installed package the runtime lacks (a package missing
    from the Lambda layer): a module without a source file is pickled by reference."""
    fake = type(sys)("lambdamr_not_installed_pkg")

    class Thing:
        pass

    Thing.__module__, Thing.__qualname__ = fake.__name__, "Thing"
    fake.Thing = Thing  # type: ignore[attr-defined]
    sys.modules[fake.__name__] = fake
    try:
        future = ex.submit(tasks.identity_of, Thing())
        future.exception(timeout=WAIT_S)  # the driver keeps the module until the worker tried
    finally:
        del sys.modules[fake.__name__]
    return future


@dataclass(frozen=True)
class Crash:
    """One row: what breaks, and what the future raises."""

    case: str
    submit: Callable[[Any], Future]
    remote_error: type[BaseException]  # what a LambdaExecutor's future raises
    stdlib_error: type[BaseException] | None  # ProcessPoolExecutor's; None: not generated there
    fragment: str = ""  # in a LambdaExecutor's message
    ends_its_process: bool = False  # not generated on inline
    needs_a_process: bool = False  # timeouts, memory, imports: not generated on inline
    check: Callable[[Any], bool] = lambda error: True  # more a LambdaExecutor's error must say


CRASHES = [
    Crash("error in call", call(tasks.raise_value_error), ValueError, ValueError, "boom"),
    Crash("sys.exit in call", call(tasks.exit_with, 3), SystemExit, SystemExit),
    Crash("KeyboardInterrupt in call", call(tasks.raise_keyboard_interrupt), KeyboardInterrupt, KeyboardInterrupt),
    Crash("other BaseException in call", call(tasks.raise_base_exception), GeneratorExit, GeneratorExit),
    Crash("exception that fails to unpickle", call(tasks.raise_needs_two), RemoteError, BrokenProcessPool, "1-2",
          check=lambda e: "NeedsTwoArgs" in e.remote_type and "in raise_needs_two" in e.remote_traceback),
    Crash("exception that fails to pickle", call(tasks.raise_holds_lock), RemoteError, TypeError, "with a lock inside",
          check=lambda e: "HoldsALock" in e.remote_type and "in raise_holds_lock" in e.remote_traceback),
    Crash("os._exit in call", call(tasks.hard_exit), WorkerLostError, BrokenProcessPool, "died", ends_its_process=True),
    Crash("SIGKILL in call", call(tasks.kill_own_process), WorkerLostError, BrokenProcessPool, "died", ends_its_process=True),
    Crash("error unpickling the argument", call(tasks.ignore, tasks.ErrorOnUnpickle()), SerializationError, BrokenProcessPool),
    Crash("sys.exit unpickling the argument", call(tasks.ignore, tasks.ExitOnUnpickle()),
          SerializationError, BrokenProcessPool, "SystemExit"),
    Crash("os._exit unpickling the argument", call(tasks.ignore, tasks.CrashOnUnpickle()),
          WorkerLostError, BrokenProcessPool, "died", ends_its_process=True),
    Crash("error pickling the result", call(tasks.return_it, "ErrorOnPickle"),
          SerializationError, RuntimeError, "return value to the driver"),
    Crash("sys.exit pickling the result", call(tasks.return_it, "ExitOnPickle"), SerializationError, SystemExit, "SystemExit"),
    Crash("result that cannot be pickled", call(tasks.return_a_lock), SerializationError, TypeError, "_thread.lock",
          check=lambda e: "return value to the driver" in str(e)),
    Crash("error unpickling the result", call(tasks.return_it, "ErrorOnUnpickle"), SerializationError, BrokenProcessPool),
    Crash("sys.exit unpickling the result", call(tasks.return_it, "ExitOnUnpickle"),
          SerializationError, BrokenProcessPool, "SystemExit"),
    Crash("timeout", past_its_timeout, TaskTimeoutError, None, "timeout of 1 s", needs_a_process=True,
          check=lambda e: "task 0" in str(e)),
    Crash("out of memory", over_its_memory, TaskOutOfMemoryError, None, "memory_mb", needs_a_process=True,
          check=lambda e: "256 MB" in str(e) and "allocating 400 MB" in e.logs),
    Crash("tampered object", reading_a_tampered_object, IntegrityError, None, "signature does not match"),
    Crash("missing import", needing_a_module_the_runtime_lacks,
          SerializationError, None, "lambdamr_not_installed_pkg", needs_a_process=True,
          check=lambda e: "runtime layer" in str(e)),
]
CRASH = {crash.case: crash for crash in CRASHES}
KILLS_ITS_PROCESS = {crash.case for crash in CRASHES if crash.ends_its_process}
#: tests and rows never generated on the inline backend (conftest.py)
NOT_ON_INLINE = {
    "test_big_data_in_flight_when_a_worker_dies",
    *KILLS_ITS_PROCESS,
    *(crash.case for crash in CRASHES if crash.needs_a_process),
}
#: rows never generated on ProcessPoolExecutor (conftest.py)
NOT_ON_STDLIB = {crash.case for crash in CRASHES if crash.stdlib_error is None}


@pytest.mark.parametrize("case", list(CRASH))
def test_failure_reaches_the_future_and_nothing_hangs(case, kind, executor, new_executor):
    crash = CRASH[case]
    # The stdlib's pool is broken afterwards: it gets a fresh one; ours must keep working.
    ex = executor if kind.remote else new_executor()
    future = crash.submit(ex)
    expected = crash.remote_error if kind.remote else crash.stdlib_error
    assert expected is not None
    with pytest.raises(expected) as info:
        future.result(timeout=WAIT_S)
    if kind.remote:
        assert crash.fragment in str(info.value) or crash.fragment in repr(info.value.__cause__)
        assert crash.check(info.value), info.value
        assert ex.submit(tasks.mul, 6, 7).result(timeout=WAIT_S) == 42  # the executor still works


def test_task_exceptions_are_not_retried(executor, kind):
    if not kind.remote:
        assert isinstance(executor.submit(tasks.exit_with, 4).exception(timeout=60), SystemExit)
        return
    future = executor.submit(tasks.exit_with, 4)
    error = future.exception(timeout=60)
    assert isinstance(error, SystemExit) and error.code == 4
    assert future.timing()["attempts"] == 1  # deterministic: one attempt, not three


def test_each_failed_call_of_a_task_has_its_own_exception(executor, kind):
    # Three calls in one task whose arguments cannot be loaded: three futures, three exception
    # objects, and raising one again and again does not grow its traceback.
    # a LambdaExecutor guarantee, not generated for the stdlib's pool (its map hides a chunk's futures)
    import traceback

    futures = executor.map(tasks.ignore, [tasks.ErrorOnUnpickle()] * 3, chunksize=3).job.futures
    errors = [future.exception(timeout=60) for future in futures]
    assert all(isinstance(error, SerializationError) for error in errors)
    assert len({id(error) for error in errors}) == 3
    depths = []
    for _ in range(3):
        try:
            futures[0].result()
        except SerializationError as exc:
            depths.append(len(traceback.extract_tb(exc.__traceback__)))
    assert depths[0] == depths[1] == depths[2]


def test_big_data_in_flight_when_a_worker_dies(executor, new_executor, kind):
    # CPython's test_crash_big_data: a crash while big arguments are queued must not deadlock.
    ex = executor if kind.remote else new_executor()
    data = "x" * (2 * 1024 * 1024)
    futures = [ex.submit(tasks.identity, data) for _ in range(4)] + [ex.submit(tasks.hard_exit)]
    done, not_done = concurrent.futures.wait(futures, timeout=120)
    assert not not_done
