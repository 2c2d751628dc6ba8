"""What AWS answered, as the lambdamr error that says what to do: one table.

Every call lambdamr makes through botocore — S3 storage (``"s3"``), the Lambda control
plane (``"lambda"``), Lambda's Invoke API (``"invoke"``), Secrets Manager for the signing
key (``"secrets"``) and every step of ``lambdamr deploy`` (``"deploy"``) — and the urllib
requests of ``objects()``' HTTP(S) inputs (``"http"``, any server) — turns a failure
into a lambdamr error with ``translate`` and raises it ``from`` the botocore error::

    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, "s3", f"reading {url}") from exc

A failure is first reduced to one code (``error_code``): a ``ClientError``'s ``Error.Code``,
its HTTP status when the body named none (a bare 502 from a load balancer), or the name of
botocore's own exception (``NoCredentialsError``, ``EndpointConnectionError``...), with
``Certificate`` standing for a TLS certificate the driver does not trust, whatever wraps it.
The code is then looked up in ``RULES``: the row for this API, else the row every API
shares (``"*"``), else the API's row for the status class (``"5xx"``), else — when AWS never
answered — the API's ``"no answer"`` row, else the API's fallback (``""``). A row gives the
error class and a message template; ``{what}`` (the step that failed), ``{code}``,
``{message}`` (AWS's own words), ``{exc}`` and the caller's context fill it in.

A row is retryable when its error class is (``StorageUnavailable``, ``ThrottledError``): the
Invoke loop retries exactly those (``is_retryable``).

This module never imports botocore (it reads a ``ClientError``'s ``response``), so it ships
to Lambda with the storage it serves.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from lambdamr.aws_region import HOW_TO_SET_REGION
from lambdamr.errors import (
    BackendError,
    ConfigurationError,
    DeployError,
    LambdaMRError,
    ObjectNotFound,
    PayloadTooLargeError,
    StorageError,
    StoragePermissionError,
    StorageUnavailable,
    ThrottledError,
)


@dataclass(frozen=True)
class Rule:
    """One row of the table: the error to raise and its message template."""

    error: type[LambdaMRError]
    template: str

    @property
    def retryable(self) -> bool:
        """Whether sending the same request again may succeed."""
        return bool(getattr(self.error, "retryable", False))


@dataclass(frozen=True)
class AwsFailure:
    """A botocore error reduced to what the table needs."""

    code: str  # Error.Code, an HTTP status as digits, or botocore's exception name
    message: str  # AWS's own words ("" for botocore's own exceptions)
    status: int | None  # the HTTP status, when there was an answer
    answered: bool = True  # False: botocore's own exception, no answer from AWS


#: every API the table knows, and what each names in its messages ("http": the HTTP(S) inputs of
#: ``objects()``, read with urllib; the same codes, an HTTP status as digits)
APIS = ("s3", "lambda", "invoke", "secrets", "deploy", "http")

_CONFIGURE_CREDENTIALS = "configure them (aws configure, AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
_LAMBDA_CREDENTIALS_REFUSED = (
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
)

#: 5xx answers of Invoke that say the function's own configuration is broken: retrying cannot help
FUNCTION_SETUP_ERRORS: Mapping[str, str] = {
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

#: Invoke error codes that ask the caller to slow down
THROTTLING_CODES = frozenset({"TooManyRequestsException", "ThrottlingException", "Throttling", "EC2ThrottledException"})

#: Invoke error codes that mean "not now": retried with backoff whatever their HTTP status
#: (botocore's Lambda model lists every Invoke error with its status; see docs/reliability.md)
INVOKE_RETRYABLE_CODES = frozenset(
    {
        *THROTTLING_CODES,  # 429, 502
        "ServiceException",  # 500: "The Lambda service encountered an internal error"
        "ServiceUnavailableException",
        "InternalFailure",
        "RequestTimeout",
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
        # the connection itself: nothing reached the service, or its answer never came back
        "EndpointConnectionError",
        "ConnectionClosedError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "SSLError",
    }
)


#: (API or "*", code) -> what to raise; "5xx" and "" (anything else) are per-API fallbacks
RULES: Mapping[tuple[str, str], Rule] = {
    # ---- every API: the driver's own setup ----------------------------------------------
    ("*", "NoCredentialsError"): Rule(ConfigurationError, "{what}: no AWS credentials found; " + _CONFIGURE_CREDENTIALS),
    ("*", "NoRegionError"): Rule(ConfigurationError, "{what}: no AWS region is set; " + HOW_TO_SET_REGION),
    ("*", "Certificate"): Rule(
        ConfigurationError,
        "{what}: the TLS certificate of {endpoint} is not trusted ({exc}); if a proxy or private "
        "endpoint signs with its own CA, point AWS_CA_BUNDLE (or ca_bundle in the AWS profile) "
        "at that CA's PEM file; otherwise check that the endpoint (lambda_endpoint_url, "
        "endpoint_url, AWS_ENDPOINT_URL_*, AWS_ENDPOINT_URL) and the region are right",
    ),
    # ---- S3 storage ---------------------------------------------------------------------
    ("s3", "NoCredentialsError"): Rule(StoragePermissionError, "{what}: no AWS credentials found; " + _CONFIGURE_CREDENTIALS),
    ("s3", "EndpointConnectionError"): Rule(
        StorageUnavailable, "{what}: cannot reach the S3 endpoint ({exc}); check endpoint_url and the network"
    ),
    ("s3", "NoSuchBucket"): Rule(
        ConfigurationError,
        "{what}: the bucket does not exist; create it with `lambdamr deploy` or name an existing "
        "one with bucket=... / LAMBDAMR_STORAGE=s3://BUCKET/prefix",
    ),
    **{("s3", code): Rule(ObjectNotFound, "{what}: no such object") for code in ("NoSuchKey", "404", "NotFound")},
    **{
        ("s3", code): Rule(
            StoragePermissionError,
            "{what}: access denied ({code}); the driver's credentials need s3:GetObject, "
            "s3:PutObject, s3:ListBucket and s3:DeleteObject on this prefix, the Lambda runtime's "
            "role a `lambdamr deploy --read/--write` grant (`lambdamr status` lists them)",
        )
        for code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken")
    },
    **{
        ("s3", code): Rule(StorageUnavailable, "{what}: S3 is throttling or failing ({code}: {message}); retry later")
        for code in ("SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling", "5xx")
    },
    ("s3", ""): Rule(StorageError, "{what}: {code}: {message}"),
    # ---- the Lambda control plane (GetFunctionConfiguration, aliases, versions) -----------
    ("lambda", "EndpointConnectionError"): Rule(
        ConfigurationError,
        "{what}: cannot reach the Lambda endpoint ({exc}); check that region {region!r} exists "
        "and that the network (or lambda_endpoint_url) is right",
    ),
    ("lambda", "ResourceNotFoundException"): Rule(
        ConfigurationError,
        "{what}: the Lambda function {function_name!r} is not deployed in region {region_name}; run `{deploy_command}` first",
    ),
    **{
        ("lambda", code): Rule(
            ConfigurationError,
            "{what}: AWS refused the request ({code}: {message}); check the credentials and their permissions",
        )
        for code in _LAMBDA_CREDENTIALS_REFUSED
    },
    ("lambda", ""): Rule(BackendError, "{what}: {code}: {message}"),
    # ---- Invoke -------------------------------------------------------------------------
    **{
        ("invoke", code): Rule(
            ConfigurationError,
            f"Lambda cannot start {{function_name!r}}: {reason} ({{code}}: {{message}}); fix the "
            "function's configuration, or redeploy it with `lambdamr deploy`",
        )
        for code, reason in FUNCTION_SETUP_ERRORS.items()
    },
    ("invoke", "ResourceNotFoundException"): Rule(
        ConfigurationError,
        "the Lambda function {function_name!r} (or the requested version) does not exist in this "
        "region ({message}); deploy it with `lambdamr deploy`, or set function_name / region to "
        "the ones you deployed",
    ),
    **{
        ("invoke", code): Rule(
            PayloadTooLargeError,
            "the Lambda service refused task {task_id}'s event of {size:,} bytes as too large "
            "({message}); lower inline_args_max",
        )
        for code in ("RequestEntityTooLargeException", "413")
    },
    **{
        ("invoke", code): Rule(
            ConfigurationError,
            "AWS refused to invoke {function_name!r} ({code}: {message}); the driver's credentials "
            "need lambda:InvokeFunction on it (and valid, unexpired keys)",
        )
        for code in _LAMBDA_CREDENTIALS_REFUSED
    },
    **{
        ("invoke", code): Rule(ThrottledError, "{what}: the Lambda service refused it for now ({code}); retried")
        for code in (*INVOKE_RETRYABLE_CODES, "5xx")
    },
    ("invoke", ""): Rule(BackendError, "{what} failed: {code}: {message}"),
    # ---- Secrets Manager (the signing key) ------------------------------------------------
    ("secrets", "no answer"): Rule(
        ConfigurationError,
        "{what}: cannot reach Secrets Manager ({code}); check the region and the network (or "
        "AWS_ENDPOINT_URL_SECRETS_MANAGER)",
    ),
    ("secrets", ""): Rule(
        ConfigurationError,
        "{what} ({code}): the execution role and the deploying user need "
        "secretsmanager:GetSecretValue on it; redeploy with `lambdamr deploy` if it was deleted",
    ),
    # ---- lambdamr deploy (S3, IAM, Lambda, Logs, STS, Secrets Manager) ---------------------
    ("deploy", "NoRegionError"): Rule(ConfigurationError, "{what}: no AWS region set; pass --region or set AWS_REGION"),
    ("deploy", "EndpointConnectionError"): Rule(
        ConfigurationError, "{what}: cannot reach AWS in region {region!r} ({exc}); check the region name and the network"
    ),
    **{
        ("deploy", code): Rule(
            ConfigurationError,
            "{what}: access denied ({message}); deploy needs permissions for S3, IAM (create role, "
            "put role policy, pass role), Lambda and CloudWatch Logs",
        )
        for code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")
    },
    ("deploy", "NoSuchBucket"): Rule(
        ConfigurationError,
        "{what}: the bucket does not exist ({message}); check --bucket, or create it with `lambdamr deploy`",
    ),
    **{
        ("deploy", code): Rule(ConfigurationError, "{what}: AWS rejected the credentials ({code}); check or refresh them")
        for code in ("InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch", "ExpiredToken")
    },
    ("deploy", ""): Rule(DeployError, "{what}: {code}: {message}"),
    # ---- HTTP(S) inputs of objects() (urllib; any server, not only AWS) ----------------------
    **{
        ("http", code): Rule(ObjectNotFound, "{what}: no such object (HTTP {code} {message}); check the URL")
        for code in ("404", "410")
    },
    **{
        ("http", code): Rule(
            StoragePermissionError,
            "{what}: the server refused it (HTTP {code} {message}); the URL needs credentials, or a "
            "fresh signature if it is presigned",
        )
        for code in ("401", "403")
    },
    ("http", "416"): Rule(
        StorageError, "{what}: the server cannot serve that range (HTTP 416): the object shrank since objects() listed it"
    ),
    **{
        ("http", code): Rule(StorageUnavailable, "{what}: the server is busy or failing (HTTP {code} {message}); retry later")
        for code in ("429", "5xx")
    },
    ("http", "Certificate"): Rule(
        ConfigurationError,
        "{what}: the TLS certificate of {endpoint} is not trusted ({exc}); point SSL_CERT_FILE at the PEM "
        "file of the CA that signs it, or check the URL",
    ),
    ("http", "no answer"): Rule(StorageUnavailable, "{what}: no answer from the server ({exc}); check the URL and the network"),
    ("http", ""): Rule(StorageError, "{what}: the server answered HTTP {code} {message}"),
}


def error_code(exc: BaseException) -> str:
    """The one code ``exc`` is looked up by (see the module docstring)."""
    return describe_failure(exc).code


def describe_failure(exc: BaseException) -> AwsFailure:
    """A botocore error (or any exception) reduced to its code, message and HTTP status."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        code = str(error.get("Code") or (status if status is not None else ""))
        return AwsFailure(code, str(error.get("Message", "")), int(status) if status is not None else None)
    http_errors = sys.modules.get("urllib.error")  # never imported here: only its users raise it
    if http_errors is not None and isinstance(exc, http_errors.HTTPError):
        return AwsFailure(str(exc.code), str(exc.reason), exc.code)
    if is_certificate_error(exc):
        return AwsFailure("Certificate", "", None, answered=False)
    return AwsFailure(type(exc).__name__, "", None, answered=False)


def rule_for(api: str, failure: AwsFailure) -> Rule:
    """The row of ``RULES`` that decides what ``failure`` of ``api`` becomes."""
    if api not in APIS:
        raise ValueError(f"unknown AWS API {api!r} for the error table; one of {', '.join(APIS)}")
    status = failure.status
    if status is None and failure.code.isdigit():
        status = int(failure.code)
    for key in ((api, failure.code), ("*", failure.code)):
        if key in RULES:
            return RULES[key]
    if status is not None and 500 <= status <= 599 and (api, "5xx") in RULES:
        return RULES[(api, "5xx")]
    if not failure.answered and (api, "no answer") in RULES:
        return RULES[(api, "no answer")]
    return RULES[(api, "")]


def translate(exc: BaseException, api: str, what: str, **context: Any) -> LambdaMRError:
    """The lambdamr error for ``exc``, a failure of ``api`` while doing ``what``.

    ``context`` fills the templates of the API's rows: ``function_name`` and ``region`` for
    ``"lambda"`` (``deploy_command`` and ``region_name`` are derived from them);
    ``function_name``, ``task_id`` and ``size`` for ``"invoke"``; ``region`` for ``"deploy"``;
    ``endpoint`` names the endpoint in a certificate error. The result has ``exc`` as its ``__cause__`` also when it is reported
    rather than raised (an invocation's outcome).
    """
    failure = describe_failure(exc)
    rule = rule_for(api, failure)
    region = context.get("region")
    values: dict[str, Any] = {
        "endpoint": "the AWS endpoint",
        "region": region,
        "region_name": region or "(default)",
        "deploy_command": _deploy_command(context.get("function_name"), region),
        **context,
        "what": what,
        "code": failure.code,
        "message": failure.message,
        "exc": exc,
    }
    if not failure.answered:  # botocore's own exception: its text is the message
        values["message"] = str(exc)
    error = rule.error(rule.template.format_map(values))
    error.__cause__ = exc
    return error


def is_retryable(exc: BaseException, api: str) -> bool:
    """Whether the request that failed with ``exc`` may succeed when sent again."""
    return rule_for(api, describe_failure(exc)).retryable


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


def _deploy_command(function_name: Any, region: Any) -> str:
    command = "lambdamr deploy"
    if region:
        command += f" --region {region}"
    if function_name and function_name != "lambdamr-runtime":
        command += f" --function-name {function_name}"
    return command
