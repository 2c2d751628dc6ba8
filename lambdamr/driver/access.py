"""Which stored objects a job's arguments make the runtime read, for ``Backend.check_access``.

A task reads its function and arguments from the job's temp prefix (which the executor
checks once), and whatever its arguments point at: an ``objects()`` chunk reads a byte range
of its object, a ``share()`` handle reads the shared object, an ``ObjectRef`` or ``ValueRef``
(what an earlier task stored with ``task_storage()``) reads its object. Only top-level arguments are
looked at (``map`` over chunks, a handle passed to ``submit``); ``map_reduce`` checks its
inputs itself when it lists them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from lambdamr.data.objects import Chunk
from lambdamr.data.refs import ObjectRef, ValueRef
from lambdamr.data.shared import Shared
from lambdamr.driver.inputs import Call


def _location(spec: dict[str, Any], key: str) -> str:
    if spec.get("kind") == "s3":
        return f"s3://{spec['bucket']}/{key}"
    return f"{spec.get('kind', 'local')}:{spec.get('root', '')}/{key}"


def referenced_reads(calls: Iterable[Iterable[Call]]) -> Iterator[str]:
    """The location of every chunk, shared object and task object reference among the calls'
    top-level arguments."""
    for task_calls in calls:
        for args, kwargs in task_calls:
            for value in (*args, *kwargs.values()):
                if isinstance(value, Chunk):
                    yield _location(value.storage, value.key)
                elif isinstance(value, Shared):
                    yield _location(value.storage_spec, value.key)
                elif isinstance(value, (ObjectRef, ValueRef)):
                    yield _location(value.storage, value.key)
