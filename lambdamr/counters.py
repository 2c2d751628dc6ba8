"""Thread-safe integer counters, for the statistics that stores and invokers keep."""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any


@dataclass
class Counters:
    """A dataclass of ``int`` fields that threads update with ``add`` and read with ``snapshot``."""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._names = tuple(f.name for f in fields(self))  # read per task: not dataclasses.fields() each time
        self._getters: dict[tuple[str, ...], Callable[[Any], Any]] = {}

    def add(self, **counts: int) -> None:
        """Add to one or more counters atomically."""
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def snapshot(self) -> dict[str, int]:
        """A consistent copy of every counter."""
        with self._lock:
            return {name: getattr(self, name) for name in self._names}

    def read(self, names: tuple[str, ...]) -> tuple[int, ...]:
        """A consistent copy of the counters ``names``, in that order (cheaper than
        ``snapshot`` for a caller that reads the same few on every task)."""
        getter = self._getters.get(names)
        if getter is None:
            getter = self._getters[names] = operator.attrgetter(*names) if len(names) > 1 else (
                lambda counters: (getattr(counters, names[0]),)
            )
        with self._lock:
            values: tuple[int, ...] = getter(self)
        return values
