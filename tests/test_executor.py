"""The executor's concurrent.futures behaviour, on every storage (local folder and S3 over HTTP)."""

from __future__ import annotations

import concurrent.futures
import time

import numpy as np
import pytest

from lambdamr import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    ConfigurationError,
    LambdaFuture,
    as_completed,
    wait,
)


def square(x):
    return x * x


def add(a, b=0, *, c=0):
    return a + b + c


def sleep_then(seconds, value=None):
    time.sleep(seconds)
    return value


def fail_if(x, bad):
    if x == bad:
        raise ValueError(f"bad item {x}")
    return x


def test_map_of_1000_tasks_returns_every_result_in_order(executor):
    results = list(executor.map(square, range(1000)))
    assert results == [i * i for i in range(1000)]
    job = executor.last_job
    assert len(job.tasks) == 1000
    # One job: the function went to storage once.
    assert len({t.job.function_key for t in job.tasks}) == 1


def test_map_is_one_job_and_uploads_the_function_once(executor):
    list(executor.map(square, range(50)))
    list(executor.map(square, range(50)))
    functions = [info for info in executor.storage.list(executor.session_prefix + "/fn/")]
    assert len(functions) == 1
    assert len(executor.jobs) == 2


def test_map_with_several_iterables_and_chunksize(executor):
    assert list(executor.map(add, range(10), range(10, 20), chunksize=3)) == [2 * i + 10 for i in range(10)]
    assert len(executor.last_job.tasks) == 4


def test_submit_passes_args_and_kwargs(executor):
    assert executor.submit(add, 1, 2, c=3).result(timeout=30) == 6


def test_futures_are_concurrent_futures(executor):
    future = executor.submit(square, 3)
    assert isinstance(future, concurrent.futures.Future)
    assert isinstance(future, LambdaFuture)
    assert future.result(timeout=30) == 9
    assert future.done() and future.exception() is None
    assert future.timing()["started"] <= future.timing()["finished"]


def test_as_completed_yields_every_future(executor):
    futures = [executor.submit(sleep_then, 0.3 * (i % 2), i) for i in range(6)]
    assert sorted(f.result() for f in as_completed(futures, timeout=60)) == list(range(6))


def test_wait_first_completed(executor):
    slow = executor.submit(sleep_then, 3, "slow")
    fast = executor.submit(sleep_then, 0, "fast")
    done, not_done = wait([slow, fast], timeout=30, return_when=FIRST_COMPLETED)
    assert fast in done and slow in not_done


def test_wait_first_exception(executor):
    futures = [executor.submit(sleep_then, 3, 1), executor.submit(fail_if, 1, 1)]
    done, not_done = wait(futures, timeout=30, return_when=FIRST_EXCEPTION)
    assert futures[1] in done and futures[0] in not_done
    assert isinstance(futures[1].exception(), ValueError)


def test_wait_all_completed(executor):
    futures = [executor.submit(square, i) for i in range(4)]
    done, not_done = wait(futures, timeout=60, return_when=ALL_COMPLETED)
    assert not not_done and {f.result() for f in done} == {0, 1, 4, 9}


def test_result_timeout_raises_timeout_error_on_a_slow_task(executor):
    future = executor.submit(sleep_then, 5)
    with pytest.raises(concurrent.futures.TimeoutError):
        future.result(timeout=0.2)


def test_cancel_of_a_pending_task(make_executor):
    ex = make_executor(workers=1)
    # Only backend.capacity tasks are handed out; the rest wait in the driver, cancellable.
    count = ex.backend.capacity + 4
    futures = [ex.submit(sleep_then, 0.05, i) for i in range(count)]
    time.sleep(0.2)
    last = futures[-1]
    assert last.cancel()
    assert last.cancelled()
    with pytest.raises(concurrent.futures.CancelledError):
        last.result()
    assert [f.result(timeout=30) for f in futures[:-1]] == list(range(count - 1))


def test_running_task_cannot_be_cancelled(executor):
    future = executor.submit(sleep_then, 1, "x")
    time.sleep(0.5)
    assert not future.cancel()
    assert future.result(timeout=30) == "x"


def test_add_done_callback_runs(executor):
    seen = []
    future = executor.submit(square, 5)
    future.add_done_callback(lambda f: seen.append(f.result()))
    future.result(timeout=30)
    deadline = time.time() + 5
    while not seen and time.time() < deadline:
        time.sleep(0.01)
    assert seen == [25]


def test_map_timeout_applies_to_the_whole_iteration(executor):
    executor.submit(square, 1).result(timeout=60)  # workers warm: the timeout measures the job
    results = executor.map(sleep_then, [0, 10], timeout=3)
    assert next(results) is None
    with pytest.raises(concurrent.futures.TimeoutError):
        next(results)


def test_map_raises_the_failed_item_when_iteration_reaches_it(executor):
    results = executor.map(fail_if, range(5), [3] * 5)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="bad item 3"):
        next(results)


def test_map_of_empty_input_returns_nothing(executor):
    assert list(executor.map(square, [])) == []


def test_map_refuses_iterables_of_different_lengths(executor):
    with pytest.raises(ConfigurationError, match="different lengths"):
        executor.map(add, [1, 2, 3], [1, 2])


def test_closures_lambdas_and_main_functions_ship(executor):
    offset = 7
    assert list(executor.map(lambda x: x + offset, [1, 2])) == [8, 9]


def test_arguments_larger_than_the_inline_limit_round_trip(executor):
    big = [np.arange(100_000, dtype=np.int64) * i for i in range(3)]  # 800 kB each
    sums = list(executor.map(lambda a: int(a.sum()), big))
    assert sums == [int(a.sum()) for a in big]
    job = executor.last_job
    assert all(t.args_range is not None and t.args_inline is None for t in job.tasks)
    # All large arguments of the job were packed into ONE object.
    assert {t.args_range.key for t in job.tasks} == {f"{job.prefix}/args"}


def test_a_100_mb_numpy_result_round_trips_intact(executor):
    def make(n):
        return np.arange(n, dtype=np.float64)

    result = executor.with_options(memory_mb=2048).submit(make, 100 * 1024 * 1024 // 8).result(timeout=120)
    assert result.nbytes == 100 * 1024 * 1024
    assert result[0] == 0 and result[-1] == len(result) - 1
    assert np.array_equal(result[::1_000_003], np.arange(len(result), dtype=np.float64)[::1_000_003])


def test_shared_object_is_stored_once_and_read_by_tasks(executor):
    table = executor.share({"a": 1, "b": 2})
    assert list(executor.map(lambda key, t=table: t.value[key], ["a", "b", "a"])) == [1, 2, 1]
    shared = list(executor.storage.list(executor.session_prefix + "/shared/"))
    assert len(shared) == 1


def test_shutdown_deletes_temp_objects(make_executor):
    ex = make_executor()
    big = np.zeros(200_000)
    list(ex.map(lambda a: a.size, [big, big]))
    assert list(ex.storage.list(ex.session_prefix + "/"))
    ex.shutdown()
    assert list(ex.storage.list(ex.session_prefix + "/")) == []


def test_keep_temp_leaves_temp_objects(make_executor):
    ex = make_executor(keep_temp=True)
    list(ex.map(lambda a: a.size, [np.zeros(200_000)]))
    ex.shutdown()
    assert list(ex.storage.list(ex.session_prefix + "/"))
    ex.cleanup()


def test_submit_after_shutdown_is_refused(make_executor):
    ex = make_executor()
    ex.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(square, 1)


def test_context_manager_waits_for_running_tasks(make_executor):
    ex = make_executor()
    with ex:
        future = ex.submit(sleep_then, 0.5, "done")
    assert future.result(timeout=0) == "done"


def test_shutdown_cancel_futures_cancels_pending_ones(make_executor):
    ex = make_executor(workers=1)
    futures = [ex.submit(sleep_then, 0.1, i) for i in range(ex.backend.capacity + 4)]
    time.sleep(0.2)
    ex.shutdown(wait=True, cancel_futures=True)
    assert futures[0].result() == 0
    assert futures[-1].cancelled()


def test_job_summary_counts_tasks_and_time(executor):
    list(executor.map(sleep_then, [0.1] * 4))
    summary = executor.last_job.summary()
    assert summary.tasks == 4 and summary.succeeded == 4 and summary.failed == 0
    assert summary.task_seconds >= 0.4
    assert summary.wall_s >= 0.1
    assert "4 tasks" in str(summary)


def test_verbose_map_prints_the_summary(make_executor, capsys):
    ex = make_executor(verbose=True)
    list(ex.map(square, range(3)))
    assert "3 tasks" in capsys.readouterr().err
