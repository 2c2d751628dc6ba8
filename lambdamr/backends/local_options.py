"""The local backend's own options: how many worker processes it runs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from lambdamr.config import BackendOptions, is_whole_number, parse_whole, setting
from lambdamr.errors import ConfigurationError

#: the most local worker processes one executor starts: each is a Python interpreter
#: (30-60 MB before the user's imports), so past this the machine thrashes instead of working
LOCAL_WORKERS_PER_CPU = 16
LOCAL_WORKERS_FLOOR = 64


def max_local_workers() -> int:
    """The cap on ``workers``: 16 per CPU, at least 64."""
    return max(LOCAL_WORKERS_FLOOR, LOCAL_WORKERS_PER_CPU * (os.cpu_count() or 1))


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


@dataclass(frozen=True)
class LocalOptions(BackendOptions):
    """``LambdaExecutor(workers=4)``: options of the local backend."""

    workers: int | None = setting(None, validate_workers, parse_whole)  # worker processes; None = the CPU count
