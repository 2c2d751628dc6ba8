"""The aws backend's own options: which function, how it is invoked, how many at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lambdamr.config import BackendOptions, check_text, check_whole, parse_text, parse_whole, setting
from lambdamr.errors import ConfigurationError

INVOCATION_TYPES = ("Event", "RequestResponse")


def _function_name(value: Any, label: str) -> str:
    name = check_text(value, label)
    if not name:
        raise ConfigurationError(f"{label}: name the deployed Lambda function, e.g. 'lambdamr-runtime'")
    return name


def _invocation_type(value: Any, label: str) -> str:
    if value not in INVOCATION_TYPES:
        raise ConfigurationError(
            f"{label}: use 'Event' (asynchronous, results through storage) or 'RequestResponse' "
            "(synchronous, small results inline)"
        )
    return str(value)


def _max_concurrency(value: Any, label: str) -> int | None:
    return check_whole(value, label, 1, "the most tasks in flight, or None for the account limit", optional=True)


def _endpoint(value: Any, label: str) -> str | None:
    return check_text(value, label, optional=True)


@dataclass(frozen=True)
class AwsOptions(BackendOptions):
    """``LambdaExecutor(backend="aws", function_name=..., max_concurrency=...)``: options of
    the aws backend."""

    function_name: str = setting("lambdamr-runtime", _function_name, parse_text)  # the deployed function
    invocation_type: str = setting("Event", _invocation_type, parse_text)  # "Event" (async) or "RequestResponse"
    max_concurrency: int | None = setting(None, _max_concurrency, parse_whole)  # tasks in flight; None = account limit
    lambda_endpoint_url: str | None = setting(None, _endpoint, parse_text)  # Lambda API endpoint (stand-ins, tests)
