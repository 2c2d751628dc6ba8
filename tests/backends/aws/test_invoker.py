"""The invoker on its own: backoff with full jitter, deadlines, error translation, and the
lean Invoke client checked against botocore's signer, moto's server, and a scripted endpoint
on 127.0.0.1 (bare 5xx answers, TLS with a throwaway certificate, an invoke never answered)."""

from __future__ import annotations

import base64
import io
import json
import ssl
import threading
import time

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, EndpointConnectionError

from lambdamr.backends.aws.errors import LambdaRuntimeError, RuntimeImportError
from lambdamr.backends.aws.fast_client import FastInvokeClient, SigV4Signer, resolved_verify, tls_context
from lambdamr.backends.aws.invoke import BotoClientPerTimeout, LambdaInvoker, sync_deadline_s
from lambdamr.backends.base import Invocation, InvocationOutcome
from lambdamr.errors import (
    ConfigurationError,
    PayloadTooLargeError,
    TaskOutOfMemoryError,
    TaskTimeoutError,
    ThrottledError,
    WorkerLostError,
)
from lambdamr.protocol import TaskEvent
from tests.aws_fixtures import REGION

from .scripted_lambda import ACCEPTED, HANG, Answer, scripted_lambda, self_signed_certificate


def _invocation(task_id: int = 0, size: int = 10) -> Invocation:
    event = TaskEvent(
        job_id="j",
        task_id=task_id,
        attempt=1,
        storage={"kind": "s3", "bucket": "b"},
        function_key="f",
        result_key="r",
        timeout_s=3,
        memory_mb=512,
        args_inline="A" * size,
    )
    return Invocation.of(event)


def _error(code: str, status: int = 429) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "Rate Exceeded."}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Invoke"
    )


class FakeLambda:
    """Answers ``invoke`` from a script of exceptions and responses, recording each call."""

    def __init__(self, *script):
        self.script = list(script)
        self.calls = []
        self.lock = threading.Lock()

    def invoke(self, **kwargs):
        with self.lock:
            self.calls.append(kwargs)
            step = self.script.pop(0) if self.script else {"StatusCode": 202}
        if isinstance(step, Exception):
            raise step
        return {"ResponseMetadata": {"RequestId": f"req-{len(self.calls)}"}, "Payload": io.BytesIO(b""), **step}


class VirtualTime:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def _run(client, invocations, **kwargs) -> list[InvocationOutcome]:
    outcomes: list[InvocationOutcome] = []
    invoker = LambdaInvoker(client, "fn", outcomes.append, threads=kwargs.pop("threads", 1), **kwargs)
    invoker.start()
    invoker.submit(invocations)
    invoker.shutdown(wait=True)
    return outcomes


def test_throttling_backs_off_with_full_jitter_and_then_succeeds():
    client = FakeLambda(_error("TooManyRequestsException"), _error("TooManyRequestsException"), _error("ServiceException", 500))
    clock = VirtualTime()
    outcomes = _run(
        client, [_invocation()], sleep=clock.sleep, clock=lambda: clock.now, rng=lambda: 0.5, backoff_base_s=0.1, backoff_cap_s=5
    )
    assert outcomes == [] and len(client.calls) == 4
    assert clock.sleeps == [0.05, 0.1, 0.2]  # uniform(0, min(cap, base * 2**n)), here at its middle
    assert client.calls[0]["InvocationType"] == "Event" and client.calls[0]["Payload"] == _invocation().payload


def test_throttling_past_the_deadline_fails_the_task_clearly_never_hangs():
    client = FakeLambda(*[_error("TooManyRequestsException")] * 100)
    clock = VirtualTime()
    (outcome,) = _run(
        client,
        [_invocation()],
        sleep=clock.sleep,
        clock=lambda: clock.now,
        rng=lambda: 1.0,
        throttle_deadline_s=10,
        backoff_base_s=0.1,
        backoff_cap_s=2,
    )
    assert isinstance(outcome.error, ThrottledError) and outcome.error.retryable
    assert "kept refusing it (TooManyRequestsException) for 10 s" in str(outcome.error)
    assert "max_concurrency" in str(outcome.error) and clock.now <= 10


def test_connection_errors_are_retried_too():
    client = FakeLambda(EndpointConnectionError(endpoint_url="http://x"), {"StatusCode": 202})
    assert _run(client, [_invocation()], sleep=lambda s: None) == [] and len(client.calls) == 2


def test_a_payload_over_the_limit_is_refused_without_a_request():
    client = FakeLambda()
    (outcome,) = _run(client, [_invocation(size=2000)], max_payload_bytes=1000)
    assert isinstance(outcome.error, PayloadTooLargeError) and client.calls == []


@pytest.mark.parametrize(
    ("code", "error_type", "message"),
    [
        ("ResourceNotFoundException", ConfigurationError, "lambdamr deploy"),
        ("AccessDeniedException", ConfigurationError, "lambda:InvokeFunction"),
        ("RequestEntityTooLargeException", PayloadTooLargeError, "inline_args_max"),
    ],
)
def test_errors_retrying_cannot_fix_are_reported_at_once(code, error_type, message):
    client = FakeLambda(_error(code, 400))
    (outcome,) = _run(client, [_invocation()])
    assert isinstance(outcome.error, error_type) and message in str(outcome.error) and len(client.calls) == 1


def _sync(body: dict, logs: str = "", kind: str = "Unhandled") -> dict:
    return {
        "StatusCode": 200,
        "FunctionError": kind,
        "Payload": io.BytesIO(json.dumps(body).encode()),
        "LogResult": base64.b64encode(f"START RequestId: r Version: 1\n{logs}".encode()).decode(),
    }


@pytest.mark.parametrize(
    ("body", "logs", "error_type", "advice"),
    [
        (
            {"errorType": "Sandbox.Timedout", "errorMessage": "RequestId: r Error: Task timed out after 3.00 seconds"},
            "REPORT RequestId: r\tDuration: 3000.00 ms\tStatus: timeout",
            TaskTimeoutError,
            "timeout_s=",
        ),
        (
            {"errorType": "Runtime.OutOfMemory", "errorMessage": "Runtime exited with error: signal: killed"},
            "REPORT RequestId: r\tMemory Size: 512 MB\tMax Memory Used: 512 MB",
            TaskOutOfMemoryError,
            "memory_mb=",
        ),
        (
            {"errorType": "Runtime.ExitError", "errorMessage": "Runtime exited with error: signal: killed"},
            "REPORT RequestId: r\tMemory Size: 512 MB\tMax Memory Used: 512 MB",
            TaskOutOfMemoryError,
            "memory_mb=",
        ),
        (
            {
                "errorType": "Runtime.ImportModuleError",
                "errorMessage": "Unable to import module 'lambdamr.runtime.handler': No module named 'tblib'",
            },
            "",
            RuntimeImportError,
            "--package",
        ),
        (
            {"errorType": "Runtime.ExitError", "errorMessage": "Runtime exited with error: exit status 1"},
            "",
            WorkerLostError,
            "did not finish",
        ),
        (
            {"errorType": "StorageUnavailable", "errorMessage": "S3 is throttling", "stackTrace": ["  File handler.py"]},
            "",
            LambdaRuntimeError,
            "S3 is throttling",
        ),
    ],
)
def test_runtime_failures_reach_the_driver_as_distinct_errors(body, logs, error_type, advice):
    (outcome,) = _run(FakeLambda(_sync(body, logs)), [_invocation()], invocation_type="RequestResponse")
    error = outcome.error
    assert type(error) is error_type and advice in str(error)
    assert error.request_id == "req-1" and error.task_id == 0 and error.attempt == 1
    assert error.logs  # the log tail (or the stack trace) travels with it
    assert not isinstance(error, RuntimeImportError) or error.retryable is False


def test_a_sync_answer_is_reported_with_its_response():
    client = FakeLambda({"StatusCode": 200, "Payload": io.BytesIO(b'{"ok": true, "record": "TE1SMQ=="}')})
    (outcome,) = _run(client, [_invocation()], invocation_type="RequestResponse")
    assert outcome.response == {"ok": True, "record": "TE1SMQ=="} and outcome.error is None
    assert client.calls[0]["LogType"] == "Tail" and outcome.started_at <= outcome.ended_at


def test_an_event_answer_with_a_function_error_is_not_taken_for_success():
    # moto without Docker answers every invoke like this
    client = FakeLambda({"StatusCode": 200, "FunctionError": "Handled", "Payload": io.BytesIO(b"error running docker")})
    (outcome,) = _run(client, [_invocation()])
    assert isinstance(outcome.error, LambdaRuntimeError) and "error running docker" in str(outcome.error)


def test_many_threads_deliver_every_invocation_exactly_once():
    client = FakeLambda()
    _run(client, [_invocation(i) for i in range(200)], threads=16)
    assert sorted(json.loads(c["Payload"])["task_id"] for c in client.calls) == list(range(200))


def test_the_lean_client_signs_exactly_like_botocore(monkeypatch):
    import datetime

    instant = datetime.datetime.fromtimestamp(1_700_000_000, datetime.timezone.utc).replace(tzinfo=None)
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda *a, **k: instant)  # the same instant for both
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token")
    body = b'{"lambdamr":1}'
    path = "/2015-03-31/functions/my-fn/invocations"
    headers = SigV4Signer("eu-west-1").sign(
        "POST",
        "lambda.eu-west-1.amazonaws.com",
        path,
        {"Qualifier": "m1024-t300"},
        {"X-Amz-Invocation-Type": "Event"},
        body,
        credentials.get_frozen_credentials(),
        now=1_700_000_000,
    )
    request = AWSRequest(
        "POST",
        f"https://lambda.eu-west-1.amazonaws.com{path}?Qualifier=m1024-t300",
        data=body,
        headers={"X-Amz-Invocation-Type": "Event", "X-Amz-Date": headers["X-Amz-Date"]},
    )
    SigV4Auth(credentials, "lambda", "eu-west-1").add_auth(request)
    assert headers["X-Amz-Date"] == request.headers["X-Amz-Date"] == "20231114T221320Z"
    assert headers["Authorization"] == request.headers["Authorization"]


def test_the_lean_client_speaks_the_real_invoke_api(moto_endpoint):
    boto = boto3.client("lambda", region_name=REGION, endpoint_url=moto_endpoint)
    fast = FastInvokeClient(boto)
    with pytest.raises(ClientError) as info:
        fast.invoke(FunctionName="missing-fn", InvocationType="Event", Payload=b"{}")
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert fast.list_functions()["Functions"] is not None  # everything else goes to boto3


# ---- which errors are retried --------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("500", 500),  # bare 5xx from a load balancer: no error type at all
        ("502", 502),
        ("503", 503),
        ("504", 504),
        ("ServiceException", 500),
        ("EC2UnexpectedException", 502),
        ("EC2ThrottledException", 502),
        ("ENILimitReachedException", 502),
        ("ResourceNotReadyException", 502),
        ("SnapStartNotReadyException", 409),
    ],
)
def test_service_side_failures_are_retried_with_backoff(code, status):
    client = FakeLambda(_error(code, status), _error(code, status), {"StatusCode": 202})
    clock = VirtualTime()
    outcomes = _run(client, [_invocation()], sleep=clock.sleep, clock=lambda: clock.now, rng=lambda: 0.5, backoff_base_s=0.1)
    assert outcomes == [] and len(client.calls) == 3 and clock.sleeps == [0.05, 0.1]


def test_a_5xx_that_names_a_broken_function_configuration_is_not_retried():
    client = FakeLambda(_error("KMSAccessDeniedException", 502))
    (outcome,) = _run(client, [_invocation()])
    assert isinstance(outcome.error, ConfigurationError) and len(client.calls) == 1
    assert "KMS" in str(outcome.error) and "lambdamr deploy" in str(outcome.error)


def test_a_service_that_keeps_failing_is_not_blamed_on_concurrency():
    client = FakeLambda(*[_error("502", 502)] * 100)
    clock = VirtualTime()
    (outcome,) = _run(client, [_invocation()], sleep=clock.sleep, clock=lambda: clock.now, throttle_deadline_s=5)
    assert isinstance(outcome.error, ThrottledError) and "HTTP 502" in str(outcome.error)
    assert "max_concurrency" not in str(outcome.error) and "AWS Health Dashboard" in str(outcome.error)


def _lean_client(url: str, **boto_kwargs) -> FastInvokeClient:
    return FastInvokeClient(boto3.client("lambda", region_name=REGION, endpoint_url=url, **boto_kwargs))


def _boto_client(url: str, **boto_kwargs):
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=5)
    return boto3.client("lambda", region_name=REGION, endpoint_url=url, config=config, **boto_kwargs)


@pytest.mark.parametrize("make_client", [_lean_client, _boto_client], ids=["lean", "boto3"])
def test_a_bare_502_over_http_is_retried_by_both_clients(make_client):
    html = Answer(502, b"<html><body>502 Bad Gateway</body></html>", {"Content-Type": "text/html"})
    with scripted_lambda(html, Answer(503), ACCEPTED) as server:
        client = make_client(server.url)
        outcomes = _run(client, [_invocation()], sleep=lambda s: None)
    assert outcomes == [] and len(server.requests) == 3


# ---- TLS: the lean client trusts exactly what botocore trusts ---------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.mark.parametrize("make_client", [_lean_client, _boto_client], ids=["lean", "boto3"])
def test_an_untrusted_certificate_fails_at_once_saying_what_to_fix(certificate, make_client):
    with scripted_lambda(certificate=certificate) as server:
        client = make_client(server.url)
        started = time.monotonic()
        (outcome,) = _run(client, [_invocation()])  # the real clock and the default 300 s budget
    assert time.monotonic() - started < 10 and server.requests == []  # the handshake failed: nothing was sent
    assert isinstance(outcome.error, ConfigurationError)
    assert "AWS_CA_BUNDLE" in str(outcome.error) and "not trusted" in str(outcome.error)
    assert "max_concurrency" not in str(outcome.error)


def test_the_lean_client_trusts_aws_ca_bundle(certificate, monkeypatch):
    monkeypatch.setenv("AWS_CA_BUNDLE", str(certificate[0]))
    with scripted_lambda(certificate=certificate) as server:
        fast = _lean_client(server.url)
        answer = fast.invoke(FunctionName="fn", InvocationType="Event", Payload=b"{}")
    assert answer["StatusCode"] == 202 and len(server.requests) == 1


@pytest.mark.parametrize("verify_kind", ["path", "false"])
def test_the_lean_client_follows_the_boto3_clients_verify(certificate, verify_kind):
    verify = str(certificate[0]) if verify_kind == "path" else False
    with scripted_lambda(certificate=certificate) as server:
        fast = _lean_client(server.url, verify=verify)
        answer = fast.invoke(FunctionName="fn", InvocationType="Event", Payload=b"{}")
    assert answer["StatusCode"] == 202 and len(server.requests) == 1


def test_the_default_trust_store_is_botocores(monkeypatch):
    from botocore.httpsession import get_cert_path

    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    assert resolved_verify(boto3.client("lambda", region_name=REGION)) is True
    context = tls_context(True)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) == len(ssl.create_default_context(cafile=get_cert_path(True)).get_ca_certs()) > 0


# ---- a synchronous invoke gives up at its task's deadline -----------------------------------


def test_a_sync_invoke_waits_as_long_as_an_event_task_before_it_counts_as_lost():
    from lambdamr.driver.scheduler import LOST_GRACE_S

    for timeout in (1, 5, 300, 900):
        assert sync_deadline_s(timeout) == timeout + max(LOST_GRACE_S, 0.1 * timeout)


@pytest.mark.parametrize("kind", ["lean", "boto3"])
def test_a_sync_invoke_that_is_never_answered_is_abandoned_at_its_deadline(kind):
    with scripted_lambda(HANG) as server:
        if kind == "lean":
            client = _lean_client(server.url)
        else:
            client = BotoClientPerTimeout(lambda seconds: _hanging_boto(server.url, seconds))
        started = time.monotonic()
        (outcome,) = _run(client, [_invocation()], invocation_type="RequestResponse", sync_deadline_for=lambda inv: 1.0)
        waited = time.monotonic() - started
    assert isinstance(outcome.error, WorkerLostError) and outcome.error.retryable
    assert "abandoned as lost" in str(outcome.error) and "no answer within 1 s" in str(outcome.error)
    assert 1.0 <= waited < 8 and len(server.requests) == 1  # once: a request that may be running is not re-sent here


def _hanging_boto(url: str, read_timeout: int):
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=read_timeout)
    return boto3.client("lambda", region_name=REGION, endpoint_url=url, config=config)


def test_an_untrusted_certificate_on_the_control_plane_says_the_same(certificate):
    from lambdamr.backends.aws.function import describe_function

    with scripted_lambda(certificate=certificate) as server:
        with pytest.raises(ConfigurationError, match="not trusted.*AWS_CA_BUNDLE"):
            describe_function(_boto_client(server.url), "fn")
