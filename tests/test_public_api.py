"""The public API, pinned: what ``import lambdamr`` offers and the tree of lambdamr's errors.

A change here is a change users see: make it on purpose, in this file, with the docs.
"""

from __future__ import annotations

import concurrent.futures
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lambdamr
import lambdamr.errors

# Every public name, imported as a user's code does: mypy --strict (mypy.ini checks this file)
# fails when one is not re-exported where type checkers can see it.
from lambdamr import (  # noqa: E402 F401
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    BackendError,
    BudgetExceededError,
    CancelledError,
    ConfigurationError,
    ExecutorConfig,
    InitializerError,
    IntegrityError,
    InvalidStateError,
    Job,
    JobSummary,
    LambdaExecutor,
    LambdaFuture,
    LambdaMRError,
    LambdaRuntimeError,
    MapIterator,
    NotInTaskError,
    ObjectNotFound,
    ObjectRef,
    PayloadTooLargeError,
    ProtocolError,
    RemoteError,
    ResultLostError,
    RuntimeImportError,
    SerializationError,
    Shared,
    StorageError,
    StorageFullError,
    StoragePermissionError,
    StorageReadOnlyError,
    StorageUnavailable,
    TaskError,
    TaskOutOfMemoryError,
    TaskStorage,
    TaskTimeoutError,
    ThrottledError,
    TimeoutError,
    UpstreamError,
    ValueRef,
    WorkerLostError,
    __version__,
    as_completed,
    objects,
    task_storage,
    wait,
)

PUBLIC_NAMES = {
    "__version__",
    # the executor and its futures (concurrent.futures' API)
    "LambdaExecutor", "LambdaFuture", "MapIterator", "ExecutorConfig",
    "wait", "as_completed", "FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED",
    "CancelledError", "TimeoutError", "InvalidStateError",
    # jobs and data handed to tasks
    "Job", "JobSummary", "Shared", "objects",
    # storage inside tasks, and the references tasks return
    "task_storage", "TaskStorage", "ObjectRef", "ValueRef",
    # errors
    "LambdaMRError", "ConfigurationError", "SerializationError", "PayloadTooLargeError", "ProtocolError",
    "IntegrityError", "StorageError", "ObjectNotFound", "StoragePermissionError", "StorageReadOnlyError",
    "StorageFullError", "StorageUnavailable", "BackendError", "ThrottledError", "TaskError", "WorkerLostError",
    "ResultLostError", "TaskTimeoutError", "TaskOutOfMemoryError", "RemoteError", "InitializerError",
    "LambdaRuntimeError", "RuntimeImportError", "NotInTaskError", "BudgetExceededError", "UpstreamError",
}  # fmt: skip

#: the standard library's own objects, re-exported rather than redefined
FROM_CONCURRENT_FUTURES = (
    "wait", "as_completed", "FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED",
    "CancelledError", "TimeoutError", "InvalidStateError",
)  # fmt: skip

#: every exception class of lambdamr.errors -> its bases, in order
ERROR_TREE = {
    "LambdaMRError": ("Exception",),
    "ConfigurationError": ("LambdaMRError", "ValueError"),
    "RuntimeMismatchError": ("ConfigurationError",),
    "ResourceNotOursError": ("ConfigurationError",),
    "LayerTooLargeError": ("ConfigurationError",),
    "LayerPlatformError": ("ConfigurationError",),
    "DeployError": ("LambdaMRError",),
    "UpstreamError": ("LambdaMRError",),
    "NotInTaskError": ("LambdaMRError", "RuntimeError"),
    "BudgetExceededError": ("LambdaMRError",),
    "SerializationError": ("LambdaMRError", "TypeError"),
    "PayloadTooLargeError": ("LambdaMRError", "ValueError"),
    "ProtocolError": ("LambdaMRError",),
    "IntegrityError": ("LambdaMRError",),
    "StorageError": ("LambdaMRError",),
    "ObjectNotFound": ("StorageError", "KeyError"),
    "StoragePermissionError": ("StorageError", "PermissionError"),
    "StorageReadOnlyError": ("StorageError",),
    "StorageFullError": ("StorageError",),
    "StorageUnavailable": ("StorageError",),
    "BackendError": ("LambdaMRError",),
    "ThrottledError": ("BackendError",),
    "TaskError": ("LambdaMRError",),
    "WorkerLostError": ("TaskError",),
    "ResultLostError": ("TaskError",),
    "TaskTimeoutError": ("TaskError", "TimeoutError"),
    "TaskOutOfMemoryError": ("TaskError", "MemoryError"),
    "LambdaRuntimeError": ("TaskError",),
    "RuntimeImportError": ("LambdaRuntimeError",),
    "InitializerError": ("TaskError",),
    "RemoteError": ("TaskError",),
}


def error_classes() -> dict[str, type[BaseException]]:
    return {
        name: value
        for name, value in vars(lambdamr.errors).items()
        if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == "lambdamr.errors"
    }


def test_all_is_pinned() -> None:
    assert len(lambdamr.__all__) == len(set(lambdamr.__all__)), "a name is listed twice in lambdamr.__all__"
    assert set(lambdamr.__all__) == PUBLIC_NAMES


def test_the_static_imports_are_the_public_names() -> None:
    imported = {name: globals()[name] for name in PUBLIC_NAMES}
    assert all(value is getattr(lambdamr, name) for name, value in imported.items())


@pytest.mark.parametrize("name", sorted(PUBLIC_NAMES))
def test_every_public_name_imports(name: str) -> None:
    assert getattr(lambdamr, name) is not None
    assert name in dir(lambdamr)


def test_star_import_gives_exactly_all() -> None:
    """In a fresh interpreter: ``from lambdamr import *`` resolves every lazy name."""
    code = "ns = {}\nexec('from lambdamr import *', ns)\nprint(sorted(k for k in ns if k != '__builtins__'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == str(sorted(PUBLIC_NAMES))


def test_the_package_says_it_is_typed() -> None:
    """PEP 561: without ``py.typed`` (shipped by setup.py's package_data) a user's mypy ignores our annotations."""
    assert (Path(lambdamr.__file__).parent / "py.typed").is_file()


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Executor'"):
        lambdamr.Executor  # noqa: B018


def test_concurrent_futures_names_are_the_standard_librarys_own() -> None:
    for name in FROM_CONCURRENT_FUTURES:
        assert getattr(lambdamr, name) is getattr(concurrent.futures, name), name
    assert issubclass(lambdamr.LambdaFuture, concurrent.futures.Future)
    assert issubclass(lambdamr.LambdaExecutor, concurrent.futures.Executor)


def test_error_tree_is_pinned() -> None:
    actual = {name: tuple(base.__name__ for base in cls.__bases__) for name, cls in error_classes().items()}
    assert actual == ERROR_TREE


def test_every_exported_error_is_lambdamrs_own() -> None:
    for name in PUBLIC_NAMES & ERROR_TREE.keys():
        assert getattr(lambdamr, name) is getattr(lambdamr.errors, name)
        assert issubclass(getattr(lambdamr, name), lambdamr.LambdaMRError)


def test_the_tree_drawn_in_the_errors_docstring_is_the_class_tree() -> None:
    """Each drawn name sits under its first lambdamr base, and every class is drawn."""
    doc = lambdamr.errors.__doc__ or ""
    drawn: dict[str, str | None] = {}
    parents: list[str] = []
    root_column: int | None = None
    for line in doc.splitlines():
        match = re.match(r"^[\s│├└─]*?([A-Z]\w+)\s{2,}", line)
        if not match:
            continue
        name, column = match.group(1), match.start(1)
        root_column = column if root_column is None else root_column
        depth = (column - root_column) // 4  # each level is drawn four characters deeper
        parents[depth:] = [name]
        drawn[name] = parents[depth - 1] if depth else None
    classes = error_classes()
    missing = sorted(classes.keys() - drawn.keys())
    assert drawn.keys() == classes.keys(), f"draw these in lambdamr/errors.py's docstring: {missing}"
    for name, parent in drawn.items():
        first_own_base = next((b.__name__ for b in classes[name].__bases__ if b.__module__ == "lambdamr.errors"), None)
        assert parent == first_own_base, f"{name} is drawn under {parent}, but its class derives from {first_own_base}"
