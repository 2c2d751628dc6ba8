"""The storage attack of issue 11 on the AWS asynchronous path: a result record copied in S3
over another task's is refused by the driver, and the task runs again."""

from __future__ import annotations

import time

from lambdamr import LambdaExecutor
from lambdamr.errors import ObjectNotFound
from lambdamr.storage import open_cached
from tests.aws_fixtures import REGION


def copy_task0_over_task3(i: int, spec: dict, results_prefix: str) -> int:
    """Runs in the stand-in's runtime: task 3 plants task 0's record under its own first
    result key before its runtime writes it (write-once: the runtime then leaves it there)."""
    if i == 3:
        store = open_cached(spec)
        deadline = time.monotonic() + 30
        while True:
            try:
                record = store.get(f"{results_prefix}/000000.1")
                break
            except ObjectNotFound:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        store.put(f"{results_prefix}/000003.1", record, if_absent=True)
    return i


def test_a_result_copied_over_another_task_on_the_async_path_is_refused(deployment, standin):
    service = standin()
    with LambdaExecutor(
        backend="aws",
        storage=f"s3://{deployment.bucket}",
        endpoint_url=deployment.endpoint,
        region=REGION,
        function_name=deployment.function_name,
        lambda_endpoint_url=service.url,
        invocation_type="Event",
        memory_mb=256,
        timeout_s=20,
        progress=False,
    ) as ex:
        spec = ex.storage.spec()
        results_prefix = f"{ex.session_prefix}/0001/results"
        values = list(ex.map(copy_task0_over_task3, range(4), [spec] * 4, [results_prefix] * 4, timeout=120))
        job = ex.last_job
    assert values == [0, 1, 2, 3]  # before context-bound signatures: [0, 0, 0, 3] or [0, 1, 2, 0]
    assert job.tasks[3].attempt == 2 and job.retries == 1
