"""Executor configuration: frozen dataclasses, keyword arguments over environment defaults.

``ExecutorConfig`` holds what every backend shares (storage, memory, timeout, retries...);
what only one backend understands (the local backend's ``workers``, the aws backend's
``function_name``...) lives in that backend's options class, a ``BackendOptions`` registered
beside it. ``lambdamr.backends.executor_config`` — what ``LambdaExecutor`` calls — routes each
keyword to the one that takes it, and refuses, before anything starts, a keyword the chosen
backend does not take, saying which backend does.

Every field can be set by a keyword argument of ``LambdaExecutor`` or by an environment
variable (``LAMBDAMR_`` + the field name in capitals, e.g. ``LAMBDAMR_BACKEND=aws``). With
nothing set, jobs run on the local backend with storage in a private local folder.

Every field is a ``setting``: a default, one check and one environment parser. A keyword
must have the right type (``True``/``False`` for switches, never the string ``"false"``; a
whole number for counts; a finite number for durations), an environment variable is parsed
strictly, and a refusal names the keyword or the variable it came from.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from lambdamr.aws_region import region_from_environment
from lambdamr.errors import ConfigurationError
from lambdamr.protocol import NO_EXTRA_ENV, ExtraEnv, check_extra_env

#: AWS Lambda's limits, which every backend enforces so failures show up before they cost.
MIN_MEMORY_MB = 128
MAX_MEMORY_MB = 10_240
MIN_TIMEOUT_S = 1
MAX_TIMEOUT_S = 900
#: the longest storage polling period that still notices results in reasonable time
MAX_POLL_INTERVAL_S = 60.0


def default_storage_url() -> str:
    """The private folder used when no storage is configured."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return str(Path(base) / "lambdamr" / "storage")


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


def check_text(value: Any, label: str, *, optional: bool = False) -> str | None:
    """A string (or ``None`` when ``optional``)."""
    return _text(value, label, optional=optional)


def check_whole(value: Any, label: str, minimum: int, what: str, *, optional: bool = False) -> int | None:
    """A whole number at least ``minimum`` (or ``None`` when ``optional``); ``what`` says what it counts."""
    if value is None and optional:
        return None
    return _whole(value, label, minimum, what)


# ---- environment parsers: (raw text, variable) -> value ---------------------------------------
def parse_text(raw: str, var: str) -> str:
    return raw


def parse_switch(raw: str, var: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{var}={raw!r}: use 1/0, true/false, yes/no or on/off")


def parse_whole(raw: str, var: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ConfigurationError(f"{var}={raw!r}: give a whole number") from None


def parse_real(raw: str, var: str) -> float:
    try:
        return float(raw.strip())
    except ValueError:
        raise ConfigurationError(f"{var}={raw!r}: give a number") from None


# ---- settings: a frozen dataclass whose every field is checked and has an environment form ----
Check = Callable[[Any, str], Any]  # (value, label for messages) -> the value to keep
Parse = Callable[[str, str], Any]  # (raw environment text, variable name) -> the value


def setting(default: Any, check: Check, parse: Parse | None = parse_text, *, none_is_a_value: bool = False) -> Any:
    """A field of a ``Settings`` class: its default, its check, and how its environment
    variable (``LAMBDAMR_`` + the name in capitals) is parsed (``None``: it has none). A
    keyword given as ``None`` keeps the environment's value or the default, unless
    ``none_is_a_value`` (``progress=None``: decide by the terminal)."""
    return field(default=default, metadata={"check": check, "parse": parse, "none_is_a_value": none_is_a_value})


@dataclass(frozen=True)
class Settings:
    """Frozen settings, every field a ``setting``: checked when made; ``resolve_settings``
    gathers them from defaults, then ``LAMBDAMR_*`` environment variables, then keywords.

    ``ExecutorConfig`` is one; each backend's options class (``BackendOptions``) is another.
    """

    def __post_init__(self) -> None:
        for f in fields(self):
            check = f.metadata.get("check")
            if check is None:
                continue
            value = getattr(self, f.name)
            checked = check(value, f"{f.name}={value!r}")
            if checked is not value:
                object.__setattr__(self, f.name, checked)

    @classmethod
    def setting_names(cls) -> tuple[str, ...]:
        """The names of the fields that are settings, in declaration order."""
        return tuple(f.name for f in fields(cls) if "check" in f.metadata)

    @classmethod
    def from_environment(cls) -> dict[str, Any]:
        """The values ``LAMBDAMR_*`` variables set, each checked so that a refusal names the
        variable it came from."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            parse = f.metadata.get("parse")
            if parse is None:
                continue
            var = f"LAMBDAMR_{f.name.upper()}"
            raw = os.environ.get(var)
            if raw is not None and raw != "":
                values[f.name] = f.metadata["check"](parse(raw, var), f"{var}={raw!r}")
        return values

    @classmethod
    def resolve_settings(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        """Environment values, then ``overrides`` (see ``setting`` for a ``None`` keyword)."""
        keeps_none = {f.name for f in fields(cls) if f.metadata.get("none_is_a_value")}
        values = cls.from_environment()
        values.update({k: v for k, v in overrides.items() if v is not None or k in keeps_none})
        return values


OptionsT = TypeVar("OptionsT", bound="BackendOptions")


@dataclass(frozen=True)
class BackendOptions(Settings):
    """The options only one backend takes (its ``workers``, its ``function_name``...): each
    backend registers a subclass of this beside it (``lambdamr.backends.BACKENDS``)."""

    @classmethod
    def resolve(cls: type[OptionsT], **overrides: Any) -> OptionsT:
        """Defaults, then ``LAMBDAMR_*`` environment variables, then these keyword arguments."""
        return cls(**cls.resolve_settings(overrides))

    @classmethod
    def of(cls: type[OptionsT], config: ExecutorConfig) -> OptionsT:
        """The options ``config`` carries for this backend, or this backend's defaults (with
        its environment variables) when it carries another backend's."""
        options = config.backend_options
        return options if isinstance(options, cls) else cls.resolve()


def _poll_interval(value: Any, label: str) -> float:
    seconds = _finite(value, label, "the polling period in seconds")
    if not 0 < seconds <= MAX_POLL_INTERVAL_S:
        raise ConfigurationError(f"{label}: give a polling period above 0 and at most {MAX_POLL_INTERVAL_S:g} seconds")
    return seconds


def _size(value: Any, label: str) -> int:
    return _whole(value, label, 0, "a size in bytes")


def _optional_text(value: Any, label: str) -> str | None:
    return _text(value, label, optional=True)


def _optional_switch(value: Any, label: str) -> bool | None:
    return check_switch(value, label, optional=True)


def _extra_env(value: Any, label: str) -> ExtraEnv:
    return check_extra_env(value, "extra_env")  # not ``label``: it would show the values


@dataclass(frozen=True)
class ExecutorConfig(Settings):
    """Settings every backend shares. Build it with ``ExecutorConfig.resolve(**overrides)``;
    ``backend_options`` holds the chosen backend's own (``LocalOptions``, ``AwsOptions``...)."""

    backend: str = setting("local", _text)
    storage: str = setting("", _text)  # URL: s3://bucket/prefix, file:///folder or a folder; "" = default folder
    prefix: str = setting("lambdamr", normalize_prefix)
    region: str | None = setting(None, _optional_text)
    endpoint_url: str | None = setting(None, _optional_text)  # S3-compatible endpoint (MinIO, moto server...)
    memory_mb: int = setting(1024, validate_memory, parse_whole)
    timeout_s: float = setting(300.0, validate_timeout, parse_real)
    retries: int = setting(2, validate_retries, parse_whole)  # re-runs after an infrastructure failure (or retry_on)
    retry_on: tuple[type[BaseException], ...] = setting((), validate_retry_on, None)  # user exceptions retried too
    speculate: bool = setting(False, check_switch, parse_switch)  # a backup of a straggler near the end of a job
    durable: bool | None = setting(None, _optional_switch, parse_switch)  # results + task manifest in storage
    keep_temp: bool = setting(False, check_switch, parse_switch)  # keep a job's temp objects after shutdown
    progress: bool | None = setting(None, _optional_switch, parse_switch, none_is_a_value=True)  # None = a bar on a terminal
    verbose: bool = setting(False, check_switch, parse_switch)  # print a job summary when a map finishes
    inline_args_max: int = setting(64 * 1024, _size, parse_whole)  # pickled arguments up to this travel in the event
    reply_inline_max: int = setting(1024 * 1024, _size, parse_whole)  # results up to this may come back in the response
    poll_interval_s: float = setting(0.25, _poll_interval, parse_real)  # storage listing period (fire-and-forget)
    # environment variables of every job's tasks (a job's own add to them); no LAMBDAMR_EXTRA_ENV
    extra_env: ExtraEnv = setting(NO_EXTRA_ENV, _extra_env, None)
    backend_options: BackendOptions = field(default_factory=BackendOptions)  # the chosen backend's own options

    @classmethod
    def resolve(cls, **overrides: Any) -> ExecutorConfig:
        """Defaults, then ``LAMBDAMR_*`` environment variables, then these keyword arguments
        (shared settings and ``backend_options``; ``lambdamr.backends.executor_config`` routes a
        backend's own keywords to its options class).

        Raises:
            ConfigurationError: a value is out of range, or a keyword is no shared setting.
        """
        known = {*cls.setting_names(), "backend_options"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown executor option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        values = cls.resolve_settings(overrides)
        if "region" not in values:
            values["region"] = region_from_environment()  # the profile's, if None, comes from boto3
        return cls(**values)

    def with_options(self, **overrides: Any) -> ExecutorConfig:
        """A copy with some settings changed (validated again)."""
        return replace(self, **overrides)

    @property
    def storage_url(self) -> str:
        """The storage URL in force (the default folder when none is set)."""
        return self.storage or default_storage_url()


@dataclass(frozen=True)
class JobOptions:
    """Per-job overrides of the executor's settings; ``None`` keeps the executor's value."""

    memory_mb: int | None = None
    timeout_s: float | None = None
    retries: int | None = None
    retry_on: tuple[type[BaseException], ...] | None = None
    speculate: bool | None = None
    # an ExtraEnv once checked, added to the executor's extra_env (a name both set: this one's value)
    extra_env: Mapping[str, str] | None = None

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
        if self.extra_env is not None:
            object.__setattr__(self, "extra_env", check_extra_env(self.extra_env))

    def merged(self, **overrides: Any) -> JobOptions:
        """These options with the given non-None values replacing them."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def resolve(self, config: ExecutorConfig) -> JobSettings:
        """Every setting filled in, from these options or else the executor's configuration."""
        settings = {
            f.name: getattr(config, f.name) if getattr(self, f.name) is None else getattr(self, f.name)
            for f in fields(self)
        }
        settings["extra_env"] = config.extra_env.merged(self.extra_env or NO_EXTRA_ENV)
        return JobSettings(**settings)


@dataclass(frozen=True)
class JobSettings:
    """The settings one job runs with (``JobOptions`` resolved against the executor's)."""

    memory_mb: int
    timeout_s: float
    retries: int
    retry_on: tuple[type[BaseException], ...]
    speculate: bool
    extra_env: ExtraEnv = NO_EXTRA_ENV
