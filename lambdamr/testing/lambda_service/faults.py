"""Deterministic faults the Lambda stand-in injects, chosen by (task id, attempt)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

TaskAttempt = tuple[int, int]


@dataclass
class Faults:
    """Which faults the stand-in injects; (task id, attempt) pairs pick invocations."""

    throttle_first: int = 0  # answer 429 TooManyRequestsException to the first N Invoke requests
    drop: set[TaskAttempt] = field(default_factory=set)  # accept (202) but never run
    duplicate: set[TaskAttempt] = field(default_factory=set)  # deliver an Event twice
    timeout: set[TaskAttempt] = field(default_factory=set)  # the function hangs until it is killed


def task_attempt(payload: bytes) -> TaskAttempt | None:
    """The (task id, attempt) of a lambdamr event, or None for any other payload."""
    try:
        event = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(event, dict) or "task_id" not in event:
        return None
    return int(event["task_id"]), int(event.get("attempt", 0))
