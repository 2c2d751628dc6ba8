"""A long-lived executor's memory stays bounded: consumed results are let go, the job history
is bounded, and ``map`` streams its input through a bounded window (``buffersize``)."""

from __future__ import annotations

import concurrent.futures
import gc
import inspect
import itertools
import time
import tracemalloc
import weakref
from collections.abc import Callable

import pytest

from lambdamr import LambdaExecutor
from lambdamr.driver.session import SUBMITS_PER_JOB
from lambdamr.errors import ConfigurationError, SerializationError
from lambdamr.executor import JOB_HISTORY
from tests.gates import touch, until, wait_for


class Blob:
    """A result the test can hold a weak reference to."""

    def __init__(self, size: int) -> None:
        self.data = bytes(size)


def make_blob(size):
    return Blob(size)


def square(x):
    return x * x


def add(a, b):
    return a + b


def nap(seconds):
    time.sleep(seconds)
    return seconds


@pytest.fixture
def ex(tmp_path):
    with LambdaExecutor(storage=str(tmp_path / "store"), workers=2, progress=False) as executor:
        yield executor


def test_a_consumed_and_dropped_map_result_leaves_memory(ex):
    results = ex.map(make_blob, [1000] * 40, buffersize=4)
    refs = []
    for blob in results:
        refs.append(weakref.ref(blob))
        del blob
    gc.collect()
    assert len(refs) == 40 and [r for r in refs if r() is not None] == []
    job = ex.last_job
    assert job.summary().succeeded == 40 and len(job.tasks) == 40  # the record stays, the values go
    assert job.futures == []  # the job kept no future its iterator consumed


def test_a_dropped_submit_future_takes_its_result_along(ex):
    future = ex.submit(make_blob, 1000)
    ref = weakref.ref(future.result(timeout=60))
    job = future.job
    del future
    # result() returns as the scheduler settles the future, before it has let go of the task
    # and of the record the value came in: the value goes once it has (no later)
    until(lambda: gc.collect() >= 0 and ref() is None, what="the dropped result collected")
    assert job.done() and job.summary().succeeded == 1  # the job's record outlives the value


def test_a_future_still_held_keeps_its_result(ex):
    future = ex.submit(make_blob, 10)
    assert future.result(timeout=60).data == bytes(10)
    gc.collect()
    assert future.result().data == bytes(10)
    assert future.job.futures == []  # the caller's alone: the job lists only futures nobody claimed


def test_the_job_history_is_bounded(ex):
    futures = []
    for i in range(JOB_HISTORY + 25):  # each awaited: a submit after the earlier ones are done is a job of its own
        futures.append(ex.submit(square, i))
        assert futures[-1].result(timeout=60) == i * i
    assert len(ex.jobs) == JOB_HISTORY
    assert ex.jobs[0].job_id.endswith(f"-{26:04d}") and ex.last_job is ex.jobs[-1] is futures[-1].job
    assert ex.summary().succeeded == 1


def test_map_over_an_endless_iterator_streams_and_can_be_abandoned(ex):
    results = ex.map(square, itertools.count(), buffersize=8)
    assert [next(results) for _ in range(30)] == [i * i for i in range(30)]
    job = results.job
    assert 30 <= len(job.tasks) <= 30 + 8  # read only as far as the window reaches
    del results  # abandoned: the input is no longer read, the job ends with the tasks it has
    assert job.wait(60)
    assert len(job.tasks) <= 38 and job.summary().succeeded == len(job.tasks)


def test_shutdown_cancels_what_an_abandoned_endless_map_left_queued(tmp_path):
    ex = LambdaExecutor(storage=str(tmp_path / "store"), workers=1, progress=False)
    results = ex.map(nap, itertools.repeat(0.05), buffersize=64)  # far more than one worker holds
    assert next(results) == 0.05
    job = results.job
    results = None  # abandoned
    ex.shutdown(wait=True, cancel_futures=True)
    summary = job.summary()
    assert job.done() and summary.cancelled > 0
    assert summary.succeeded + summary.cancelled + summary.failed == summary.calls == len(job.tasks)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.map(square, itertools.count())


def test_a_map_launched_whole_can_be_consumed_after_shutdown(tmp_path):
    ex = LambdaExecutor(storage=str(tmp_path / "store"), workers=2, progress=False)
    exact = ex.map(square, range(16), buffersize=16)  # the window holds it all, the end is unseen
    more = ex.map(square, range(40), buffersize=8)
    ex.shutdown()
    assert list(exact) == [i * i for i in range(16)]
    with pytest.raises(RuntimeError, match="after shutdown"):
        list(more)  # what was launched is returned, then the rest cannot be scheduled


def test_map_timeout_counts_from_the_call_over_an_endless_input(ex):
    results = ex.map(nap, itertools.repeat(0.05), timeout=1.0, buffersize=4)
    with pytest.raises(concurrent.futures.TimeoutError):
        for _ in results:  # endless without the deadline (pytest-timeout would fail the test)
            pass
    assert results.job.wait(60)  # the error closed the iterator: the job ended


def test_streaming_map_with_chunksize_keeps_order_and_task_count(ex):
    results = ex.map(add, range(100), iter(range(100, 200)), chunksize=7, buffersize=3)
    assert list(results) == [2 * i + 100 for i in range(100)]
    assert len(ex.last_job.tasks) == 15 and ex.last_job.summary().calls == 100


def test_input_errors_past_the_first_window_are_raised_by_the_iteration(ex):
    import threading

    def rows():
        yield from range(20)
        yield threading.Lock()  # cannot be pickled

    results = ex.map(square, rows(), buffersize=4)
    assert [next(results) for _ in range(20)] == [i * i for i in range(20)]
    with pytest.raises(SerializationError):
        next(results)
    assert results.job.wait(60) and len(results.job.tasks) == 20

    uneven = ex.map(add, range(30), (i for i in range(25)), buffersize=2)
    assert [next(uneven) for _ in range(25)] == [2 * i for i in range(25)]
    with pytest.raises(ConfigurationError, match=r"different lengths \(more than 25, 25\)"):
        next(uneven)


def test_different_sized_inputs_are_refused_before_launch(ex):
    with pytest.raises(ConfigurationError, match=r"different lengths \(3, 4\)"):
        ex.map(add, [1, 2, 3], [1, 2, 3, 4])
    assert ex.jobs == []
    with pytest.raises(ConfigurationError, match=r"different lengths \(2, more than 2\)"):
        ex.map(add, [1, 2], itertools.count())
    assert ex.jobs == []


def test_a_durable_streaming_map_can_be_attached_from_its_manifest_parts(tmp_path):
    options = {"storage": str(tmp_path / "store"), "workers": 2, "progress": False, "durable": True}
    with LambdaExecutor(keep_temp=True, **options) as first:
        assert list(first.map(square, (i for i in range(50)), buffersize=4)) == [i * i for i in range(50)]
        job_id = first.last_job.job_id
        parts = [i.key for i in first.storage.list(first.last_job.prefix + "/tasks")]
    assert len(parts) > 1  # one manifest part per batch the window launched
    with LambdaExecutor(**options) as second:
        job = second.attach(job_id)
        assert [f.result(timeout=60) for f in job.futures] == [i * i for i in range(50)]
        assert all(t.attempt < 1000 for t in job.tasks)  # collected from storage, none re-run


def chatty(i):
    if i % 500 == 7:
        print(f"note {i}")
    return i


def test_a_big_job_keeps_a_bounded_sample_of_task_records_and_exact_numbers(tmp_path):
    from lambdamr.driver.history_record import job_record
    from lambdamr.driver.task_ledger import FAILED_KEPT, FIRST_KEPT, SLOWEST_KEPT, UNIFORM_KEPT

    with LambdaExecutor(backend="inline", storage=str(tmp_path / "store"), progress=False) as ex:
        results = ex.map(chatty, range(3_000))
        assert sum(results) == sum(range(3_000))
        job = results.job
    assert job.done() and job.task_count == 3_000
    kept = job.tasks
    assert FIRST_KEPT <= len(kept) <= FIRST_KEPT + FAILED_KEPT + SLOWEST_KEPT + UNIFORM_KEPT < 3_000
    assert [t.task_id for t in kept[:FIRST_KEPT]] == list(range(FIRST_KEPT))
    summary = job.summary()
    assert (summary.tasks, summary.calls, summary.succeeded, summary.failed) == (3_000, 3_000, 3_000, 0)
    assert summary.cost is not None and summary.cost.requests_usd > 0 and summary.task_seconds > 0
    assert job.logs().count("note ") == sum(1 for t in kept if t.task_id % 500 == 7) >= 1  # the kept tasks' logs
    assert job.task_timing(0) is not None and job.task_logs(7) == "note 7\n" and job.futures == []
    record = job_record(job, {}, now=0.0, heartbeat_s=1.0, stale_after_s=10.0)
    assert record["tasks"] == 3_000 and record["task_rows_truncated"] and len(record["task_rows"]) == len(kept)
    assert record["counts"]["ok"] == 3_000 and record["summary"]["succeeded"] == 3_000
    figure = job.plot()  # the timeline draws the kept tasks on the whole job's axis
    assert "3,000 tasks" in figure.axes[0].get_title() and figure.axes[0].get_ylim()[0] == 3_000 - 0.5


def _traced_growth(make: Callable[[], object], count: int) -> float:
    """Bytes per object that ``count`` calls of ``make`` leave allocated while all are held."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = [make() for _ in range(count)]
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(held) == count
    return grown / count


def test_a_submit_in_flight_costs_little_more_than_a_stdlib_future(ex, tmp_path):
    gate = str(tmp_path / "gate")
    # Every slot of the backend held by a gated call: the submits below wait in the driver.
    blockers = [ex.submit(wait_for, gate, i) for i in range(ex.backend.capacity)]
    stdlib = _traced_growth(concurrent.futures.Future, 2_000)
    numbers = iter(range(2_000))
    per_submit = _traced_growth(lambda: ex.submit(square, next(numbers)), 2_000)
    jobs = {id(job) for job in ex.jobs}
    touch(gate)
    assert [f.result(timeout=60) for f in blockers] == list(range(ex.backend.capacity))
    # 6.6 KB before submits joined a job (a job, its records and ledgers per call), 2.3 KB
    # before the lean condition and unsigned held arguments; ~0.8 KB now (the future, its task,
    # its pickle, the job's entries for it) — half a bare stdlib future.
    assert per_submit < 1_100 and per_submit < stdlib * 0.7, (per_submit, stdlib)
    assert len(jobs) == 1 + 2_000 // SUBMITS_PER_JOB  # the blockers' job and the squares' jobs


#: where the history's and the job records' writer threads build a record, and the views of
#: settled tasks they decode for it: they run when they will, and what they have in hand at
#: the moment of measuring is not what a call keeps
WRITERS = ("*/lambdamr/driver/history*.py", "*/lambdamr/driver/jobstore.py", "*/lambdamr/driver/record_writer.py",
           "*/lambdamr/signing.py", "*/json/encoder.py")


def _held_outside_the_writers() -> int:
    """Traced bytes but those allocated by a line of the writers' modules or a view's decoding."""
    from lambdamr.driver import settled_task

    decoding = inspect.getsourcelines(settled_task.decoded)[1] + 2  # the line that calls marshal.loads
    writers = [tracemalloc.Filter(False, pattern) for pattern in WRITERS]
    writers.append(tracemalloc.Filter(False, settled_task.__file__, lineno=decoding))
    return sum(trace.size for trace in tracemalloc.take_snapshot().filter_traces(writers).traces)


def test_a_settled_submit_keeps_its_future_and_a_small_record_with_every_timing(ex, tmp_path):
    gate = str(tmp_path / "gate")
    blockers = [ex.submit(wait_for, gate, i) for i in range(ex.backend.capacity)]
    count = 1_000

    def settled_submits() -> list:
        futures = [ex.submit(square, i) for i in range(count)]  # one job of submits: every record kept
        touch(gate)
        assert [f.result(timeout=60) for f in futures] == [i * i for i in range(count)]
        futures[-1].job.wait(60)
        return futures

    gc.collect()
    tracemalloc.start()
    try:
        before = _held_outside_the_writers()
        futures = settled_submits()
        until(lambda: all(f.job.done() for f in blockers), what="the blockers' job done")
        gc.collect()
        per_submit = (_held_outside_the_writers() - before) / count
    finally:
        tracemalloc.stop()
    # The future (~0.5 KB), its value and its task's record (~0.2 KB of bytes); 2.4 KB before.
    assert per_submit < 1_100, per_submit
    timing = futures[7].timing()
    assert timing is not None and futures[7].logs() == ""
    assert timing["submitted"] <= timing["dispatched"] <= timing["invoked"] <= timing["started"]
    assert timing["started"] <= timing["loaded"] <= timing["finished"] <= timing["fetched"] <= timing["completed"]
    assert timing["attempt"] == timing["attempts"] == 1 and timing["request_id"] and timing["billed_ms"] >= 1
    assert {"cold", "peak_rss_mb", "last_dispatched"} <= set(timing)
