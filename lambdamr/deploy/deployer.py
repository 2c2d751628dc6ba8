"""``deploy``, ``status``, ``teardown`` and ``clean``: the deployment as four calls.

    deploy ─> bucket (private, encrypted, TLS only, temp prefix expires after a day)
          ─> signing key secret (Secrets Manager) ─> grants (temp prefix + --read/--write)
          ─> IAM role + least-privilege inline policy ─> who may read the secret
          ─> log group (retention) ─> layer (pip for Lambda; reused when its spec is unchanged)
          ─> function (runtime code only) ─> async retries off ─> version for memory/timeout

Everything created is tagged ``lambdamr:managed=true``; teardown deletes only what carries
the tag (layer versions, which cannot be tagged, by their description).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lambdamr._version import __version__
from lambdamr.aws_errors import error_code, translate
from lambdamr.aws_region import resolve_region
from lambdamr.backends.aws.function import (
    ENV_SIGNING_KEY,
    DeployedRuntime,
    check_compatible,
    ensure_alias,
)
from lambdamr.backends.aws.grants import ENV_GRANTS, Grants
from lambdamr.backends.aws.versions import prune_versions
from lambdamr.deploy.bucket import clean_keys, cleanable_objects, delete_bucket, ensure_bucket
from lambdamr.deploy.function import (
    delete_function,
    ensure_async_config,
    ensure_function,
    ensure_log_group,
    find_layer,
    prune_layers,
    publish_layer,
)
from lambdamr.deploy.grants import deployed_variables, deployment_grants
from lambdamr.deploy.iam import delete_role, ensure_role
from lambdamr.deploy.layer import PipRunner, build_layer, layer_packages, layer_spec_hash, version_skew
from lambdamr.deploy.options import DeployOptions, check_region
from lambdamr.deploy.package import function_package, unzipped_size
from lambdamr.deploy.secret import delete_secret, ensure_secret, ensure_secret_policy, remove_plaintext_versions
from lambdamr.errors import ConfigurationError, LambdaMRError, RuntimeMismatchError


@dataclass
class AwsClients:
    """The boto3 clients a deployment uses, all for one region (and one test endpoint)."""

    region: str
    s3: Any
    iam: Any
    lam: Any
    logs: Any
    sts: Any
    secrets: Any

    @classmethod
    def create(cls, options: DeployOptions, session: Any = None) -> AwsClients:
        import boto3

        session = session or boto3.session.Session(region_name=options.region)
        region = resolve_region(options.region, session)  # the driver's rule: AWS_REGION first
        if not region:
            raise ConfigurationError(
                "no AWS region given: pass --region (or region=...), set AWS_REGION, or set a region in the AWS profile"
            )
        if options.region is None:
            check_region(region)
        url = options.endpoint_url

        def client(name: str, endpoint: str | None = None) -> Any:
            return session.client(name, region_name=region, endpoint_url=endpoint or url)

        return cls(
            region,
            client("s3"),
            client("iam"),
            client("lambda", options.lambda_endpoint_url),
            client("logs"),
            client("sts"),
            client("secretsmanager"),
        )

    def account(self) -> str:
        return str(self.sts.get_caller_identity()["Account"])


@dataclass
class DeployReport:
    """What a deploy did: ``changes`` is empty when everything was already as asked."""

    function_arn: str
    bucket: str
    storage_url: str
    role_arn: str
    layer_arn: str
    alias: str
    changes: list[str] = field(default_factory=list)
    grants: Grants | None = None
    warnings: list[str] = field(default_factory=list)  # e.g. layer packages of other versions than the driver's

    def summary(self) -> str:
        """Two lines for after the changes were printed as they were made."""
        done = f"{len(self.changes)} change(s)" if self.changes else "nothing to change: everything was already up to date"
        use = f"use it with: LambdaExecutor(backend='aws', storage='{self.storage_url}')"
        return "\n".join([f"lambdamr deploy: {self.function_arn}: {done}", *(f"warning: {w}" for w in self.warnings), use])

    def __str__(self) -> str:
        lines = [f"  - {c}" for c in self.changes] or ["  everything was already up to date"]
        lines += [f"  warning: {w}" for w in self.warnings]
        if self.grants:
            lines.append(f"  the role may read {', '.join(self.grants.read)} and write {', '.join(self.grants.write)}")
        return "\n".join(
            [
                f"lambdamr deploy: {self.function_arn}",
                *lines,
                f"use it with: LambdaExecutor(backend='aws', storage='{self.storage_url}')",
            ]
        )


class ChangeLog(list[str]):
    """The changes of a deploy; each is also handed to ``on_change`` the moment it is made
    (the command line prints them as it goes)."""

    def __init__(self, on_change: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self._on_change = on_change

    def append(self, change: str) -> None:
        super().append(change)
        if self._on_change is not None:
            self._on_change(change)


def deploy_options(**kwargs: Any) -> DeployOptions:
    packages = kwargs.pop("packages", ()) or ()
    python_version = kwargs.pop("python_version", None)
    if python_version:
        kwargs["python_version"] = python_version
    return DeployOptions(packages=tuple(packages), **{k: v for k, v in kwargs.items() if v is not None})


def default_bucket(clients: AwsClients) -> str:
    return f"lambdamr-{clients.account()}-{clients.region}"


def deploy(
    region: str | None = None,
    bucket: str | None = None,
    function_name: str = "lambdamr-runtime",
    memory_mb: int = 1024,
    timeout_s: int = 300,
    architecture: str = "x86_64",
    python_version: str | None = None,
    packages: Iterable[str] = (),
    *,
    prefix: str = "lambdamr",
    endpoint_url: str | None = None,
    lambda_endpoint_url: str | None = None,
    require_tls: bool = True,
    reads: Iterable[str] = (),
    writes: Iterable[str] = (),
    revoke: Iterable[str] = (),
    pip: PipRunner | None = None,
    session: Any = None,
    sleep: Callable[[float], None] = time.sleep,
    on_change: Callable[[str], None] | None = None,
) -> DeployReport:
    """Create or update, idempotently, everything the aws backend needs in one region.

    ``on_change`` is called with each change as it is made (``plan_deploy`` says beforehand
    what they will be).

    Raises:
        ConfigurationError: bad options, missing credentials or permissions, a name taken by
            something lambdamr did not create, a layer over Lambda's size limits.
    """
    options = deploy_options(
        region=region,
        bucket=bucket,
        function_name=function_name,
        memory_mb=memory_mb,
        timeout_s=timeout_s,
        architecture=architecture,
        python_version=python_version,
        packages=packages,
        prefix=prefix,
        endpoint_url=endpoint_url,
        lambda_endpoint_url=lambda_endpoint_url,
        require_tls=require_tls,
        reads=tuple(reads),
        writes=tuple(writes),
        revoke=tuple(revoke),
    )
    runtime = options.lambda_runtime  # refuses a Python Lambda does not offer, before any AWS call
    clients = AwsClients.create(options, session)
    step = "checking the AWS account"
    try:
        caller = clients.sts.get_caller_identity()
        account = str(caller["Account"])
        name = options.bucket or default_bucket(clients)
        changes = ChangeLog(on_change)
        step = f"setting up bucket {name}"
        ensure_bucket(clients.s3, name, options, clients.region, changes)
        step = f"setting up the signing key secret {options.secret_name}"
        deployed = deployed_variables(clients.lam, options.function_name)
        key = ensure_secret(clients.secrets, options, plaintext_key=deployed.get(ENV_SIGNING_KEY), changes=changes)
        grants = deployment_grants(deployed.get(ENV_GRANTS), options, name)
        step = f"setting up IAM role {options.role_name}"
        role = ensure_role(clients.iam, options, grants, key.arn, clients.region, account, changes)
        role_arn = str(role["Arn"])
        ensure_secret_policy(clients.secrets, key, role_id=str(role["RoleId"]), caller=caller, changes=changes)
        step = f"setting up log group {options.log_group}"
        ensure_log_group(clients.logs, options, changes)
        package = function_package()
        step = f"publishing layer {options.layer_name}"
        packages_all = layer_packages(options.packages)
        spec = layer_spec_hash(packages_all, options.python_version, options.architecture)
        layer_arn = find_layer(clients.lam, options.layer_name, spec)
        warnings: list[str] = []
        if layer_arn is None:
            with tempfile.TemporaryDirectory(prefix="lambdamr-layer-") as workdir:
                build = build_layer(
                    runtime.python,
                    options.architecture,
                    options.packages,
                    workdir=Path(workdir),
                    pip=pip,
                    function_unzipped=unzipped_size(package),
                )
            layer_arn = publish_layer(clients.lam, clients.s3, name, options, build, changes)
            warnings = version_skew(build.versions, packages_all)
        step = f"deploying function {options.function_name}"
        function_arn = ensure_function(
            clients.lam,
            options,
            role_arn=role_arn,
            layer_arn=layer_arn,
            package=package,
            bucket=name,
            key=key,
            grants=grants,
            changes=changes,
            sleep=sleep,
        )
        remove_plaintext_versions(clients.lam, options.function_name, changes)
        step = f"deleting old versions of layer {options.layer_name}"
        prune_layers(clients.lam, options.layer_name, layer_arn, changes)
        step = "turning off Lambda's automatic retries"
        ensure_async_config(clients.lam, options, changes, sleep=sleep)
        step = f"publishing the {options.memory_mb} MB / {options.timeout_s} s version"
        latest = DeployedRuntime.from_configuration(clients.lam.get_function_configuration(FunctionName=options.function_name))
        alias = ensure_alias(
            clients.lam, options.function_name, options.memory_mb, options.timeout_s, latest, sleep=sleep, changes=changes
        )
        step = f"deleting versions of {options.function_name} no alias uses"
        pruned = prune_versions(clients.lam, options.function_name)
        if pruned:
            changes.append(f"deleted {len(pruned)} version(s) of {options.function_name} no alias uses: {', '.join(pruned)}")
    except LambdaMRError:
        raise
    except Exception as exc:
        raise translate(exc, "deploy", step, region=clients.region) from exc
    return DeployReport(function_arn, name, f"s3://{name}", role_arn, layer_arn, alias, changes, grants, warnings)


def status(
    region: str | None = None,
    function_name: str = "lambdamr-runtime",
    *,
    endpoint_url: str | None = None,
    lambda_endpoint_url: str | None = None,
    session: Any = None,
) -> dict[str, Any]:
    """What is deployed and whether this driver can use it (``compatible`` and ``problem``)."""
    from botocore.exceptions import ClientError

    options = deploy_options(
        region=region, function_name=function_name, endpoint_url=endpoint_url, lambda_endpoint_url=lambda_endpoint_url
    )
    clients = AwsClients.create(options, session)
    report: dict[str, Any] = {
        "region": clients.region,
        "function": function_name,
        "deployed": False,
        "driver": {"lambdamr": __version__, "python": options.python_version},
    }
    try:
        current = clients.lam.get_function(FunctionName=function_name)
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            report["problem"] = f"nothing deployed: run `lambdamr deploy --region {clients.region}`"
            report["compatible"] = False
            return report
        raise translate(exc, "deploy", "reading the function", region=clients.region) from exc
    except Exception as exc:
        raise translate(exc, "deploy", "reading the function", region=clients.region) from exc
    runtime = DeployedRuntime.from_configuration(current["Configuration"])
    aliases = clients.lam.list_aliases(FunctionName=function_name).get("Aliases", [])
    report.update(
        deployed=True,
        managed=(current.get("Tags") or {}).get("lambdamr:managed") == "true",
        runtime={"lambdamr": runtime.lambdamr_version, "python": runtime.python, "protocol": runtime.protocol},
        storage=runtime.storage_url,
        memory_mb=runtime.memory_mb,
        timeout_s=runtime.timeout_s,
        architecture=runtime.architecture,
        layers=list(runtime.layers),
        versions=sorted(a["Name"] for a in aliases),
        state=runtime.state,
        signing_key_secret=runtime.signing_key_secret or None,
    )
    if runtime.grants:
        grants = Grants.parse(runtime.grants)
        report["grants"] = {"temp": grants.temp, "read": list(grants.read), "write": list(grants.write)}
    try:
        check_compatible(runtime)
        report["compatible"] = True
    except RuntimeMismatchError as exc:
        report["compatible"] = False
        report["problem"] = str(exc)
    if runtime.state_reason:  # creation or last update failed: nothing can run
        report["compatible"] = False
        report["problem"] = f"the function cannot run: {runtime.state_reason}; fix the cause, then run `lambdamr deploy`"
    return report


def teardown(
    region: str | None = None,
    function_name: str = "lambdamr-runtime",
    bucket: str | None = None,
    *,
    prefix: str = "lambdamr",
    keep_bucket: bool = False,
    delete_key_now: bool = False,
    delete_user_objects: bool = False,
    dry_run: bool = False,
    endpoint_url: str | None = None,
    lambda_endpoint_url: str | None = None,
    session: Any = None,
) -> dict[str, list[str]]:
    """Remove what deploy made — and nothing it did not make. Returns what was removed and
    what was kept (with why); ``dry_run`` only says what would be, with read calls only.

    Objects outside lambdamr's temp and deploy prefixes (``map_reduce`` output under a
    ``--write`` grant, say) are kept, and so is the bucket holding them, unless
    ``delete_user_objects``."""
    options = deploy_options(
        region=region,
        function_name=function_name,
        bucket=bucket,
        prefix=prefix,
        endpoint_url=endpoint_url,
        lambda_endpoint_url=lambda_endpoint_url,
    )
    clients = AwsClients.create(options, session)
    removed: list[str] = []
    kept: list[str] = []
    try:
        name = options.bucket or _deployed_bucket(clients, function_name) or default_bucket(clients)
        delete_function(clients.lam, clients.logs, options, removed, kept, dry_run=dry_run)
        delete_role(clients.iam, options.role_name, removed, dry_run=dry_run)
        delete_secret(clients.secrets, options, removed, kept, now=delete_key_now, dry_run=dry_run)
        if keep_bucket:
            kept.append(f"bucket {name} and its objects (--keep-bucket)")
        else:
            delete_bucket(
                clients.s3, name, options.prefix, removed, kept, delete_user_objects=delete_user_objects, dry_run=dry_run
            )
    except LambdaMRError:
        raise
    except Exception as exc:
        raise translate(exc, "deploy", "tearing down", region=clients.region) from exc
    return {"removed": removed, "kept": kept}


def _deployed_bucket(clients: AwsClients, function_name: str) -> str | None:
    from botocore.exceptions import ClientError

    try:
        cfg = clients.lam.get_function_configuration(FunctionName=function_name)
    except ClientError:
        return None
    url = DeployedRuntime.from_configuration(cfg).storage_url
    return url.removeprefix("s3://").split("/")[0] or None


def clean(
    region: str | None = None,
    function_name: str = "lambdamr-runtime",
    bucket: str | None = None,
    *,
    prefix: str = "lambdamr",
    older_than_s: float = 0.0,
    only: Collection[str] | None = None,
    endpoint_url: str | None = None,
    lambda_endpoint_url: str | None = None,
    session: Any = None,
) -> int:
    """Delete temp objects under ``prefix/`` that no live driver owns (those older than
    ``older_than_s``; with ``only``, just those of these keys); return how many. Sessions
    with a fresh lease are spared. Nothing outside ``prefix/`` is ever deleted."""
    clients, name, options = _clean_target(region, function_name, bucket, prefix, endpoint_url, lambda_endpoint_url, session)
    try:
        return clean_keys(clients.s3, name, f"{options.prefix}/", older_than_s, only=only)
    except Exception as exc:
        raise translate(exc, "deploy", "deleting temp objects", region=clients.region) from exc


def clean_preview(
    region: str | None = None,
    function_name: str = "lambdamr-runtime",
    bucket: str | None = None,
    *,
    prefix: str = "lambdamr",
    older_than_s: float = 0.0,
    endpoint_url: str | None = None,
    lambda_endpoint_url: str | None = None,
    session: Any = None,
) -> tuple[str, list[tuple[str, int]]]:
    """What ``clean`` would delete, read only: the bucket and the ``(key, size)`` of each
    object (pass the keys as ``clean(only=...)`` once the user agreed)."""
    clients, name, options = _clean_target(region, function_name, bucket, prefix, endpoint_url, lambda_endpoint_url, session)
    try:
        return name, cleanable_objects(clients.s3, name, f"{options.prefix}/", older_than_s)
    except Exception as exc:
        raise translate(exc, "deploy", "listing temp objects", region=clients.region) from exc


def _clean_target(
    region: str | None,
    function_name: str,
    bucket: str | None,
    prefix: str,
    endpoint_url: str | None,
    lambda_endpoint_url: str | None,
    session: Any,
) -> tuple[AwsClients, str, DeployOptions]:
    options = deploy_options(
        region=region,
        function_name=function_name,
        bucket=bucket,
        prefix=prefix,
        endpoint_url=endpoint_url,
        lambda_endpoint_url=lambda_endpoint_url,
    )
    clients = AwsClients.create(options, session)
    try:
        name = options.bucket or _deployed_bucket(clients, function_name) or default_bucket(clients)
    except Exception as exc:
        raise translate(exc, "deploy", "finding the bucket", region=clients.region) from exc
    return clients, name, options
