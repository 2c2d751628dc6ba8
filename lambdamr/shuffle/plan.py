"""Planning a map_reduce: options, where temp objects go, and what each remote task is told.

Temp keys of one run live under ``{session_prefix}/shuffle/{run}/`` (deleted as one prefix)
and are spread over 256 sub-prefixes by a short hash, because S3 scales request rates per
prefix (about 3,500 PUT and 5,500 GET per second each)::

    {session_prefix}/shuffle/{run}/{hh}/m{mapper:05d}.{attempt}-{token}

``attempt`` is the driver's attempt number and ``token`` is random per execution, so every
execution writes its own write-once key: a late duplicate never overwrites what a reducer
was told to read (the driver records the winning key from the mapper's result).
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lambdamr.config import is_whole_number, validate_memory, validate_timeout
from lambdamr.errors import ConfigurationError

OUTPUT_FORMATS = ("pickle", "text", "raw")
#: default share of a reducer's memory it may fill with its partition before spilling to /tmp
REDUCE_MEMORY_SHARE = 0.5
#: memory the runtime itself takes (interpreter, boto3, the user's imports)
RUNTIME_BASELINE_MB = 96
#: rough in-memory cost of one decoded pair beyond its pickled bytes (tuple, list slot, objects)
PAIR_OVERHEAD_BYTES = 120
#: the most reducers one run takes: every mapper reports a byte range per reducer, and up to
#: mappers x reducers ranged GETs follow (reducers that receive no pair are not invoked)
MAX_REDUCERS = 10_000


@dataclass(frozen=True)
class MapReduceOptions:
    """The keyword options of ``LambdaExecutor.map_reduce`` (see its docstring)."""

    reducers: int | None = None
    partition: Callable[[Any, int], int] | None = None
    combine: Callable[[Any, list[Any]], Any] | None = None
    output: str | None = None
    output_format: str = "pickle"
    mappers: int | None = None
    retries: int = 2
    keep_intermediate: bool = False
    reduce_budget_mb: float | None = None
    memory_mb: int | None = None
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("reducers", "mappers"):
            value = getattr(self, name)
            if value is not None and (not is_whole_number(value) or value < 1):
                raise ConfigurationError(f"map_reduce({name}={value!r}): give a whole number >= 1, or None")
        if self.reducers is not None and self.reducers > MAX_REDUCERS:
            raise ConfigurationError(
                f"map_reduce(reducers={self.reducers}): at most {MAX_REDUCERS:,} reducers; every mapper writes one "
                "partition per reducer, so use fewer (a reducer handles many keys)"
            )
        if not is_whole_number(self.retries) or self.retries < 0:
            raise ConfigurationError(f"map_reduce(retries={self.retries!r}): give 0 (no retry) or a positive count")
        for name in ("partition", "combine"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ConfigurationError(f"map_reduce({name}=...): expected a function, got {type(value).__name__}")
        if not isinstance(self.keep_intermediate, bool):
            raise ConfigurationError(
                f"map_reduce(keep_intermediate={self.keep_intermediate!r}): give True or False"
            )
        if self.output_format not in OUTPUT_FORMATS:
            raise ConfigurationError(
                f"map_reduce(output_format={self.output_format!r}): choose one of {', '.join(OUTPUT_FORMATS)}"
            )
        if self.output is not None and not (isinstance(self.output, str) and self.output):
            raise ConfigurationError("map_reduce(output=...): give s3://bucket/prefix or a folder path")
        if self.reduce_budget_mb is not None and not (
            isinstance(self.reduce_budget_mb, (int, float))
            and not isinstance(self.reduce_budget_mb, bool)
            and math.isfinite(self.reduce_budget_mb)
            and self.reduce_budget_mb > 0
        ):
            raise ConfigurationError(f"map_reduce(reduce_budget_mb={self.reduce_budget_mb!r}): give a positive number")
        if self.memory_mb is not None:
            validate_memory(self.memory_mb)
        if self.timeout_s is not None:
            validate_timeout(self.timeout_s)


def default_reducers(mappers: int, capacity: int) -> int:
    """About the square root of the mapper count (so M x R requests stay modest), at most
    the tasks that can run at once."""
    return max(1, min(capacity, round(math.sqrt(mappers))))


def reduce_budget_bytes(memory_mb: int, override_mb: float | None) -> int:
    """Bytes of decoded partition a reducer may hold before it merges from /tmp instead."""
    if override_mb is not None:
        return max(1, int(override_mb * 1024 * 1024))
    usable = memory_mb * REDUCE_MEMORY_SHARE - RUNTIME_BASELINE_MB
    return int(max(16.0, usable) * 1024 * 1024)


def estimated_memory(nbytes: int, pairs: int) -> int:
    """What holding a partition of ``nbytes`` pickled bytes and ``pairs`` pairs costs in memory."""
    return int(nbytes * 1.5) + pairs * PAIR_OVERHEAD_BYTES


@dataclass(frozen=True)
class ShuffleLayout:
    """The temp keys of one map_reduce run."""

    prefix: str  # {session_prefix}/shuffle/{run}

    @classmethod
    def new(cls, session_prefix: str, number: int) -> ShuffleLayout:
        return cls(f"{session_prefix}/shuffle/{number:03d}-{secrets.token_hex(3)}")

    @staticmethod
    def spread(index: int, run_prefix: str) -> str:
        return hashlib.blake2b(f"{run_prefix}/{index}".encode(), digest_size=1).hexdigest()

    def new_name(self, kind: str, index: int, attempt: int) -> str:
        """A fresh write-once name (relative to ``prefix``) for one execution of a task."""
        return f"{self.spread(index, self.prefix)}/{kind}{index:05d}.{attempt}-{secrets.token_hex(4)}"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"


@dataclass(frozen=True)
class OutputTarget:
    """Where reducers write their results: one object per reducer."""

    storage: dict[str, Any]
    prefix: str
    format: str

    def key(self, reducer: int) -> str:
        suffix = ".txt" if self.format == "text" else ""
        name = f"part-{reducer:05d}{suffix}"
        return f"{self.prefix}/{name}" if self.prefix else name


@dataclass(frozen=True)
class MapPlan:
    """What every map task of a run is told (pickled once per phase)."""

    map_fn: Callable[[Any], Any]
    reducers: int
    storage: dict[str, Any]
    layout: ShuffleLayout
    partition: Callable[[Any, int], int] | None = None
    combine: Callable[[Any, list[Any]], Any] | None = None


@dataclass(frozen=True)
class ReducePlan:
    """What every reduce task of a run is told (pickled once per phase)."""

    reduce_fn: Callable[[Any, list[Any]], Any]
    storage: dict[str, Any]
    layout: ShuffleLayout
    budget_bytes: int
    output: OutputTarget | None = None
