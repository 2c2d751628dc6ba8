"""Futures as inputs (driver/pipeline.py): a call starts once ITS upstream futures are done.

The behaviour tests run on inline, local and the AWS stand-in (over a folder, and S3 for the
stand-in); which call started when is proven with files the tasks wait for or write (gates),
never with sleeps. The first tests need no executor: finding futures and putting values back.
"""

from __future__ import annotations

import concurrent.futures
import gc
import itertools
import os
import threading
import weakref
from collections import namedtuple
from pathlib import Path

import pytest

from lambdamr import CancelledError, IntegrityError, LambdaExecutor, SerializationError, UpstreamError
from lambdamr.driver.jobstore import load_job, result_key
from lambdamr.driver.launching import contiguous_runs
from lambdamr.driver.pipeline import futures_in, upstream_error, with_values
from tests.gates import WAIT_S, touch, until, wait_for
from tests.targets import TARGETS, build_executor

Point = namedtuple("Point", "x y")


# ---- the tasks ---------------------------------------------------------------------------------
def square(x):
    return x * x


def add(a, b=0):
    return a + b


def fail_if(x, bad):
    if x == bad:
        raise ValueError(f"bad item {x}")
    return x


def describe(nested, point=None, mapping=None):
    return {"nested": nested, "point": point, "mapping": mapping, "point_type": type(point).__name__}


# ---- finding futures, and their values put in their place --------------------------------------
def done(value):
    future = concurrent.futures.Future()
    future.set_result(value)
    return future


def test_futures_are_found_in_arguments_lists_tuples_named_tuples_and_dict_values():
    a, b, c, d = (concurrent.futures.Future() for _ in range(4))
    calls = [((a, [1, (b, {"k": [c]})], Point(d, a)), {"kw": {"x": b}})]
    assert {id(f) for f in futures_in(calls)} == {id(a), id(b), id(c), id(d)}
    assert futures_in([((1, "text", b"bytes", {a: 1}), {})]) == []  # a dict key is not resolved


def test_values_replace_futures_keeping_the_containers_types():
    a, b = done(1), done("two")
    untouched = list(range(5))
    [(args, kwargs)] = with_values([((a, [b, (a,)], Point(a, b), untouched), {"m": {"k": [b]}})])
    assert args == (1, ["two", (1,)], Point(1, "two"), untouched)
    assert type(args[2]) is Point
    assert kwargs == {"m": {"k": ["two"]}}


def test_the_upstream_error_names_the_future_and_chains_the_cause():
    upstream = concurrent.futures.Future()
    cause = ValueError("bad item 3\nmore")
    error = upstream_error(upstream, cause)
    assert isinstance(error, UpstreamError) and error.upstream is upstream and error.__cause__ is cause
    assert repr(upstream) in str(error) and "failed with ValueError: bad item 3" in str(error)
    assert "was cancelled" in str(upstream_error(upstream, CancelledError()))


def test_manifest_parts_follow_runs_of_task_ids():
    class T:
        def __init__(self, task_id):
            self.task_id = task_id

    tasks = [T(i) for i in (0, 1, 3, 4, 5, 9)]
    assert [[t.task_id for t in run] for run in contiguous_runs(tasks)] == [[0, 1], [3, 4, 5], [9]]


# ---- on every backend ------------------------------------------------------------------------------
PIPELINE_TARGETS = [t for t in TARGETS if str(t) in ("inline-folder", "local-folder", "aws-s3")]


@pytest.fixture(scope="module", params=PIPELINE_TARGETS, ids=str)
def target(request: pytest.FixtureRequest):
    """Inline and local over a folder, the AWS stand-in over S3."""
    return request.param


@pytest.fixture
def gates(tmp_path: Path):
    """A folder of files the blocked tasks wait for; every gate opens at teardown."""
    folder = tmp_path / "gates"
    folder.mkdir()
    yield folder
    for i in range(8):
        (folder / f"gate-{i}").write_text("go")


@pytest.mark.parametrize("upstream_kind", ["map", "futures"])
def test_each_downstream_call_starts_once_its_own_upstream_call_finished(target_executor, gates, upstream_kind):
    ex = target_executor
    gate = [str(gates / f"gate-{i}") for i in range(2)]
    mark = [str(gates / f"started-{i}") for i in range(2)]
    if upstream_kind == "map":
        upstream = ex.map(wait_for, gate, mark)
    else:
        upstream = [ex.submit(wait_for, gate[i], mark[i]) for i in range(2)]
    downstream = ex.map(touch, upstream)
    Path(gate[1]).write_text("go")  # the second upstream call ends first
    until(lambda: os.path.exists(mark[1]))  # ... and its downstream call starts while the first upstream waits
    assert not os.path.exists(mark[0])
    Path(gate[0]).write_text("go")
    assert list(downstream) == mark  # still yielded in input order


def test_submit_waits_for_futures_nested_in_its_arguments(target_executor, gates):
    ex = target_executor
    first = ex.submit(wait_for, str(gates / "gate-0"), 2)
    second = ex.submit(square, 3)
    future = ex.submit(describe, [first, (second, {"k": first})], point=Point(second, first), mapping={"m": [second]})
    assert not future.done()
    (gates / "gate-0").write_text("go")
    assert future.result(WAIT_S) == {
        "nested": [2, (9, {"k": 2})], "point": Point(9, 2), "mapping": {"m": [9]}, "point_type": "Point",
    }


def test_futures_of_another_executor_and_of_a_thread_pool_are_shipped_as_values(target_executor, tmp_path):
    opened = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool, LambdaExecutor(
        "inline", storage=str(tmp_path / "other"), progress=False
    ) as other:
        from_pool = pool.submit(lambda: opened.wait(WAIT_S) and 40)
        from_other = other.submit(square, 1)
        future = target_executor.submit(add, from_pool, b=from_other)
        assert not future.done()
        opened.set()
        assert future.result(WAIT_S) == 41


def test_an_upstream_failure_fails_only_its_own_downstream_call(target_executor):
    upstream = target_executor.map(fail_if, range(4), [2] * 4)
    futures = list(target_executor.map(square, upstream).futures())
    assert [f.result(WAIT_S) for i, f in enumerate(futures) if i != 2] == [0, 1, 9]
    error = futures[2].exception(WAIT_S)
    assert isinstance(error, UpstreamError)
    assert isinstance(error.__cause__, ValueError) and str(error.__cause__) == "bad item 2"
    assert f"job={upstream.job.job_id} task=2" in str(error)  # names the upstream call


def test_a_failure_cascades_down_a_chain_without_running_it(target_executor):
    root = concurrent.futures.Future()
    chain = [root]
    for _ in range(30):
        chain.append(target_executor.submit(add, chain[-1], 1))
    root.set_exception(KeyError("root"))
    errors = [f.exception(WAIT_S) for f in chain[1:]]
    assert all(isinstance(e, UpstreamError) for e in errors)
    assert isinstance(errors[0].__cause__, KeyError) and errors[1].__cause__ is errors[0]
    assert all(f.job.wait(WAIT_S) and f.job.invocations == 0 for f in chain[1:])  # nothing ran


def test_a_chain_of_successes_passes_each_value_on(target_executor):
    root = concurrent.futures.Future()
    chain = [root]
    for _ in range(10):
        chain.append(target_executor.submit(add, chain[-1], 1))
    root.set_result(0)
    assert chain[-1].result(WAIT_S) == 10


def test_a_cancelled_upstream_fails_the_call_with_upstream_error(target_executor):
    upstream = concurrent.futures.Future()
    future = target_executor.submit(square, upstream)
    assert upstream.cancel()
    error = future.exception(WAIT_S)
    assert isinstance(error, UpstreamError) and isinstance(error.__cause__, CancelledError)
    assert error.upstream is upstream and "was cancelled" in str(error)
    assert future.job.wait(WAIT_S)


def test_a_waiting_call_can_be_cancelled_and_never_runs(target_executor):
    upstream = concurrent.futures.Future()
    future = target_executor.submit(square, upstream)
    assert future.cancel()
    assert future.job.wait(WAIT_S)  # the job is done at once: it does not wait for the upstream
    upstream.set_result(3)
    assert future.job.invocations == 0 and future.job.summary().cancelled == 1


def test_the_map_timeout_counts_the_wait_for_upstream_calls(target_executor, gates):
    downstream = target_executor.map(square, target_executor.map(wait_for, [str(gates / "gate-0")], [3]), timeout=0.5)
    with pytest.raises(concurrent.futures.TimeoutError):
        next(downstream)


def test_a_downstream_map_reads_an_endless_upstream_map_a_window_at_a_time(target_executor):
    upstream = target_executor.map(square, itertools.count(), buffersize=4)
    downstream = target_executor.map(add, upstream, buffersize=4)
    assert [next(downstream) for _ in range(10)] == [i * i for i in range(10)]
    # at most the downstream's window ahead of what was consumed, plus the upstream's own window
    assert len(upstream.job.tasks) <= 10 + 4 + 4
    downstream.close()  # closes its input: the upstream map stops reading and finishes
    assert upstream.job.wait(WAIT_S)


def test_shutdown_lets_waiting_calls_run_once_their_upstream_finished(executor_factory, gates):
    ex = executor_factory()
    upstream = ex.submit(wait_for, str(gates / "gate-0"), 4)
    future = ex.submit(square, upstream)
    ex.shutdown(wait=False)
    (gates / "gate-0").write_text("go")
    assert future.result(WAIT_S) == 16


def test_a_dropped_executor_still_runs_its_waiting_calls(target, target_options):
    ex = build_executor(target, target_options)
    upstream = concurrent.futures.Future()
    future = ex.submit(square, upstream)
    session = weakref.ref(ex.session)
    del ex
    gc.collect()
    assert session() is None  # nothing waiting holds the executor
    upstream.set_result(7)
    assert future.result(WAIT_S) == 49  # released in the background once this call finished


def test_shutdown_cancel_futures_cancels_waiting_calls(executor_factory):
    ex = executor_factory()
    never = concurrent.futures.Future()  # nobody ever finishes it: shutdown must not wait for it
    future = ex.submit(square, never)
    ex.shutdown(wait=True, cancel_futures=True)
    assert future.cancelled()


def test_terminate_workers_cancels_waiting_calls(executor_factory, gates):
    ex = executor_factory()
    upstream = ex.submit(wait_for, str(gates / "gate-0"), 1)
    future = ex.submit(square, upstream)
    ex.terminate_workers()  # what Ctrl-C does
    assert future.cancelled()


def test_a_map_iterator_nested_in_an_argument_is_refused_clearly(target_executor):
    results = target_executor.map(square, [1])
    with pytest.raises(SerializationError, match=r"pass it to map\(\) as an iterable"):
        target_executor.submit(len, [results])
    assert list(results) == [1]


def test_a_map_iterator_in_a_later_item_is_raised_after_the_results_before_it(target_executor):
    nested = target_executor.map(square, [1])
    results = target_executor.map(len, itertools.chain([[1, 2]] * 6, [[nested]]), buffersize=2)
    assert [next(results) for _ in range(6)] == [2] * 6
    with pytest.raises(SerializationError, match="map iterator"):
        next(results)
    assert results.job.wait(WAIT_S)  # the refused item left no task behind to wait for


def test_a_future_where_it_cannot_be_resolved_is_refused_clearly(target_executor):
    with pytest.raises(SerializationError, match="may be an argument itself or sit in a list, tuple or dict"):
        target_executor.submit(len, {concurrent.futures.Future()})


# ---- durable jobs: attach reads the task manifest of calls launched out of order -----------------
def test_a_durable_pipelined_map_has_a_complete_task_manifest(executor_factory, gates):
    ex = executor_factory(durable=True)
    gate = [str(gates / f"gate-{i}") for i in range(3)]
    downstream = ex.map(square, [ex.submit(wait_for, gate[i], i) for i in range(3)] + [5])
    for i in (2, 0, 1):  # launched in this order: one manifest part each, the ready one first
        Path(gate[i]).write_text("go")
    assert list(downstream) == [0, 1, 4, 25]
    job = load_job(ex.storage, downstream.job.prefix, downstream.job.job_id, ex.signer, backend=ex.backend.name, region=None)
    assert [task.calls for task in job.tasks] == [1, 1, 1, 1]


# ---- stored records: the downstream task reads the upstream value itself --------------------------
def blob(n):
    return b"x" * n


def size_of(data, gate=None):
    return len(data)


def pipelined_size(ex, n):
    """Run ``size_of(blob(n))`` pipelined, the downstream call held until the upstream is done;
    return the downstream task."""
    upstream = ex.submit(blob, n)
    gate = concurrent.futures.Future()
    future = ex.submit(size_of, upstream, gate)
    assert upstream.result(WAIT_S) == b"x" * n
    gate.set_result(None)
    assert future.result(WAIT_S) == n
    return future.job.tasks[0]


def test_where_records_are_stored_the_downstream_task_reads_the_upstream_value_itself(executor_factory):
    # durable: every record is stored (as on fire-and-forget Lambda); a reference to the
    # record travels in the arguments, inline, instead of the 300 KB value, which would be packed
    assert pipelined_size(executor_factory(durable=True), 300_000).args_range is None
    plain = executor_factory()
    stored = not plain.backend.reports_outcomes  # aws-s3: asynchronous invokes store every record
    assert (pipelined_size(plain, 300_000).args_range is None) == stored


def arange(n):
    import numpy as np

    return np.arange(n)


def total(array, gate=None):
    return int(array.sum())


def test_a_stored_upstream_array_reaches_the_downstream_task_through_its_own_buffers(executor_factory):
    ex = executor_factory(durable=True)
    upstream = ex.submit(arange, 300_000)  # 2.4 MB: its buffer is an object of its own
    gate = concurrent.futures.Future()
    future = ex.submit(total, upstream, gate)
    assert int(upstream.result(WAIT_S)[-1]) == 299_999
    gate.set_result(None)
    assert future.result(WAIT_S) == 299_999 * 300_000 // 2
    # the reference travelled, not the array: by value its buffer would be staged under the job's values/
    assert list(ex.storage.list(f"{future.job.prefix}/values/")) == []


def test_a_tampered_upstream_record_fails_the_downstream_call(executor_factory):
    ex = executor_factory(durable=True)
    upstream = ex.submit(blob, 10)
    gate = concurrent.futures.Future()
    future = ex.submit(size_of, upstream, gate)
    upstream.result(WAIT_S)
    job = upstream.job
    key = result_key(job.prefix, 0, job.tasks[0].timings["attempt"])
    record = bytearray(ex.storage.get(key))
    record[-1] ^= 1
    ex.storage.put(key, bytes(record))
    gate.set_result(None)
    with pytest.raises(IntegrityError, match="signature"):
        future.result(WAIT_S)
