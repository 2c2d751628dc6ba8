"""Asynchronous-invocation settings per version or alias: the event-invoke-config API.

Lambda keeps one config per qualifier (``$LATEST``, a version number, an alias); an event
invoked through a qualifier with no config gets the service's defaults: 2 retries and a
6-hour maximum event age. (moto keeps one config per function, whatever the qualifier, which
is why the stand-in answers this API itself.)

    PUT    /2019-09-25/functions/{name}/event-invoke-config?Qualifier=Q   (replace)
    POST   /2019-09-25/functions/{name}/event-invoke-config?Qualifier=Q   (update given fields)
    GET    /2019-09-25/functions/{name}/event-invoke-config?Qualifier=Q
    DELETE /2019-09-25/functions/{name}/event-invoke-config?Qualifier=Q
    GET    /2019-09-25/functions/{name}/event-invoke-config/list
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

DEFAULT_RETRIES = 2
DEFAULT_MAX_AGE_S = 21600
LATEST = "$LATEST"


class ConfigError(Exception):
    """A request the API refuses: status, error code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class EventInvokeConfig:
    function_arn: str  # qualified
    maximum_retry_attempts: int = DEFAULT_RETRIES
    maximum_event_age_s: int = DEFAULT_MAX_AGE_S
    destinations: dict[str, Any] = field(default_factory=dict)
    last_modified: float = field(default_factory=time.time)

    def document(self) -> dict[str, Any]:
        return {
            "LastModified": self.last_modified,
            "FunctionArn": self.function_arn,
            "MaximumRetryAttempts": self.maximum_retry_attempts,
            "MaximumEventAgeInSeconds": self.maximum_event_age_s,
            "DestinationConfig": self.destinations or {"OnSuccess": {}, "OnFailure": {}},
        }


def _validated(request: dict[str, Any], base: EventInvokeConfig) -> EventInvokeConfig:
    retries = request.get("MaximumRetryAttempts", base.maximum_retry_attempts)
    age = request.get("MaximumEventAgeInSeconds", base.maximum_event_age_s)
    if not isinstance(retries, int) or not 0 <= retries <= 2:
        raise ConfigError(
            400,
            "InvalidParameterValueException",
            f"1 validation error detected: Value '{retries}' at 'maximumRetryAttempts' failed to satisfy "
            "constraint: Member must have value less than or equal to 2",
        )
    if not isinstance(age, int) or not 60 <= age <= 21600:
        raise ConfigError(
            400,
            "InvalidParameterValueException",
            f"1 validation error detected: Value '{age}' at 'maximumEventAgeInSeconds' failed to satisfy "
            "constraint: Member must have value between 60 and 21600",
        )
    return replace(
        base,
        maximum_retry_attempts=retries,
        maximum_event_age_s=age,
        destinations=request.get("DestinationConfig", base.destinations),
        last_modified=time.time(),
    )


class EventInvokeConfigs:
    """The configs of every (function, qualifier)."""

    def __init__(self) -> None:
        self._configs: dict[tuple[str, str], EventInvokeConfig] = {}
        self._lock = threading.Lock()

    def effective(self, function: str, qualifier: str | None) -> tuple[int, int]:
        """(retries, maximum event age) that apply to events invoked through ``qualifier``."""
        with self._lock:
            config = self._configs.get((function, qualifier or LATEST))
        if config is None:
            return DEFAULT_RETRIES, DEFAULT_MAX_AGE_S
        return config.maximum_retry_attempts, config.maximum_event_age_s

    def put(self, function: str, qualifier: str | None, arn: str, request: dict[str, Any]) -> dict[str, Any]:
        config = _validated(request, EventInvokeConfig(arn))
        with self._lock:
            self._configs[(function, qualifier or LATEST)] = config
        return config.document()

    def update(self, function: str, qualifier: str | None, arn: str, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            base = self._configs.get((function, qualifier or LATEST), EventInvokeConfig(arn))
        config = _validated(request, base)
        with self._lock:
            self._configs[(function, qualifier or LATEST)] = config
        return config.document()

    def get(self, function: str, qualifier: str | None, arn: str) -> dict[str, Any]:
        with self._lock:
            config = self._configs.get((function, qualifier or LATEST))
        if config is None:
            raise ConfigError(404, "ResourceNotFoundException", f"The function {arn} doesn't have an EventInvokeConfig")
        return config.document()

    def delete(self, function: str, qualifier: str | None, arn: str) -> None:
        with self._lock:
            if self._configs.pop((function, qualifier or LATEST), None) is None:
                raise ConfigError(404, "ResourceNotFoundException", f"The function {arn} doesn't have an EventInvokeConfig")

    def list(self, function: str) -> dict[str, Any]:
        with self._lock:
            configs = [c.document() for (name, _), c in sorted(self._configs.items()) if name == function]
        return {"FunctionEventInvokeConfigs": configs}
