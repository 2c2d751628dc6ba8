"""What breaks where (CPython's ExecutorDeadlockTest, loky's crash matrix): a task that
raises or exits, arguments or results that fail to pickle or unpickle — on either side, with
an ``Exception`` or a ``BaseException`` such as ``SystemExit`` — and processes that die.

The stdlib marks its pool broken (``BrokenProcessPool``) for most of them; a LambdaExecutor
fails only the call concerned, with the task's own exception or an error naming what
broke, and keeps running the next calls. Neither hangs.
"""

from __future__ import annotations

import concurrent.futures
from concurrent.futures.process import BrokenProcessPool

import pytest

from lambdamr import SerializationError, WorkerLostError

from . import tasks

#: A task that ends the process it runs in cannot run on the inline backend's threads without
#: ending the test run itself: those cases are not generated for inline (``pytest_generate_tests``
#: in conftest.py drops them; docs/futures.md lists them). The local and AWS backends run them.

# (case, function, arguments, what a LambdaExecutor's future raises, what the stdlib's raises)
MATRIX = [
    ("error in call", tasks.raise_value_error, (), ValueError, ValueError),
    ("sys.exit in call", tasks.exit_with, (3,), SystemExit, SystemExit),
    ("KeyboardInterrupt in call", tasks.raise_keyboard_interrupt, (), KeyboardInterrupt, KeyboardInterrupt),
    ("other BaseException in call", tasks.raise_base_exception, (), GeneratorExit, GeneratorExit),
    ("os._exit in call", tasks.hard_exit, (), WorkerLostError, BrokenProcessPool),
    ("SIGKILL in call", tasks.kill_own_process, (), WorkerLostError, BrokenProcessPool),
    ("error unpickling the argument", tasks.ignore, (tasks.ErrorOnUnpickle(),), SerializationError, BrokenProcessPool),
    ("sys.exit unpickling the argument", tasks.ignore, (tasks.ExitOnUnpickle(),), SerializationError, BrokenProcessPool),
    ("os._exit unpickling the argument", tasks.ignore, (tasks.CrashOnUnpickle(),), WorkerLostError, BrokenProcessPool),
    ("error pickling the result", tasks.return_it, ("ErrorOnPickle",), SerializationError, RuntimeError),
    ("sys.exit pickling the result", tasks.return_it, ("ExitOnPickle",), SerializationError, SystemExit),
    ("error unpickling the result", tasks.return_it, ("ErrorOnUnpickle",), SerializationError, BrokenProcessPool),
    ("sys.exit unpickling the result", tasks.return_it, ("ExitOnUnpickle",), SerializationError, BrokenProcessPool),
]
KILLS_ITS_PROCESS = {"os._exit in call", "SIGKILL in call", "os._exit unpickling the argument"}
#: tests (and matrix cases) that end the process running the task: never on the inline backend
NOT_ON_INLINE = {"test_big_data_in_flight_when_a_worker_dies", *KILLS_ITS_PROCESS}


@pytest.mark.parametrize(("case", "fn", "args", "remote_error", "stdlib_error"), MATRIX, ids=[row[0] for row in MATRIX])
def test_failure_reaches_the_future_and_nothing_hangs(
    case, fn, args, remote_error, stdlib_error, kind, executor, new_executor
):
    # The stdlib's pool is broken afterwards: it gets a fresh one; ours must keep working.
    ex = executor if kind.remote else new_executor()
    future = ex.submit(fn, *args)
    expected = remote_error if kind.remote else stdlib_error
    with pytest.raises(expected) as info:
        future.result(timeout=60)
    if kind.remote:
        assert ex.submit(tasks.mul, 6, 7).result(timeout=60) == 42  # the executor still works
        if case in KILLS_ITS_PROCESS:  # a lost worker is retried, and says so
            assert "died" in str(info.value)
        elif remote_error is SerializationError and "sys.exit" in case:
            assert isinstance(info.value.__cause__, SystemExit) or "SystemExit" in str(info.value)


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
