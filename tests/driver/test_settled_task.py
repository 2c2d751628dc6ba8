"""What a job keeps of a settled task (``driver.settled_task``): one bytes record that reads back
as the task it was, through the job's real ``mark_task_done``."""

from __future__ import annotations

import pytest

from lambdamr.driver.job import Job, Task
from lambdamr.driver.settled_task import SettledTask
from lambdamr.protocol import ArgsRange

TIMINGS = {"started": 10.25, "loaded": 10.5, "finished": 11.75, "cold": True, "init_ms": 312.5,
           "peak_rss_mb": 41.2, "attempt": 2, "fetched": 11.8, "memory_mb": 2048}
FACTS = ("calls", "attempt", "attempt_base", "failures", "memory_mb", "first_dispatched_at", "dispatched_at",
         "completed_at", "timings", "runtime", "backup_attempts", "logs", "outcome", "args_range", "done")


def new_job(tasks: int, calls: int = 1) -> Job:
    job = Job("20261201-000000-abcdef-0001", "prefix", "fn", memory_mb=1024, timeout_s=60, backend="inline")
    for _ in range(tasks):
        job.new_task(calls)
    return job


def run(task: Task, *, timings: dict | None | str = "default", error: BaseException | None = None) -> None:
    """What the scheduler does with a winning record (scheduler._complete), then settle."""
    task.attempt, task.failures, task.memory_mb = 2, 1, 2048
    task.backup_attempts = frozenset({2})
    task.first_dispatched_at, task.dispatched_at = 10.0, 10.125
    task.args_range = ArgsRange("prefix/0001/args", 128, 96)
    task.timings = dict(TIMINGS) if timings == "default" else timings  # type: ignore[assignment]
    task.runtime = {"request_id": "3f2a9c1b7d0e-17", "pid": 4242, "function_name": "local"}
    task.logs = "hello\n"
    for index, future in enumerate(task.futures):
        if error is not None and index == 1:
            future.set_exception(error)
        else:
            future.set_result(index)
    task.job.mark_task_done(task)


def test_a_settled_task_reads_back_every_fact_it_had() -> None:
    job = new_job(1, calls=3)
    live = job.task(0)
    assert isinstance(live, Task)
    run(live, error=ValueError("bad input\nsecond line"))
    kept = job.task(0)
    assert isinstance(kept, SettledTask) and kept.task_id == 0
    assert {name: getattr(kept, name) for name in FACTS} == {
        **{name: getattr(live, name) for name in FACTS},
        "runtime": {"request_id": "3f2a9c1b7d0e-17", "pid": 4242},  # what task_timing reports of it
    }
    assert kept.outcome is not None and (kept.outcome.succeeded, kept.outcome.failed) == (2, 1)
    assert kept.outcome.error == "ValueError: bad input" and "ValueError" in (kept.outcome.traceback or "")
    assert len(kept.record) < 300  # the whole record (the live task and its dicts: ~0.7 KB)


def test_timing_and_logs_of_a_settled_submit_are_complete() -> None:
    job = new_job(1)
    [future] = job.task(0).futures  # type: ignore[union-attr]
    job.claim(future)  # a submit's future: the caller's, so the job keeps the record alone
    run(job.task(0))  # type: ignore[arg-type]
    assert job.futures == [] and isinstance(job.task(0), SettledTask)
    timing = future.timing()
    assert timing == {
        "submitted": job.submitted_at, "dispatched": 10.0, "last_dispatched": 10.125, "completed": timing["completed"],
        "attempts": 2, **TIMINGS, "invoked": 10.125, "billed_ms": 1500 + 313,  # run 1.5 s and INIT 312.5 ms, rounded up
        "request_id": "3f2a9c1b7d0e-17",
    }
    assert timing["completed"] >= job.submitted_at and future.logs() == "hello\n"
    assert job.logs() == "=== task 0 (attempt 2, 1.500 s, cold) ===\nhello\n"


@pytest.mark.parametrize(
    ("timings", "expected"),
    [
        ({"started": 1.0, "finished": 2.0, "billed_ms": 1001}, {"started": 1.0, "finished": 2.0, "billed_ms": 1001}),
        ({"started": 1.0, "finished": 2.0, "note": object}, {"started": 1.0, "finished": 2.0, "note": repr(object)}),
        (None, None),
    ],
    ids=["other keys: kept as they came", "a value marshal cannot write: its repr", "no record"],
)
def test_unusual_timings_are_kept(timings: dict | None, expected: dict | None) -> None:
    job = new_job(1)
    run(job.task(0), timings=timings)  # type: ignore[arg-type]
    kept = job.task(0)
    assert kept is not None and kept.timings == expected


def test_a_view_holds_the_futures_nobody_claimed_and_lets_go_of_each_claimed() -> None:
    job = new_job(1, calls=2)
    task = job.task(0)
    assert isinstance(task, Task)
    first, second = task.futures
    run(task)
    assert job.futures == [first, second]  # settled, unclaimed: map_reduce's phases read them later
    job.claim(second)
    assert job.futures == [first] and job.task(0).futures == [first]  # type: ignore[union-attr]
    job.claim(first)
    assert job.futures == [] and job.task(0).futures == []  # type: ignore[union-attr]
    assert job.task_timing(0) is not None  # the record stays (a job of up to FIRST_KEPT tasks keeps all)
