"""Retries that learn, on the local backend and through the Lambda stand-in: a timeout named
in ``retry_on`` runs again; ``escalate_memory`` re-runs a task that ran out of memory (or
time) with twice the memory, on the version published for it, and the summary says so."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from lambdamr import TaskOutOfMemoryError, TaskTimeoutError
from lambdamr.cost import billed_ms
from tests.targets import AWS_TIMEOUT_S, Target

#: the backends that hold a task to its memory and timeout, as Lambda does
ENFORCING = [Target("local", "folder"), Target("aws", "s3")]


@pytest.fixture(scope="module", params=ENFORCING, ids=str)
def target(request: pytest.FixtureRequest) -> Target:
    """This module's targets (overrides tests/conftest.py's: inline enforces no limit)."""
    return request.param


@pytest.fixture(autouse=True)
def _function_logs_on_moto(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """On aws, a lost asynchronous attempt is explained from its CloudWatch logs, which the
    stand-in ships to moto: the driver reads them there."""
    if "target" in request.fixturenames and request.getfixturevalue("target").backend == "aws":
        monkeypatch.setenv("AWS_ENDPOINT_URL_LOGS", request.getfixturevalue("target_options")["endpoint_url"])


def timeout_of(target: Target) -> float:
    """A task timeout the target meets when the task does not sleep. On the stand-in the
    suite's (AWS_TIMEOUT_S): a task there also loads its function from S3 (moto) within it,
    and the driver waits for an answer no longer than the timeout plus a grace period, which
    a cold start on a busy machine must fit in too."""
    return float(AWS_TIMEOUT_S) if target.backend == "aws" else 1.0


def answered(target: Target) -> dict[str, str]:
    """On aws, synchronous invokes: Lambda answers a timeout or an out-of-memory kill at once.
    (Asynchronously the driver learns of it past the attempt's deadline, from the function's
    logs, and what a slow cold start on a busy machine leaves unlogged by then is a lost
    attempt: retried all the same, but not as a timeout. tests/driver/test_budget.py runs
    the asynchronous path.)"""
    return {"invocation_type": "RequestResponse"} if target.backend == "aws" else {}


def slow_the_first_time(marker: str, seconds: float) -> str | None:
    """Sleep ``seconds`` on the first attempt only (a file marks it); return the memory size
    Lambda's environment says it runs with (None on the local backend)."""
    path = Path(marker)
    if not path.exists():
        path.touch()
        time.sleep(seconds)
    return os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")


def allocate(megabytes: int, hold_s: float = 1.0) -> int:
    """Hold ``megabytes`` of resident memory (every byte touched) for ``hold_s``, as a task
    working on it would (the local backend samples a worker's size; Lambda and the stand-in
    judge by the high-water mark), and return how many bytes."""
    block = b"x" * (megabytes * 2**20)
    time.sleep(hold_s)
    return len(block)


def test_a_timeout_is_final_unless_retry_on_names_it(make_executor, tmp_path):
    ex = make_executor(timeout_s=1, retries=2)
    error = ex.submit(slow_the_first_time, str(tmp_path / "plain"), 30).exception(timeout=120)
    assert isinstance(error, TaskTimeoutError)
    assert ex.last_job.retries == 0
    # retry_on=(Exception,) means the user's exceptions: it does not re-run a timeout
    broad = ex.with_options(retry_on=(Exception,)).submit(slow_the_first_time, str(tmp_path / "broad"), 30)
    assert isinstance(broad.exception(timeout=120), TaskTimeoutError)


def test_a_timeout_named_in_retry_on_runs_again(target, executor_factory, tmp_path):
    timeout = timeout_of(target)
    ex = executor_factory(timeout_s=timeout, memory_mb=256, **answered(target))
    ex = ex.with_options(retries=1, retry_on=(TaskTimeoutError,))
    assert ex.submit(slow_the_first_time, str(tmp_path / "marker"), 120).result(timeout=300) in (None, "256")
    job = ex.session.jobs[-1]
    assert job.retries == 1 and job.tasks[0].attempt == 2
    assert job.attempts.failed_billed_ms == {256: billed_ms(timeout)}  # the timed-out attempt is billed its whole timeout
    assert job.summary().cost.gb_seconds >= 0.25 * timeout  # at 256 MB, and the second attempt


def test_out_of_memory_is_escalated_until_the_task_fits(target, executor_factory, request):
    ex = executor_factory(memory_mb=128, timeout_s=20, escalate_memory=True, retries=2, **answered(target))
    service = request.getfixturevalue("suite_standin") if target.backend == "aws" else None
    before = len(service.deliveries) if service is not None else 0
    assert list(ex.map(allocate, [10, 160, 300])) == [n * 2**20 for n in (10, 160, 300)]
    job = ex.last_job
    assert [t.memory_mb for t in job.tasks] == [None, 256, 512]  # 128 -> 256 -> 512
    assert [t.attempt for t in job.tasks] == [1, 2, 3]
    summary = job.summary()
    assert summary.escalated == {256: 1, 512: 1}
    assert "memory escalated for 2 tasks: 1 to 256 MB, 1 to 512 MB" in str(summary)
    assert job.tasks[2].timings["memory_mb"] == 512  # the winner is priced at the memory it ran with
    winner = job.tasks[2].timings
    assert summary.cost.gb_seconds >= 0.5 * (winner["finished"] - winner["started"])
    if service is not None:  # each attempt went to the version published for its memory
        ran = [(d.task_attempt, d.qualifier) for d in service.deliveries[before:] if d.task_attempt[0] == 2]
        assert sorted(ran) == [((2, 1), "m128-t20"), ((2, 2), "m256-t20"), ((2, 3), "m512-t20")]


def test_escalation_stops_at_the_cap(make_executor):
    ex = make_executor(memory_mb=128, escalate_memory=True, max_memory_mb=256, retries=5)
    error = ex.submit(allocate, 400).exception(timeout=120)
    assert isinstance(error, TaskOutOfMemoryError) and "256 MB" in str(error)
    task = ex.last_job.tasks[0]
    assert task.attempt == 2 and task.memory_mb == 256  # 128, then the cap, then no more


def test_more_memory_cures_a_timeout(target, executor_factory, tmp_path):
    timeout = timeout_of(target)
    ex = executor_factory(memory_mb=128, timeout_s=timeout, escalate_memory=True, retries=1, **answered(target))
    memory = ex.submit(slow_the_first_time, str(tmp_path / "marker"), 120).result(timeout=300)
    job = ex.last_job
    assert job.tasks[0].memory_mb == 256 and job.retries == 1
    assert job.attempts.failed_billed_ms == {128: billed_ms(timeout)}
    if target.backend == "aws":
        assert memory == "256"  # the second attempt ran on the 256 MB version
    assert "memory escalated for 1 tasks: 1 to 256 MB" in str(job.summary())

