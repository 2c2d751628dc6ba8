"""MapReduce with a shuffle through object storage: ``LambdaExecutor.map_reduce``.

Modules, one responsibility each:

    plan        options, the temp key layout, what each remote task is told
    partition   the stable default partitioner (not the salted ``hash()``), RangePartitioner
    format      the intermediate object: one per mapper, every partition plus an index
    mapper      the map task run remotely (map_fn, combine, partition, one PUT)
    reducer     the reduce task run remotely (ranged GETs, group, reduce, output)
    merge       grouping in memory, or a k-way merge of sorted runs spilled to /tmp
    output      reducer output objects (pickle / text / raw) and reading them back
    phases      running a phase with task-level retries (driver)
    driver      map_reduce and map_then_reduce end to end, and cleanup (driver)
    whole       the remote tasks of map_then_reduce
    result      MapReduceResult (a dict) and MapReduceStats

See ``docs/map_reduce.md`` for the design: format, requests per job, failure handling.
"""

from __future__ import annotations

from .driver import run_map_reduce, run_map_then_reduce
from .partition import RangePartitioner, stable_hash, stable_partition
from .plan import MapReduceOptions
from .result import MapReduceResult, MapReduceStats

__all__ = [
    "MapReduceOptions",
    "MapReduceResult",
    "MapReduceStats",
    "RangePartitioner",
    "run_map_reduce",
    "run_map_then_reduce",
    "stable_hash",
    "stable_partition",
]
