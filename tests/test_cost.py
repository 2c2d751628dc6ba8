"""The Lambda cost model against figures computed by hand from the published prices."""

from __future__ import annotations

import pytest

from lambdamr.cost import (
    PRICES,
    CostEstimate,
    billed_ms,
    break_even_tasks,
    estimate_job_cost,
    first_crossing,
    format_usd,
    gb_seconds,
    lambda_wall_seconds,
    local_wall_seconds,
)
from lambdamr.driver.job import Job
from lambdamr.driver.summary import task_billed_ms
from lambdamr.errors import ConfigurationError


@pytest.mark.parametrize(
    ("seconds", "ms"),
    [(0.0, 0), (0.0004, 1), (0.001, 1), (0.003, 3), (0.0030001, 4), (1.0001, 1001), (2.5, 2500)],
)
def test_duration_is_billed_rounded_up_to_the_millisecond(seconds, ms):
    assert billed_ms(seconds) == ms


def test_negative_duration_is_refused():
    with pytest.raises(ValueError):
        billed_ms(-0.1)


def test_compute_and_requests_by_hand():
    # 1001 + 2500 + 1 = 3502 ms at 1 GB = 3.502 GB-s; x86 us-east-1 $0.0000166667 per GB-s.
    cost = estimate_job_cost([1.0001, 2.5, 0.0004], 1024)
    assert cost.gb_seconds == pytest.approx(3.502)
    assert cost.compute_usd == pytest.approx(0.0000583667834)
    assert cost.requests_usd == pytest.approx(0.0000006)  # 3 x $0.20 / 1M
    assert cost.storage_usd == 0
    assert cost.total_usd == pytest.approx(0.0000589667834)
    assert (cost.region, cost.architecture) == ("us-east-1", "x86_64")


def test_arm64_at_half_a_gigabyte():
    # 10 x 100 ms = 1 s at 0.5 GB = 0.5 GB-s x $0.0000133334.
    cost = estimate_job_cost([0.1] * 10, 512, architecture="arm64")
    assert cost.compute_usd == pytest.approx(0.0000066667)
    assert cost.requests_usd == pytest.approx(0.000002)


def test_the_seeds_64_trees():
    # 64 trees of 16 s at 2048 MB: 64 x 16 x 2 = 2048 GB-s = $0.0341334 (+ 64 requests).
    cost = estimate_job_cost([16.0] * 64, 2048)
    assert cost.compute_usd == pytest.approx(0.0341334016)
    assert cost.total_usd == pytest.approx(0.0341334016 + 0.0000128)


def test_s3_requests_put_class_get_class_and_free_deletes():
    counts = {"puts": 10, "gets": 20, "lists": 2, "deletes": 5}
    # us-east-1: 12 PUT-class x $0.005/1000 + 20 GET x $0.0004/1000.
    assert estimate_job_cost([], 128, storage_requests=counts).storage_usd == pytest.approx(0.000068)
    # eu-central-1: 12 x $0.0054/1000 + 20 x $0.00043/1000.
    frankfurt = estimate_job_cost([], 128, storage_requests=counts, region="eu-central-1")
    assert frankfurt.storage_usd == pytest.approx(0.0000734)


def test_retries_are_charged_as_extra_invocations():
    cost = estimate_job_cost([1.0, 1.0], 1024, invocations=5)
    assert cost.requests_usd == pytest.approx(0.000001)


def test_gb_seconds_helper_matches_the_rule():
    assert gb_seconds([0.25, 0.25], 3008) == pytest.approx(3008 / 1024 * 0.5)


def test_summary_line():
    cost = CostEstimate(compute_usd=0.0001, requests_usd=0.00002, storage_usd=0.000003)
    assert cost.total_usd == pytest.approx(0.000123)
    assert str(cost) == "$0.000123 (compute $0.0001, requests $0.00002, S3 $0.000003)"


@pytest.mark.parametrize(
    ("amount", "text"),
    [(0, "$0"), (0.5, "$0.50"), (0.0341462, "$0.0341"), (1234.5, "$1234.50"), (0.0000006, "$0.0000006")],
)
def test_dollar_format_never_uses_scientific_notation(amount, text):
    assert format_usd(amount) == text


def test_unknown_region_names_the_known_ones():
    with pytest.raises(ConfigurationError) as caught:
        estimate_job_cost([1.0], 1024, region="mars-north-1")
    message = str(caught.value)
    assert "mars-north-1" in message
    assert all(region in message for region in PRICES)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"architecture": "sparc"},
        {"storage_requests": {"copies": 1}},
        {"invocations": -1},
    ],
)
def test_bad_arguments_are_configuration_errors(kwargs):
    with pytest.raises(ConfigurationError):
        estimate_job_cost([1.0], 1024, **kwargs)


@pytest.mark.parametrize("memory_mb", [64, 10_241])
def test_memory_outside_lambdas_range_is_refused(memory_mb):
    with pytest.raises(ConfigurationError):
        estimate_job_cost([1.0], memory_mb)


def test_wall_time_models():
    assert local_wall_seconds(9, 8.0, 4) == 24.0  # three waves of four
    assert lambda_wall_seconds(2500, 10.0, 1.0, concurrency=1000) == 31.0


def test_break_even_reproduces_the_seeds_observation():
    # Seed: 8 s per tree on 4 local cores, 16 s per tree on Lambda -> Lambda wins past 8 trees.
    assert break_even_tasks(8.0, 4, 16.0) == 9
    assert break_even_tasks(8.0, 4, 16.0, 2.0) == 9
    assert break_even_tasks(8.0, 40, 16.0, 2.0) == 81
    # Equal speed and no overhead: Lambda wins as soon as the local cores need a second wave.
    assert break_even_tasks(1.0, 2, 1.0) == 3


def test_break_even_can_be_never():
    assert break_even_tasks(1.0, 4, 10.0, concurrency=1, max_tasks=1000) is None


def test_first_crossing_of_measured_series():
    sizes = [1, 2, 4, 8, 16, 32]
    assert first_crossing(sizes, [20, 20, 20, 20, 20, 21], [8, 8, 16, 32, 64, 128]) == 8
    assert first_crossing(sizes, [5, 20, 20, 20, 20, 21], [8, 8, 16, 32, 64, 128]) == 8  # must stay below
    assert first_crossing(sizes, [9] * 6, [8] * 6) is None
    with pytest.raises(ValueError):
        first_crossing(sizes, [1], [2])


# ---- the INIT phase of cold starts (billed for on-demand zip functions since 1 August 2025) ----


def test_a_cold_start_bills_init_plus_duration_rounded_up_once():
    assert billed_ms(0.1234, 0.25) == 374  # 250 + 123.4 ms -> 374, not 250 + 124
    assert billed_ms(0.1234) == 124


def test_init_phases_are_charged_at_the_same_rate_and_reported_apart():
    # Two invocations of 1 s at 1 GB, the first after an INIT of 0.5 s: 2.5 GB-s in all.
    cost = estimate_job_cost([1.0, 1.0], 1024, init_seconds=[0.5, 0.0])
    assert cost.gb_seconds == pytest.approx(2.5) and cost.init_gb_seconds == pytest.approx(0.5)
    assert cost.compute_usd == pytest.approx(2.5 * 0.0000166667)
    assert cost.requests_usd == pytest.approx(0.0000004)  # INIT is not another request


def test_init_entries_must_match_the_invocations():
    with pytest.raises(ConfigurationError, match="one per invocation"):
        estimate_job_cost([1.0, 1.0], 1024, init_seconds=[0.5])


@pytest.mark.parametrize(
    ("timings", "ms"),
    [
        ({"started": 10.0, "finished": 10.1, "cold": True, "init_ms": 250}, 350),
        ({"started": 10.0, "finished": 10.1, "cold": False, "init_ms": None}, 100),
        ({"started": 10.0, "finished": 10.1, "cold": True}, 100),  # a runtime that cannot tell
        ({"started": 10.0, "finished": 10.1, "cold": True, "init_ms": 250, "billed_ms": 420}, 420),  # REPORT wins
    ],
)
def test_a_tasks_billed_time_holds_its_cold_starts_init(timings, ms):
    assert task_billed_ms(timings) == ms


def _finished_job(architecture: str, *timings: dict) -> Job:
    job = Job("j", "p/j", "f", memory_mb=2048, timeout_s=60, backend="aws", region="us-east-1", architecture=architecture)
    for tm in timings:
        task = job.new_task(0)
        task.attempt, task.timings = 1, tm
        job.mark_task_done(task)
    return job


def test_an_arm64_job_is_priced_as_arm64_with_its_init_phases():
    cold = {"started": 0.0, "finished": 2.0, "cold": True, "init_ms": 500}
    warm = {"started": 3.0, "finished": 5.0, "cold": False}
    cost = _finished_job("arm64", cold, warm).summary().cost
    # (2.5 s + 2 s) at 2 GB = 9 GB-s, 1 of them INIT, at the arm64 price.
    assert cost.architecture == "arm64" and cost.gb_seconds == pytest.approx(9.0)
    assert cost.init_gb_seconds == pytest.approx(1.0)
    assert cost.compute_usd == pytest.approx(9.0 * PRICES["us-east-1"].gb_second_arm64)
    assert _finished_job("x86_64", cold, warm).summary().cost.compute_usd == pytest.approx(9.0 * 0.0000166667)


def test_the_runtime_reports_its_init_on_a_cold_start_only(tmp_path):
    from lambdamr import LambdaExecutor

    with LambdaExecutor(storage=str(tmp_path / "store"), workers=1, progress=False) as executor:
        assert list(executor.map(abs, [-1, -2, -3])) == [1, 2, 3]
        job = executor.last_job
    timings = [task.timings for task in job.tasks]
    cold = [tm for tm in timings if tm["cold"]]
    assert len(cold) == 1 and cold[0]["init_ms"] > 0  # one worker: one cold start, which took time
    assert all(tm["init_ms"] is None for tm in timings if not tm["cold"])
    assert job.summary().cost.init_gb_seconds == pytest.approx(1024 / 1024 * cold[0]["init_ms"] / 1000, abs=0.002)
