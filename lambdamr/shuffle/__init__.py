"""MapReduce with a shuffle through object storage: ``LambdaExecutor.map_reduce``.

Modules, one responsibility each:

    plan        options, the temp key layout, what each remote task is told
    partition   the stable default partitioner (not the salted ``hash()``), RangePartitioner
    format      the intermediate object: one per mapper, every partition plus an index
    mapper      the map task run remotely (map_fn, combine, partition, one PUT)
    reducer     the reduce task run remotely (ranged GETs, group, reduce, output)
    merge       grouping in memory, or a k-way merge of sorted runs spilled to /tmp
    output      reducer output objects (pickle / text / raw) and reading them back
    whole       the remote tasks of map_then_reduce

This package is what runs remotely (it ships in the function package whole); the driver
half, which plans and runs the phases, is ``lambdamr.driver.map_reduce``, ``.phases`` and
``.map_reduce_result``. See ``docs/map_reduce.md`` for the design: format, requests per job, failure handling.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Imported lazily: unpickling a MapTask imports this package first, and a reducer needs
# none of the mapper's modules.
_EXPORTS = {
    "MapReduceOptions": "lambdamr.shuffle.plan",
    "RangePartitioner": "lambdamr.shuffle.partition",
    "stable_hash": "lambdamr.shuffle.partition",
    "stable_partition": "lambdamr.shuffle.partition",
}

__all__ = ["MapReduceOptions", "RangePartitioner", "stable_hash", "stable_partition"]

if TYPE_CHECKING:
    from lambdamr.shuffle.partition import RangePartitioner, stable_hash, stable_partition
    from lambdamr.shuffle.plan import MapReduceOptions


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lambdamr.shuffle' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
