"""lambdamr: AWS Lambda as a massively parallel computer for ordinary Python functions.

    from lambdamr import LambdaExecutor
    with LambdaExecutor() as ex:
        results = list(ex.map(fn, items))

Names are imported lazily, so the runtime (which imports ``lambdamr.runtime``) loads only
what it needs: a Lambda cold start should not pay for the driver's modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lambdamr._version import __version__

_EXPORTS = {
    "LambdaExecutor": "lambdamr.executor",
    "MapIterator": "lambdamr.futures",
    "ExecutorConfig": "lambdamr.config",
    "LambdaFuture": "lambdamr.futures",
    "wait": "lambdamr.futures",
    "as_completed": "lambdamr.futures",
    "FIRST_COMPLETED": "lambdamr.futures",
    "FIRST_EXCEPTION": "lambdamr.futures",
    "ALL_COMPLETED": "lambdamr.futures",
    "CancelledError": "lambdamr.futures",
    "TimeoutError": "lambdamr.futures",
    "InvalidStateError": "lambdamr.futures",
    "Job": "lambdamr.driver.job",
    "JobSummary": "lambdamr.driver.summary",
    "Shared": "lambdamr.data.shared",
    "objects": "lambdamr.data.objects",
    "task_storage": "lambdamr.data.task_storage",
    "TaskStorage": "lambdamr.data.task_storage",
    "ObjectRef": "lambdamr.data.refs",
    "ValueRef": "lambdamr.data.refs",
}

# Written out (not built from _EXPORTS) so that type checkers see what is re-exported:
# under mypy --strict, `from lambdamr import LambdaExecutor` needs the name in a literal __all__.
__all__ = [
    "__version__",
    "LambdaExecutor", "MapIterator", "ExecutorConfig", "LambdaFuture",
    "wait", "as_completed", "FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED",
    "CancelledError", "TimeoutError", "InvalidStateError",
    "Job", "JobSummary", "Shared", "objects",
    "task_storage", "TaskStorage", "ObjectRef", "ValueRef",
    "LambdaMRError", "ConfigurationError", "SerializationError", "PayloadTooLargeError", "ProtocolError",
    "IntegrityError",
    "StorageError", "ObjectNotFound", "StoragePermissionError", "StorageReadOnlyError", "StorageFullError",
    "StorageUnavailable", "BackendError", "ThrottledError", "TaskError", "WorkerLostError", "ResultLostError",
    "TaskTimeoutError", "TaskOutOfMemoryError", "RemoteError", "InitializerError",
    "LambdaRuntimeError", "RuntimeImportError", "NotInTaskError", "BudgetExceededError", "UpstreamError",
]  # fmt: skip
# Every public name the table above does not place is an error class (the tail of __all__).
_EXPORTS.update({name: "lambdamr.errors" for name in __all__ if name != "__version__" and name not in _EXPORTS})

if TYPE_CHECKING:
    from lambdamr.config import ExecutorConfig
    from lambdamr.data.refs import ObjectRef, ValueRef
    from lambdamr.data.shared import Shared
    from lambdamr.data.task_storage import TaskStorage, task_storage
    from lambdamr.driver.job import Job
    from lambdamr.driver.summary import JobSummary
    from lambdamr.errors import *  # noqa: F403
    from lambdamr.executor import LambdaExecutor
    from lambdamr.futures import (
        ALL_COMPLETED,
        FIRST_COMPLETED,
        FIRST_EXCEPTION,
        CancelledError,
        InvalidStateError,
        LambdaFuture,
        MapIterator,
        TimeoutError,
        as_completed,
        wait,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lambdamr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
