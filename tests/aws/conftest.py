"""AWS fixtures: a fake pip, a deployment on moto's server, and the Lambda stand-in.

The Lambda stand-in (``lambdamr.backends.aws_standin``) answers Invoke like the service and
runs the real handler in worker processes; every other Lambda API call it forwards to moto's
server, where ``lambdamr.deploy.deploy`` created the function. S3 is moto's server too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from lambdamr.backends.aws_standin import Faults, LambdaStandin

REGION = "us-east-1"


def fake_pip(command: Sequence[str]) -> None:
    """Stands in for pip: each requested package becomes a small module, with a tests folder
    that the build must prune."""
    target = Path(command[command.index("--target") + 1])
    for package in command[command.index("--target") + 2 :]:
        folder = target / package.replace("-", "_")
        (folder / "tests").mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").write_text(f"NAME = {package!r}\n")
        (folder / "tests" / "test_big.py").write_text("# " + "x" * 10_000 + "\n")
        info = target / f"{package.replace('-', '_')}-1.0.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Name: {package}\nVersion: 1.0\n")


def no_sleep(seconds: float) -> None:
    pass


@dataclass
class Deployment:
    """A lambdamr deployment on the moto server."""

    function_name: str
    bucket: str
    endpoint: str

    def deploy_kwargs(self) -> dict:
        return {
            "region": REGION,
            "bucket": self.bucket,
            "function_name": self.function_name,
            "endpoint_url": self.endpoint,
            "pip": fake_pip,
            "sleep": no_sleep,
            # moto enforces bucket policies, and its server speaks plain HTTP
            "require_tls": False,
        }


@pytest.fixture
def deployment(moto_endpoint: str) -> Deployment:
    """A fresh deployment (its own function and bucket) on the shared moto server."""
    from lambdamr.deploy import deploy

    suffix = uuid.uuid4().hex[:8]
    dep = Deployment(f"lmr-{suffix}", f"lambdamr-e2e-{suffix}", moto_endpoint)
    deploy(memory_mb=256, timeout_s=20, **dep.deploy_kwargs())
    return dep


@pytest.fixture
def standin(moto_endpoint: str) -> Iterator[Callable[..., LambdaStandin]]:
    """Start Lambda stand-ins forwarding the control plane to moto; all stopped after."""
    started: list[LambdaStandin] = []

    def start(faults: Faults | None = None, **kwargs) -> LambdaStandin:
        service = LambdaStandin(control_url=moto_endpoint, logs_endpoint_url=moto_endpoint, faults=faults, **kwargs).start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()
