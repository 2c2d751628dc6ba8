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

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from lambdamr import LambdaExecutor
from lambdamr.testing.aws_account import AwsAccount
from lambdamr.testing.lambda_service import Faults, LambdaService

REGION = "us-east-1"
#: Lambda's 1 and 2 minute re-delivery delays shrink by this in tests
RETRY_DELAY_SCALE = 0.01


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


@pytest.fixture(scope="session")
def aws_account(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsAccount]:
    account = AwsAccount.start(tmp_path_factory.mktemp("lambda-standin"), REGION)
    yield account
    account.stop()


def act_as_administrator(patch: pytest.MonkeyPatch, account: AwsAccount) -> None:
    """The driver (and boto3 in the tests) act as the account's administrator while ``patch``
    is active; every other service the driver reaches (e.g. Secrets Manager) is on moto too."""
    key, secret = account.admin
    patch.setenv("AWS_ACCESS_KEY_ID", key)
    patch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    patch.delenv("AWS_SESSION_TOKEN", raising=False)
    patch.delenv("AWS_SECURITY_TOKEN", raising=False)
    patch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", account.endpoint)
    # boto3's default session keeps the credentials it first found: make it read these
    import boto3

    patch.setattr(boto3, "DEFAULT_SESSION", None)


@pytest.fixture
def admin_credentials(aws_account: AwsAccount, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """The driver (and boto3 in the tests) act as the account's administrator."""
    act_as_administrator(monkeypatch, aws_account)
    return aws_account.admin


@pytest.fixture
def standin(aws_account: AwsAccount, admin_credentials: tuple[str, str]) -> Iterator[Callable[..., LambdaService]]:
    """Start Lambda stand-ins forwarding the control plane to moto; all stopped after."""
    started: list[LambdaService] = []

    def start(faults: Faults | None = None, **kwargs) -> LambdaService:
        service = aws_account.standin(faults=faults, **{"retry_delay_scale": RETRY_DELAY_SCALE, "max_environments": 2, **kwargs})
        started.append(service)
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
    account: AwsAccount
    through: LambdaService  # the stand-in it was deployed through (control plane, code uploads)

    def deploy_kwargs(self) -> dict:
        """What a test passes to ``deploy`` to change this deployment (as the administrator)."""
        return self.account.deploy_kwargs(self.through, self.function_name, self.bucket)


def _deploy(account: AwsAccount, through: LambdaService, packages: Sequence[str] = ()) -> Deployment:
    function, bucket = account.deploy(through, memory_mb=256, timeout_s=20, packages=packages)
    return Deployment(function, bucket, account.endpoint, account, through)


@pytest.fixture(scope="session")
def shared_deployment(aws_account: AwsAccount) -> Iterator[Deployment]:
    """One deployment for the tests that only use it (a deploy with a real layer takes seconds);
    its layer has scikit-learn, which the random forest example's tasks import."""
    service = aws_account.standin()
    yield _deploy(aws_account, service, packages=["scikit-learn"])
    service.stop()


@pytest.fixture(scope="session")
def suite_standin(aws_account: AwsAccount, shared_deployment: Deployment) -> Iterator[LambdaService]:
    """The stand-in the behaviour suites' ``aws-s3`` executors invoke (tests/targets.py): one
    for the session, so its warm environments serve test after test, as Lambda's would."""
    service = aws_account.standin(retry_delay_scale=RETRY_DELAY_SCALE, max_environments=2)
    yield service
    service.stop()


@pytest.fixture
def deployment(shared_deployment: Deployment, admin_credentials: tuple[str, str]) -> Deployment:
    """The session's deployment; tests keep apart by their own job ids and prefixes."""
    return shared_deployment


@pytest.fixture
def fresh_deployment(aws_account: AwsAccount, standin: Callable[..., LambdaService]) -> Deployment:
    """A deployment of its own, for a test that changes the function."""
    return _deploy(aws_account, standin())


@pytest.fixture
def aws_executor(deployment: Deployment, standin: Callable[..., LambdaService]) -> Iterator[Callable[..., tuple]]:
    """Build AWS-backend executors on the session's deployment, each through a stand-in of its
    own (with ``faults``); all shut down after."""
    made = []

    def factory(faults: Faults | None = None, **options):
        service = standin(faults)
        merged = {
            "storage": f"s3://{deployment.bucket}",
            "endpoint_url": deployment.endpoint,
            "region": REGION,
            "function_name": deployment.function_name,
            "lambda_endpoint_url": service.url,
            "memory_mb": 256,
            "timeout_s": 20,
            "progress": False,
            **options,
        }
        executor = LambdaExecutor(backend="aws", **merged)
        made.append(executor)
        return executor, service

    yield factory
    for executor in made:
        executor.shutdown(wait=False, cancel_futures=True)
