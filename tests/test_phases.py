"""A map_reduce phase re-runs what raised, never what the scheduler already re-ran: a mapper
whose worker keeps dying runs ``retries + 1`` times in all, not (retries + 1) squared."""

from __future__ import annotations

import os
import tempfile

import pytest

from lambdamr import LambdaExecutor
from lambdamr.errors import WorkerLostError

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
