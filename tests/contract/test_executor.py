"""Executor behaviours (CPython's ExecutorTest, ProcessPoolExecutorTest): submit, map, its
timeout and exceptions, references the executor must not keep, the initializer."""

from __future__ import annotations

import concurrent.futures
import gc
import weakref

import pytest

from . import tasks


def test_submit(executor):
    assert executor.submit(pow, 2, 8).result(timeout=30) == 256


def test_submit_keyword(executor):
    assert executor.submit(tasks.add_keywords, 2, b=3).result(timeout=30) == 5
    # fn is positional-only: a call's own keyword named fn reaches the call
    assert executor.submit(tasks.capture, 1, fn=2).result(timeout=30) == ((1,), {"fn": 2})
    with pytest.raises(TypeError):
        executor.submit(fn=tasks.capture)


def test_map(executor):
    assert list(executor.map(pow, range(10), range(10))) == list(map(pow, range(10), range(10)))
    assert list(executor.map(pow, range(10), range(10), chunksize=3)) == list(map(pow, range(10), range(10)))


def test_map_exception(executor):
    results = executor.map(divmod, [1, 1, 1, 1], [2, 3, 0, 5])
    assert next(results) == (0, 1)
    assert next(results) == (0, 1)
    with pytest.raises(ZeroDivisionError):
        next(results)


def test_map_timeout(executor):
    collected = []
    with pytest.raises(concurrent.futures.TimeoutError):
        for value in executor.map(tasks.sleep_and_return, [0, 0, 4], timeout=1.5):
            collected.append(value)
    assert collected == [None, None]


def test_map_submits_without_iteration(new_executor, flag_dir):
    # CPython's test_map_submits_without_iteration and test_shutdown_race_issue12456
    ex = new_executor()
    ex.map(str, [2] * 3)
    ex.map(tasks.write_after, [0] * 6, [str(flag_dir / f"{i}") for i in range(6)], [str(i) for i in range(6)])
    ex.shutdown(wait=True)
    assert sorted(p.name for p in flag_dir.iterdir()) == [str(i) for i in range(6)]


def test_no_stale_references(executor):
    # The executor must not keep the callable (and what it holds) once the call is done.
    obj = tasks.StaleCheck()
    collected = []
    ref = weakref.ref(obj, lambda _: collected.append(True))
    future = executor.submit(obj.method)
    assert future.result(timeout=30) == 1
    del obj, future
    gc.collect()
    assert collected and ref() is None


def test_max_workers_negative(kind, storage_of_kind):
    from .conftest import build

    for number in (0, -1):
        with pytest.raises(ValueError):
            build(kind, storage_of_kind, workers=number)


def test_free_reference(executor):
    for obj in executor.map(tasks.make_dummy, range(4)):
        ref = weakref.ref(obj)
        del obj
        gc.collect()
        assert ref() is None


def test_remote_traceback_is_kept(executor):
    future = executor.submit(tasks.raise_value_error, "with its traceback")
    with pytest.raises(ValueError, match="with its traceback") as info:
        future.result(timeout=30)
    text = "".join(__import__("traceback").format_exception(info.value))
    assert "raise ValueError(message)" in text


def test_initializer_runs_once_per_worker(new_executor, flag_dir):
    ex = new_executor(initializer=tasks.set_env_initializer, initargs=("LMR_CONTRACT_INIT", "ready", str(flag_dir)))
    seen = list(ex.map(tasks.read_env, ["LMR_CONTRACT_INIT"] * 12))
    assert {value for value, _ in seen} == {"ready"}
    ex.shutdown(wait=True)
    runs = list(flag_dir.glob("init-*"))
    pids = {path.name.split("-")[1] for path in runs}
    assert len(runs) == len(pids)  # once per process, whatever number of tasks it ran
    assert {str(pid) for _, pid in seen} <= pids


def test_initializer_failure_fails_the_tasks(new_executor, kind):
    ex = new_executor(initializer=tasks.failing_initializer)
    future = ex.submit(tasks.mul, 2, 3)
    if kind.remote:
        from lambdamr import InitializerError

        with pytest.raises(InitializerError, match=r"failing_initializer\(\) raised RuntimeError: initializer failed"):
            future.result(timeout=30)
    else:
        with pytest.raises(concurrent.futures.process.BrokenProcessPool):
            future.result(timeout=30)
