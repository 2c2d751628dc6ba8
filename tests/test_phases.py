"""A map_reduce phase re-runs what raised, never what the scheduler already re-ran: a mapper
whose worker keeps dying runs ``retries + 1`` times in all, not (retries + 1) squared."""

from __future__ import annotations

import os
import tempfile

import pytest

from lambdamr import LambdaExecutor
from lambdamr.driver.map_reduce_job import RunTimeline
from lambdamr.errors import WorkerLostError
from lambdamr.report import task_phases

RETRIES = 2


def die_after_leaving_a_mark(folder: str):
    fd, _ = tempfile.mkstemp(dir=folder)  # one file per run, whatever process runs it
    os.close(fd)
    os._exit(3)  # the worker dies: the scheduler's to retry
    yield folder, 1  # never reached: makes this a generator of pairs, as map_fn must be


def raise_once_then_pair(folder: str):
    fd, _ = tempfile.mkstemp(dir=folder)
    os.close(fd)
    if len(os.listdir(folder)) == 1:
        raise ValueError("flaky the first time")  # the user's error: the phase's to retry
    yield folder, 1


def count(key, values):
    return sum(values)


@pytest.fixture
def ex(tmp_path):
    executor = LambdaExecutor("local", storage=str(tmp_path / "store"), workers=1, retries=RETRIES, progress=False)
    yield executor
    executor.terminate_workers()


def test_a_mapper_whose_worker_keeps_dying_runs_retries_plus_one_times(ex, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    with pytest.raises(WorkerLostError) as caught:
        ex.map_reduce(die_after_leaving_a_mark, [str(runs)], count, retries=RETRIES)
    assert len(os.listdir(runs)) == RETRIES + 1
    assert any("by the scheduler; not retried again" in note for note in caught.value.__notes__)


def test_a_mapper_that_raises_once_is_run_again_by_the_phase(ex, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    assert ex.map_reduce(raise_once_then_pair, [str(runs)], count, retries=RETRIES) == {str(runs): 1}
    assert len(os.listdir(runs)) == 2


def pairs_of(line: str):
    for word in line.split():
        yield word, 1


def test_last_job_after_map_reduce_is_the_whole_run(ex):
    result = ex.map_reduce(pairs_of, ["a b", "b c", "c d"], count, reducers=2)
    whole = ex.last_job
    assert whole is result.job and ex.jobs == [whole]  # the phases' jobs are inside it, not beside it
    assert [job.job_id for job in whole.jobs] == [job.job_id for job in result.jobs]
    summary = whole.summary()
    reducers = len(result.jobs[1].tasks)  # the reducers that received a segment
    assert [s.tasks for s in summary.phases] == [3, reducers]
    assert (summary.tasks, summary.succeeded, summary.failed) == (3 + reducers, 3 + reducers, 0)
    assert summary.bytes_shuffled == result.stats.bytes_shuffled > 0
    assert summary.storage_requests == result.stats.requests
    assert summary.wall_s == result.stats.wall_s
    text = str(summary)
    assert "(map_reduce)" in text and "(map) on local: 3 tasks" in text and f"(reduce) on local: {reducers} tasks" in text


def test_a_failed_map_reduce_is_in_the_history_as_one_job(ex, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    with pytest.raises(WorkerLostError):
        ex.map_reduce(die_after_leaving_a_mark, [str(runs)], count, retries=RETRIES)
    [whole] = ex.jobs
    assert [label for label, _ in whole.phases] == ["map"]
    assert whole.done() and whole.summary().failed == 1


def test_the_whole_run_plots_every_phase_on_one_timeline(ex, tmp_path):
    result = ex.map_reduce(pairs_of, ["a b", "b c", "c d"], count, reducers=2)
    whole = ex.last_job
    rows = task_phases(RunTimeline(whole))
    reducers = len(result.jobs[1].tasks)
    assert [r.task_id for r in rows] == list(range(3 + reducers))  # map rows, then reduce rows
    map_end = max(sum(r.phases["run"]) for r in rows[:3])
    assert all(r.phases["run"][0] >= map_end for r in rows[3:])  # one clock: reducers start after the map
    figure = whole.plot()
    assert "(map_reduce)" in figure.axes[0].get_title() and f"{3 + reducers} tasks" in figure.axes[0].get_title()
    saved = whole.plot(tmp_path / "run.png")
    assert saved == tmp_path / "run.png" and saved.stat().st_size > 0
