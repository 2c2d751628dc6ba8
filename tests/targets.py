"""What the behaviour suites run on: every backend over every storage it can use.

A ``Target`` is one backend over one storage. ``TARGETS`` lists the five combinations:

=========  ==========================  ============================================
backend    local folder                S3 (moto's server on 127.0.0.1)
=========  ==========================  ============================================
inline     inline-folder               inline-s3
local      local-folder                local-s3
aws        — (not generated)           aws-s3: the session's deployment, invoked
                                       through a Lambda stand-in
=========  ==========================  ============================================

``aws-folder`` is not generated: a Lambda container cannot read the driver's disk, so the AWS
backend refuses a local folder (``ConfigurationError``, tested in tests/test_bad_input.py).

The suites are ``tests/test_executor.py`` (executor behaviour), ``tests/contract/`` (CPython's
``test_concurrent_futures``, ported, plus the crash table in ``contract/test_deadlock.py``).
Their fixtures (``tests/conftest.py``: ``target``, ``target_options``, ``executor_factory``)
build executors from ``Target.options``; an executor is shared by a module's tests where the
tests allow it, because starting workers, or Lambda environments, per test costs minutes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: worker processes (local), threads (inline) or Lambda environments (aws) per target
WORKERS = 2
#: the session deployment's function (tests/aws_fixtures.py): 256 MB, 20 s
AWS_MEMORY_MB = 256
AWS_TIMEOUT_S = 20


@dataclass(frozen=True)
class Target:
    """One backend over one storage."""

    backend: str  # "inline", "local" or "aws"
    storage: str  # "folder" or "s3"

    def __str__(self) -> str:
        return f"{self.backend}-{self.storage}"

    @property
    def runs_in_a_process_of_its_own(self) -> bool:
        """Whether a task runs outside the driver's process (it may end its process, be
        killed, time out or run out of memory without taking the driver with it)."""
        return self.backend != "inline"


TARGETS = [
    Target("inline", "folder"),
    Target("inline", "s3"),
    Target("local", "folder"),
    Target("local", "s3"),
    Target("aws", "s3"),
]
#: for a behaviour only the AWS backend has (IAM grants): ``@pytest.mark.parametrize("target",
#: AWS_ONLY, indirect=True)`` generates it for the stand-in alone, instead of skipping the others
AWS_ONLY = [t for t in TARGETS if t.backend == "aws"]


def new_bucket(endpoint: str) -> str:
    import boto3

    name = f"lambdamr-suite-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@contextmanager
def target_environment(target: Target, request: pytest.FixtureRequest, folder: Path) -> Iterator[dict[str, Any]]:
    """The executor keyword arguments of ``target`` (a storage of its own under ``folder`` or
    in a new bucket), with the process environment the target needs set meanwhile: for
    ``aws``, the account administrator's credentials, which the driver's clients keep."""
    if target.backend == "aws":
        from tests.aws_fixtures import REGION, act_as_administrator

        account = request.getfixturevalue("aws_account")
        deployment = request.getfixturevalue("shared_deployment")
        service = request.getfixturevalue("suite_standin")
        with pytest.MonkeyPatch.context() as patch:
            act_as_administrator(patch, account)
            yield {
                "storage": f"s3://{deployment.bucket}",  # the prefix the deployment grants
                "endpoint_url": deployment.endpoint,
                "region": REGION,
                "function_name": deployment.function_name,
                "lambda_endpoint_url": service.url,
                "memory_mb": AWS_MEMORY_MB,
                "timeout_s": AWS_TIMEOUT_S,
                "poll_interval_s": 0.05,
            }
        return
    if target.storage == "folder":
        yield {"storage": str(folder / "store")}
        return
    endpoint = request.getfixturevalue("moto_endpoint")
    with pytest.MonkeyPatch.context() as patch:  # the signing key's Secrets Manager: moto too
        patch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint)
        yield {"storage": f"s3://{new_bucket(endpoint)}/runs", "endpoint_url": endpoint, "region": "us-east-1"}


def build_executor(target: Target, options: dict[str, Any], **overrides: Any) -> Any:
    """A ``LambdaExecutor`` of ``target`` with ``WORKERS`` workers (on ``aws``: calls in
    flight, ``max_concurrency``) and no progress bar."""
    from lambdamr import LambdaExecutor

    merged = {"progress": False, "workers": WORKERS, **options, **overrides}
    if target.backend == "aws":  # a worker is a container: the cap on calls in flight
        merged["max_concurrency"] = merged.pop("workers")
    return LambdaExecutor(target.backend, **merged)


def close_all(executors: list[Any]) -> None:
    """Stop what a test left running: its leftover calls must not outlive it."""
    for executor in executors:
        executor.terminate_workers()


ExecutorFactory = Callable[..., Any]
