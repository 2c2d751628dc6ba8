"""``LambdaExecutor(backend="aws")`` end to end: executor → AWS backend → Lambda stand-in →
runtime handler in worker processes → S3 on moto's server: what only this backend has
(synchronous invokes, the backend chosen by the environment, a lost invocation found by its
deadline and re-invoked, a synchronous timeout) and the seed's examples. The executor's
behaviour on this backend is tested with every other backend's, in tests/test_executor.py;
its crashes in tests/contract/test_deadlock.py."""

from __future__ import annotations

import numpy as np
import pytest

from examples.mandelbrot import FULL_SET, render, render_job
from examples.random_forest import TreeParams, fit_forest, split, synthetic_dataset
from lambdamr import LambdaExecutor
from lambdamr.errors import TaskTimeoutError
from lambdamr.testing.lambda_service import Faults
from tests.aws_fixtures import REGION


def cube(x):
    return x**3


def fails(x):
    raise ValueError(f"bad input {x}")


def test_map_runs_on_the_aws_backend_with_synchronous_invokes(aws_executor):
    # asynchronous invokes (the default) run the whole behaviour suite: tests/test_executor.py
    invocation_type = "RequestResponse"
    executor, service = aws_executor(invocation_type=invocation_type)
    assert list(executor.map(cube, range(8))) == [x**3 for x in range(8)]
    with pytest.raises(ValueError, match="bad input 3"):
        executor.submit(fails, 3).result(timeout=30)
    assert {kind for _, _, kind in service.accepted} == {invocation_type}


def test_the_aws_backend_is_chosen_by_the_environment_variable(deployment, standin, monkeypatch):
    service = standin()
    monkeypatch.setenv("LAMBDAMR_BACKEND", "aws")
    monkeypatch.setenv("LAMBDAMR_FUNCTION_NAME", deployment.function_name)
    monkeypatch.setenv("LAMBDAMR_LAMBDA_ENDPOINT_URL", service.url)
    # No storage given: the backend reads the deployed bucket from the function.
    with LambdaExecutor(endpoint_url=deployment.endpoint, region=REGION, memory_mb=256, timeout_s=20, progress=False) as executor:
        assert executor.storage.spec()["bucket"] == deployment.bucket
        assert executor.submit(cube, 4).result(timeout=30) == 64


def test_a_lost_invocation_is_reinvoked_after_its_deadline(aws_executor, monkeypatch):
    monkeypatch.setattr("lambdamr.driver.scheduler.LOST_GRACE_S", 0.5)
    executor, service = aws_executor(Faults(drop={(1, 1)}), timeout_s=2, poll_interval_s=0.05)  # attempts count from 1
    assert list(executor.map(cube, range(3))) == [0, 1, 8]
    assert (1, 1, "Event") in service.accepted and (1, 2, "Event") in service.accepted


def test_a_sync_timeout_reaches_the_future_as_a_timeout(aws_executor):
    executor, _ = aws_executor(Faults(timeout={(0, 1), (0, 2)}), invocation_type="RequestResponse", timeout_s=1, retries=1)
    with pytest.raises(TaskTimeoutError, match="timeout of 1 s on AWS Lambda") as info:
        executor.submit(cube, 2).result(timeout=30)
    assert info.value.request_id and "Task timed out" in info.value.logs


def test_mandelbrot_through_the_aws_path_is_pixel_identical(aws_executor):
    executor, _ = aws_executor()
    tiled, job = render_job(48, 36, 60, FULL_SET, tiles=4, executor=executor)
    assert np.array_equal(tiled, render(48, 36, 60, FULL_SET, tiles=1))
    assert job.summary().tasks == 4


def test_random_forest_through_the_aws_path_matches_the_local_forest(aws_executor):
    executor, _ = aws_executor()
    X_train, X_test, y_train, _ = split(synthetic_dataset(800, 8, seed=0))
    forest, job = fit_forest(X_train, y_train, 4, TreeParams(), executor, trees_per_task=2)
    local, _ = fit_forest(X_train, y_train, 4, TreeParams())
    assert np.array_equal(forest.predict(X_test), local.predict(X_test))
    assert job.summary().tasks == 2
