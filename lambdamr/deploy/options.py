"""What to deploy: one frozen set of options, and the names of everything derived from them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lambdamr.backends.aws.grants import normalize_location
from lambdamr.config import validate_memory, validate_timeout
from lambdamr.deploy import runtimes
from lambdamr.deploy.runtimes import LAMBDA_PYTHONS as LAMBDA_PYTHONS  # re-exported: the CLI and older imports
from lambdamr.deploy.runtimes import MACHINES, LambdaRuntime
from lambdamr.errors import ConfigurationError

ARCHITECTURES = tuple(MACHINES)
#: every resource deploy creates carries this tag; teardown removes only what carries it
MANAGED_TAG = "lambdamr:managed"
DEPLOYMENT_TAG = "lambdamr:deployment"
HANDLER = "lambdamr.runtime.handler.handler"
DEPLOY_PREFIX = "lambdamr-deploy"  # bucket keys of layer uploads (outside the temp prefix)
LOG_RETENTION_DAYS = 14

_REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_FUNCTION_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class DeployOptions:
    """Settings of ``lambdamr deploy``; ``bucket=None`` means ``lambdamr-{account}-{region}``."""

    region: str | None = None
    bucket: str | None = None
    function_name: str = "lambdamr-runtime"
    memory_mb: int = 1024
    timeout_s: int = 300
    architecture: str = "x86_64"
    python_version: str = field(default_factory=lambda: runtimes.driver_python())
    packages: tuple[str, ...] = ()
    prefix: str = "lambdamr"  # the temp prefix the runtime may use (and that expires after a day)
    endpoint_url: str | None = None  # one endpoint for every service (moto server in tests)
    lambda_endpoint_url: str | None = None
    require_tls: bool = True  # the bucket policy denies plain HTTP (off only for local test servers)
    #: S3 locations (s3://bucket/prefix) the runtime may also read / write; added to the
    #: deployment's grants, which are kept across deploys; ``revoke`` removes grants
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    revoke: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate_memory(self.memory_mb)
        validate_timeout(self.timeout_s)
        object.__setattr__(self, "timeout_s", int(self.timeout_s))
        object.__setattr__(self, "packages", tuple(self.packages))
        for name, flag in (("reads", "--read"), ("writes", "--write"), ("revoke", "--revoke")):
            urls = getattr(self, name)
            if isinstance(urls, str):
                raise ConfigurationError(f"{name}={urls!r}: give a list of s3://bucket/prefix locations")
            object.__setattr__(self, name, tuple(normalize_location(u, what=flag) for u in urls))
        if self.architecture not in ARCHITECTURES:
            raise ConfigurationError(f"architecture={self.architecture!r}: AWS Lambda offers {' or '.join(ARCHITECTURES)}")
        if self.python_version != runtimes.driver_python():  # the driver's own is checked by deploy
            runtimes.runtime_for(self.python_version)
        if self.region is not None:
            check_region(self.region)
        if self.bucket is not None and not _BUCKET_RE.match(self.bucket):
            raise ConfigurationError(
                f"bucket={self.bucket!r}: S3 bucket names have 3-63 lowercase letters, digits, dots and hyphens"
            )
        if not _FUNCTION_RE.match(self.function_name):
            raise ConfigurationError(f"function_name={self.function_name!r}: use 1-64 letters, digits, hyphens or underscores")
        if not self.prefix or self.prefix.startswith("/") or self.prefix.endswith("/") or "*" in self.prefix:
            raise ConfigurationError(f"prefix={self.prefix!r}: use a relative key prefix such as 'lambdamr'")

    @property
    def runtime(self) -> str:
        return self.lambda_runtime.name

    @property
    def lambda_runtime(self) -> LambdaRuntime:
        """The managed runtime to deploy: its Python, OS and glibc.

        Raises:
            ConfigurationError: Lambda offers no runtime for this Python (status, teardown
                and clean never ask, so they work from any driver).
        """
        here = self.python_version == runtimes.driver_python()
        return runtimes.runtime_for(None if here else self.python_version)

    @property
    def role_name(self) -> str:
        return f"{self.function_name}-role"[:64]

    @property
    def layer_name(self) -> str:
        return f"{self.function_name}-deps"

    @property
    def secret_name(self) -> str:
        """The Secrets Manager secret holding the signing key."""
        return f"lambdamr/{self.function_name}/signing-key"

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    def tags(self) -> dict[str, str]:
        """Tags put on everything deploy creates."""
        return {MANAGED_TAG: "true", DEPLOYMENT_TAG: self.function_name}


def check_region(region: str) -> str:
    """Refuse a malformed region name, or one this botocore does not know (no network used)."""
    if not _REGION_RE.match(region):
        raise ConfigurationError(f"region={region!r} is not an AWS region name (like us-east-1 or eu-west-3)")
    import boto3

    known = set()
    session = boto3.session.Session()
    for partition in session.get_available_partitions():
        known.update(session.get_available_regions("lambda", partition_name=partition))
    if known and region not in known:
        raise ConfigurationError(
            f"region {region!r} does not offer AWS Lambda as far as this botocore knows "
            f"(e.g. {', '.join(sorted(known)[:4])}...); check the name, or upgrade boto3 if the region is new"
        )
    return region


def partition_of(region: str) -> str:
    """The AWS partition of a region, for ARNs: ``aws``, ``aws-cn`` (China), ``aws-us-gov``
    (GovCloud)... from botocore's own endpoint data (no network used)."""
    import boto3

    return str(boto3.session.Session().get_partition_for_region(region))
