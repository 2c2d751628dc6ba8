"""One behaviour suite, many executors: CPython's ``test_concurrent_futures`` behaviours, as
this project ports them, run against ``LambdaExecutor`` on every target of tests/targets.py
(the inline and local backends over a local folder and S3 on moto's server, the AWS backend
through a Lambda stand-in over the session's deployment) and — as the control that the
tests state the stdlib's contract, not ours — against ``ProcessPoolExecutor``.

``executor`` is shared by the tests of a module (an executor per kind: starting worker
processes for every test would cost minutes); ``new_executor`` builds one a test may shut
down. ``kind.remote`` says whether the executor under test is a ``LambdaExecutor``.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.targets import WORKERS, Target, build_executor, target_environment


@dataclass(frozen=True)
class Kind:
    """One executor under test."""

    name: str
    backend: str | None = None  # None: ProcessPoolExecutor
    storage: str | None = None  # "folder" or "s3"

    @property
    def remote(self) -> bool:
        return self.backend is not None

    @property
    def target(self) -> Target:
        assert self.backend is not None and self.storage is not None, "the stdlib's pool is no target"
        return Target(self.backend, self.storage)

    def __str__(self) -> str:
        return self.name


# The stdlib's control runs first: the inline backend unpickles the tasks module's classes by
# value in this very process, and cloudpickle then updates the live classes in place.
KINDS = [
    Kind("process-pool"),
    Kind("inline-folder", "inline", "folder"),
    Kind("inline-s3", "inline", "s3"),
    Kind("local-folder", "local", "folder"),
    Kind("local-s3", "local", "s3"),
    Kind("aws-s3", "aws", "s3"),
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Drop the cases an executor cannot run at all, each listed in docs/futures.md: on the
    inline backend, those whose task ends the process it runs in (the driver, there), needs a
    process of its own (timeouts, memory, imports) and ``terminate_workers`` (its running calls
    are driver threads nothing can stop); on the stdlib's pool, LambdaExecutor-only guarantees
    and what its Python does not have yet."""
    from .test_deadlock import NOT_ON_INLINE, NOT_ON_STDLIB

    not_on_inline = {*NOT_ON_INLINE, "test_terminate_workers_does_not_wait"}
    not_on_stdlib = {*NOT_ON_STDLIB, "test_each_failed_call_of_a_task_has_its_own_exception"}
    if sys.version_info < (3, 14):  # ProcessPoolExecutor.terminate_workers() is new in 3.14
        not_on_stdlib.add("test_terminate_workers_does_not_wait")

    def cannot_run(item: pytest.Item) -> bool:
        callspec = getattr(item, "callspec", None)
        if callspec is None or not isinstance(kind := callspec.params.get("kind"), Kind):
            return False
        names = {getattr(item, "originalname", ""), callspec.params.get("case")}
        if kind.backend == "inline":
            return bool(names & not_on_inline)
        return not kind.remote and bool(names & not_on_stdlib)

    items[:] = [item for item in items if not cannot_run(item)]


@pytest.fixture(scope="module", params=KINDS, ids=str)
def kind(request: pytest.FixtureRequest) -> Kind:
    return request.param


@pytest.fixture(scope="module")
def storage_of_kind(kind: Kind, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[dict]:
    """Executor keyword arguments selecting the kind's storage (one folder or bucket per
    module) and, for ``aws``, its deployment and stand-in (tests/targets.py)."""
    if not kind.remote:
        yield {}
        return
    with target_environment(kind.target, request, tmp_path_factory.mktemp(str(kind))) as options:
        yield options


def build(kind: Kind, storage: dict, workers: int = WORKERS, **options: Any) -> concurrent.futures.Executor:
    """An executor of ``kind`` with ``workers`` workers (initializer/initargs pass through)."""
    if not kind.remote:
        # forkserver (Python 3.14's default): forking this many-threaded test process could
        # copy a lock another thread holds into a worker that then never exits.
        context = multiprocessing.get_context("forkserver")
        return concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context, **options)
    if kind.backend == "aws":
        # Synchronous invokes: a call whose container dies is known at once. Asynchronous
        # ones (the default, run by tests/test_executor.py) find it lost only at its deadline,
        # the timeout plus 10 s, which would stretch the crash table over minutes.
        options = {"invocation_type": "RequestResponse", **options}
    return build_executor(kind.target, storage, workers=workers, retries=2, **options)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def executor(kind: Kind, storage_of_kind: dict) -> Iterator[concurrent.futures.Executor]:
    """The module's executor of this kind, shut down after its last test."""
    ex = build(kind, storage_of_kind)
    yield ex
    ex.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def new_executor(kind: Kind, storage_of_kind: dict) -> Iterator[Callable[..., concurrent.futures.Executor]]:
    """Build executors of this kind that a test may shut down itself; all are shut down after."""
    made: list[concurrent.futures.Executor] = []

    def factory(workers: int = WORKERS, **options: Any) -> concurrent.futures.Executor:
        ex = build(kind, storage_of_kind, workers, **options)
        made.append(ex)
        return ex

    yield factory
    for ex in made:  # a test's leftover calls must not outlive it
        if hasattr(ex, "terminate_workers"):
            ex.terminate_workers()
        else:
            ex.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def flag_dir(tmp_path: Path) -> Path:
    """A folder tasks write marker files into: what they did, seen from the driver."""
    return tmp_path
