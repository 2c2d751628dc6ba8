"""What ``map_reduce`` returns: the results as a dict, and what the job did in numbers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lambdamr.shuffle.output import read_output
from lambdamr.storage import Storage, open_storage

if TYPE_CHECKING:
    from lambdamr.driver.job import Job
    from lambdamr.driver.map_reduce_job import MapReduceJob


@dataclass
class MapReduceStats:
    """Counts, bytes, requests and times of one map_reduce run."""

    mappers: int = 0
    reducers: int = 0
    map_executions: int = 0  # task runs, retries included
    reduce_executions: int = 0
    retries: int = 0
    pairs: int = 0  # pairs shuffled (after combine)
    bytes_shuffled: int = 0  # intermediate bytes written by the winning mappers, read by reducers
    nonempty_segments: int = 0
    intermediate_puts: int = 0  # by the winning map attempts: one each
    ranged_gets: int = 0  # by the winning reduce attempts
    input_gets: int = 0
    spilled_reducers: int = 0
    spilled_bytes: int = 0
    output_bytes: int = 0
    map_s: float = 0.0  # phase wall times
    reduce_s: float = 0.0
    cleanup_s: float = 0.0
    wall_s: float = 0.0
    temp_objects_deleted: int = 0
    task_seconds: dict[str, float] = field(default_factory=dict)  # summed over winning tasks
    requests: dict[str, int] = field(default_factory=dict)  # every request of the run: driver + tasks

    @property
    def max_ranged_gets(self) -> int:
        """The design bound: one ranged GET per (mapper, reducer) pair."""
        return self.mappers * self.reducers

    @property
    def shuffle_bytes_per_s(self) -> float:
        """Intermediate bytes moved per second of the whole run."""
        return self.bytes_shuffled / self.wall_s if self.wall_s > 0 else 0.0

    def __str__(self) -> str:
        mb = self.bytes_shuffled / 2**20
        lines = [
            f"map_reduce: {self.mappers} mappers x {self.reducers} reducers, {self.pairs:,} pairs, "
            f"{mb:.1f} MB shuffled in {self.wall_s:.2f} s ({mb / max(self.wall_s, 1e-9):.1f} MB/s); "
            f"map {self.map_s:.2f} s, reduce {self.reduce_s:.2f} s, cleanup {self.cleanup_s:.2f} s",
            f"  shuffle requests: {self.intermediate_puts} PUTs (one per mapper), {self.ranged_gets} ranged GETs "
            f"(<= {self.max_ranged_gets} = M x R; {self.nonempty_segments} non-empty segments), "
            f"{self.input_gets} input GETs",
        ]
        if self.retries:
            lines.append(f"  {self.retries} task retries ({self.map_executions} map and {self.reduce_executions} reduce runs)")
        if self.spilled_reducers:
            lines.append(f"  {self.spilled_reducers} reducers merged from /tmp ({self.spilled_bytes / 2**20:.1f} MB spilled)")
        if self.requests:
            lines.append("  all storage requests: " + ", ".join(f"{k} {v}" for k, v in self.requests.items()))
        return "\n".join(lines)


class MapReduceResult(dict[Any, Any]):
    """``key -> reduce_fn(key, values)`` for every key — a plain dict with extras:

    * ``stats``: a ``MapReduceStats`` (requests, bytes shuffled, times);
    * ``jobs``: the lambdamr jobs that ran (map phase, reduce phase, retries);
    * ``job``: all of them as one ``MapReduceJob`` (its ``summary()`` shows both phases);
    * ``output_keys``: with ``output=...``, the object each reducer wrote (the dict is then
      empty; ``read_output()`` streams the pairs of ``pickle``-format output back).

    Keys come reducer by reducer, sorted within each reducer when they are orderable.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stats = MapReduceStats()
        self.jobs: list[Job] = []
        self.job: MapReduceJob | None = None  # the whole run: both phases summed (``ex.last_job``)
        self.output_keys: list[str] = []
        self.output_digests: list[str] = []
        self.output_storage: dict[str, Any] | None = None
        self.output_format = "pickle"

    def read_output(self) -> Iterator[tuple[Any, Any]]:
        """The (key, value) pairs written to ``output=...`` (``pickle`` format), in order."""
        if self.output_storage is None:
            yield from self.items()
            return
        if self.output_format != "pickle":
            raise ValueError(f"read_output() reads output_format='pickle'; these objects are {self.output_format!r}")
        store: Storage = open_storage(self.output_storage)
        for key, digest in zip(self.output_keys, self.output_digests):
            yield from read_output(store, key, digest)

    def __repr__(self) -> str:
        if self.output_storage is not None:
            return f"<MapReduceResult: {len(self.output_keys)} output objects>"
        return f"MapReduceResult({dict.__repr__(self)})"
