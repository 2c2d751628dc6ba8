"""Test support: moto in-process with IAM enforced, as an assumed-role session of the
deployed execution role sees AWS.

moto checks S3 requests against the object's ARN, but every other service against the
resource ``*``, so a statement naming one secret's ARN would never match there;
``secret_arns_enforced`` makes moto check Secrets Manager calls against the secret's real
ARN, as AWS does.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
from moto.core import set_initial_no_auth_action_count

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's
BUCKET = f"lambdamr-{ACCOUNT}-{REGION}"
T = TypeVar("T")


def fake_pip(command: Sequence[str]) -> None:
    """Stands in for pip: each requested package becomes a one-line module."""
    target = Path(command[command.index("--target") + 1])
    for package in command[command.index("--target") + 2 :]:
        folder = target / package.replace("-", "_")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").write_text(f"NAME = {package!r}\n")


def no_sleep(seconds: float) -> None:
    pass


@contextmanager
def secret_arns_enforced() -> Iterator[None]:
    """Make moto authorize Secrets Manager requests against the named secret's ARN."""
    from moto.secretsmanager.responses import SecretsManagerResponse

    def determine_resource(self: Any) -> str:
        secret_id = self._get_param("SecretId")
        secret = self.backend.secrets.get(secret_id) if secret_id else None
        return str(secret.arn) if secret is not None else "*"

    SecretsManagerResponse._determine_resource = determine_resource  # type: ignore[attr-defined]
    try:
        yield
    finally:
        del SecretsManagerResponse._determine_resource  # type: ignore[attr-defined]


def enforced(call: Callable[[], T]) -> T:
    """Run ``call`` with moto's IAM enforcement on from its first request."""
    return set_initial_no_auth_action_count(0)(call)()


def role_session(role_name: str) -> boto3.session.Session:
    """A boto3 session with the credentials of an STS AssumeRole of ``role_name`` (taken
    before enforcement is on: the test's own credentials are not an IAM user of moto's)."""
    iam = boto3.client("iam", region_name=REGION)
    arn = iam.get_role(RoleName=role_name)["Role"]["Arn"]
    creds = boto3.client("sts", region_name=REGION).assume_role(RoleArn=arn, RoleSessionName="runtime")["Credentials"]
    return boto3.session.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=REGION,
    )


def error_code(call: Callable[[], Any]) -> str:
    """ "ok", "denied" (HTTP 403: S3 says AccessDenied; moto's Secrets Manager names it
    only by its status), or the AWS error code of a call."""
    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403:
            return "denied"
        return str(exc.response["Error"]["Code"])
    return "ok"


def command_in(message: str) -> list[str]:
    """The words of the first `...` command quoted in an error message."""
    return shlex.split(message.split("`")[1])


def role_policy(role_name: str) -> dict[str, Any]:
    document = boto3.client("iam", region_name=REGION).get_role_policy(RoleName=role_name, PolicyName="lambdamr-runtime")
    policy = document["PolicyDocument"]
    return json.loads(policy) if isinstance(policy, str) else policy


@pytest.fixture
def moto_in_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto in-process, fake pip, no sleeps; no test in the file talks to a server."""
    from moto import mock_aws

    from lambdamr.deploy import layer as layer_module

    monkeypatch.delenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", raising=False)
    monkeypatch.setattr(layer_module, "run_pip", fake_pip)
    monkeypatch.setattr("lambdamr.backends.aws.function.time.sleep", no_sleep)
    with mock_aws(), secret_arns_enforced():
        yield
