"""Submits join one job while it runs (``Session.submit``): a burst of calls is a few jobs and
a few job records, not one of each per call, and every call's future stays its own."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest

from lambdamr.driver.history import list_history_folder
from lambdamr.driver.jobstore import list_jobs
from lambdamr.driver.session import SUBMITS_PER_JOB
from lambdamr.driver.task_ledger import FIRST_KEPT
from lambdamr.errors import SerializationError
from tests.gates import WAIT_S, touch, wait_for


def square(x):
    return x * x


def wait_then(path, value):
    """Wait for the gate, then return ``value``, or raise for a negative one."""
    wait_for(path)
    if value < 0:
        raise ValueError(f"negative {value}")
    return value


def test_a_burst_of_submits_in_flight_is_one_job_with_one_record(make_executor, tmp_path):
    ex = make_executor(keep_temp=True)
    gate = str(tmp_path / "gate")
    futures = [ex.submit(wait_for, gate, i) for i in range(40)]  # none can finish before the gate opens
    job = futures[0].job
    assert all(f.job is job for f in futures) and [f.task_id for f in futures] == list(range(40))
    assert ex.jobs == [job] and not job.done()
    touch(gate)
    assert [f.result(timeout=WAIT_S) for f in futures] == list(range(40))
    assert job.wait(WAIT_S) and job.sealed  # its last task settled: nothing can join it any more
    summary = job.summary()
    assert (summary.tasks, summary.calls, summary.succeeded) == (40, 40, 40)
    ex.shutdown()
    assert [doc["job_id"] for doc in list_jobs(ex.storage, ex.key_prefix, ex.signer)] == [job.job_id]
    [record] = [doc for doc in list_jobs(ex.storage, ex.key_prefix, ex.signer)]
    assert (record["state"], record["tasks"], record["calls"]) == ("done", 40, 40)
    assert [job_id for job_id, _, _ in list_history_folder(ex.storage, ex.key_prefix).records] == [job.job_id]


def test_the_futures_of_one_job_of_submits_stay_independent(make_executor, tmp_path):
    ex = make_executor(workers=1)
    gate = str(tmp_path / "gate")
    values = [1, -2, 3] + [10 + i for i in range(ex.backend.capacity + 2)]
    futures = [ex.submit(wait_then, gate, v) for v in values]
    assert len({f.job_id for f in futures}) == 1
    last = futures[-1]  # beyond the backend's capacity: still in the driver, cancellable
    assert last.cancel() and last.cancelled() and not futures[0].cancelled()
    called = threading.Event()
    futures[0].add_done_callback(lambda f: called.set())
    touch(gate)
    done = list(concurrent.futures.as_completed(futures, timeout=WAIT_S))
    assert len(done) == len(futures) and called.wait(WAIT_S)
    assert futures[0].result() == 1 and futures[2].result() == 3
    with pytest.raises(ValueError, match="negative -2"):
        futures[1].result()
    with pytest.raises(concurrent.futures.CancelledError):
        last.result()
    assert [f.result() for f in futures[3:-1]] == values[3:-1]
    job = last.job
    assert job.wait(WAIT_S)
    summary = job.summary()
    assert (summary.tasks, summary.succeeded, summary.failed, summary.cancelled) == (
        len(values), len(values) - 2, 1, 1)


def test_what_starts_a_job_of_its_own(make_executor, tmp_path):
    ex = make_executor()
    first = ex.submit(square, 2)
    assert first.result(timeout=WAIT_S) == 4
    assert ex.submit(square, 3).job is not first.job  # every earlier call was done
    gate = str(tmp_path / "gate")
    a = ex.submit(wait_for, gate, 1)
    a2 = ex.submit(wait_for, gate, 2)  # joins: a is not done
    other_function = ex.submit(wait_then, gate, 3)
    other_settings = ex.with_options(timeout_s=299).submit(wait_for, gate, 4)
    again = ex.submit(wait_for, gate, 5)  # consecutive submits only: the job of a was closed
    again2 = ex.submit(wait_for, gate, 6)
    mapped = ex.map(square, [7])  # another job (launched, not consumed: the workers are busy) closes the job of submits
    after_map = ex.submit(wait_for, gate, 8)
    budgeted = [ex.with_options(budget_usd=1.0).submit(wait_for, gate, v) for v in (9, 10)]  # a budget is per call
    assert a2.job is a.job and again2.job is again.job
    jobs = [a.job, other_function.job, other_settings.job, again.job, after_map.job, *[f.job for f in budgeted]]
    assert len({id(job) for job in jobs}) == len(jobs) and mapped.job not in jobs
    assert ex.last_job is budgeted[-1].job
    touch(gate)
    futures = [a, a2, other_function, other_settings, again, again2, after_map, *budgeted]
    assert [f.result(timeout=WAIT_S) for f in futures] == [1, 2, 3, 4, 5, 6, 8, 9, 10]
    assert list(mapped) == [49]
    assert all(job.wait(WAIT_S) for job in jobs)  # every job was sealed: none waits for a submit
    assert [job.summary().tasks for job in jobs] == [2, 1, 1, 2, 1, 1, 1]


def test_a_submit_that_cannot_be_staged_leaves_the_job_it_joined_to_finish(make_executor, tmp_path):
    ex = make_executor()
    gate = str(tmp_path / "gate")
    joined = ex.submit(wait_for, gate, 1)
    with pytest.raises(SerializationError):
        ex.submit(wait_for, gate, threading.Lock())  # the arguments cannot be pickled
    touch(gate)
    assert joined.result(timeout=WAIT_S) == 1
    assert joined.job.wait(WAIT_S)
    assert (joined.job.task_count, joined.job.summary().succeeded) == (1, 1)
    assert ex.submit(wait_for, gate, 2).result(timeout=WAIT_S) == 2  # the next submit starts a job of its own


def test_a_job_of_submits_takes_at_most_its_bound(make_executor, tmp_path, monkeypatch):
    monkeypatch.setattr("lambdamr.driver.session.SUBMITS_PER_JOB", 3)
    ex = make_executor()
    gate = str(tmp_path / "gate")
    futures = [ex.submit(wait_for, gate, i) for i in range(7)]
    assert [sorted({f.task_id for f in futures if f.job is job}) for job in ex.jobs] == [[0, 1, 2], [0, 1, 2], [0]]
    touch(gate)
    assert [f.result(timeout=WAIT_S) for f in futures] == list(range(7))
    assert all(job.wait(WAIT_S) for job in ex.jobs)
    assert SUBMITS_PER_JOB == FIRST_KEPT  # every task of a job of submits keeps its record: timing(), logs()
