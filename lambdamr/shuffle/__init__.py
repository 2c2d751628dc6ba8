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

import importlib
from typing import TYPE_CHECKING, Any

# Imported lazily: the remote side unpickles a MapTask (which imports this package first)
# and must not load the driver half (driver, phases, and through them jobs and futures).
_EXPORTS = {
    "MapReduceOptions": "lambdamr.shuffle.plan",
    "MapReduceResult": "lambdamr.shuffle.result",
    "MapReduceStats": "lambdamr.shuffle.result",
    "RangePartitioner": "lambdamr.shuffle.partition",
    "run_map_reduce": "lambdamr.shuffle.driver",
    "run_map_then_reduce": "lambdamr.shuffle.driver",
    "stable_hash": "lambdamr.shuffle.partition",
    "stable_partition": "lambdamr.shuffle.partition",
}

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

if TYPE_CHECKING:
    from .driver import run_map_reduce, run_map_then_reduce
    from .partition import RangePartitioner, stable_hash, stable_partition
    from .plan import MapReduceOptions
    from .result import MapReduceResult, MapReduceStats


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lambdamr.shuffle' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
