"""The remote side of ``map_then_reduce``: map results go to storage, one task reduces them all.

Each map task stores its (pickled) result under a write-once key and returns only that key
and the result's digest; the single reduce task reads every result straight from storage —
map outputs never pass through the driver — and checks each digest before unpickling.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from lambdamr import serialize
from lambdamr.shuffle.format import digest_of, verify
from lambdamr.shuffle.notes import add_note, short_repr
from lambdamr.shuffle.plan import ShuffleLayout
from lambdamr.shuffle.reducer import FETCH_THREADS
from lambdamr.storage import open_cached


@dataclass(frozen=True)
class WholePlan:
    """What the tasks of one map_then_reduce run are told."""

    fn: Callable[..., Any]
    storage: dict[str, Any]
    layout: ShuffleLayout


class StoreResultTask:
    """Map side: ``(index, attempt, item) -> (name, digest)`` after storing ``fn(item)``."""

    def __init__(self, plan: WholePlan) -> None:
        self.plan = plan
        self.__name__ = f"map:{getattr(plan.fn, '__name__', 'map_fn')}"

    def __call__(self, index: int, attempt: int, item: Any) -> tuple[str, str]:
        try:
            value = self.plan.fn(item)
        except Exception as exc:
            add_note(exc, f"(in map_fn, for item {short_repr(item)})")
            raise
        data = serialize.dumps(value, what=f"result of map_fn for item {short_repr(item)}", ship_local_modules=False)
        name = self.plan.layout.new_name("m", index, attempt)
        open_cached(self.plan.storage).put(self.plan.layout.key(name), data, if_absent=True)
        return name, digest_of(data)


class ReduceAllTask:
    """Reduce side: ``(0, attempt, [(name, digest)]) -> fn([every map result, in input order])``."""

    def __init__(self, plan: WholePlan) -> None:
        self.plan = plan
        self.__name__ = f"reduce:{getattr(plan.fn, '__name__', 'reduce_fn')}"

    def __call__(self, index: int, attempt: int, stored: list[tuple[str, str]]) -> Any:
        store = open_cached(self.plan.storage)

        def load(entry: tuple[str, str]) -> Any:
            name, digest = entry
            data = store.get(self.plan.layout.key(name))
            verify(data, digest, what=f"map result {name}")
            return serialize.loads(data, what="map result")

        with ThreadPoolExecutor(max(1, min(FETCH_THREADS, len(stored)))) as pool:
            values = list(pool.map(load, stored))
        return self.plan.fn(values)
