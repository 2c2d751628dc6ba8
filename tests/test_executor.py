"""The executor's behaviour, written once and run on every backend × storage (tests/targets.py):
inline, local and AWS (a Lambda stand-in over the session's deployment) over a local folder
and S3 on moto's server — ``aws-folder`` is not generated, a Lambda container cannot read the
driver's disk.

``target_executor`` is shared by the module's tests of one target (workers and Lambda
environments stay warm, as in a notebook); a test that configures or shuts down its executor
builds its own with ``executor_factory``. Tasks that must stay unfinished wait for a release
file the test writes (at teardown at the latest), never for a fixed sleep.
"""

from __future__ import annotations

import collections
import concurrent.futures
import time
import traceback
from pathlib import Path

import numpy as np
import pytest

import lambdamr
from lambdamr import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    ConfigurationError,
    LambdaFuture,
    as_completed,
    wait,
)
from tests.gates import WAIT_S, until, wait_for


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


def divide(a, b):
    return a / b


def count_lines(chunk):
    return len(chunk.text().splitlines())


def words(line):
    for word in line.split():
        yield word, 1


def total(key, values):
    return sum(values)


@pytest.fixture
def release(tmp_path: Path):
    """A path blocked tasks wait for; written at teardown so that none outlives its test."""
    path = tmp_path / "release"
    yield path
    path.write_text("go")


# ---- map and submit ------------------------------------------------------------------------
def test_map_of_200_tasks_returns_every_result_in_order(target_executor):
    results = list(target_executor.map(square, range(200)))
    assert results == [i * i for i in range(200)]
    job = target_executor.last_job
    assert len(job.tasks) == 200
    assert len({t.job.function_key for t in job.tasks}) == 1  # one job: the function went to storage once


def test_map_with_several_iterables_and_chunksize(target_executor):
    assert list(target_executor.map(add, range(10), range(10, 20), chunksize=3)) == [2 * i + 10 for i in range(10)]
    assert len(target_executor.last_job.tasks) == 4


def test_submit_passes_args_and_kwargs(target_executor):
    assert target_executor.submit(add, 1, 2, c=3).result(timeout=WAIT_S) == 6


def test_futures_are_concurrent_futures(target_executor):
    future = target_executor.submit(square, 3)
    assert isinstance(future, concurrent.futures.Future)
    assert isinstance(future, LambdaFuture)
    assert future.result(timeout=WAIT_S) == 9
    assert future.done() and future.exception() is None
    assert future.timing()["started"] <= future.timing()["finished"]


def test_map_of_empty_input_returns_nothing(target_executor):
    assert list(target_executor.map(square, [])) == []


def test_map_refuses_iterables_of_different_lengths(target_executor):
    with pytest.raises(ConfigurationError, match="different lengths"):
        target_executor.map(add, [1, 2, 3], [1, 2])


def test_closures_lambdas_and_main_functions_ship(target_executor):
    offset = 7
    assert list(target_executor.map(lambda x: x + offset, [1, 2])) == [8, 9]


def test_arguments_larger_than_the_inline_limit_round_trip(target_executor):
    big = [np.arange(100_000, dtype=np.int64) * i for i in range(3)]  # 800 kB each
    sums = list(target_executor.map(lambda a: int(a.sum()), big))
    assert sums == [int(a.sum()) for a in big]
    job = target_executor.last_job
    assert all(t.args_range is not None and t.args_inline is None for t in job.tasks)
    assert {t.args_range.key for t in job.tasks} == {f"{job.prefix}/args"}  # ONE object for the job


def test_a_100_mb_numpy_result_round_trips_intact(target_executor):
    def make(n):
        return np.arange(n, dtype=np.float64)

    # timeout_s: on a loaded machine moto takes its time over a 100 MB multipart upload
    big = target_executor.with_options(memory_mb=2048, timeout_s=120)
    result = big.submit(make, 100 * 1024 * 1024 // 8).result(timeout=110)
    assert result.nbytes == 100 * 1024 * 1024
    assert result[0] == 0 and result[-1] == len(result) - 1
    assert np.array_equal(result[::1_000_003], np.arange(len(result), dtype=np.float64)[::1_000_003])


def test_map_is_one_job_and_uploads_the_function_once(executor_factory):
    ex = executor_factory()
    list(ex.map(square, range(20)))
    list(ex.map(square, range(20)))
    assert len(list(ex.storage.list(ex.session_prefix + "/fn/"))) == 1
    assert len(ex.jobs) == 2


# ---- exceptions ------------------------------------------------------------------------------
def test_a_task_exception_is_reraised_as_itself_with_the_remote_frame(target_executor):
    with pytest.raises(ZeroDivisionError) as info:
        target_executor.submit(divide, 1, 0).result(timeout=WAIT_S)
    frames = traceback.extract_tb(info.value.__traceback__)
    # The last frame is the line of the user's function that raised, in the user's file.
    assert (frames[-1].name, frames[-1].filename, frames[-1].line) == ("divide", __file__, "return a / b")
    assert any("raised remotely in task 0" in note for note in getattr(info.value, "__notes__", []))


def test_map_raises_the_failed_item_when_iteration_reaches_it(target_executor):
    results = target_executor.map(fail_if, range(5), [3] * 5)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="bad item 3"):
        next(results)


# ---- waiting: as_completed, wait, timeouts ----------------------------------------------------
def test_as_completed_yields_every_future(target_executor):
    futures = [target_executor.submit(sleep_then, 0.2 * (i % 2), i) for i in range(6)]
    assert sorted(f.result() for f in as_completed(futures, timeout=WAIT_S)) == list(range(6))


def test_wait_first_completed(target_executor, release):
    blocked = target_executor.submit(wait_for, str(release), "slow")
    fast = target_executor.submit(square, 2)
    done, not_done = wait([blocked, fast], timeout=WAIT_S, return_when=FIRST_COMPLETED)
    assert done == {fast} and not_done == {blocked}


def test_wait_first_exception(target_executor, release):
    futures = [target_executor.submit(wait_for, str(release), 1), target_executor.submit(fail_if, 1, 1)]
    done, not_done = wait(futures, timeout=WAIT_S, return_when=FIRST_EXCEPTION)
    assert done == {futures[1]} and not_done == {futures[0]}
    assert isinstance(futures[1].exception(), ValueError)


def test_wait_all_completed(target_executor):
    futures = [target_executor.submit(square, i) for i in range(4)]
    done, not_done = wait(futures, timeout=WAIT_S, return_when=ALL_COMPLETED)
    assert not not_done and {f.result() for f in done} == {0, 1, 4, 9}


def test_result_timeout_raises_timeout_error_on_an_unfinished_task(target_executor, release):
    future = target_executor.submit(wait_for, str(release))
    with pytest.raises(lambdamr.TimeoutError):
        future.result(timeout=0.2)


def test_map_timeout_applies_to_the_whole_iteration(target_executor, release, tmp_path):
    target_executor.submit(square, 1).result(timeout=WAIT_S)  # workers warm: the timeout measures the job
    (tmp_path / "open").write_text("go")
    results = target_executor.map(wait_for, [str(tmp_path / "open"), str(release)], timeout=1.5)
    assert next(results) is None
    with pytest.raises(concurrent.futures.TimeoutError):
        next(results)


def test_add_done_callback_runs(target_executor):
    seen = []
    future = target_executor.submit(square, 5)
    future.add_done_callback(lambda f: seen.append(f.result()))
    future.result(timeout=WAIT_S)
    until(lambda: seen)  # callbacks run on the scheduler's thread, right after the result is set
    assert seen == [25]


# ---- cancel ----------------------------------------------------------------------------------
def test_a_running_call_cannot_be_cancelled(target_executor, release):
    future = target_executor.submit(wait_for, str(release), "x")
    until(future.running)
    assert not future.cancel()
    release.write_text("go")
    assert future.result(timeout=WAIT_S) == "x"


def test_cancel_of_a_pending_call(executor_factory, release):
    ex = executor_factory(workers=1)
    blocked = ex.submit(wait_for, str(release), "first")
    until(blocked.running)
    # Only the backend's capacity is handed over; the rest waits in the driver, cancellable.
    queued = [ex.submit(square, i) for i in range(ex.backend.capacity + 4)]
    last = queued[-1]
    assert last.cancel() and last.cancelled()
    with pytest.raises(concurrent.futures.CancelledError):
        last.result()
    release.write_text("go")
    assert blocked.result(timeout=WAIT_S) == "first"
    assert [f.result(timeout=WAIT_S) for f in queued[:-1]] == [i * i for i in range(len(queued) - 1)]


def test_shutdown_cancel_futures_cancels_pending_ones(executor_factory, release):
    ex = executor_factory(workers=1)
    blocked = ex.submit(wait_for, str(release), "ran")
    until(blocked.running)
    queued = [ex.submit(square, i) for i in range(ex.backend.capacity + 4)]
    release.write_text("go")
    ex.shutdown(wait=True, cancel_futures=True)
    assert blocked.result() == "ran"
    assert queued[-1].cancelled()


# ---- with_options, share(), objects(), map_reduce ---------------------------------------------
def test_with_options_applies_to_the_calls_it_makes_only(target_executor):
    bound = target_executor.with_options(timeout_s=7, retries=0)
    assert bound.submit(square, 4).result(timeout=WAIT_S) == 16
    assert target_executor.last_job.timeout_s == 7
    assert list(target_executor.map(square, [5])) == [25]
    assert target_executor.last_job.timeout_s == target_executor.config.timeout_s


def test_a_shared_object_is_stored_once_and_read_by_tasks(target_executor):
    before = len(list(target_executor.storage.list(target_executor.session_prefix + "/shared/")))
    table = target_executor.share({"a": 1, "b": 2})
    assert list(target_executor.map(lambda key, t=table: t.value[key], ["a", "b", "a"])) == [1, 2, 1]
    assert len(list(target_executor.storage.list(target_executor.session_prefix + "/shared/"))) == before + 1


def _write_objects(executor, tmp_path: Path, files: dict[str, bytes]) -> str:
    """Store ``files`` where the executor's tasks may read them (on AWS, inside the prefix the
    deployment grants); return their location."""
    if executor.storage.kind != "s3":
        for name, data in files.items():
            (tmp_path / "corpus" / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "corpus" / name).write_bytes(data)
        return str(tmp_path / "corpus")
    prefix = f"{executor.session_prefix}/corpus"
    for name, data in files.items():
        executor.storage.put(f"{prefix}/{name}", data)
    return executor.storage.url(prefix + "/")


def test_tasks_read_byte_ranges_of_storage_objects(target_executor, tmp_path):
    files = {"a.txt": b"".join(b"line %d\n" % i for i in range(300)), "b/c.txt": b"x\ny\nz", "empty.txt": b""}
    location = _write_objects(target_executor, tmp_path, files)
    config = target_executor.config
    chunks = lambdamr.objects(location, chunks=5).resolve(region=config.region, endpoint_url=config.endpoint_url)
    assert len(chunks) == 5
    assert sum(target_executor.map(count_lines, chunks)) == 303


def test_map_reduce_counts_words_like_a_counter(target_executor):
    lines = ["the quick brown fox", "the lazy dog", "", "the end"] * 2
    result = target_executor.map_reduce(words, lines, total, reducers=2)
    assert result == collections.Counter(w for line in lines for w in line.split())
    assert result.stats.mappers == len(lines) and result.stats.reducers == 2
    assert list(target_executor.storage.list(target_executor.session_prefix + "/shuffle/")) == []
    assert target_executor.map_then_reduce(square, range(10), sum) == 285


# ---- shutdown and what a job leaves ---------------------------------------------------------
def test_shutdown_deletes_temp_objects(executor_factory):
    ex = executor_factory()
    big = np.zeros(200_000)
    list(ex.map(lambda a: a.size, [big, big]))
    assert list(ex.storage.list(ex.session_prefix + "/"))
    ex.shutdown()
    assert list(ex.storage.list(ex.session_prefix + "/")) == []


def test_keep_temp_leaves_temp_objects(executor_factory):
    ex = executor_factory(keep_temp=True)
    list(ex.map(lambda a: a.size, [np.zeros(200_000)]))
    ex.shutdown()
    assert list(ex.storage.list(ex.session_prefix + "/"))
    ex.cleanup()
    assert list(ex.storage.list(ex.session_prefix + "/")) == []


def test_submit_after_shutdown_is_refused(executor_factory):
    ex = executor_factory()
    ex.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(square, 1)


def test_context_manager_waits_for_running_tasks(executor_factory):
    with executor_factory() as ex:
        future = ex.submit(sleep_then, 0.3, "done")
    assert future.result(timeout=0) == "done"


def test_job_summary_counts_tasks_and_time(target_executor):
    list(target_executor.map(sleep_then, [0.1] * 4))
    summary = target_executor.last_job.summary()
    assert summary.tasks == 4 and summary.succeeded == 4 and summary.failed == 0
    assert summary.task_seconds >= 0.4
    assert summary.wall_s >= 0.1
    assert "4 tasks" in str(summary)


def test_verbose_map_prints_the_summary(executor_factory, capsys):
    ex = executor_factory(verbose=True)
    list(ex.map(square, range(3)))
    assert "3 tasks" in capsys.readouterr().err
