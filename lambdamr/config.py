"""Executor configuration: one frozen dataclass, keyword arguments over environment defaults.

Every field can be set by a keyword argument of ``LambdaExecutor`` or by an environment
variable (``LAMBDAMR_`` + the field name in capitals, e.g. ``LAMBDAMR_BACKEND=aws``). With
nothing set, jobs run on the local backend with storage in a private local folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .aws_region import region_from_environment
from .errors import ConfigurationError

#: AWS Lambda's limits, which every backend enforces so failures show up before they cost.
MIN_MEMORY_MB = 128
MAX_MEMORY_MB = 10_240
MIN_TIMEOUT_S = 1
MAX_TIMEOUT_S = 900


def default_storage_url() -> str:
    """The private folder used when no storage is configured."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return str(Path(base) / "lambdamr" / "storage")


@dataclass(frozen=True)
class ExecutorConfig:
    """Settings of a ``LambdaExecutor``. Build it with ``ExecutorConfig.resolve(**overrides)``."""

    backend: str = "local"
    storage: str = ""  # URL: s3://bucket/prefix, file:///folder or a folder; "" = default folder
    prefix: str = "lambdamr"
    region: str | None = None
    endpoint_url: str | None = None  # S3-compatible endpoint (MinIO, moto server...)
    function_name: str = "lambdamr-runtime"  # the deployed Lambda function (aws backend)
    memory_mb: int = 1024
    timeout_s: float = 300.0
    workers: int | None = None  # local backend worker processes; None = CPU count
    retries: int = 2  # re-runs of a task after an infrastructure failure (or a retry_on error)
    retry_on: tuple[type[BaseException], ...] = ()  # user exceptions that are retried too
    speculate: bool = False  # launch a backup of a straggler near the end of a job
    durable: bool | None = None  # results + task manifest in storage (attach); None = backend's need
    keep_temp: bool = False  # keep a job's temp objects after shutdown
    progress: bool | None = None  # None = a bar only when stderr is a terminal or notebook
    verbose: bool = False  # print a job summary when a map finishes
    inline_args_max: int = 64 * 1024  # pickled arguments up to this travel inside the event
    reply_inline_max: int = 1024 * 1024  # results up to this may come back in the response
    poll_interval_s: float = 0.25  # storage listing period for fire-and-forget backends
    invocation_type: str = "Event"  # aws backend: "Event" (async) or "RequestResponse" (sync)
    max_concurrency: int | None = None  # aws backend: cap on tasks in flight; None = account limit
    lambda_endpoint_url: str | None = None  # aws backend: Lambda API endpoint (stand-ins, tests)

    def __post_init__(self) -> None:
        validate_memory(self.memory_mb)
        validate_timeout(self.timeout_s)
        if self.workers is not None and self.workers < 1:
            raise ConfigurationError(f"workers={self.workers}: give at least 1 worker, or None for the CPU count")
        validate_retry_on(self.retry_on)
        if self.retries < 0:
            raise ConfigurationError(f"retries={self.retries}: use 0 to disable retries, or a positive count")
        if not self.prefix or self.prefix.startswith("/") or ".." in self.prefix.split("/"):
            raise ConfigurationError(f"prefix={self.prefix!r}: use a relative key prefix such as 'lambdamr'")
        if self.poll_interval_s <= 0:
            raise ConfigurationError("poll_interval_s must be positive")
        if self.invocation_type not in ("Event", "RequestResponse"):  # aws backend
            raise ConfigurationError(
                f"invocation_type={self.invocation_type!r}: use 'Event' (asynchronous, results "
                "through storage) or 'RequestResponse' (synchronous, small results inline)"
            )
        if isinstance(self.max_concurrency, str):  # aws backend: from LAMBDAMR_MAX_CONCURRENCY
            try:
                object.__setattr__(self, "max_concurrency", int(self.max_concurrency))
            except ValueError:
                raise ConfigurationError(f"LAMBDAMR_MAX_CONCURRENCY={self.max_concurrency!r}: give a whole number") from None
        if self.max_concurrency is not None and self.max_concurrency < 1:  # aws backend
            raise ConfigurationError(f"max_concurrency={self.max_concurrency}: give at least 1, or None for the account limit")

    @classmethod
    def resolve(cls, **overrides: Any) -> ExecutorConfig:
        """Defaults, then ``LAMBDAMR_*`` environment variables, then these keyword arguments."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise ConfigurationError(
                f"unknown executor option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {}
        for name, f in known.items():
            if name == "retry_on":  # exception classes have no environment form
                continue
            raw = os.environ.get(f"LAMBDAMR_{name.upper()}")
            if raw is not None and raw != "":
                values[name] = _parse_env(name, raw, f.default)
        if "region" not in values:
            values["region"] = region_from_environment()  # the profile's, if None, comes from boto3
        values.update({k: v for k, v in overrides.items() if v is not None or k in ("progress",)})
        return cls(**values)

    def with_options(self, **overrides: Any) -> ExecutorConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **overrides)

    @property
    def storage_url(self) -> str:
        """The storage URL in force (the default folder when none is set)."""
        return self.storage or default_storage_url()


def validate_retry_on(retry_on: Any) -> tuple[type[BaseException], ...]:
    """Check that ``retry_on`` is a tuple of exception classes; return it."""
    if isinstance(retry_on, type):
        retry_on = (retry_on,)
    if not isinstance(retry_on, tuple) or not all(
        isinstance(t, type) and issubclass(t, BaseException) for t in retry_on
    ):
        raise ConfigurationError(
            f"retry_on={retry_on!r}: give a tuple of exception classes, e.g. retry_on=(ConnectionError,)"
        )
    return retry_on


def validate_memory(memory_mb: Any) -> int:
    """Check a memory size against Lambda's range; return it as int."""
    if isinstance(memory_mb, bool) or not isinstance(memory_mb, int):
        raise ConfigurationError(f"memory_mb={memory_mb!r}: give a whole number of MB")
    if not MIN_MEMORY_MB <= memory_mb <= MAX_MEMORY_MB:
        raise ConfigurationError(
            f"memory_mb={memory_mb}: AWS Lambda allows {MIN_MEMORY_MB} to {MAX_MEMORY_MB} MB"
        )
    return memory_mb


def validate_timeout(timeout_s: Any) -> float:
    """Check a task timeout against Lambda's range; return it as float."""
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
        raise ConfigurationError(f"timeout_s={timeout_s!r}: give a number of seconds")
    if not MIN_TIMEOUT_S <= timeout_s <= MAX_TIMEOUT_S:
        raise ConfigurationError(
            f"timeout_s={timeout_s}: AWS Lambda allows {MIN_TIMEOUT_S} to {MAX_TIMEOUT_S} seconds"
        )
    return float(timeout_s)


def _parse_env(name: str, raw: str, default: Any) -> Any:
    var = f"LAMBDAMR_{name.upper()}"
    if isinstance(default, bool) or name in ("progress", "durable"):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigurationError(f"{var}={raw!r}: use 1/0, true/false, yes/no or on/off")
    if isinstance(default, int) or name in ("workers", "max_concurrency"):
        try:
            return int(raw)
        except ValueError:
            raise ConfigurationError(f"{var}={raw!r}: give a whole number") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigurationError(f"{var}={raw!r}: give a number") from None
    return raw


@dataclass(frozen=True)
class JobOptions:
    """Per-job overrides of the executor's settings; ``None`` keeps the executor's value."""

    memory_mb: int | None = None
    timeout_s: float | None = None
    retries: int | None = None
    retry_on: tuple[type[BaseException], ...] | None = None
    speculate: bool | None = None

    def __post_init__(self) -> None:
        if self.memory_mb is not None:
            validate_memory(self.memory_mb)
        if self.timeout_s is not None:
            validate_timeout(self.timeout_s)
        if self.retries is not None and (not isinstance(self.retries, int) or self.retries < 0):
            raise ConfigurationError(f"retries={self.retries!r}: use 0 to disable retries, or a positive count")
        if self.retry_on is not None:
            object.__setattr__(self, "retry_on", validate_retry_on(self.retry_on))

    def merged(self, **overrides: Any) -> JobOptions:
        """These options with the given non-None values replacing them."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def resolve(self, config: ExecutorConfig) -> JobSettings:
        """Every setting filled in, from these options or else the executor's configuration."""
        return JobSettings(**{
            f.name: getattr(config, f.name) if getattr(self, f.name) is None else getattr(self, f.name)
            for f in fields(self)
        })


@dataclass(frozen=True)
class JobSettings:
    """The settings one job runs with (``JobOptions`` resolved against the executor's)."""

    memory_mb: int
    timeout_s: float
    retries: int
    retry_on: tuple[type[BaseException], ...]
    speculate: bool
