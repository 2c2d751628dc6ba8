"""What a job keeps of its settled tasks: exact totals, bounded samples (driver.task_ledger,
driver.running_stats), driven through the real ``Job`` the scheduler settles."""

from __future__ import annotations

import gc
import random
import statistics
import tracemalloc

import pytest

from lambdamr.cost import estimate_job_cost
from lambdamr.driver.job import Job
from lambdamr.driver.running_stats import PeakConcurrency, Reservoir
from lambdamr.driver.task_ledger import FAILED_KEPT, FIRST_KEPT, SLOWEST_KEPT, UNIFORM_KEPT

MOST_KEPT = FIRST_KEPT + FAILED_KEPT + SLOWEST_KEPT + UNIFORM_KEPT


def brute_peak(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def new_job(tasks: int = 0) -> Job:
    job = Job("20261201-000000-abcdef-0001", "prefix", "fn", memory_mb=1024, timeout_s=60, backend="inline", sealed=False)
    for _ in range(tasks):
        job.new_task(1)
    return job


def settle(job: Job, task_id: int, *, started: float, run_s: float, error: BaseException | None = None,
           cold: bool = False, logs: str = "") -> None:
    """What the scheduler does with a task's result record (scheduler._complete)."""
    task = job.task(task_id)
    assert task is not None and not task.done
    [future] = task.futures
    job.claim(future)  # what a map iterator does when it yields the value
    task.attempt = 1
    task.dispatched_at = task.first_dispatched_at = started - 0.01
    task.timings = {"started": started, "finished": started + run_s, "cold": cold, "init_ms": 100.0 if cold else 0,
                    "peak_rss_mb": 10.0 + task_id % 7, "attempt": 1, "fetched": started + run_s + 0.001}
    task.logs = logs
    if error is None:
        future.set_result(task_id)
    else:
        future.set_exception(error)
    job.mark_task_done(task)


def test_reservoir_is_exact_below_its_size_and_bounded_above() -> None:
    values = [random.Random(1).uniform(0, 10) for _ in range(500)]
    small = Reservoir(size=1000, seed="a")
    for v in values:
        small.add(v)
    assert small.exact and small.quantile(0.5) == statistics.median(values)
    assert small.quantile(0.9) == pytest.approx(statistics.quantiles(values, n=10, method="inclusive")[-1])
    assert small.quantile(0.0) == min(values) and small.quantile(1.0) == max(values)

    big = Reservoir(size=256, seed="a")
    for i in range(100_000):
        big.add(float(i))
    assert len(big.values) == 256 and big.seen == 100_000 and not big.exact
    assert 35_000 < (big.quantile(0.5) or 0) < 65_000  # a uniform draw: the median of 0..99,999 is near 50,000
    assert Reservoir().quantile(0.5) is None


def test_peak_concurrency_is_exact_for_intervals_in_any_order_within_the_kept_edges() -> None:
    rng = random.Random(7)
    intervals = [(start := rng.uniform(0, 100), start + rng.uniform(0, 5)) for _ in range(1000)]
    rng.shuffle(intervals)
    peak = PeakConcurrency(keep_edges=4096)
    for s, e in intervals:
        peak.add(s, e)
    assert peak.peak() == brute_peak(intervals)


def test_peak_concurrency_folds_into_bounded_edges_and_stays_exact_when_tasks_arrive_as_they_end() -> None:
    rng = random.Random(3)
    intervals = sorted(((start := rng.uniform(0, 1000), start + rng.uniform(0.1, 2)) for _ in range(20_000)),
                       key=lambda iv: iv[1])  # results arrive in the order tasks finish
    peak = PeakConcurrency(keep_edges=256)
    for s, e in intervals:
        peak.add(s, e)
        assert len(peak._starts) + len(peak._ends) <= 512
    assert peak.peak() == brute_peak(intervals)
    peak.close()
    assert len(peak._starts) + len(peak._ends) == 0 and peak.peak() == brute_peak(intervals)


def test_a_finished_10000_task_job_keeps_a_bounded_sample_and_exact_totals() -> None:
    job = new_job(10_000)
    job.seal()
    rng = random.Random(5)
    planned = {i: (1000.0 + i * 0.01, rng.uniform(0.001, 0.5)) for i in range(10_000)}
    order = sorted(planned, key=lambda i: sum(planned[i]))  # results arrive about as tasks end...
    for first in range(0, len(order), 100):  # ...give or take a hundred
        window = order[first:first + 100]
        rng.shuffle(window)
        order[first:first + 100] = window
    runs = {}
    for task_id in order:
        started, run_s = planned[task_id]
        runs[task_id] = (started + run_s) - started  # what the runtime's two timestamps say
        failed = task_id % 97 == 0
        settle(job, task_id, started=started, run_s=run_s, cold=task_id % 50 == 0,
               error=ValueError(f"bad {task_id}") if failed else None, logs=f"task {task_id}\n")
    assert job.done() and job.task_count == 10_000
    kept = job.tasks
    assert len(kept) <= MOST_KEPT and [t.task_id for t in kept] == sorted(t.task_id for t in kept)
    ids = {t.task_id for t in kept}
    assert set(range(FIRST_KEPT)) <= ids  # the start of the timeline
    failed_ids = {i for i in range(10_000) if i % 97 == 0}
    assert failed_ids <= ids  # 104 failures: under the cap, every one kept
    slowest = sorted(runs, key=runs.__getitem__)[-SLOWEST_KEPT:]
    assert set(slowest) <= ids
    assert job.futures == []  # each was claimed: the job let go of them once settled

    summary = job.summary()
    assert (summary.tasks, summary.calls) == (10_000, 10_000)
    assert (summary.succeeded, summary.failed, summary.cancelled) == (10_000 - len(failed_ids), len(failed_ids), 0)
    assert summary.cold_starts == 200
    assert summary.task_seconds == pytest.approx(sum(runs.values()), rel=1e-12)
    assert summary.max_task_s == max(runs.values())
    assert summary.peak_memory_mb == 16.0
    assert summary.peak_concurrency == brute_peak([(1000.0 + i * 0.01, 1000.0 + i * 0.01 + runs[i]) for i in runs])
    inits = [0.1 if i % 50 == 0 else 0.0 for i in range(10_000)]
    exact_cost = estimate_job_cost([runs[i] for i in range(10_000)], 1024, invocations=10_000, init_seconds=inits,
                                   storage_requests=summary.storage_requests)
    assert summary.cost == exact_cost
    assert job.task_states() == {"pending": 0, "running": 0, "ok": 10_000 - len(failed_ids), "failed": len(failed_ids),
                                 "cancelled": 0}
    kept_logs = job.logs()
    assert kept_logs.count("=== task ") == sum(1 for t in kept if t.logs)
    assert job.task_timing(0) is not None and job.task_logs(0) == "task 0\n"


def test_a_settled_task_holding_a_future_nobody_claimed_stays_with_the_job() -> None:
    job = new_job(2 * FIRST_KEPT)
    job.seal()
    unclaimed = job.task(FIRST_KEPT + 7)
    assert unclaimed is not None
    [future] = unclaimed.futures
    unclaimed.dispatched_at = 1.0
    future.set_result("kept")  # settled without a claim, as map_reduce's phases do
    job.mark_task_done(unclaimed)
    for task_id in range(2 * FIRST_KEPT):
        if task_id != FIRST_KEPT + 7:
            settle(job, task_id, started=float(task_id), run_s=0.1)
    kept = job.task(FIRST_KEPT + 7)  # the settled task's record (driver.settled_task), with the future
    assert job.futures == [future] and kept is not None and kept.futures == [future]
    assert kept.done and kept.dispatched_at == 1.0 and kept.outcome is not None and kept.outcome.succeeded == 1
    job.claim(future)  # now the caller's: the job may drop the record with the future
    assert job.futures == []


def test_more_failures_than_the_cap_keep_the_first_ones_and_every_count() -> None:
    job = new_job(3_000)
    for task_id in range(3_000):
        settle(job, task_id, started=float(task_id), run_s=0.5, error=RuntimeError("no"))
    job.seal()
    kept = [t.task_id for t in job.tasks]
    assert len(kept) == MOST_KEPT  # the first tasks, failures up to the cap, then the slowest and a draw
    assert kept[: FIRST_KEPT + FAILED_KEPT] == list(range(FIRST_KEPT + FAILED_KEPT))
    assert job.summary().failed == 3_000


def retained_bytes(tasks: int) -> int:
    """Traced memory a finished job of ``tasks`` tasks keeps once its results are consumed."""
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    job = new_job()
    for task_id in range(tasks):
        job.new_task(1)
        settle(job, task_id, started=float(task_id), run_s=0.002)
    job.seal()
    gc.collect()
    kept = tracemalloc.get_traced_memory()[0] - before
    assert job.done() and job.summary().succeeded == tasks
    return kept


def test_a_jobs_memory_is_flat_in_its_number_of_tasks() -> None:
    tracemalloc.start()
    try:
        small, big = retained_bytes(5_000), retained_bytes(20_000)
    finally:
        tracemalloc.stop()
    # Before the ledger a settled task kept ~560 bytes: 15,000 more tasks were 8 MB more.
    assert big - small < 15_000 * 20, (small, big)
    assert big < MOST_KEPT * 1_500, big  # the sample's records and two arrays of floats
