"""Shared fixtures: fake AWS credentials, moto's S3 server on 127.0.0.1, local-backend
executors over every storage (a local folder, and S3 through real HTTP: ``executor``,
``make_executor``, ``shared_local_executor``), and executors of every backend × storage for
the behaviour suites (``target``, ``target_options``, ``target_executor``,
``executor_factory``; tests/targets.py). The AWS fixtures are in tests/aws_fixtures.py."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

# every connection stays on 127.0.0.1 (tests/loopback_guard.py); the AWS account, deployment and
# Lambda stand-in fixtures (tests/aws_fixtures.py) serve tests/backends/aws, deploy, cli, testing...
pytest_plugins = ["tests.loopback_guard", "tests.aws_fixtures"]

# Set before anything builds a boto3 client; worker processes inherit them. Never real keys.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SECURITY_TOKEN="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
)
for _var in ("AWS_PROFILE", "LAMBDAMR_BACKEND", "LAMBDAMR_STORAGE", "LAMBDAMR_VERBOSE", "LAMBDAMR_PROGRESS"):
    os.environ.pop(_var, None)


def _private_buffer_folder() -> str:
    """Sessions' scratch folders of this test process go to a folder of its own, removed at
    its exit: no test sees or sweeps the host's real ones (``lambdamr clean`` does that)."""
    import atexit
    import shutil
    import tempfile

    parent = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    folder = tempfile.mkdtemp(prefix="lambdamr-tests-", dir=parent)
    atexit.register(shutil.rmtree, folder, True)
    return folder


os.environ["LAMBDAMR_BUFFER_FOLDER"] = _private_buffer_folder()

from tests.targets import TARGETS, Target, build_executor, close_all, target_environment  # noqa: E402

STORAGES = ["folder", "s3"]


@pytest.fixture
def scratch_base(tmp_path) -> Iterator[object]:
    """A folder for sessions' scratch folders (``buffer_folder``): in /dev/shm where there is
    one with room, as in use, else on the test's own disk."""
    import shutil
    import tempfile
    from pathlib import Path

    from lambdamr.storage.scratch import has_room

    if os.path.isdir("/dev/shm") and has_room("/dev/shm", 64 * 1024 * 1024):
        base = Path(tempfile.mkdtemp(prefix="lambdamr-test-", dir="/dev/shm"))
    else:
        base = tmp_path / "shm"
        base.mkdir()
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """URL of a moto server on loopback, shared by the session (objects persist across tests)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def _secrets_on_moto(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests on the moto server reach Secrets Manager (the deployment's signing key) there
    too, through botocore's own per-service endpoint variable; no client goes to AWS."""
    if "moto_endpoint" in request.fixturenames:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", request.getfixturevalue("moto_endpoint"))


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> str:
    """A new empty bucket on the moto server."""
    import boto3

    name = f"lambdamr-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture(params=STORAGES)
def storage_kind(request: pytest.FixtureRequest) -> str:
    """Each test using it runs once per storage."""
    return request.param


@pytest.fixture
def storage_options(storage_kind: str, tmp_path, request: pytest.FixtureRequest) -> dict:
    """Executor keyword arguments that select the storage under test."""
    if storage_kind == "folder":
        return {"storage": str(tmp_path / "store")}
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return {"storage": f"s3://{bucket}/runs", "endpoint_url": endpoint, "region": "us-east-1"}


@pytest.fixture
def store(storage_kind: str, tmp_path, request: pytest.FixtureRequest) -> object:
    """The storage under test itself: a local folder, or a new bucket on moto's server."""
    from lambdamr.storage.local import LocalStorage
    from lambdamr.storage.s3 import S3Storage

    if storage_kind == "folder":
        return LocalStorage(tmp_path / "store")
    bucket, endpoint = request.getfixturevalue("s3_bucket"), request.getfixturevalue("moto_endpoint")
    return S3Storage(bucket, endpoint_url=endpoint, region="us-east-1")


@pytest.fixture
def make_executor(storage_options: dict) -> Iterator[Callable[..., object]]:
    """Build local-backend executors over the storage under test; all are shut down after."""
    from lambdamr import LambdaExecutor

    made = []

    def factory(**options):
        merged = {"workers": 2, "progress": False, **storage_options, **options}
        executor = LambdaExecutor(**merged)
        made.append(executor)
        return executor

    yield factory
    for executor in made:
        executor.terminate_workers()  # a test's leftover calls must not outlive it


@pytest.fixture
def executor(make_executor):
    """A local-backend executor (2 worker processes) over the storage under test."""
    return make_executor()


@pytest.fixture(scope="module", params=[Target("local", "folder"), Target("local", "s3")], ids=str)
def shared_local_executor(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One local-backend executor per storage for a module's tests. A module whose tests
    leave nothing behind binds it as its ``executor`` (starting two worker processes per test
    costs more than most tests); a test there that needs a fresh one uses ``make_executor``."""
    target = request.param
    with target_environment(target, request, tmp_path_factory.mktemp(str(target))) as options:
        shared = build_executor(target, options)
        yield shared
        shared.shutdown(wait=True, cancel_futures=True)


# ---- every backend over every storage (tests/targets.py) ------------------------------------
@pytest.fixture(scope="module", params=TARGETS, ids=str)
def target(request: pytest.FixtureRequest) -> Target:
    """Each module using it runs once per backend × storage (tests grouped by target)."""
    return request.param


@pytest.fixture(scope="module")
def target_options(
    target: Target, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    """Executor keyword arguments selecting the target's storage (one per module) and, for
    ``aws``, its deployment and stand-in."""
    with target_environment(target, request, tmp_path_factory.mktemp(str(target))) as options:
        yield options


@pytest.fixture(scope="module")
def target_executor(target: Target, target_options: dict) -> Iterator[object]:
    """The module's executor of the target, shared by its tests; shut down after the last."""
    executor = build_executor(target, target_options)
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def executor_factory(target: Target, target_options: dict) -> Iterator[Callable[..., object]]:
    """Build executors of the target that a test may configure or shut down itself; whatever
    they still run is stopped after the test."""
    made: list = []

    def factory(**overrides):
        executor = build_executor(target, target_options, **overrides)
        made.append(executor)
        return executor

    yield factory
    close_all(made)
