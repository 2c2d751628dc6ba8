"""The reduce task, run remotely: read its partition from every mapper, group, reduce.

The driver hands each reducer the exact list of winning mapper objects and the byte range
of its partition in each (empty ones left out), so the reducer makes one ranged GET per
non-empty segment and reads no index. It groups in memory when the partition fits its
budget, otherwise it spills the (already sorted) segments to /tmp and merges them.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from lambdamr.errors import ConfigurationError, StorageError
from lambdamr.shuffle.collector import collector_paused
from lambdamr.shuffle.format import RawFrame, digest_of, pairs_of, read_segment
from lambdamr.shuffle.merge import SpillMerger, group_in_memory, pieces_of, sorted_keys
from lambdamr.shuffle.notes import add_note, short_repr
from lambdamr.shuffle.output import OutputWriter
from lambdamr.shuffle.plan import ReducePlan, estimated_memory
from lambdamr.storage import Storage, open_cached

#: concurrent ranged GETs per reducer (S3 latency, not bandwidth, bounds one GET)
FETCH_THREADS = 8
#: on the spill path: fewer, larger GETs, so that pieces in flight stay within half the budget
#: and a segment is still read in one GET unless it is bigger than a quarter of the budget
SPILL_FETCH_THREADS = 2


class SegmentRef(NamedTuple):
    """One mapper's part of a reducer's partition: where it is and how to check it."""

    name: str  # the mapper's object, relative to the run's prefix
    offset: int
    length: int
    pairs: int
    sorted: bool
    digest: str


@dataclass
class ReduceOutput:
    """What a reduce task reports back."""

    reducer: int
    attempt: int
    keys: int
    pairs: int
    nbytes: int
    gets: int
    results: list[tuple[Any, Any]] | None = None  # None when written to the output
    output_key: str | None = None
    output_bytes: int = 0
    output_digest: str = ""
    spilled_bytes: int = 0
    merge_passes: int = 0
    timings: dict[str, float] = field(default_factory=dict)


class ReduceTask:
    """The function a reduce phase runs: ``ReduceTask(plan)(reducer, attempt, segments)``."""

    def __init__(self, plan: ReducePlan) -> None:
        self.plan = plan
        self.__name__ = f"reduce:{getattr(plan.reduce_fn, '__name__', 'reduce_fn')}"

    def __call__(self, reducer: int, attempt: int, segments: list[SegmentRef]) -> ReduceOutput:
        plan = self.plan
        store = open_cached(plan.storage)
        where = f"reducer {reducer}"
        started = time.perf_counter()
        gets = itertools.count()  # next() is atomic: fetches run in threads

        def fetch(name: str, start: int, end: int) -> bytes:
            data = store.get(plan.layout.key(name), start, end)
            next(gets)
            if len(data) != end - start:
                raise StorageError(
                    f"{where}: intermediate object {plan.layout.key(name)} returned {len(data)} bytes for "
                    f"range [{start}, {end}): the object is not the one the mapper reported"
                )
            return data

        nbytes = sum(s.length for s in segments)
        pairs = sum(s.pairs for s in segments)
        writer = OutputWriter(plan.output.format, where=where) if plan.output else None
        results: list[tuple[Any, Any]] | None = None if writer else []
        merger: SpillMerger | None = None
        try:
            if estimated_memory(nbytes, pairs) <= plan.budget_bytes:
                groups_iter = self._in_memory(segments, store, gets)
            else:
                merger = self._spill(segments, fetch, where)
                groups_iter = merger.groups()
            fetched = time.perf_counter()
            add: Callable[[Any, Any], None] = writer.add if writer is not None else _appender(results)
            if merger is None:  # grouped already: the loop is reduce_fn and the output alone
                keys = self._reduce_groups(groups_iter, add, where)
                reduce_s = time.perf_counter() - fetched
            else:  # the merge runs inside the loop: time reduce_fn apart from it
                reduce_s = 0.0
                keys = 0
                for key, values in groups_iter:
                    t = time.perf_counter()
                    add(key, self._reduce(key, values, where))
                    reduce_s += time.perf_counter() - t
                    keys += 1
        finally:
            if merger is not None:
                merger.close()
        grouped = time.perf_counter()
        output_key = None
        output_bytes = 0
        output_digest = ""
        if writer is not None and plan.output is not None:
            data = writer.getvalue()
            output_key = plan.output.key(reducer)
            open_cached(plan.output.storage).put(output_key, data)
            output_bytes = len(data)
            output_digest = digest_of(data)
        done = time.perf_counter()
        return ReduceOutput(
            reducer=reducer,
            attempt=attempt,
            keys=keys,
            pairs=pairs,
            nbytes=nbytes,
            gets=next(gets),
            results=results,
            output_key=output_key,
            output_bytes=output_bytes,
            output_digest=output_digest,
            spilled_bytes=merger.spilled_bytes if merger else 0,
            merge_passes=merger.passes if merger else 0,
            timings={
                "read": fetched - started,  # GETs, decoding and in-memory grouping, or writing runs
                "merge": grouped - fetched - reduce_s,  # the k-way merge from /tmp (spill path; else 0)
                "reduce": reduce_s,
                "write": done - grouped,
            },
        )

    def _reduce_groups(self, groups: Iterator[tuple[Any, list[Any]]], add: Callable[[Any, Any], None], where: str) -> int:
        """``add(key, reduce_fn(key, values))`` for every group; return the number of keys."""
        reduce_fn = self.plan.reduce_fn
        keys = 0
        for key, values in groups:
            try:
                value = reduce_fn(key, values)
            except Exception as exc:
                add_note(exc, f"(in reduce_fn, for key {short_repr(key)} with {len(values)} values, {where})")
                raise
            add(key, value)
            keys += 1
        return keys

    def _reduce(self, key: Any, values: list[Any], where: str) -> Any:
        try:
            return self.plan.reduce_fn(key, values)
        except Exception as exc:
            add_note(exc, f"(in reduce_fn, for key {short_repr(key)} with {len(values)} values, {where})")
            raise

    def _in_memory(
        self, segments: list[SegmentRef], store: Storage, gets: Iterator[int]
    ) -> Iterator[tuple[Any, list[Any]]]:
        if not segments:
            return iter(())

        def fetch_checked(s: SegmentRef) -> list[RawFrame]:
            # One ranged GET, streamed: each large value is read into its own object and
            # every byte is hashed on the way; nothing is unpickled before the digest matches.
            key = self.plan.layout.key(s.name)
            with store.open_range(key, s.offset, s.offset + s.length) as stream:
                next(gets)
                return read_segment(stream, s.length, s.digest, what=f"segment [{s.offset}, {s.offset + s.length}) of {s.name}")

        threads = min(FETCH_THREADS, store.concurrent_requests, len(segments))
        # decoding and grouping allocate a tuple per pair and a list per key, none in a cycle
        with collector_paused():
            if threads == 1:  # a local store: no pool to start
                groups = group_in_memory(pairs_of(fetch_checked(s)) for s in segments)
            else:
                with ThreadPoolExecutor(threads) as pool:
                    groups = group_in_memory(pairs_of(frames) for frames in pool.map(fetch_checked, segments))
            keys = sorted_keys(groups)
        return ((key, groups.pop(key)) for key in keys)

    def _spill(self, segments: list[SegmentRef], fetch: Callable[[str, int, int], bytes], where: str) -> SpillMerger:
        if not all(s.sorted for s in segments):
            raise ConfigurationError(
                f"{where}: its partition ({sum(s.length for s in segments) / 2**20:.1f} MB) is over its memory budget "
                f"({self.plan.budget_bytes / 2**20:.1f} MB) and cannot be merged from disk because its keys do not "
                "order among themselves (mixed types?): use more reducers, more memory_mb, or keys of one type"
            )
        merger = SpillMerger(self.plan.budget_bytes, where=where)
        merger.reserve(len(segments))
        piece = max(1024 * 1024, self.plan.budget_bytes // (2 * SPILL_FETCH_THREADS))
        try:
            with ThreadPoolExecutor(min(SPILL_FETCH_THREADS, max(1, len(segments)))) as pool:
                jobs = [
                    pool.submit(
                        merger.add_run,
                        pieces_of(functools.partial(fetch, s.name), s.offset, s.length, piece),
                        position=i,
                        digest=s.digest,
                        what=f"segment [{s.offset}, {s.offset + s.length}) of {s.name}",
                    )
                    for i, s in enumerate(segments)
                ]
                for job in jobs:
                    job.result()
        except BaseException:
            merger.close()
            raise
        return merger


def _appender(results: list[tuple[Any, Any]] | None) -> Callable[[Any, Any], None]:
    """``add(key, value)`` appending the pair to ``results``."""
    assert results is not None
    append = results.append
    return lambda key, value: append((key, value))


class NumberedReduce:
    """The reduce task of the reducers that received pairs, each run under its own number
    (a reducer that received nothing is never invoked: no task, no output part)."""

    def __init__(self, task: ReduceTask) -> None:
        self.task = task
        self.__name__ = task.__name__

    def __call__(self, index: int, attempt: int, payload: tuple[int, list[SegmentRef]]) -> ReduceOutput:
        reducer, segments = payload
        return self.task(reducer, attempt, segments)
