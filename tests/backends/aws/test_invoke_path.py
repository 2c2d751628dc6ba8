"""The invoke path end to end: the backend's boto3/HTTP Invoke calls → the Lambda stand-in →
the deployed handler under awslambdaric, with the role's own credentials → results in S3 on
moto's server, IAM enforced.

Faults are injected by the stand-in: throttling, lost invocations, duplicate deliveries and
timeouts. Events are built by hand here so that the backend is tested on its own; the
executor runs over the same path in tests/backends/aws/test_backend.py.
"""

from __future__ import annotations

import json
import queue
import re
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from lambdamr import serialize
from lambdamr.backends.aws.backend import ASYNC_PAYLOAD_LIMIT, AwsLambdaBackend
from lambdamr.backends.base import Invocation, InvocationOutcome
from lambdamr.errors import ConfigurationError, PayloadTooLargeError, RuntimeMismatchError, TaskTimeoutError
from lambdamr.protocol import (
    TaskEvent,
    arguments_context,
    call_outcomes,
    decode_result,
    encode_inline_args,
    function_context,
    session_of,
)
from lambdamr.signing import Signer, content_hash, read_context
from lambdamr.storage.s3 import S3Storage
from lambdamr.testing.lambda_service import Faults
from tests.aws_fixtures import REGION


def square(x):
    return x * x


def _storage(deployment) -> S3Storage:
    storage = S3Storage(deployment.bucket, region=REGION, endpoint_url=deployment.endpoint)
    storage.deployment = deployment  # for _events' signer
    storage.job = f"job-{uuid.uuid4().hex[:8]}"  # the deployment is shared: each test its own keys
    return storage


def _signer(deployment) -> Signer:
    return Signer(AwsLambdaBackend(deployment.function_name, region=REGION, endpoint_url=deployment.endpoint).signing_key())


def _events(
    storage: S3Storage, n: int, *, timeout_s: float = 20, memory_mb: int = 256, fn=square, attempt: int = 0
) -> list[Invocation]:
    job = storage.job
    signer = _signer(storage.deployment)
    pickled = serialize.dumps(fn)
    function_key = f"lambdamr/{job}/fn/{content_hash(pickled)}"
    storage.put(function_key, signer.sign(pickled, function_context(session_of(job), function_key)))
    invocations = []
    for i in range(n):
        args = encode_inline_args(signer.sign(serialize.dumps([((i,), {})]), arguments_context(job, i, None)))
        event = TaskEvent(
            job_id=job,
            task_id=i,
            attempt=attempt,
            storage=storage.spec(),
            function_key=function_key,
            result_key=f"lambdamr/{job}/results/{i:06d}.{attempt}",
            timeout_s=timeout_s,
            memory_mb=memory_mb,
            args_inline=args,
        )
        invocations.append(Invocation.of(event))
    return invocations


def _backend(deployment, service, **kwargs) -> AwsLambdaBackend:
    kwargs = {"memory_mb": 256, "timeout_s": 20, "logs_endpoint_url": deployment.endpoint, **kwargs}
    return AwsLambdaBackend(deployment.function_name, region=REGION, endpoint_url=service.url, **kwargs)


def _wait_results(storage: S3Storage, job: str, count: int, timeout: float = 30.0) -> dict[str, bytes]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        keys = [info.key for info in storage.list(f"lambdamr/{job}/results/")]
        if len(keys) >= count:
            return {key: storage.get(key) for key in keys}
        time.sleep(0.05)
    raise AssertionError(f"only {len(keys)} of {count} results after {timeout} s")


def _value(record: bytes, deployment=None):
    if record[:4] == b"LMS2":  # signed by the runtime with the deployment's key, for its context
        context = read_context(record)
        assert context is not None and context["kind"] == "result"
        record = bytes(record[40 + int.from_bytes(record[36:40], "little") :])
    header, frames = decode_result(record)
    assert all(outcome.ok for outcome in call_outcomes(header))
    return serialize.loads(frames[0])


def test_event_invocations_run_the_real_handler_and_store_results(deployment, standin):
    service = standin()
    storage = _storage(deployment)
    backend = _backend(deployment, service)
    outcomes: list[InvocationOutcome] = []
    backend.prepare(storage)
    backend.start(outcomes.append)
    backend.invoke(_events(storage, 6))
    results = _wait_results(storage, storage.job, 6)
    backend.shutdown()
    assert sorted(_value(r) for r in results.values()) == [i * i for i in range(6)]
    assert outcomes == []  # fire and forget: nothing to report when all launched
    assert sorted(t for t, _, kind in service.accepted if kind == "Event") == list(range(6))
    assert backend.describe()["invokes"]["sent"] == 6
    # Every task ran on the published version for its memory and timeout.
    aliases = boto3.client("lambda", region_name=REGION, endpoint_url=deployment.endpoint).list_aliases(
        FunctionName=deployment.function_name
    )["Aliases"]
    assert "m256-t20" in [a["Name"] for a in aliases]
    assert {delivery.qualifier for delivery in service.deliveries} == {"m256-t20"}


def test_throttled_invokes_back_off_and_are_all_delivered(deployment, standin):
    service = standin(Faults(throttle_first=12))
    storage = _storage(deployment)
    backend = _backend(deployment, service, invoke_threads=4)
    backend.prepare(storage)
    backend.start(lambda outcome: pytest.fail(f"unexpected outcome {outcome}"))
    backend.invoke(_events(storage, 5))
    results = _wait_results(storage, storage.job, 5)
    backend.shutdown()
    assert len(results) == 5
    stats = backend.describe()["invokes"]
    assert stats["throttled"] == 12 and stats["sent"] == 5 and stats["requests"] == 17


def test_duplicate_deliveries_leave_one_intact_record(deployment, standin):
    service = standin(Faults(duplicate={(1, 0), (2, 0)}))
    storage = _storage(deployment)
    backend = _backend(deployment, service)
    backend.prepare(storage)
    backend.start(lambda outcome: None)
    backend.invoke(_events(storage, 3))
    results = _wait_results(storage, storage.job, 3)
    assert service.queue.wait_idle(30)  # the second deliveries have run too
    backend.shutdown()
    assert len(list(storage.list(f"lambdamr/{storage.job}/results/"))) == 3  # write-once per attempt
    assert sorted(_value(r) for r in results.values()) == [0, 1, 4]
    runs = [d.task_attempt for d in service.deliveries]
    assert runs.count((1, 0)) == runs.count((2, 0)) == 2 and runs.count((0, 0)) == 1


def test_a_lost_invocation_leaves_no_result_and_its_retry_completes(deployment, standin):
    service = standin(Faults(drop={(0, 0)}))
    storage = _storage(deployment)
    backend = _backend(deployment, service)
    backend.prepare(storage)
    backend.start(lambda outcome: None)
    first = _events(storage, 2)
    backend.invoke(first)
    _wait_results(storage, storage.job, 1)
    assert service.queue.wait_idle(30)
    assert [i.key for i in storage.list(f"lambdamr/{storage.job}/results/")] == [f"lambdamr/{storage.job}/results/000001.0"]
    lost = backend.explain_lost(first[0])  # no logs at all: it never started
    assert "never started" in str(lost) and lost.request_id
    backend.invoke(_events(storage, 1, attempt=1))  # what the scheduler does past the deadline
    results = _wait_results(storage, storage.job, 2)
    backend.shutdown()
    assert f"lambdamr/{storage.job}/results/000000.1" in results


def test_sync_mode_returns_results_inline_and_reports_timeouts(deployment, standin):
    service = standin(Faults(timeout={(1, 0)}))
    storage = _storage(deployment)
    backend = _backend(deployment, service, invocation_type="RequestResponse")
    assert backend.reports_outcomes and backend.max_payload_bytes == 6 * 1024 * 1024
    outcomes: queue.Queue[InvocationOutcome] = queue.Queue()
    backend.prepare(storage)
    backend.start(outcomes.put)
    events = _events(storage, 2)  # task 0 keeps 20 s: a cold worker may take a second to start
    timeouts = {0: 20, 1: 1}
    events = [
        Invocation.of(
            TaskEvent(
                **{**e.event.__dict__, "store_result": False, "reply_inline_max": 1 << 20, "timeout_s": timeouts[e.event.task_id]}
            )
        )
        for e in events
    ]
    backend.invoke(events)
    got = {o.invocation.event.task_id: o for o in (outcomes.get(timeout=20) for _ in range(2))}
    backend.shutdown()
    import base64

    assert got[0].error is None, got[0].error
    assert _value(base64.b64decode(got[0].response["record"])) == 0
    assert got[0].response["result_key"] is None  # inline only: no result object
    error = got[1].error
    assert isinstance(error, TaskTimeoutError)
    assert error.request_id and "Task timed out after 1.00 seconds" in error.logs
    assert "timeout_s=" in str(error)
    assert list(storage.list(f"lambdamr/{storage.job}/results/")) == []


def test_payloads_over_the_async_limit_are_refused_before_sending(deployment, standin):
    service = standin()
    storage = _storage(deployment)
    backend = _backend(deployment, service)
    outcomes: queue.Queue[InvocationOutcome] = queue.Queue()
    backend.prepare(storage)
    backend.start(outcomes.put)
    event = _events(storage, 1)[0].event
    big = Invocation.of(TaskEvent(**{**event.__dict__, "args_inline": "A" * ASYNC_PAYLOAD_LIMIT}))
    backend.invoke([big])
    outcome = outcomes.get(timeout=10)
    backend.shutdown()
    assert isinstance(outcome.error, PayloadTooLargeError) and "inline_args_max" in str(outcome.error)
    assert service.requests == 0


def test_the_standin_refuses_what_the_service_refuses(deployment, standin):
    service = standin()
    client = boto3.client("lambda", region_name=REGION, endpoint_url=service.url)
    with pytest.raises(ClientError, match="RequestEntityTooLargeException.*1048577 byte payload"):
        client.invoke(FunctionName=deployment.function_name, InvocationType="Event", Payload=b"x" * (ASYNC_PAYLOAD_LIMIT + 1))
    with pytest.raises(client.exceptions.TooManyRequestsException):
        boto3.client(
            "lambda",
            region_name=REGION,
            endpoint_url=standin(Faults(throttle_first=1)).url,
            config=Config(retries={"total_max_attempts": 1}),
        ).invoke(FunctionName=deployment.function_name, Payload=b"{}")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="no-such-function", InvocationType="Event", Payload=b"{}")


def test_a_missing_function_says_to_deploy(moto_endpoint, standin, s3_bucket):
    service = standin()
    backend = AwsLambdaBackend("never-deployed", region=REGION, endpoint_url=service.url)
    with pytest.raises(ConfigurationError, match="lambdamr deploy"):
        backend.prepare(S3Storage(s3_bucket, region=REGION, endpoint_url=moto_endpoint))


def test_a_runtime_of_another_version_is_refused_with_the_fix(fresh_deployment, standin):
    deployment = fresh_deployment
    service = standin()
    lam = boto3.client("lambda", region_name=REGION, endpoint_url=deployment.endpoint)
    env = lam.get_function_configuration(FunctionName=deployment.function_name)["Environment"]["Variables"]
    lam.update_function_configuration(
        FunctionName=deployment.function_name, Environment={"Variables": {**env, "LAMBDAMR_VERSION": "9.9.0"}}
    )
    backend = _backend(deployment, service)
    with pytest.raises(RuntimeMismatchError, match=r"lambdamr 9\.9\.0.*`lambdamr deploy"):
        backend.prepare(_storage(deployment))


def test_storage_in_another_bucket_is_refused(deployment, standin, s3_bucket):
    service = standin()
    backend = _backend(deployment, service)
    temp = f"s3://{s3_bucket}/lambdamr/*"
    with pytest.raises(ConfigurationError, match=f"may not read {re.escape(temp)} or write {re.escape(temp)}"):
        backend.check_access(reads=[temp], writes=[temp])


def test_concurrency_cap_comes_from_the_account(deployment, standin):
    service = standin(account_concurrency=37, run=False)
    assert _backend(deployment, service).capacity == 37
    assert _backend(deployment, service, max_concurrency=5).capacity == 5
    assert json.loads(json.dumps(_backend(deployment, service).describe()))["capacity"] == 37


def test_an_async_timeout_is_explained_from_the_function_logs(deployment, standin):
    service = standin(Faults(timeout={(0, 0)}))
    storage = _storage(deployment)
    backend = _backend(deployment, service, timeout_s=1)
    backend.prepare(storage)
    backend.start(lambda outcome: None)
    (invocation,) = _events(storage, 1, timeout_s=1)
    backend.invoke([invocation])
    backend.wait_sent()
    assert service.queue.wait_idle(30) and service.wait_logs()  # killed at 1 s, its log in CloudWatch
    backend.shutdown()
    assert any(d.task_attempt == (0, 0) and d.status == "timeout" for d in service.deliveries)
    error = backend.explain_lost(invocation)  # what the scheduler can ask past the deadline
    assert isinstance(error, TaskTimeoutError) and "timeout of 1 s on AWS Lambda" in str(error)
    assert error.request_id and "Status: timeout" in error.logs
