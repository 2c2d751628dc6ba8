"""A whole loopback AWS account for tests and benchmarks: moto with IAM enforced, the code
store every Lambda stand-in of the account shares, and deploys through a stand-in with the
layer built by real pip (cached, so a rerun builds nothing).

    account = AwsAccount.start()
    service = account.standin()                  # a LambdaService on this account
    function, bucket = account.deploy(service)   # lambdamr.deploy.deploy, through it
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambdamr.testing.lambda_service import CodeStore, LambdaService
from lambdamr.testing.moto_iam import MotoIamServer

LAYER_CACHE = Path(os.environ.get("LAMBDAMR_TEST_CACHE", "~/.cache/lambdamr-tests")).expanduser() / "layers"


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
        except OSError:  # another run cached it first
            shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(cached, target, dirs_exist_ok=True)


def _no_sleep(seconds: float) -> None:
    pass


def _deploy_as(admin: tuple[str, str], kwargs: dict[str, Any]) -> None:
    import boto3

    from lambdamr.deploy import deploy

    key, secret = admin
    session = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name=kwargs["region"])
    deploy(session=session, **kwargs)


@dataclass
class AwsAccount:
    """The IAM-enforcing moto server and what every stand-in of the account shares."""

    server: MotoIamServer
    code: CodeStore
    work_dir: Path
    region: str = "us-east-1"
    owns_work_dir: bool = False  # made by start(): removed by stop()

    @classmethod
    def start(cls, work_dir: Path | None = None, region: str = "us-east-1") -> AwsAccount:
        server = MotoIamServer(region)
        folder = Path(work_dir or tempfile.mkdtemp(prefix="lambdamr-account-"))
        account = cls(server, CodeStore(folder / "code"), folder, region, owns_work_dir=work_dir is None)
        account.code.read_s3 = account._read_s3
        return account

    @property
    def endpoint(self) -> str:
        return self.server.url

    @property
    def admin(self) -> tuple[str, str]:
        return self.server.admin.access_key, self.server.admin.secret_key

    @property
    def lambda_service(self) -> tuple[str, str]:
        return self.server.lambda_service.access_key, self.server.lambda_service.secret_key

    def act_as_driver(self) -> None:
        """Make this process a driver of the account: the administrator's keys, and every AWS
        client nobody pointed elsewhere (Secrets Manager, where the driver reads the signing
        key, CloudWatch Logs) on the moto server — never a public endpoint."""
        key, secret = self.admin
        os.environ.update(
            AWS_ACCESS_KEY_ID=key,
            AWS_SECRET_ACCESS_KEY=secret,
            AWS_ENDPOINT_URL=self.endpoint,
            AWS_ENDPOINT_URL_SECRETS_MANAGER=self.endpoint,
        )
        os.environ.pop("AWS_SESSION_TOKEN", None)

    def session(self) -> Any:
        """A boto3 session of the administrator."""
        import boto3

        key, secret = self.admin
        return boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name=self.region)

    def _read_s3(self, bucket: str, key: str) -> bytes:  # layers over 50 MB are published from S3
        s3 = self.session().client("s3", endpoint_url=self.endpoint)
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    def standin(self, **options: Any) -> LambdaService:
        """A started Lambda stand-in on this account."""
        return LambdaService(
            control_url=self.endpoint,
            admin=self.admin,
            lambda_service=self.lambda_service,
            region=self.region,
            code_store=self.code,
            work_dir=self.work_dir,
            **options,
        ).start()

    def deploy_kwargs(self, through: LambdaService, function_name: str, bucket: str) -> dict[str, Any]:
        return {
            "region": self.region,
            "bucket": bucket,
            "function_name": function_name,
            "endpoint_url": self.endpoint,
            "lambda_endpoint_url": through.url,
            "pip": cached_pip,
            "sleep": _no_sleep,
            "require_tls": False,  # moto's server speaks plain HTTP
        }

    def deploy(
        self, through: LambdaService, *, memory_mb: int = 256, timeout_s: int = 20, in_subprocess: bool = False, **options: Any
    ) -> tuple[str, str]:
        """Deploy a new function, role and bucket as the administrator; (function, bucket).
        ``in_subprocess`` keeps the layer build out of this process's memory (benchmarks)."""
        suffix = uuid.uuid4().hex[:8]
        function, bucket = f"lmr-{suffix}", f"lambdamr-e2e-{suffix}"
        kwargs = {**self.deploy_kwargs(through, function, bucket), "memory_mb": memory_mb, "timeout_s": timeout_s, **options}
        if not in_subprocess:
            _deploy_as(self.admin, kwargs)
            return function, bucket
        import multiprocessing

        child = multiprocessing.get_context("spawn").Process(target=_deploy_as, args=(self.admin, kwargs))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"deploying {function} in a subprocess failed (exit code {child.exitcode})")
        return function, bucket

    def stop(self) -> None:
        """Stop the moto server; remove the work folder if ``start`` made it."""
        self.server.stop()
        if self.owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
