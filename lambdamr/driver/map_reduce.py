"""The driver side of ``map_reduce`` and ``map_then_reduce``: plan, run the phases, clean up.

map phase     M tasks: map_fn -> partition -> ONE intermediate object each (M PUTs)
              each returns its object's name and index (partition -> byte range)
reduce phase  starts when every mapper has a winning result; R tasks, each told the
              winning objects and its byte range in each: <= M x R ranged GETs
cleanup       always (success, error, Ctrl-C): the run's temp prefix is deleted,
              unless keep_intermediate
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from lambdamr.data.objects import ObjectSource
from lambdamr.driver.callables import check_plain_function
from lambdamr.driver.inputs import read_all
from lambdamr.driver.map_reduce_job import MapReduceJob
from lambdamr.driver.map_reduce_result import MapReduceResult, MapReduceStats
from lambdamr.driver.phases import Phase
from lambdamr.driver.session import Session
from lambdamr.errors import ConfigurationError, LambdaMRError
from lambdamr.shuffle.mapper import MapOutput, MapTask
from lambdamr.shuffle.plan import (
    MapPlan,
    MapReduceOptions,
    OutputTarget,
    ReducePlan,
    ShuffleLayout,
    default_reducers,
    reduce_budget_bytes,
)
from lambdamr.shuffle.reducer import NumberedReduce, ReduceOutput, ReduceTask, SegmentRef
from lambdamr.shuffle.whole import ReduceAllTask, StoreResultTask, WholePlan
from lambdamr.storage import Storage, storage_from_url

log = logging.getLogger("lambdamr")

#: how long cleanup waits for tasks still running after a failure or Ctrl-C
CLEANUP_WAIT_S = 10.0
_KINDS = ("puts", "gets", "lists", "deletes")


def _check_callable(name: str, fn: Any) -> None:
    check_plain_function(fn, f"map_reduce: {name}")


def resolve_inputs(session: Session, inputs: Any) -> tuple[list[Any], list[Storage]]:
    """The list of items (``ObjectSource`` resolved into chunks) and the stores listed."""
    if isinstance(inputs, ObjectSource):
        listing = inputs.listing(region=session.config.region, endpoint_url=session.config.endpoint_url)
        local = listing.in_local_folders()
        if local and not session.backend.supports_local_storage:
            raise ConfigurationError(
                f"inputs {local[0].url!r} are in a local folder, which the {session.backend.name!r} backend "
                "cannot read: upload them to S3 and pass lambdamr.objects('s3://bucket/prefix/')"
            )
        session.backend.check_access(reads=listing.storage_reads())
        return inputs.split(listing), listing.stores
    if isinstance(inputs, (str, bytes)):
        raise ConfigurationError(
            f"map_reduce inputs is a {type(inputs).__name__}; pass lambdamr.objects({inputs!r}) for storage "
            "objects, or a list of items"
        )
    if not isinstance(inputs, Iterable):
        raise ConfigurationError(f"map_reduce inputs must be iterable, got {type(inputs).__name__}")
    return read_all(inputs, "map_reduce inputs"), []  # the shuffle needs every input before it starts


def group_items(items: list[Any], mappers: int | None) -> list[list[Any]]:
    """One item per map task, or ``mappers`` contiguous groups."""
    if mappers is None or mappers >= len(items):
        return [[item] for item in items]
    size, extra = divmod(len(items), mappers)
    groups, start = [], 0
    for i in range(mappers):
        stop = start + size + (1 if i < extra else 0)
        groups.append(items[start:stop])
        start = stop
    return groups


def resolve_output(session: Session, options: MapReduceOptions) -> tuple[OutputTarget, Storage] | None:
    """Where reducers write, after checking it holds no output of an earlier run."""
    if options.output is None:
        return None
    store, prefix = storage_from_url(options.output, region=session.config.region, endpoint_url=session.config.endpoint_url)
    if store.kind == "local" and not session.backend.supports_local_storage:
        raise ConfigurationError(
            f"output {options.output!r} is a local folder, which the {session.backend.name!r} backend cannot write: "
            "give output='s3://bucket/prefix'"
        )
    target = OutputTarget(store.spec(), prefix.strip("/"), options.output_format)
    session.backend.check_access(writes=[store.url(target.key(0).rsplit("part-", 1)[0]) + "part-*"])
    existing = next(iter(store.list(target.key(0).rsplit("part-", 1)[0] + "part-")), None)
    if existing is not None:
        raise ConfigurationError(
            f"output {options.output!r} already holds results ({store.url(existing.key)}); choose a new "
            "location or delete the old part-* objects, so that old and new parts do not mix"
        )
    return target, store


def _snapshot(stores: list[Storage]) -> list[dict[str, int]]:
    return [s.stats.snapshot() for s in stores]


def _count_requests(stores: list[Storage], before: list[dict[str, int]], phases: list[Phase]) -> dict[str, int]:
    total = dict.fromkeys(_KINDS, 0)
    seen: set[int] = set()
    for store, snap in zip(stores, before):
        if id(store) in seen:
            continue
        seen.add(id(store))
        now = store.stats.snapshot()
        for kind in _KINDS:
            total[kind] += now[kind] - snap[kind]
    for phase in phases:
        for job in phase.jobs:
            for kind in _KINDS:
                total[kind] += job.runtime_requests.get(kind, 0)
    return total


def cleanup(
    session: Session,
    layout: ShuffleLayout,
    phases: list[Phase],
    *,
    keep: bool,
    partial_output: tuple[Storage, Sequence[str]] | None = None,
) -> int:
    """Delete the run's temp objects (and the output of a failed run); return how many went.

    Waits a little for tasks still running (after an error or Ctrl-C) so that none writes
    a temp object after the prefix is gone; a second Ctrl-C skips the wait, not the delete.
    """
    interrupted = False
    try:
        if not all([phase.settle(CLEANUP_WAIT_S) for phase in phases]):
            log.warning(
                "lambdamr: map_reduce tasks were still running at cleanup; what they write under %s is removed "
                "when the executor shuts down",
                session.storage.url(layout.prefix),
            )
    except KeyboardInterrupt:
        interrupted = True
    deleted = 0
    try:
        if not keep:
            # The phases' own job folders (arguments, manifests) belong to the executor's
            # session and go at its shutdown, like those of every map.
            deleted += session.storage.delete_prefix(layout.prefix + "/")
        if partial_output is not None:
            partial_output[0].delete(list(partial_output[1]))
    except LambdaMRError as exc:
        log.warning("lambdamr: could not delete the temp objects under %s: %s", session.storage.url(layout.prefix), exc)
    if interrupted:
        raise KeyboardInterrupt
    return deleted


def run_map_reduce(
    session: Session, map_fn: Callable[..., Any], inputs: Any, reduce_fn: Callable[..., Any], options: MapReduceOptions
) -> MapReduceResult:
    """``LambdaExecutor.map_reduce``: the keyed form, with a shuffle through storage."""
    _check_callable("map_fn", map_fn)
    _check_callable("reduce_fn", reduce_fn)
    started = time.monotonic()
    stores: list[Storage] = [session.storage]
    before = _snapshot(stores)
    items, listed = resolve_inputs(session, inputs)
    stores += listed
    before += [dict.fromkeys(_KINDS, 0) for _ in listed]  # count their listing too
    groups = group_items(items, options.mappers)
    result = MapReduceResult()
    if not groups:
        return result
    mappers = len(groups)
    reducers = options.reducers or default_reducers(mappers, session.backend.capacity)
    output = resolve_output(session, options)
    if output is not None:
        stores.append(output[1])
        before.append(dict.fromkeys(_KINDS, 0))
    memory_mb = options.memory_mb or session.config.memory_mb
    layout = ShuffleLayout(f"{session.prefix}/shuffle/mr-{secrets.token_hex(4)}")
    spec = session.storage.spec()
    map_plan = MapPlan(map_fn, reducers, spec, layout, options.partition, options.combine)
    budget = reduce_budget_bytes(memory_mb, options.reduce_budget_mb)
    reduce_plan = ReducePlan(reduce_fn, spec, layout, budget, output[0] if output else None)
    map_phase = Phase(
        session, MapTask(map_plan), "map", memory_mb=options.memory_mb, timeout_s=options.timeout_s, retries=options.retries
    )
    reduce_task = NumberedReduce(ReduceTask(reduce_plan))
    reduce_phase = Phase(
        session, reduce_task, "reduce", memory_mb=options.memory_mb, timeout_s=options.timeout_s, retries=options.retries
    )
    succeeded = False
    try:
        map_outputs: list[MapOutput] = map_phase.run(groups)
        columns: list[list[SegmentRef]] = [[] for _ in range(reducers)]
        for out in map_outputs:  # mapper order: values reach reduce_fn in mapper order
            for r, (offset, length, pairs, is_sorted, digest) in enumerate(out.segments):
                if length:
                    columns[r].append(SegmentRef(out.name, offset, length, pairs, is_sorted, digest))
        reduce_outputs: list[ReduceOutput] = reduce_phase.run([(r, col) for r, col in enumerate(columns) if col])
        _collect(result, reduce_outputs)
        succeeded = True
    finally:
        cleanup_started = time.monotonic()
        partial = (output[1], [output[0].key(r) for r in range(reducers)]) if output and not succeeded else None
        try:
            deleted = cleanup(session, layout, [map_phase, reduce_phase], keep=options.keep_intermediate, partial_output=partial)
        finally:  # a failed run (a second Ctrl-C during cleanup too) is one job in the history as well
            if not succeeded:
                record_whole_job(session, [map_phase, reduce_phase], wall_s=time.monotonic() - started)
    stats = result.stats
    _fill_stats(stats, map_outputs, reduce_outputs, mappers, reducers, [map_phase, reduce_phase])
    stats.temp_objects_deleted = deleted
    stats.cleanup_s = time.monotonic() - cleanup_started
    stats.wall_s = time.monotonic() - started
    stats.requests = _count_requests(stores, before, [map_phase, reduce_phase])
    result.jobs = map_phase.jobs + reduce_phase.jobs
    result.job = record_whole_job(
        session, [map_phase, reduce_phase], requests=stats.requests, bytes_shuffled=stats.bytes_shuffled, wall_s=stats.wall_s
    )
    if output is not None:
        result.output_storage = output[0].storage
        result.output_format = output[0].format
    return result


def record_whole_job(
    session: Session,
    phases: list[Phase],
    *,
    requests: dict[str, int] | None = None,
    bytes_shuffled: int | None = None,
    wall_s: float,
) -> MapReduceJob | None:
    """Put the run in the session's history as ONE job in place of its phases' jobs (so
    ``ex.last_job`` is the whole run); None when no phase started."""
    if not any(phase.jobs for phase in phases):
        return None
    whole = MapReduceJob(
        [(phase.name, phase.jobs) for phase in phases], requests=requests, bytes_shuffled=bytes_shuffled, wall_s=wall_s
    )
    session.forget(whole.jobs)
    session.remember(whole)
    return whole


def _collect(result: MapReduceResult, outputs: list[ReduceOutput]) -> None:
    came_from: dict[Any, int] = {}
    for number, out in enumerate(outputs):
        if out.output_key is not None:
            result.output_keys.append(out.output_key)
            result.output_digests.append(out.output_digest)
            continue
        for key, value in out.results or ():
            if key in result:
                if came_from[key] == number:
                    raise ConfigurationError(
                        f"key {key!r} came out of one reducer twice: its keys compare equal but do not sort "
                        "together (keys of mixed types, or objects whose == and < disagree); emit keys of one type"
                    )
                raise ConfigurationError(
                    f"key {key!r} reached two reducers: the partition function must send equal keys to the "
                    "same reducer in every process (do not use hash() of str or bytes: it is salted per process)"
                )
            result[key] = value
            came_from[key] = number


def _fill_stats(
    stats: MapReduceStats, maps: list[MapOutput], reduces: list[ReduceOutput], mappers: int, reducers: int, phases: list[Phase]
) -> None:
    map_phase, reduce_phase = phases
    stats.mappers, stats.reducers = mappers, reducers
    stats.map_executions, stats.reduce_executions = map_phase.executions, reduce_phase.executions
    stats.retries = map_phase.retried + reduce_phase.retried
    stats.map_s, stats.reduce_s = map_phase.wall_s, reduce_phase.wall_s
    stats.pairs = sum(m.pairs for m in maps)
    stats.bytes_shuffled = sum(m.nbytes for m in maps)
    stats.nonempty_segments = sum(1 for m in maps for s in m.segments if s[1])
    stats.intermediate_puts = len(maps)
    stats.input_gets = sum(m.input_requests for m in maps)
    stats.ranged_gets = sum(r.gets for r in reduces)
    stats.spilled_reducers = sum(1 for r in reduces if r.spilled_bytes)
    stats.spilled_bytes = sum(r.spilled_bytes for r in reduces)
    stats.output_bytes = sum(r.output_bytes for r in reduces)
    seconds: dict[str, float] = {}
    for prefix, timings in [*(("map.", m.timings) for m in maps), *(("reduce.", r.timings) for r in reduces)]:
        for name, value in timings.items():
            seconds[prefix + name] = seconds.get(prefix + name, 0.0) + value
    stats.task_seconds = seconds


def run_map_then_reduce(
    session: Session,
    map_fn: Callable[..., Any],
    inputs: Any,
    reduce_fn: Callable[..., Any],
    *,
    retries: int,
    keep_intermediate: bool,
    memory_mb: int | None,
    timeout_s: float | None,
) -> Any:
    """``LambdaExecutor.map_then_reduce``: ``reduce_fn([map_fn(x) for x in inputs])``, remotely."""
    _check_callable("map_fn", map_fn)
    _check_callable("reduce_fn", reduce_fn)
    MapReduceOptions(retries=retries, memory_mb=memory_mb, timeout_s=timeout_s)  # validates
    items, _ = resolve_inputs(session, inputs)
    layout = ShuffleLayout(f"{session.prefix}/shuffle/mtr-{secrets.token_hex(4)}")
    spec = session.storage.spec()
    limits: dict[str, Any] = {"memory_mb": memory_mb, "timeout_s": timeout_s, "retries": retries}
    map_phase = Phase(session, StoreResultTask(WholePlan(map_fn, spec, layout)), "map", **limits)
    reduce_phase = Phase(session, ReduceAllTask(WholePlan(reduce_fn, spec, layout)), "reduce", **limits)
    started = time.monotonic()
    try:
        stored = map_phase.run(items)
        return reduce_phase.run([stored])[0]
    finally:
        try:
            cleanup(session, layout, [map_phase, reduce_phase], keep=keep_intermediate)
        finally:
            record_whole_job(session, [map_phase, reduce_phase], wall_s=time.monotonic() - started)
