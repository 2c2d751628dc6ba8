"""The cost guard (``budget_usd``) on the local backend and through the Lambda stand-in
(asynchronous invokes): a job stops launching before its estimate passes its budget, the
calls not launched raise ``BudgetExceededError``, and the summary says so."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from lambdamr import BudgetExceededError, TaskError
from lambdamr.cost import region_prices
from lambdamr.driver.budget import JobBudget
from tests.targets import AWS_TIMEOUT_S, Target

ENFORCING = [Target("local", "folder"), Target("aws", "s3")]


@pytest.fixture(scope="module", params=ENFORCING, ids=str)
def target(request: pytest.FixtureRequest) -> Target:
    """This module's targets (overrides tests/conftest.py's: inline stops no task at its timeout)."""
    return request.param


def worst_case(memory_mb: int, timeout_s: float) -> float:
    """What the guard reserves for one attempt in flight (us-east-1, x86_64)."""
    return JobBudget(1.0, region_prices("us-east-1")).worst_case_usd(memory_mb, timeout_s)


def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def square(x: int) -> int:
    return x * x


def test_a_budget_stops_a_job_after_the_tasks_it_can_pay_for(target, executor_factory):
    # Each task runs past its timeout, so each costs exactly its worst case: a budget of
    # 3.5 of them pays for 3. (On aws the driver learns of each timeout past its deadline.)
    ex = executor_factory(memory_mb=256, timeout_s=1, retries=0)
    budget = 3.5 * worst_case(256, 1)
    job = ex.map(sleep_for, [60] * 10, budget_usd=budget).job
    assert concurrent.futures.wait(job.futures, timeout=300).not_done == set()
    errors = [f.exception() for f in job.futures]
    assert all(isinstance(e, TaskError) for e in errors[:3]), errors  # timed out (or lost, unexplained)
    refused = errors[3:]
    assert all(isinstance(e, BudgetExceededError) for e in refused), errors
    assert [t.attempt for t in job.tasks] == [1, 1, 1] + [0] * 7  # never launched
    assert "budget of $0.0000153 is spent" in str(refused[0]) and refused[0].budget_usd == budget
    assert job.budget.estimate_usd <= budget
    summary = job.summary()
    assert summary.budget_usd == budget
    assert "STOPPED the job" in str(summary) and "7 tasks (7 calls) not launched" in str(summary)
    assert summary.cost is not None and summary.cost.compute_usd <= budget


def test_a_map_within_budget_runs_until_it_is_spent(target, executor_factory):
    timeout = 2 if target.backend == "local" else AWS_TIMEOUT_S
    ex = executor_factory(memory_mb=128, timeout_s=timeout)
    budget = 12 * worst_case(128, timeout)
    results = []
    iterator = ex.map(square, range(400), budget_usd=budget)
    with pytest.raises(BudgetExceededError, match="raise budget_usd"):
        for value in iterator:
            results.append(value)
    assert results and results == [i * i for i in range(len(results))]  # the tasks in order, then the stop
    job = iterator.job
    iterator.close()  # seals the job: a batch the iterator fed meanwhile is refused too
    assert job.wait(timeout=60)
    assert job.budget.stopped and job.budget.estimate_usd <= budget
    summary = job.summary()
    not_run = summary.calls - len(results)
    assert summary.succeeded == len(results) and summary.failed + summary.cancelled == not_run >= 1
    assert job.budget.refused_calls == not_run  # close() may have cancelled a batch the guard then refused
    assert f"{not_run:,} tasks ({not_run:,} calls) not launched" in summary.budget_note


def test_a_task_the_budget_cannot_pay_for_is_never_launched(make_executor):
    ex = make_executor(memory_mb=1024, timeout_s=60).with_options(budget_usd=0.0001)  # one task: up to $0.001
    error = ex.submit(square, 3).exception(timeout=30)
    assert isinstance(error, BudgetExceededError)
    assert "60 s at 1024 MB" in str(error) and "lower timeout_s or memory_mb" in str(error)
    job = ex.session.jobs[-1]
    assert job.tasks[0].attempt == 0 and job.summary().cost.requests_usd == 0
    assert ex.session.jobs[-1].budget.refused_calls == 1


def test_an_executor_wide_budget_is_each_jobs(make_executor):
    ex = make_executor(budget_usd=0.01, memory_mb=128, timeout_s=10)
    assert list(ex.map(square, range(5))) == [0, 1, 4, 9, 16]
    assert ex.last_job.budget.limit_usd == 0.01 and not ex.last_job.budget.stopped
    assert "budget $0.01: not reached" in str(ex.summary())


def pairs_of(x: int) -> list[tuple[int, int]]:
    return [(x % 2, x)]


def total(key: int, values: list[int]) -> int:
    return sum(values)


def test_an_executor_wide_budget_holds_each_map_reduce_phase(make_executor):
    # Each mapper's PUT of its output ($0.000005) counts, as the runtime reports it.
    roomy = make_executor(memory_mb=128, timeout_s=10, budget_usd=20 * worst_case(128, 10))
    assert roomy.map_reduce(pairs_of, range(6), total, reducers=2) == {0: 6, 1: 9}
    assert [job.budget.stopped for job in roomy.last_job.jobs] == [False, False]  # each phase its own budget
    # No task fits: the map phase fails at once, and is not re-run as a new job (with a budget of its own).
    tight = make_executor(memory_mb=128, timeout_s=10, budget_usd=0.5 * worst_case(128, 10))
    with pytest.raises(BudgetExceededError):
        tight.map_reduce(pairs_of, range(6), total, reducers=2)
    [(label, [job])] = tight.last_job.phases
    assert label == "map" and job.budget.refused_tasks == 6
