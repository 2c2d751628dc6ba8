"""The map task, run remotely: ``map_fn`` over its items, partition, one PUT.

A map task runs ``map_fn`` on each of its items, checks every output is a (key, value)
pair with a hashable key, pre-reduces with ``combine`` when given, routes each key to a
reducer with the partitioner, sorts each partition by key (so a reducer can merge from disk
when its partition is too big for memory) and writes ONE intermediate object. Its return
value — small — carries the object's name and index back to the driver.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from lambdamr.data.objects import Chunk
from lambdamr.errors import ConfigurationError, SerializationError
from lambdamr.shuffle.collector import collector_paused
from lambdamr.shuffle.format import encode_parts
from lambdamr.shuffle.notes import add_note, short_repr
from lambdamr.shuffle.partition import stable_partition, stable_partitions
from lambdamr.shuffle.plan import MapPlan
from lambdamr.storage import open_cached

#: values kept per key before ``combine`` folds them (bounds a mapper's memory per key)
COMBINE_EVERY = 256
#: distinct keys whose partition a mapper remembers (repeated keys skip the hash)
PARTITION_CACHE = 200_000


@dataclass
class MapOutput:
    """What a map task reports: the object it wrote and where each partition is in it."""

    mapper: int
    attempt: int
    name: str  # relative to the run's layout prefix
    segments: list[tuple[int, int, int, bool, str]]  # per reducer: offset, length, pairs, sorted, digest
    nbytes: int
    pairs: int
    input_requests: int = 0
    timings: dict[str, float] = field(default_factory=dict)


class _Router:
    """Partitions pairs into per-reducer lists, checking what ``map_fn`` produced."""

    def __init__(self, plan: MapPlan, where: str) -> None:
        self.where = where
        self.reducers = plan.reducers
        self.partition = plan.partition or stable_partition
        self.custom = plan.partition is not None
        self.buckets: list[list[tuple[Any, Any]]] = [[] for _ in range(plan.reducers)]
        self.cache: dict[Any, int] = {}

    def reducer_of(self, key: Any, item: Any) -> int:
        try:
            found = self.cache.get(key)
        except TypeError:
            raise SerializationError(
                f"map_fn yielded an unhashable key {short_repr(key)} (a {type(key).__name__}) for item {short_repr(item)}: "
                "keys are grouped in a dict; use a hashable type (a tuple instead of a list, a frozenset "
                "instead of a set, a str or bytes instead of a bytearray)"
            ) from None
        if found is not None:
            return found
        reducer = self.partition_of(key, item)
        if len(self.cache) < PARTITION_CACHE:
            self.cache[key] = reducer
        return reducer

    def partition_of(self, key: Any, item: Any) -> int:
        """The reducer of a hashable ``key``, not cached: the partition function's answer,
        errors naming ``item``, a user's partition function's answer checked."""
        try:
            reducer = self.partition(key, self.reducers)
        except SerializationError as exc:
            raise SerializationError(f"{exc} (key from item {short_repr(item)}, in {self.where})") from exc
        except Exception as exc:
            add_note(exc, f"(in the partition function, for key {short_repr(key)} of item {short_repr(item)})")
            raise
        if self.custom and (isinstance(reducer, bool) or not isinstance(reducer, int) or not 0 <= reducer < self.reducers):
            raise ConfigurationError(
                f"partition({short_repr(key)}, {self.reducers}) returned {reducer!r}: it must return an int "
                f"from 0 to {self.reducers - 1}"
            )
        return reducer

    def partitions_of(self, keys: list[Any], item: Any) -> list[int]:
        """``partition_of`` each of ``keys`` (hashable, from one item): the default
        partitioner's str keys in one batch, in C; anything else key by key."""
        if not self.custom:
            found = stable_partitions(keys, self.reducers)
            if found is not None:
                return found
        partition_of = self.partition_of
        return [partition_of(key, item) for key in keys]

    def route_mapping(self, produced: dict[Any, Any], item: Any) -> int:
        """Route every item of a dict from ``map_fn`` (distinct, hashable keys: nothing to
        combine within it) straight into the partitions; return how many pairs went."""
        buckets = [bucket.append for bucket in self.buckets]
        for reducer, pair in zip(self.partitions_of(list(produced), item), produced.items()):
            buckets[reducer](pair)
        return len(produced)


def _pairs_of(produced: Any, item: Any) -> Iterable[Any]:
    if produced is None:
        raise SerializationError(
            f"map_fn returned None for item {short_repr(item)}: return or yield (key, value) pairs "
            "(an empty list when an item has none)"
        )
    if isinstance(produced, Mapping):
        return produced.items()
    if isinstance(produced, (str, bytes)):
        raise SerializationError(
            f"map_fn returned a {type(produced).__name__} for item {short_repr(item)}: return or yield (key, value) pairs"
        )
    try:
        pairs: Iterable[Any] = iter(produced)
        return pairs
    except TypeError:
        raise SerializationError(
            f"map_fn returned {short_repr(produced)} (a {type(produced).__name__}) for item {short_repr(item)}: "
            "return or yield (key, value) pairs, e.g. `yield word, 1`"
        ) from None


def _bad_pair(pair: Any, item: Any) -> SerializationError:
    return SerializationError(
        f"map_fn yielded {short_repr(pair)} (a {type(pair).__name__}) for item {short_repr(item)}: "
        "it must yield (key, value) pairs — 2-tuples such as `yield word, 1`"
    )


class MapTask:
    """The function a map phase runs: ``MapTask(plan)(mapper, attempt, items) -> MapOutput``."""

    def __init__(self, plan: MapPlan) -> None:
        self.plan = plan
        self.__name__ = f"map:{getattr(plan.map_fn, '__name__', 'map_fn')}"

    def __call__(self, mapper: int, attempt: int, items: list[Any]) -> MapOutput:
        plan = self.plan
        started = time.perf_counter()
        router = _Router(plan, f"map task {mapper}")
        pairs = self._combined(items, router) if plan.combine else self._routed(items, router)
        mapped = time.perf_counter()
        with collector_paused():  # pickling allocates per pair, and no cycle can come of it
            sorted_flags = []
            for bucket in router.buckets:
                try:
                    bucket.sort(key=itemgetter(0))
                    sorted_flags.append(True)
                except (TypeError, ValueError):  # keys that do not order among themselves
                    sorted_flags.append(False)
            parts, index = encode_parts(router.buckets, sorted_flags, where=f"map task {mapper}")
        encoded = time.perf_counter()
        name = plan.layout.new_name("m", mapper, attempt)
        # the parts include views of large values themselves: no join, no copy before the write
        open_cached(plan.storage).put_parts(plan.layout.key(name), parts, if_absent=True)
        del parts
        router.buckets = []
        done = time.perf_counter()
        return MapOutput(
            mapper=mapper,
            attempt=attempt,
            name=name,
            segments=[s.as_tuple() for s in index],
            nbytes=sum(s.length for s in index),
            pairs=pairs,
            input_requests=sum(item.requests for item in items if isinstance(item, Chunk)),
            timings={"map": mapped - started, "encode": encoded - mapped, "put": done - encoded},
        )

    def _each_pair(
        self, items: list[Any], fold: Callable[[dict[Any, Any], Any, bool], None] | None = None
    ) -> Iterator[tuple[Any, Any]]:
        """(item, pair) for every pair ``map_fn`` produces, with the item named on errors.

        With ``fold`` (the combine path), a dict that ``map_fn`` returns (a ``Counter``...)
        goes to ``fold(produced, item, is_last_item)`` instead, without a step per pair
        through this generator.
        """
        last = len(items) - 1
        for number, item in enumerate(items):
            try:
                produced = self.plan.map_fn(item)
            except Exception as exc:
                add_note(exc, f"(in map_fn, for item {short_repr(item)})")
                raise
            if fold is not None and isinstance(produced, dict):
                fold(produced, item, number == last)
                continue
            pairs = _pairs_of(produced, item)
            try:
                for pair in pairs:  # a generator runs the user's code here
                    yield item, pair
            except Exception as exc:
                add_note(exc, f"(in map_fn, for item {short_repr(item)})")
                raise

    def _routed(self, items: list[Any], router: _Router) -> int:
        buckets = router.buckets
        reducer_of = router.reducer_of
        count = 0
        for item, pair in self._each_pair(items):
            if type(pair) is not tuple or len(pair) != 2:
                if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                    raise _bad_pair(pair, item)
                pair = (pair[0], pair[1])
            buckets[reducer_of(pair[0], item)].append(pair)
            count += 1
        return count

    def _combined(self, items: list[Any], router: _Router) -> int:
        combine = self.plan.combine
        groups: dict[Any, list[Any]] = {}  # key -> [reducer, value, value, ...]
        routed = 0

        def fold(produced: dict[Any, Any], item: Any, is_last: bool) -> None:
            nonlocal routed
            if is_last and not groups:  # one dict and nothing to combine it with (one chunk per mapper)
                routed += router.route_mapping(produced, item)
            else:
                self._fold_mapping(produced, item, groups, router)

        for item, pair in self._each_pair(items, fold):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise _bad_pair(pair, item)
            key, value = pair
            try:
                entry = groups.get(key)
            except TypeError:
                router.reducer_of(key, item)  # raises the unhashable-key error
                raise
            if entry is None:
                groups[key] = [router.reducer_of(key, item), value]
            else:
                entry.append(value)
                if len(entry) > COMBINE_EVERY:
                    groups[key] = [entry[0], _call_combine(combine, key, entry[1:])]
        for key, entry in groups.items():
            value = entry[1] if len(entry) == 2 else _call_combine(combine, key, entry[1:])
            router.buckets[entry[0]].append((key, value))
        return routed + len(groups)

    def _fold_mapping(self, produced: dict[Any, Any], item: Any, groups: dict[Any, list[Any]], router: _Router) -> None:
        """Fold one dict from ``map_fn`` (a ``Counter``...) into the combine groups. Its keys
        are hashable and distinct already (a word count's ``Counter`` has 20,000 of them per
        16 MB chunk), and its items are pairs: the checks a generic pair needs are skipped,
        and the keys new to this mapper are partitioned in one batch."""
        combine = self.plan.combine
        new = list(itertools.filterfalse(groups.__contains__, produced))
        for key, reducer in zip(new, router.partitions_of(new, item)):
            groups[key] = [reducer]
        for key, value in produced.items():
            entry = groups[key]
            entry.append(value)
            if len(entry) > COMBINE_EVERY:
                groups[key] = [entry[0], _call_combine(combine, key, entry[1:])]


def _call_combine(combine: Any, key: Any, values: list[Any]) -> Any:
    try:
        return combine(key, values)
    except Exception as exc:
        add_note(exc, f"(in combine, for key {short_repr(key)} with {len(values)} values)")
        raise


__all__ = ["MapOutput", "MapTask"]
