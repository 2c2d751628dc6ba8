"""The arithmetic behind retries that learn and the cost guard: which failures run again and
with what memory, what each attempt is billed, what the guard admits, and the checks made
before anything launches."""

from __future__ import annotations

import pytest

from lambdamr import ConfigurationError, LambdaExecutor, TaskOutOfMemoryError, TaskTimeoutError, WorkerLostError
from lambdamr.config import ExecutorConfig, JobOptions
from lambdamr.cost import estimate_job_cost, gb_seconds, region_prices
from lambdamr.driver.billing import AttemptLedger, failed_attempt_seconds
from lambdamr.driver.budget import JobBudget
from lambdamr.driver.job import Job
from lambdamr.driver.retry_policy import escalated, plan_retry

PRICES = region_prices("us-east-1")


def job(**options) -> Job:
    return Job("s-0001", "p/0001", "fn", memory_mb=options.pop("memory_mb", 128), timeout_s=10, backend="local", **options)


@pytest.mark.parametrize(
    ("memory", "cap", "expected"),
    [(128, None, 256), (1024, None, 2048), (8192, None, 10_240), (10_240, None, None), (128, 200, 200), (256, 256, None)],
)
def test_escalation_doubles_up_to_the_cap(memory, cap, expected):
    assert escalated(memory, cap) == expected


def test_escalation_is_opt_in_and_bounded_by_retries():
    oom = TaskOutOfMemoryError("over")
    assert plan_retry(job().new_task(1), oom).retry is False  # not retried by default
    task = job(escalate_memory=True, max_retries=2).new_task(1)
    assert plan_retry(task, oom) == (True, 256)
    assert plan_retry(task, TaskTimeoutError("slow")) == (True, 256)  # more memory, more CPU
    assert plan_retry(task, ValueError("user")).retry is False
    task.failures = 2
    assert plan_retry(task, oom).retry is False  # retries spent


def test_at_the_cap_only_retry_on_runs_it_again():
    task = job(escalate_memory=True, max_memory_mb=256, max_retries=3).new_task(1)
    task.memory_mb = 256
    assert plan_retry(task, TaskOutOfMemoryError("over")).retry is False
    listed = job(escalate_memory=True, max_memory_mb=256, max_retries=3, retry_on=(TaskOutOfMemoryError,)).new_task(1)
    listed.memory_mb = 256
    assert plan_retry(listed, TaskOutOfMemoryError("over")) == (True, None)  # again, at the cap


def test_retry_on_names_backend_failures_only_by_a_task_error_class():
    assert plan_retry(job(retry_on=(TaskTimeoutError,)).new_task(1), TaskTimeoutError("slow")).retry
    assert plan_retry(job(retry_on=(TimeoutError,)).new_task(1), TaskTimeoutError("slow")).retry is False
    assert plan_retry(job(retry_on=(Exception,)).new_task(1), TaskOutOfMemoryError("over")).retry is False
    assert plan_retry(job().new_task(1), WorkerLostError("gone")).retry  # retryable as ever


def test_failed_attempts_are_billed_from_what_is_known():
    assert failed_attempt_seconds(TaskTimeoutError("slow"), 30.0) == 30.0  # Lambda bills the whole timeout
    report = "REPORT RequestId: r\tDuration: 1083.45 ms\tBilled Duration: 1084 ms\tMemory Size: 256 MB"
    assert failed_attempt_seconds(TaskOutOfMemoryError("over", logs=report), 30.0) == 1.084
    assert failed_attempt_seconds(WorkerLostError("gone"), 30.0, 100.0, 102.5) == 2.5
    assert failed_attempt_seconds(WorkerLostError("gone"), 30.0) is None


def test_each_attempt_is_priced_at_its_own_memory():
    assert gb_seconds([1.0, 1.0], [128, 512]) == pytest.approx(0.125 + 0.5)
    assert gb_seconds([1.0, 1.0], 256) == pytest.approx(0.5)
    with pytest.raises(ConfigurationError, match="one per invocation"):
        gb_seconds([1.0], [128, 256])
    cost = estimate_job_cost([2.0, 1.0], [256, 1024], region="us-east-1")
    assert cost.gb_seconds == pytest.approx(0.5 + 1.0)


def test_the_summary_prices_failed_attempts_and_escalated_winners():
    plain = job(memory_mb=256)
    task = plain.new_task(1)
    task.timings = {"started": 0.0, "finished": 1.0, "memory_mb": 1024}
    plain.attempts.launched(0, 1, 256)
    plain.attempts.ended(0, 1, 2.0)  # an attempt that failed after 2 s at 256 MB
    plain.attempts.ended(0, 1, 5.0)  # a late second report of it changes nothing
    assert plain.attempts.failed_billed_ms == {256: 2000}
    [future] = task.futures
    task.attempt = 2  # the escalated attempt's record settles the task (scheduler._complete)
    future.set_result(None)
    plain.mark_task_done(task)
    assert plain.summary().cost.gb_seconds == pytest.approx(1.0 + 0.5)  # 1 s at 1,024 MB + 2 s at 256 MB


def test_the_guard_reserves_the_worst_case_until_an_attempt_ends():
    worst = JobBudget(1.0, PRICES).worst_case_usd(1024, 10)
    assert worst == pytest.approx(0.20e-6 + 10 * 0.0000166667)
    budget = JobBudget(2.5 * worst, PRICES)
    ledger = AttemptLedger(10, budget)
    assert budget.admits(1024, 10)
    ledger.launched(0, 1, 1024)
    ledger.launched(1, 1, 1024)
    assert budget.estimate_usd == pytest.approx(2 * worst) and not budget.admits(1024, 10)
    ledger.ended(0, 1, 0.5, settled=True, requests={"puts": 1})  # it cost far less than reserved
    assert budget.estimate_usd == pytest.approx(worst + 0.20e-6 + 0.5 * 0.0000166667 + 0.005 / 1000)
    assert budget.admits(1024, 10)
    ledger.ended(1, 1, None)  # nothing known of it: its worst case stays
    assert budget.spent_usd == pytest.approx(worst + 0.20e-6 + 0.5 * 0.0000166667 + 0.005 / 1000)
    assert ledger.in_flight() == 0


def test_a_budget_needs_prices_for_the_region():
    with pytest.raises(ConfigurationError, match="budget_usd=1 needs Lambda prices.*mars-1"):
        JobBudget.for_job(1.0, "mars-1", "x86_64")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_memory_mb": 20_000}, "cap of memory escalation.*128 to 10240 MB"),
        ({"memory_mb": 1024, "max_memory_mb": 512}, "max_memory_mb=512 is below memory_mb=1024"),
        ({"budget_usd": 0}, "above \\$0"),
        ({"budget_usd": float("nan")}, "finite"),
        ({"budget_usd": "1"}, "as a number"),
        ({"escalate_memory": "yes"}, "True or False"),
    ],
)
def test_bad_settings_are_refused_before_launch(options, message, tmp_path):
    with pytest.raises(ConfigurationError, match=message):
        LambdaExecutor("inline", storage=str(tmp_path), **options)
    with pytest.raises(ConfigurationError, match=message):
        JobOptions(**options).resolve(ExecutorConfig.resolve())


def test_a_cap_below_a_jobs_memory_is_refused_when_the_job_is_made(tmp_path):
    with LambdaExecutor("inline", storage=str(tmp_path), progress=False, memory_mb=256, max_memory_mb=512) as ex:
        with pytest.raises(ConfigurationError, match="max_memory_mb=512 is below memory_mb=2048 for this job"):
            ex.map(abs, [1], memory_mb=2048)
        assert list(ex.with_options(escalate_memory=True).map(abs, [-1])) == [1]


def test_the_environment_sets_them(monkeypatch):
    monkeypatch.setenv("LAMBDAMR_BUDGET_USD", "0.25")
    monkeypatch.setenv("LAMBDAMR_ESCALATE_MEMORY", "yes")
    monkeypatch.setenv("LAMBDAMR_MAX_MEMORY_MB", "4096")
    config = ExecutorConfig.resolve()
    assert (config.budget_usd, config.escalate_memory, config.max_memory_mb) == (0.25, True, 4096)
    monkeypatch.setenv("LAMBDAMR_BUDGET_USD", "-1")
    with pytest.raises(ConfigurationError, match="LAMBDAMR_BUDGET_USD='-1'"):
        ExecutorConfig.resolve()
