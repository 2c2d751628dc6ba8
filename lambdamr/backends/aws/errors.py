"""What the Lambda service says when something other than the user's code goes wrong, as
lambdamr exceptions that say what to do.

Two sources, one table:

* the Invoke API's own errors (``ClientError`` codes: function missing, payload too large,
  access denied) — ``invoke_client_error``;
* which Invoke errors are worth retrying (``is_retryable``): throttling, and every 5xx but the
  ones that name a broken function configuration (``FUNCTION_SETUP_ERRORS``);
* a TLS certificate the driver does not trust (``certificate_error``): fails at once, since
  retrying cannot fix a CA bundle or an endpoint;
* a ``FunctionError`` answer: the function ran but the runtime failed (timeout, out of
  memory, import failure, an exception escaping the handler) — ``function_error``; the same
  classification reads a log tail (``classify_logs``), which is how a lost asynchronous
  invocation is explained after its deadline.

The user's own exceptions never come through here: the runtime catches them and writes them
into the result record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lambdamr.errors import (
    BackendError,
    ConfigurationError,
    LambdaRuntimeError,
    PayloadTooLargeError,
    RuntimeImportError,
    TaskError,
    TaskOutOfMemoryError,
    TaskTimeoutError,
    WorkerLostError,
)

if TYPE_CHECKING:
    from lambdamr.backends.base import Invocation


#: Invoke error codes that ask the caller to slow down
THROTTLING_CODES = frozenset({"TooManyRequestsException", "ThrottlingException", "Throttling", "EC2ThrottledException"})

#: Invoke error codes that mean "not now": retried with backoff whatever their HTTP status
#: (botocore's Lambda model lists every Invoke error with its status; see docs/reliability.md)
RETRYABLE_CODES = frozenset(
    {
        "TooManyRequestsException",  # 429
        "ThrottlingException",
        "Throttling",
        "ServiceException",  # 500: "The Lambda service encountered an internal error"
        "ServiceUnavailableException",
        "InternalFailure",
        "RequestTimeout",
        "EC2ThrottledException",  # 502
        "EC2UnexpectedException",  # 502
        "ENILimitReachedException",  # 502
        "ENINotReadyException",  # 502
        "SubnetIPAddressLimitReachedException",  # 502: frees up as other ENIs are reclaimed
        "ResourceNotReadyException",  # 502: an inactive function's VPC connection is coming back
        "ResourceConflictException",  # 409: the function is being updated
        "SnapStartNotReadyException",  # 409
        "SnapStartTimeoutException",  # 408
        "EFSMountTimeoutException",  # 408
        "EFSMountConnectivityException",  # 408
    }
)

#: 5xx answers that say the function's own configuration is broken: retrying cannot help
FUNCTION_SETUP_ERRORS = {
    "EC2AccessDeniedException": "the execution role lacks the EC2 permissions a VPC function needs",
    "InvalidSecurityGroupIDException": "a security group in the function's VPC configuration does not exist",
    "InvalidSubnetIDException": "a subnet in the function's VPC configuration does not exist",
    "InvalidRuntimeException": "the function's runtime is not supported any more",
    "InvalidZipFileException": "Lambda cannot unzip the function's package",
    "KMSAccessDeniedException": "the execution role may not decrypt the environment with its KMS key",
    "KMSDisabledException": "the KMS key of the function's environment is disabled",
    "KMSInvalidStateException": "the KMS key of the function's environment is not usable",
    "KMSNotFoundException": "the KMS key of the function's environment does not exist",
}


def is_retryable(code: str, status: int | None) -> bool:
    """Whether an Invoke ``ClientError`` may succeed when sent again.

    Throttling codes, and any 5xx (a bare 500/502/503/504 from a load balancer carries no
    error type at all) except the ones that name a broken function configuration.
    """
    if code in RETRYABLE_CODES:
        return True
    if code in FUNCTION_SETUP_ERRORS:
        return False
    if status is None and code.isdigit():
        status = int(code)
    return status is not None and 500 <= status <= 599


def is_certificate_error(exc: BaseException) -> bool:
    """Whether ``exc``, or an error it wraps, is a failed TLS certificate check."""
    import ssl

    return any(
        isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(cause)
        for cause in _causes(exc)
    )


def _causes(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        kwargs = getattr(exc, "kwargs", None)  # botocore keeps the underlying error here
        wrapped = kwargs.get("error") if isinstance(kwargs, dict) else None
        exc = wrapped if isinstance(wrapped, BaseException) else (exc.__cause__ or exc.__context__)


def certificate_error(exc: BaseException, endpoint: str) -> ConfigurationError:
    """A ``ConfigurationError`` for a TLS certificate the driver does not trust."""
    return ConfigurationError(
        f"the TLS certificate of {endpoint} is not trusted ({exc}); if a proxy or private "
        "endpoint signs with its own CA, point AWS_CA_BUNDLE (or ca_bundle in the AWS profile) "
        "at that CA's PEM file; otherwise check that the endpoint (lambda_endpoint_url, "
        "AWS_ENDPOINT_URL_LAMBDA, AWS_ENDPOINT_URL) and the region are right"
    )


_MEMORY_RE = re.compile(r"Memory Size: (\d+) MB\s+Max Memory Used: (\d+) MB")
_TIMEOUT_RE = re.compile(r"Task timed out after ([\d.]+) seconds|Status: timeout")
_OOM_TYPES = ("Runtime.OutOfMemory",)


def _where(invocation: Invocation, request_id: str | None) -> dict[str, Any]:
    event = invocation.event
    return {"job_id": event.job_id, "task_id": event.task_id, "attempt": event.attempt, "request_id": request_id or None}


def classify(error_type: str, message: str, logs: str | None, invocation: Invocation, request_id: str | None) -> TaskError:
    """The lambdamr error for a failed run, from its error type, message and log tail."""
    event = invocation.event
    where = _where(invocation, request_id)
    text = f"{message}\n{logs or ''}"
    memory = _MEMORY_RE.search(logs or "")
    out_of_memory = (
        error_type in _OOM_TYPES
        or "Runtime.OutOfMemory" in text
        or (memory is not None and int(memory.group(2)) >= int(memory.group(1)))
    )
    if error_type == "Sandbox.Timedout" or _TIMEOUT_RE.search(text):
        return TaskTimeoutError(
            f"the task ran past its timeout of {event.timeout_s:g} s on AWS Lambda and was stopped; "
            "raise it with timeout_s=... (Lambda allows up to 900 s) or split the work into more tasks",
            **where,
            logs=logs,
        )
    if out_of_memory:
        return TaskOutOfMemoryError(
            f"the task went past its memory limit of {event.memory_mb} MB on AWS Lambda and was "
            "killed; give it more with memory_mb=... (up to 10,240 MB, which also buys CPU) or "
            "process the data in smaller pieces",
            **where,
            logs=logs,
        )
    if error_type == "Runtime.ImportModuleError" or "No module named" in message:
        return RuntimeImportError(
            f"the Lambda runtime cannot import what it needs ({message.strip()}); redeploy with "
            "`lambdamr deploy`, adding any missing package to the layer with --package NAME",
            **where,
            logs=logs,
        )
    if error_type == "ProtocolError":
        return RuntimeImportError(f"the deployed runtime refused the task: {message.strip()}", **where, logs=logs)
    if error_type.startswith("Runtime.") or "Runtime exited" in message:
        return WorkerLostError(
            f"the Lambda runtime process died ({error_type}: {message.strip()}); the task did not finish",
            **where,
            logs=logs,
        )
    return LambdaRuntimeError(
        f"the lambdamr runtime failed on AWS Lambda: {error_type or 'error'}: {message.strip()}",
        **where,
        logs=logs,
    )


def function_error(kind: str, body: bytes, logs: str | None, invocation: Invocation, request_id: str | None) -> TaskError:
    """The error for an Invoke answer that carries ``X-Amz-Function-Error``."""
    error_type, message = "", ""
    trace: list[Any] = []
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = {"errorMessage": body.decode("utf-8", "replace")[:2000]}
    if isinstance(data, dict):
        error_type = str(data.get("errorType", ""))
        message = str(data.get("errorMessage", ""))
        trace = data.get("stackTrace") or []
    else:
        message = str(data)[:2000]
    if not logs and trace:
        logs = "\n".join(str(line).rstrip() for line in trace[-10:])
    if not error_type and not message:
        message = f"function error {kind!r} with no details"
    return classify(error_type, message, logs, invocation, request_id)


def classify_logs(logs: str, invocation: Invocation, request_id: str | None) -> TaskError:
    """Explain, from its log lines, an asynchronous invocation that left no result."""
    match = re.search(r"\b(Runtime\.[A-Za-z]+|Sandbox\.Timedout)\b", logs)
    error_type = match.group(1) if match else ""
    if not error_type and not _TIMEOUT_RE.search(logs) and not _MEMORY_RE.search(logs):
        return WorkerLostError(
            "the invocation left no result and its logs say nothing of a timeout or memory limit; it was retried",
            **_where(invocation, request_id),
            logs=logs or None,
        )
    lines = [line for line in logs.splitlines() if "rror" in line]
    return classify(error_type, lines[-1] if lines else "", logs, invocation, request_id)


def invoke_client_error(exc: Any, function_name: str, invocation: Invocation) -> Exception:
    """Translate a non-retryable ``ClientError`` of the Invoke API."""
    code = str(exc.response.get("Error", {}).get("Code", ""))
    message = str(exc.response.get("Error", {}).get("Message", ""))
    if code in FUNCTION_SETUP_ERRORS:
        return ConfigurationError(
            f"Lambda cannot start {function_name!r}: {FUNCTION_SETUP_ERRORS[code]} ({code}: "
            f"{message}); fix the function's configuration, or redeploy it with `lambdamr deploy`"
        )
    if code == "ResourceNotFoundException":
        return ConfigurationError(
            f"the Lambda function {function_name!r} (or the requested version) does not exist in "
            f"this region ({message}); deploy it with `lambdamr deploy`, or set function_name / "
            "region to the ones you deployed"
        )
    if code in ("RequestEntityTooLargeException", "413"):
        return PayloadTooLargeError(
            f"the Lambda service refused task {invocation.event.task_id}'s event of "
            f"{len(invocation.payload):,} bytes as too large ({message}); lower inline_args_max"
        )
    if code in ("AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException"):
        return ConfigurationError(
            f"AWS refused to invoke {function_name!r} ({code}: {message}); the driver's "
            "credentials need lambda:InvokeFunction on it (and valid, unexpired keys)"
        )
    return BackendError(f"invoking {function_name!r} failed: {code}: {message}")
