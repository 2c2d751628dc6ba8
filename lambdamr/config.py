"""Executor configuration: one frozen dataclass, keyword arguments over environment defaults.

Every field can be set by a keyword argument of ``LambdaExecutor`` or by an environment
variable (``LAMBDAMR_`` + the field name in capitals, e.g. ``LAMBDAMR_BACKEND=aws``). With
nothing set, jobs run on the local backend with storage in a private local folder.

Every value is checked by one function per field (``_CHECKS``) before anything starts: a
keyword must have the right type (``True``/``False`` for switches, never the string
``"false"``; a whole number for counts; a finite number for durations), an environment
variable is parsed strictly, and a refusal names the keyword or the variable it came from.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from lambdamr.aws_region import region_from_environment
from lambdamr.errors import ConfigurationError

#: AWS Lambda's limits, which every backend enforces so failures show up before they cost.
MIN_MEMORY_MB = 128
MAX_MEMORY_MB = 10_240
MIN_TIMEOUT_S = 1
MAX_TIMEOUT_S = 900
#: the most local worker processes one executor starts: each is a Python interpreter
#: (30-60 MB before the user's imports), so past this the machine thrashes instead of working
LOCAL_WORKERS_PER_CPU = 16
LOCAL_WORKERS_FLOOR = 64
#: the longest storage polling period that still notices results in reasonable time
MAX_POLL_INTERVAL_S = 60.0


def max_local_workers() -> int:
    """The cap on ``workers``: 16 per CPU, at least 64."""
    return max(LOCAL_WORKERS_FLOOR, LOCAL_WORKERS_PER_CPU * (os.cpu_count() or 1))


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
        for name, check in _CHECKS.items():
            value = getattr(self, name)
            checked = check(value, f"{name}={value!r}")
            if checked is not value:
                object.__setattr__(self, name, checked)

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
        for name in known:
            if name == "retry_on":  # exception classes have no environment form
                continue
            var = f"LAMBDAMR_{name.upper()}"
            raw = os.environ.get(var)
            if raw is not None and raw != "":
                # Checked here, so that a refusal names the variable the value came from.
                values[name] = _CHECKS[name](_parse_env(name, raw), f"{var}={raw!r}")
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


# ---- one check per field: (value, label for messages) -> the value to keep -----------------
def is_whole_number(value: Any) -> bool:
    """An int, or any integral number type (numpy integers...), but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _whole(value: Any, label: str, minimum: int, what: str) -> int:
    if not is_whole_number(value):
        raise ConfigurationError(f"{label}: give {what} (a whole number >= {minimum}, not a {type(value).__name__})")
    if value < minimum:
        raise ConfigurationError(f"{label}: give {what} (a whole number >= {minimum})")
    return value if type(value) is int else int(value)


def _finite(value: Any, label: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigurationError(f"{label}: give {what} as a number (not a {type(value).__name__})")
    if not math.isfinite(value):
        raise ConfigurationError(f"{label}: give {what} as a finite number")
    return float(value)


def check_switch(value: Any, label: str, *, optional: bool = False) -> bool | None:
    """``True`` or ``False`` (or ``None`` when ``optional``): a string like "false" is refused,
    because it would count as true."""
    if value is None and optional:
        return None
    if isinstance(value, bool):
        return value
    if type(value).__name__ == "bool_":  # numpy's bool
        return bool(value)
    hint = "True, False or None" if optional else "True or False"
    raise ConfigurationError(f"{label}: give {hint} (a {type(value).__name__} is not a switch)")


def _text(value: Any, label: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"{label}: give a string")
    return value


def validate_memory(memory_mb: Any, label: str | None = None) -> int:
    """Check a memory size against Lambda's range; return it as int."""
    label = label or f"memory_mb={memory_mb!r}"
    if not is_whole_number(memory_mb):
        raise ConfigurationError(f"{label}: give a whole number of MB")
    if not MIN_MEMORY_MB <= memory_mb <= MAX_MEMORY_MB:
        raise ConfigurationError(f"{label}: AWS Lambda allows {MIN_MEMORY_MB} to {MAX_MEMORY_MB} MB")
    return int(memory_mb)


def validate_timeout(timeout_s: Any, label: str | None = None) -> float:
    """Check a task timeout against Lambda's range; return it as float."""
    label = label or f"timeout_s={timeout_s!r}"
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, numbers.Real):
        raise ConfigurationError(f"{label}: give a number of seconds")
    seconds = float(timeout_s)
    if not MIN_TIMEOUT_S <= seconds <= MAX_TIMEOUT_S:  # NaN fails both comparisons
        raise ConfigurationError(f"{label}: AWS Lambda allows {MIN_TIMEOUT_S} to {MAX_TIMEOUT_S} seconds")
    return seconds


def validate_retries(retries: Any, label: str | None = None) -> int:
    """A retry count: 0 or more."""
    label = label or f"retries={retries!r}"
    if not is_whole_number(retries) or retries < 0:
        raise ConfigurationError(f"{label}: use 0 to disable retries, or a positive whole number")
    return int(retries)


def validate_workers(workers: Any, label: str | None = None) -> int | None:
    """A local worker count, 1 to ``max_local_workers()``, or None for the CPU count."""
    if workers is None:
        return None
    label = label or f"workers={workers!r}"
    if not is_whole_number(workers) or workers < 1:
        raise ConfigurationError(f"{label}: give at least 1 worker (a whole number), or None for the CPU count")
    cap = max_local_workers()
    if workers > cap:
        raise ConfigurationError(
            f"{label}: at most {cap} local workers on this machine ({LOCAL_WORKERS_PER_CPU} per CPU): each is "
            "a Python process; for more parallelism use the aws backend"
        )
    return int(workers)


def validate_retry_on(retry_on: Any, label: str | None = None) -> tuple[type[BaseException], ...]:
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


def normalize_prefix(prefix: Any, label: str | None = None) -> str:
    """A relative key prefix without leading, trailing or doubled slashes ("a/" -> "a")."""
    label = label or f"prefix={prefix!r}"
    if not isinstance(prefix, str):
        raise ConfigurationError(f"{label}: give a relative key prefix such as 'lambdamr'")
    stripped = prefix.rstrip("/")
    parts = stripped.split("/")
    if not stripped or prefix.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ConfigurationError(f"{label}: use a relative key prefix such as 'lambdamr' or 'team/lambdamr'")
    return stripped


def _poll_interval(value: Any, label: str) -> float:
    seconds = _finite(value, label, "the polling period in seconds")
    if not 0 < seconds <= MAX_POLL_INTERVAL_S:
        raise ConfigurationError(f"{label}: give a polling period above 0 and at most {MAX_POLL_INTERVAL_S:g} seconds")
    return seconds


def _invocation_type(value: Any, label: str) -> str:
    if value not in ("Event", "RequestResponse"):
        raise ConfigurationError(
            f"{label}: use 'Event' (asynchronous, results through storage) or 'RequestResponse' "
            "(synchronous, small results inline)"
        )
    return value


def _max_concurrency(value: Any, label: str) -> int | None:
    if value is None:
        return None
    return _whole(value, label, 1, "the most tasks in flight, or None for the account limit")


_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "backend": lambda v, label: _text(v, label),
    "storage": lambda v, label: _text(v, label),
    "prefix": normalize_prefix,
    "region": lambda v, label: _text(v, label, optional=True),
    "endpoint_url": lambda v, label: _text(v, label, optional=True),
    "function_name": lambda v, label: _text(v, label),
    "memory_mb": validate_memory,
    "timeout_s": validate_timeout,
    "workers": validate_workers,
    "retries": validate_retries,
    "retry_on": validate_retry_on,
    "speculate": check_switch,
    "durable": lambda v, label: check_switch(v, label, optional=True),
    "keep_temp": check_switch,
    "progress": lambda v, label: check_switch(v, label, optional=True),
    "verbose": check_switch,
    "inline_args_max": lambda v, label: _whole(v, label, 0, "a size in bytes"),
    "reply_inline_max": lambda v, label: _whole(v, label, 0, "a size in bytes"),
    "poll_interval_s": _poll_interval,
    "invocation_type": _invocation_type,
    "max_concurrency": _max_concurrency,
    "lambda_endpoint_url": lambda v, label: _text(v, label, optional=True),
}

_SWITCHES = ("speculate", "durable", "keep_temp", "progress", "verbose")
_WHOLE = ("memory_mb", "workers", "retries", "inline_args_max", "reply_inline_max", "max_concurrency")
_REAL = ("timeout_s", "poll_interval_s")


def _parse_env(name: str, raw: str) -> Any:
    """The value of ``LAMBDAMR_{NAME}``, parsed strictly by the field's kind."""
    var = f"LAMBDAMR_{name.upper()}"
    text = raw.strip()
    if name in _SWITCHES:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigurationError(f"{var}={raw!r}: use 1/0, true/false, yes/no or on/off")
    if name in _WHOLE:
        try:
            return int(text)
        except ValueError:
            raise ConfigurationError(f"{var}={raw!r}: give a whole number") from None
    if name in _REAL:
        try:
            return float(text)
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
            object.__setattr__(self, "memory_mb", validate_memory(self.memory_mb))
        if self.timeout_s is not None:
            object.__setattr__(self, "timeout_s", validate_timeout(self.timeout_s))
        if self.retries is not None:
            object.__setattr__(self, "retries", validate_retries(self.retries))
        if self.retry_on is not None:
            object.__setattr__(self, "retry_on", validate_retry_on(self.retry_on))
        if self.speculate is not None:
            object.__setattr__(self, "speculate", check_switch(self.speculate, f"speculate={self.speculate!r}"))

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
