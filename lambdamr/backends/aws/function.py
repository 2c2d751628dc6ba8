"""The deployed Lambda function as the driver sees it: what runs there, whether it is
compatible with this driver, and one published version per (memory, timeout).

``lambdamr deploy`` records in the function's environment the lambdamr version, the task
protocol and the storage it was deployed for; the driver reads them back (one
GetFunctionConfiguration) before its first invoke.

Per-call memory and timeout: a published *version* is an immutable snapshot of the
function's configuration, so each (memory, timeout) pair a driver asks for gets its own
version behind an alias named ``m{memory}-t{timeout}`` (``m1024-t300``), created once — the
first time any driver needs it — and re-published when the code changes. Jobs with different
settings then run side by side with their own warm containers, and no job ever waits for a
configuration update or races another driver's (see docs/aws.md).

Each version an alias points to — and ``$LATEST`` — gets its own event-invoke config with
Lambda's retries off and a short event age (the service keeps one config per qualifier, with
2 retries and 6 hours by default), and a version no alias points to any more is deleted.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lambdamr._version import __version__
from lambdamr.aws_errors import error_code, translate
from lambdamr.backends.aws.grants import ENV_GRANTS
from lambdamr.backends.aws.versions import ensure_no_async_retries, prune_versions, retry_conflicts
from lambdamr.errors import BackendError, RuntimeMismatchError
from lambdamr.protocol import PROTOCOL_VERSION
from lambdamr.runtime.key_source import ENV_KEY_VERSION, ENV_SECRET

ENV_VERSION = "LAMBDAMR_VERSION"
ENV_PROTOCOL = "LAMBDAMR_PROTOCOL"
ENV_STORAGE = "LAMBDAMR_STORAGE"  # s3://bucket/prefix the function's role may use
ENV_SIGNING_KEY = "LAMBDAMR_SIGNING_KEY"  # the key payloads are signed with (lambdamr.signing)
ALIAS_PREFIX = "m"
log = logging.getLogger("lambdamr")


@dataclass(frozen=True)
class DeployedRuntime:
    """What GetFunctionConfiguration says of one version of the function."""

    function_name: str
    version: str
    python: str  # "3.12"
    lambdamr_version: str
    protocol: int | None
    storage_url: str
    memory_mb: int
    timeout_s: int
    code_sha256: str
    layers: tuple[str, ...]
    architecture: str
    state: str
    last_update: str
    signing_key: str = field(default="", repr=False)  # hex, deployments from before the secret store; never printed
    signing_key_secret: str = ""  # ARN of the Secrets Manager secret holding the key
    signing_key_version: str = ""  # the secret's version this configuration uses
    grants: str = ""  # JSON: the S3 prefixes the role may read and write (aws_grants)
    state_reason: str = ""  # why State or LastUpdateStatus is "Failed", as Lambda says it

    @classmethod
    def from_configuration(cls, cfg: dict[str, Any]) -> DeployedRuntime:
        env = (cfg.get("Environment") or {}).get("Variables") or {}
        runtime = str(cfg.get("Runtime", ""))
        protocol = env.get(ENV_PROTOCOL)
        return cls(
            function_name=str(cfg.get("FunctionName", "")),
            version=str(cfg.get("Version", "$LATEST")),
            python=runtime.removeprefix("python"),
            lambdamr_version=str(env.get(ENV_VERSION, "")),
            protocol=int(protocol) if protocol and str(protocol).isdigit() else None,
            storage_url=str(env.get(ENV_STORAGE, "")),
            memory_mb=int(cfg.get("MemorySize", 128)),
            timeout_s=int(cfg.get("Timeout", 3)),
            code_sha256=str(cfg.get("CodeSha256", "")),
            layers=tuple(sorted(layer["Arn"] for layer in cfg.get("Layers") or [])),
            architecture=(cfg.get("Architectures") or ["x86_64"])[0],
            state=str(cfg.get("State") or "Active"),
            last_update=str(cfg.get("LastUpdateStatus") or "Successful"),
            signing_key=str(env.get(ENV_SIGNING_KEY, "")),
            signing_key_secret=str(env.get(ENV_SECRET, "")),
            signing_key_version=str(env.get(ENV_KEY_VERSION, "")),
            grants=str(env.get(ENV_GRANTS, "")),
            state_reason=failure_reason(cfg) or "",
        )


def lambda_error(exc: Exception, function_name: str, region: str | None, what: str) -> Exception:
    """A failed call of the Lambda control plane, as the error table says (``lambdamr.aws_errors``)."""
    return translate(exc, "lambda", what, function_name=function_name, region=region, endpoint="the Lambda endpoint")


def describe_function(
    client: Any, function_name: str, qualifier: str | None = None, region: str | None = None
) -> DeployedRuntime:
    """Read one version's configuration; a missing function says to run ``lambdamr deploy``."""
    from botocore.exceptions import BotoCoreError, ClientError

    kwargs = {"FunctionName": function_name}
    if qualifier:
        kwargs["Qualifier"] = qualifier
    try:
        return DeployedRuntime.from_configuration(client.get_function_configuration(**kwargs))
    except (ClientError, BotoCoreError) as exc:
        raise lambda_error(exc, function_name, region, f"reading the configuration of {function_name!r}") from exc


def check_compatible(runtime: DeployedRuntime, *, python: str | None = None, version: str = __version__) -> None:
    """Raise ``RuntimeMismatchError`` saying how to fix it when this driver cannot use ``runtime``."""
    python = python or "{}.{}".format(*sys.version_info[:2])
    fix = f"run `lambdamr deploy --function-name {runtime.function_name} --python-version {python}`"
    if not runtime.lambdamr_version:
        raise RuntimeMismatchError(
            f"the Lambda function {runtime.function_name!r} was not deployed by lambdamr (no "
            f"{ENV_VERSION} in its environment); deploy the runtime with `lambdamr deploy`, or "
            "name the right function with function_name=..."
        )
    if runtime.protocol is not None and runtime.protocol != PROTOCOL_VERSION:
        raise RuntimeMismatchError(
            f"the deployed runtime speaks task protocol {runtime.protocol}, this driver "
            f"{PROTOCOL_VERSION} (lambdamr {runtime.lambdamr_version} there, {version} here); {fix}"
        )
    if _minor(runtime.lambdamr_version) != _minor(version):
        raise RuntimeMismatchError(
            f"the deployed runtime is lambdamr {runtime.lambdamr_version}, this driver is "
            f"{version}; versions must agree on major.minor: {fix} (or install lambdamr=="
            f"{runtime.lambdamr_version} in the driver's environment)"
        )
    if runtime.python != python:
        raise RuntimeMismatchError(
            f"the deployed runtime runs Python {runtime.python}, this driver Python {python}; "
            "pickled functions only load on the same Python minor version: "
            f"{fix}, or run the driver on Python {runtime.python}"
        )


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def alias_name(memory_mb: int, timeout_s: float) -> str:
    """The alias of the version configured with this memory and (whole-second) timeout."""
    return f"{ALIAS_PREFIX}{memory_mb}-t{lambda_timeout(timeout_s)}"


def lambda_timeout(timeout_s: float) -> int:
    """Lambda's Timeout is whole seconds, at least 1."""
    return max(1, math.ceil(timeout_s))


def failure_reason(cfg: dict[str, Any]) -> str | None:
    """Why a function configuration is unusable — its creation (``State``) or its last update
    (``LastUpdateStatus``) failed — in Lambda's words; ``None`` when neither failed."""
    for status, code, reason in (
        ("State", "StateReasonCode", "StateReason"),
        ("LastUpdateStatus", "LastUpdateStatusReasonCode", "LastUpdateStatusReason"),
    ):
        if cfg.get(status) == "Failed":
            said = ": ".join(str(cfg[k]) for k in (code, reason) if cfg.get(k))
            return f"{status} is Failed ({said or 'Lambda gave no reason'})"
    return None


def wait_updated(
    client: Any, function_name: str, *, timeout_s: float = 120.0, sleep: Callable[[float], None] = time.sleep
) -> dict[str, Any]:
    """Wait until the function's last configuration or code update has finished.

    Raises:
        BackendError: the function's creation or update failed (with Lambda's reason, at
            once), or it is still updating after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        cfg: dict[str, Any] = client.get_function_configuration(FunctionName=function_name)
        failed = failure_reason(cfg)
        if failed:
            raise BackendError(
                f"the Lambda function {function_name!r} cannot run: {failed}; fix the cause, then run `lambdamr deploy` again"
            )
        status = cfg.get("LastUpdateStatus") or "Successful"
        if status == "Successful" and (cfg.get("State") or "Active") == "Active":
            return cfg
        if time.monotonic() > deadline:
            raise BackendError(f"{function_name!r} is still updating after {timeout_s:g} s; try again later")
        sleep(1.0)


def ensure_alias(
    client: Any,
    function_name: str,
    memory_mb: int,
    timeout_s: float,
    latest: DeployedRuntime,
    *,
    sleep: Callable[[float], None] = time.sleep,
    changes: list[str] | None = None,
) -> str:
    """Return the alias for (memory, timeout), publishing a version for it when it is missing
    or was published from older code or layers than ``latest`` ($LATEST). The alias gets
    Lambda's retries off (``ensure_no_async_retries``); versions no alias points to any more
    are deleted. What changed is appended to ``changes``."""
    from botocore.exceptions import ClientError

    name = alias_name(memory_mb, timeout_s)
    timeout = lambda_timeout(timeout_s)
    exists = False
    try:
        current = DeployedRuntime.from_configuration(
            client.get_function_configuration(FunctionName=function_name, Qualifier=name)
        )
        exists = True
        same = ("code_sha256", "layers", "lambdamr_version", "signing_key", "signing_key_version", "storage_url")
        if all(getattr(current, name) == getattr(latest, name) for name in same):
            if ensure_no_async_retries(client, function_name, name, timeout, sleep=sleep) and changes is not None:
                changes.append(f"turned off Lambda's automatic retries of {function_name}:{name}")
            return name
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise lambda_error(exc, function_name, None, f"reading alias {name}") from exc
    for _ in range(5):  # another driver may change $LATEST between our update and publish
        _update_configuration(client, function_name, MemorySize=memory_mb, Timeout=timeout, sleep=sleep)
        cfg = wait_updated(client, function_name, sleep=sleep)
        published = client.publish_version(
            FunctionName=function_name,
            CodeSha256=cfg["CodeSha256"],
            Description=f"lambdamr {memory_mb} MB, {timeout} s",
        )
        if int(published.get("MemorySize", 0)) == memory_mb and int(published.get("Timeout", 0)) == timeout:
            break
    else:
        raise BackendError(f"could not publish a {memory_mb} MB / {timeout} s version of {function_name!r}: it keeps changing")
    version = published["Version"]
    if exists:
        client.update_alias(FunctionName=function_name, Name=name, FunctionVersion=version)
    else:
        try:
            client.create_alias(
                FunctionName=function_name,
                Name=name,
                FunctionVersion=version,
                Description="lambdamr: memory and timeout of this version",
            )
        except ClientError as exc:  # another driver created it first: point it at ours
            if error_code(exc) != "ResourceConflictException":
                raise
            client.update_alias(FunctionName=function_name, Name=name, FunctionVersion=version)
    # Put $LATEST back as deployed, so `lambdamr status` and the next deploy see no drift.
    _update_configuration(client, function_name, MemorySize=latest.memory_mb, Timeout=latest.timeout_s, sleep=sleep)
    ensure_no_async_retries(client, function_name, name, timeout, sleep=sleep)
    try:
        pruned = prune_versions(client, function_name)
    except ClientError as exc:  # housekeeping: a driver allowed to publish but not to delete still runs
        log.warning("lambdamr: could not delete unused versions of %s: %s", function_name, exc)
        pruned = []
    if changes is not None:
        changes.append(f"published version {name} ({memory_mb} MB, {timeout} s), with Lambda's retries off")
        if pruned:
            changes.append(f"deleted {len(pruned)} version(s) of {function_name} no alias uses: {', '.join(pruned)}")
    return name


def _update_configuration(client: Any, function_name: str, *, sleep: Callable[[float], None], **settings: Any) -> None:
    retry_conflicts(lambda: client.update_function_configuration(FunctionName=function_name, **settings), sleep=sleep)
