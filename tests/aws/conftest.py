"""AWS fixtures: moto with IAM enforced, a real deployment, and the Lambda stand-in.

* ``aws_account`` (session): a moto server in its own process with IAM enforcement on and an
  administrator whose keys the driver and deploy use (``lambdamr.testing.moto_iam``).
* ``deployment``: ``lambdamr.deploy.deploy`` run against it, its Lambda calls through a
  stand-in so that the uploaded function package and layer are what environments run. The
  layer is built by the project's builder with real pip (numpy, cloudpickle, tblib wheels for
  the deployed runtime from PyPI), cached under ``~/.cache/lambdamr-tests`` so reruns are fast.
* ``standin``: start Lambda stand-ins (``lambdamr.testing.lambda_service``): each invocation
  runs in a ``python -I -S`` process under ``awslambdaric`` with the role's own credentials.

``fake_pip`` stays for the unit tests of the layer builder and deploy's bookkeeping, which run
against the unauthenticated moto of ``tests/conftest.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from lambdamr.testing.lambda_service import CodeStore, Faults, LambdaService
from lambdamr.testing.moto_iam import MotoIamServer

REGION = "us-east-1"
#: Lambda's 1 and 2 minute re-delivery delays (and event ages) shrink by this in tests
TIME_SCALE = 0.01
LAYER_CACHE = Path(os.environ.get("LAMBDAMR_TEST_CACHE", "~/.cache/lambdamr-tests")).expanduser() / "layers"


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


def cached_pip(command: Sequence[str]) -> None:
    """Real pip, run once per layer spec (packages, Python version, platform tags) and kept."""
    from lambdamr.deploy.layer import run_pip

    at = command.index("--target")
    target = Path(command[at + 1])
    spec = [*command[1:at], *command[at + 2 :]]  # not the interpreter's path, not the target
    cached = LAYER_CACHE / hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]
    if not cached.exists():
        partial = cached.with_name(cached.name + f".{uuid.uuid4().hex[:6]}.partial")
        run_pip([*command[:at], "--target", str(partial), *command[at + 2 :]])
        try:
            partial.rename(cached)
        except OSError:  # another session cached it first
            shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(cached, target, dirs_exist_ok=True)


def no_sleep(seconds: float) -> None:
    pass


@dataclass
class AwsAccount:
    """The IAM-enforcing moto server and what every stand-in of the session shares."""

    server: MotoIamServer
    code: CodeStore
    work_dir: Path

    @property
    def endpoint(self) -> str:
        return self.server.url

    @property
    def admin(self) -> tuple[str, str]:
        return self.server.admin.access_key, self.server.admin.secret_key

    @property
    def lambda_service(self) -> tuple[str, str]:
        return self.server.lambda_service.access_key, self.server.lambda_service.secret_key


@pytest.fixture(scope="session")
def aws_account(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsAccount]:
    server = MotoIamServer(REGION)
    work_dir = tmp_path_factory.mktemp("lambda-standin")

    def read_s3(bucket: str, key: str) -> bytes:  # layers over 50 MB are published from S3
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=server.url,
            region_name=REGION,
            aws_access_key_id=server.admin.access_key,
            aws_secret_access_key=server.admin.secret_key,
        )
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    account = AwsAccount(server, CodeStore(work_dir / "code", read_s3), work_dir)
    yield account
    server.stop()


@pytest.fixture
def admin_credentials(aws_account: AwsAccount, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """The driver (and boto3 in the tests) act as the account's administrator."""
    key, secret = aws_account.admin
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
    return key, secret


@pytest.fixture
def standin(aws_account: AwsAccount, admin_credentials: tuple[str, str]) -> Iterator[Callable[..., LambdaService]]:
    """Start Lambda stand-ins forwarding the control plane to moto; all stopped after."""
    started: list[LambdaService] = []

    def start(faults: Faults | None = None, **kwargs) -> LambdaService:
        options = {"time_scale": TIME_SCALE, "max_environments": 2, **kwargs}
        service = LambdaService(
            control_url=aws_account.endpoint,
            admin=admin_credentials,
            lambda_service=aws_account.lambda_service,
            region=REGION,
            faults=faults,
            code_store=aws_account.code,
            work_dir=aws_account.work_dir,
            **options,
        )
        started.append(service.start())
        return service

    yield start
    for service in started:
        service.stop()


@dataclass
class Deployment:
    """A lambdamr deployment on the IAM-enforcing moto server."""

    function_name: str
    bucket: str
    endpoint: str
    lambda_endpoint: str  # the stand-in it was deployed through

    def deploy_kwargs(self) -> dict:
        return {
            "region": REGION,
            "bucket": self.bucket,
            "function_name": self.function_name,
            "endpoint_url": self.endpoint,
            "lambda_endpoint_url": self.lambda_endpoint,
            "pip": cached_pip,
            "sleep": no_sleep,
            "require_tls": False,  # moto's server speaks plain HTTP
        }


def _deploy(account: AwsAccount, through: LambdaService) -> Deployment:
    """Deploy a new function, role and bucket as the administrator, through a stand-in."""
    import boto3

    from lambdamr.deploy import deploy

    suffix = uuid.uuid4().hex[:8]
    dep = Deployment(f"lmr-{suffix}", f"lambdamr-e2e-{suffix}", account.endpoint, through.url)
    key, secret = account.admin
    session = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name=REGION)
    deploy(memory_mb=256, timeout_s=20, session=session, **dep.deploy_kwargs())
    return dep


@pytest.fixture(scope="session")
def shared_deployment(aws_account: AwsAccount) -> Iterator[Deployment]:
    """One deployment for the tests that only use it (a deploy with a real layer takes seconds)."""
    service = LambdaService(
        control_url=aws_account.endpoint,
        admin=aws_account.admin,
        lambda_service=aws_account.lambda_service,
        region=REGION,
        code_store=aws_account.code,
        work_dir=aws_account.work_dir,
    ).start()
    yield _deploy(aws_account, service)
    service.stop()


@pytest.fixture
def deployment(shared_deployment: Deployment, admin_credentials: tuple[str, str]) -> Deployment:
    """The session's deployment; tests keep apart by their own job ids and prefixes."""
    return shared_deployment


@pytest.fixture
def fresh_deployment(aws_account: AwsAccount, standin: Callable[..., LambdaService]) -> Deployment:
    """A deployment of its own, for a test that changes the function."""
    return _deploy(aws_account, standin())
