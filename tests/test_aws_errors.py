"""The one botocore -> lambdamr error table: every row maps, and lookups fall back in order."""

from __future__ import annotations

import ssl

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
    SSLError,
)

from lambdamr import errors
from lambdamr.aws_errors import APIS, RULES, describe_failure, error_code, is_retryable, rule_for, translate

CONTEXT = {"function_name": "fn", "region": "eu-west-1", "task_id": 7, "size": 12_345}


def _client_error(code: str, status: int = 400, message: str = "AWS says no") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


def _failure_for(code: str) -> BaseException:
    """An exception whose lookup code is ``code`` (a pseudo-code names botocore's own exception)."""
    endpoint = "https://127.0.0.1:1"
    own = {
        "NoCredentialsError": lambda: NoCredentialsError(),
        "NoRegionError": lambda: NoRegionError(),
        "EndpointConnectionError": lambda: EndpointConnectionError(endpoint_url=endpoint),
        "ConnectionClosedError": lambda: ConnectionClosedError(endpoint_url=endpoint),
        "ConnectTimeoutError": lambda: ConnectTimeoutError(endpoint_url=endpoint),
        "ReadTimeoutError": lambda: ReadTimeoutError(endpoint_url=endpoint),
        "SSLError": lambda: SSLError(endpoint_url=endpoint, error=ssl.SSLError("record layer failure")),
        "Certificate": lambda: SSLError(
            endpoint_url=endpoint, error=ssl.SSLCertVerificationError("[SSL: CERTIFICATE_VERIFY_FAILED]")
        ),
        "no answer": lambda: EndpointConnectionError(endpoint_url=endpoint),
        "5xx": lambda: ClientError({"Error": {}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "Op"),
        "": lambda: _client_error("SomethingAwsAddedLater"),
    }
    if code in own:
        return own[code]()
    return _client_error(code, int(code) if code.isdigit() else 400)


ROWS = sorted(RULES, key=lambda key: (key[0], key[1]))


@pytest.mark.parametrize(("api", "code"), ROWS, ids=[f"{api}:{code or 'fallback'}" for api, code in ROWS])
def test_every_row_maps_to_its_error_with_a_message_that_names_the_step(api, code):
    rule = RULES[(api, code)]
    exc = _failure_for(code)
    for used in APIS if api == "*" else (api,):
        if api == "*" and (used, code) in RULES:
            continue  # the API has a row of its own for this code
        error = translate(exc, used, "doing the step", **CONTEXT)
        assert type(error) is rule.error, (used, code)
        assert error.__cause__ is exc
        text = str(error)
        assert "{" not in text and "}" not in text  # every placeholder was filled
        if "{what}" in rule.template:
            assert "doing the step" in text
        assert is_retryable(exc, used) is rule.retryable


@pytest.mark.parametrize(
    ("api", "exc", "expected", "fragment"),
    [
        ("s3", _client_error("NoSuchKey", 404), errors.ObjectNotFound, "no such object"),
        ("s3", _client_error("", 502), errors.StorageUnavailable, "retry later"),  # a bare 502 from a balancer
        ("s3", _client_error("AccessDenied", 403), errors.StoragePermissionError, "s3:GetObject"),
        ("s3", NoCredentialsError(), errors.StoragePermissionError, "aws configure"),
        ("lambda", _client_error("ResourceNotFoundException", 404), errors.ConfigurationError,
         "run `lambdamr deploy --region eu-west-1 --function-name fn` first"),
        ("lambda", NoRegionError(), errors.ConfigurationError, "AWS_REGION"),
        ("invoke", _client_error("KMSDisabledException", 502), errors.ConfigurationError, "KMS key"),
        ("invoke", _client_error("TooManyRequestsException", 429), errors.ThrottledError, "TooManyRequestsException"),
        ("invoke", _client_error("", 504), errors.ThrottledError, "504"),
        ("invoke", _client_error("RequestEntityTooLargeException", 413), errors.PayloadTooLargeError, "12,345 bytes"),
        ("invoke", _client_error("InvalidParameterValueException"), errors.BackendError, "InvalidParameterValueException"),
        ("deploy", _client_error("UnauthorizedOperation", 403), errors.ConfigurationError, "permissions for S3, IAM"),
        ("deploy", _client_error("NoSuchEntity", 404), errors.DeployError, "NoSuchEntity: AWS says no"),
        ("deploy", ValueError("not a botocore error"), errors.DeployError, "ValueError: not a botocore error"),
        ("secrets", _client_error("AccessDeniedException"), errors.ConfigurationError, "secretsmanager:GetSecretValue"),
        ("secrets", EndpointConnectionError(endpoint_url="https://127.0.0.1:1"), errors.ConfigurationError,
         "cannot reach Secrets Manager"),
    ],
)
def test_lookups_fall_back_from_the_code_to_the_status_to_the_api(api, exc, expected, fragment):
    error = translate(exc, api, "doing the step", **CONTEXT)
    assert type(error) is expected and fragment in str(error)


def test_an_untrusted_certificate_is_a_configuration_error_whatever_wraps_it():
    inner = ssl.SSLCertVerificationError("[SSL: CERTIFICATE_VERIFY_FAILED] self-signed certificate")
    exc = SSLError(endpoint_url="https://127.0.0.1:1", error=inner)
    assert error_code(exc) == "Certificate"
    error = translate(exc, "invoke", "invoking 'fn'", endpoint="https://127.0.0.1:1", **CONTEXT)
    assert isinstance(error, errors.ConfigurationError) and "AWS_CA_BUNDLE" in str(error)
    assert not is_retryable(exc, "invoke")


def test_the_same_code_means_what_its_api_says():
    denied = _client_error("AccessDeniedException", 403)
    assert "lambda:InvokeFunction" in str(translate(denied, "invoke", "x", **CONTEXT))
    assert "check the credentials" in str(translate(denied, "lambda", "x", **CONTEXT))
    assert isinstance(translate(_client_error("NoSuchBucket", 404), "s3", "x"), errors.ConfigurationError)


def test_a_connection_failure_is_retried_on_invoke_but_not_on_the_control_plane():
    exc = EndpointConnectionError(endpoint_url="https://127.0.0.1:1")
    assert is_retryable(exc, "invoke") and not is_retryable(exc, "lambda")


def test_an_unknown_api_is_a_bug_named_at_once():
    with pytest.raises(ValueError, match="unknown AWS API 'sqs'"):
        rule_for("sqs", describe_failure(_client_error("X")))


def test_every_api_has_a_fallback_row():
    assert all((api, "") in RULES for api in APIS)


def test_no_module_but_the_table_reads_what_a_botocore_error_carries():
    import re
    from pathlib import Path

    import lambdamr

    root = Path(lambdamr.__file__).parent
    reads = re.compile(r"\b\w+\.response(\[|\.get\()")  # ClientError.response["Error"]...
    offenders = [
        str(path.relative_to(root))
        for path in sorted(root.rglob("*.py"))
        if "testing" not in path.relative_to(root).parts  # the stand-ins build AWS's answers
        and path.name != "aws_errors.py"
        and reads.search(path.read_text())
    ]
    assert offenders == [], f"read the code with lambdamr.aws_errors.error_code / describe_failure: {offenders}"


def test_what_an_http_server_answers_is_looked_up_by_its_status():
    import urllib.error

    for status, expected, fragment in (
        (404, errors.ObjectNotFound, "no such object (HTTP 404 Nope)"),
        (403, errors.StoragePermissionError, "presigned"),
        (503, errors.StorageUnavailable, "retry later"),
        (429, errors.StorageUnavailable, "HTTP 429"),
        (418, errors.StorageError, "the server answered HTTP 418 Nope"),
    ):
        exc = urllib.error.HTTPError("http://127.0.0.1:1/a", status, "Nope", {}, None)
        error = translate(exc, "http", "reading a")
        assert type(error) is expected and fragment in str(error), status
        assert is_retryable(exc, "http") is (status in (429, 503))
    refused = urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
    assert type(translate(refused, "http", "reading a")) is errors.StorageUnavailable
    assert "no answer from the server" in str(translate(refused, "http", "reading a"))
