"""Thread-safe integer counters, for the statistics that stores and invokers keep."""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields


@dataclass
class Counters:
    """A dataclass of ``int`` fields that threads update with ``add`` and read with ``snapshot``."""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._names = tuple(f.name for f in fields(self))  # read per task: not dataclasses.fields() each time

    def add(self, **counts: int) -> None:
        """Add to one or more counters atomically."""
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def snapshot(self) -> dict[str, int]:
        """A consistent copy of every counter."""
        with self._lock:
            return {name: getattr(self, name) for name in self._names}
