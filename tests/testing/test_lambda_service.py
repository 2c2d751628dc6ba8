"""The Lambda stand-in itself: what it lets run and what it refuses, as the service would.

Every test here runs against the session's real deployment (function package and layer as
deploy built them) on moto with IAM enforced; see tests/aws_fixtures.py.
"""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from lambdamr.backends.base import Invocation
from lambdamr.protocol import TaskEvent
from lambdamr.testing.lambda_service import SYNC_PAYLOAD_LIMIT
from lambdamr.testing.lambda_service.functions import EnvironmentPool, FunctionVersion, Throttled
from tests.aws_fixtures import REGION
from tests.backends.aws.test_invoke_path import _backend, _events, _storage

NO_RETRY = Config(retries={"total_max_attempts": 1})


def what_the_environment_sees():
    import importlib
    import os
    import sys

    import numpy

    import lambdamr

    missing = []
    for name in ("pytest", "moto", "lambdamr.executor", "lambdamr.deploy"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return {
        "path": sys.path,
        "missing": missing,
        "lambdamr": lambdamr.__file__,
        "numpy": numpy.__file__,
        "task_root": os.environ["LAMBDA_TASK_ROOT"],
        "function": os.environ["AWS_LAMBDA_FUNCTION_NAME"],
        "version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"],
        "token": bool(os.environ.get("AWS_SESSION_TOKEN")),
    }


def test_the_environment_holds_only_the_package_the_layer_and_the_runtime(aws_executor, deployment):
    executor, _ = aws_executor()
    seen = executor.submit(what_the_environment_sees).result(timeout=60)
    assert seen["missing"] == ["pytest", "moto", "lambdamr.executor", "lambdamr.deploy"]  # only in the driver's venv
    assert seen["lambdamr"].startswith(seen["task_root"] + "/lambdamr/")  # from the uploaded zip
    assert "/opt" in seen["numpy"] and "/opt/python/" in seen["numpy"]  # from the layer pip built
    assert not any("site-packages" in entry and "/opt" not in entry for entry in seen["path"])
    assert seen["function"] == deployment.function_name and seen["version"].isdigit()
    assert seen["token"]  # the role's session credentials, not the driver's keys


def test_requests_signed_with_a_wrong_or_unknown_key_are_refused(deployment, standin):
    service = standin()
    key, _ = deployment_keys = (boto3.session.Session().get_credentials().access_key, None)
    assert deployment_keys
    bad_secret = boto3.client(
        "lambda",
        region_name=REGION,
        endpoint_url=service.url,
        aws_access_key_id=key,
        aws_secret_access_key="not-the-secret",
        config=NO_RETRY,
    )
    with pytest.raises(ClientError) as info:
        bad_secret.invoke(FunctionName=deployment.function_name, InvocationType="Event", Payload=b"{}")
    assert info.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    unknown = boto3.client(
        "lambda",
        region_name=REGION,
        endpoint_url=service.url,
        aws_access_key_id="AKIAUNKNOWN000000000",
        aws_secret_access_key="x",
        config=NO_RETRY,
    )
    with pytest.raises(ClientError, match="UnrecognizedClientException"):
        unknown.list_functions()
    assert service.requests == 0


def _alias(client, function: str) -> str:
    version = client.publish_version(FunctionName=function)["Version"]
    name = f"probe-{uuid.uuid4().hex[:6]}"
    client.create_alias(FunctionName=function, Name=name, FunctionVersion=version)
    return name


def test_event_invoke_configs_are_kept_per_qualifier(deployment, standin):
    service = standin()
    lam = boto3.client("lambda", region_name=REGION, endpoint_url=service.url, config=NO_RETRY)
    alias = _alias(lam, deployment.function_name)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_event_invoke_config(FunctionName=deployment.function_name, Qualifier=alias)
    latest_before = service.configs.effective(deployment.function_name, None)
    lam.put_function_event_invoke_config(FunctionName=deployment.function_name, Qualifier=alias, MaximumRetryAttempts=1)
    got = lam.get_function_event_invoke_config(FunctionName=deployment.function_name, Qualifier=alias)
    assert got["MaximumRetryAttempts"] == 1 and got["MaximumEventAgeInSeconds"] == 21600
    assert got["FunctionArn"].endswith(f":{deployment.function_name}:{alias}")
    assert service.configs.effective(deployment.function_name, None) == latest_before  # $LATEST untouched
    with pytest.raises(ClientError, match="InvalidParameterValueException"):
        lam.put_function_event_invoke_config(FunctionName=deployment.function_name, Qualifier=alias, MaximumRetryAttempts=3)
    lam.delete_function_event_invoke_config(FunctionName=deployment.function_name, Qualifier=alias)
    assert service.configs.effective(deployment.function_name, alias) == (2, 21600)  # AWS's defaults


def _failing_event(task_id: int) -> bytes:
    return json.dumps({"task_id": task_id, "attempt": 0}).encode()  # not a whole task: the handler raises


def test_a_failed_event_is_redelivered_as_often_as_its_qualifier_says(deployment, standin):
    service = standin()
    lam = boto3.client("lambda", region_name=REGION, endpoint_url=service.url, config=NO_RETRY)
    default, none = _alias(lam, deployment.function_name), _alias(lam, deployment.function_name)
    lam.put_function_event_invoke_config(FunctionName=deployment.function_name, Qualifier=none, MaximumRetryAttempts=0)
    for task, qualifier in ((901, default), (902, none)):
        answer = lam.invoke(
            FunctionName=deployment.function_name, Qualifier=qualifier, InvocationType="Event", Payload=_failing_event(task)
        )
        assert answer["StatusCode"] == 202
    assert service.queue.wait_idle(60)
    runs = [(d.task_attempt[0], d.qualifier, d.status) for d in service.deliveries]
    assert runs.count((901, default, "error")) == 3  # the first delivery and Lambda's 2 retries
    assert runs.count((902, none, "error")) == 1


def test_an_event_past_its_maximum_age_is_dropped_not_retried(deployment, standin):
    service = standin(event_age_scale=0.01)  # 60 s of age -> 0.6 s, as short as the first retry's delay
    lam = boto3.client("lambda", region_name=REGION, endpoint_url=service.url, config=NO_RETRY)
    alias = _alias(lam, deployment.function_name)
    lam.put_function_event_invoke_config(
        FunctionName=deployment.function_name, Qualifier=alias, MaximumRetryAttempts=2, MaximumEventAgeInSeconds=60
    )
    lam.invoke(FunctionName=deployment.function_name, Qualifier=alias, InvocationType="Event", Payload=_failing_event(903))
    assert service.queue.wait_idle(60)
    assert [d.task_attempt for d in service.deliveries] == [(903, 0)]  # the retry would start 1 "minute" later
    assert len(service.queue.expired) == 1


def test_the_runtime_works_with_the_roles_grants_only(deployment, standin):
    service = standin()
    storage = _storage(deployment)
    backend = _backend(deployment, service, invocation_type="RequestResponse")
    (inside,) = _events(storage, 1)
    outside_key = f"outside-the-grants/{storage.job}/fn"
    storage.put(outside_key, b"never read: the role may not GetObject here")  # the driver (admin) may put it
    outside = Invocation.of(TaskEvent(**{**inside.event.__dict__, "function_key": outside_key}))
    outcomes = []
    backend.prepare(storage)
    backend.start(outcomes.append)
    backend.invoke([inside, outside])
    backend.wait_sent()
    backend.shutdown()
    by_key = {o.invocation.event.function_key: o for o in outcomes}
    assert by_key[inside.event.function_key].error is None
    denied = by_key[outside_key].error
    assert denied is not None and "AccessDenied" in f"{denied} {denied.logs or ''}"


def test_payload_limits_and_reserved_concurrency_are_enforced(deployment, standin):
    service = standin()
    lam = boto3.client("lambda", region_name=REGION, endpoint_url=service.url, config=NO_RETRY)
    with pytest.raises(ClientError, match="RequestEntityTooLargeException") as info:
        lam.invoke(FunctionName=deployment.function_name, Payload=b'"' + b"x" * SYNC_PAYLOAD_LIMIT + b'"')
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    lam.put_function_concurrency(FunctionName=deployment.function_name, ReservedConcurrentExecutions=0)
    try:
        with pytest.raises(lam.exceptions.TooManyRequestsException) as throttled:
            lam.invoke(FunctionName=deployment.function_name, Payload=_failing_event(904))
        assert throttled.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    finally:
        lam.delete_function_concurrency(FunctionName=deployment.function_name)
    assert service.deliveries == []


def test_synchronous_invokes_beyond_the_account_concurrency_are_throttled():
    pool = EnvironmentPool(1, 1, make_setup=lambda function: pytest.fail("no environment may start"))
    function = FunctionVersion("f", None, {"Version": "1", "FunctionArn": "arn:aws:lambda:us-east-1:1:function:f:1"}, None)
    pool._busy["f"] = 1  # one invocation running: the account's whole concurrency
    with pytest.raises(Throttled, match="ConcurrentInvocationLimitExceeded"):
        pool.acquire(function, wait=False)


def allocate(megabytes):
    return len(b"x" * (megabytes * 2**20))  # touched, so resident


def test_a_task_past_its_memory_size_is_killed_as_out_of_memory(aws_executor):
    from lambdamr.errors import TaskOutOfMemoryError

    executor, service = aws_executor(invocation_type="RequestResponse", retries=0)
    with pytest.raises(TaskOutOfMemoryError):
        executor.submit(allocate, 400).result(timeout=60)  # the function has 256 MB
    assert any("Error Type: Runtime.OutOfMemory" in text for text in service.logs.values())
    assert executor.submit(allocate, 10).result(timeout=60) == 10 * 2**20  # a new environment, cold


def test_a_handler_that_cannot_be_imported_fails_the_invocation_like_lambda(tmp_path):
    from lambdamr.testing.lambda_service.environment import Credentials, ExecutionEnvironment, FunctionSetup
    from lambdamr.testing.lambda_service.runtime_folder import build_runtime_folder

    (tmp_path / "task").mkdir()
    (tmp_path / "opt").mkdir()
    setup = FunctionSetup(
        function_name="f",
        version="1",
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:f:1",
        handler="missing_module.handler",
        runtime="python3.12",
        memory_mb=256,
        timeout_s=5,
        region=REGION,
        variables={},
        task_root=tmp_path / "task",
        opt_root=tmp_path / "opt",
        runtime_root=build_runtime_folder(tmp_path / "runtime"),
        credentials=Credentials("AKIAEXAMPLE", "secret"),
    )
    environment = ExecutionEnvironment(setup)
    try:
        result = environment.invoke(b"{}")
    finally:
        environment.close()
    assert result.function_error and result.error_type == "Runtime.ImportModuleError"
    error = json.loads(result.payload)
    assert error["errorType"] == "Runtime.ImportModuleError" and "missing_module" in error["errorMessage"]
    assert not environment.alive  # Lambda stops an environment whose INIT failed
