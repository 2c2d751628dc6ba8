"""The Lambda side of a deployment: layer versions, the function, its log group and its
asynchronous-invocation settings. Each ``ensure_*`` compares before it writes, so a second
deploy with the same options changes nothing."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from lambdamr._version import __version__
from lambdamr.aws_errors import error_code
from lambdamr.backends.aws.function import ALIAS_PREFIX, ENV_PROTOCOL, ENV_STORAGE, ENV_VERSION, wait_updated
from lambdamr.backends.aws.grants import ENV_GRANTS, Grants
from lambdamr.backends.aws.versions import ensure_no_async_retries, max_event_age
from lambdamr.deploy.iam import retry_until_role_usable
from lambdamr.deploy.layer import LayerBuild
from lambdamr.deploy.options import DEPLOY_PREFIX, HANDLER, LOG_RETENTION_DAYS, MANAGED_TAG, DeployOptions
from lambdamr.deploy.package import code_sha256
from lambdamr.deploy.secret import SecretRef
from lambdamr.errors import ConfigurationError, ResourceNotOursError
from lambdamr.protocol import PROTOCOL_VERSION
from lambdamr.runtime.key_source import ENV_KEY_VERSION, ENV_SECRET

LAYER_DESCRIPTION = "lambdamr runtime layer"
_ALIAS_RE = re.compile(rf"^{ALIAS_PREFIX}\d+-t(\d+)$")


def find_layer(lam: Any, layer_name: str, spec_hash: str) -> str | None:
    """The ARN of a published layer version built from ``spec_hash``, if any."""
    from botocore.exceptions import ClientError

    try:
        pages = lam.get_paginator("list_layer_versions").paginate(LayerName=layer_name)
        for page in pages:
            for version in page.get("LayerVersions", []):
                if f"spec={spec_hash}" in (version.get("Description") or ""):
                    return str(version["LayerVersionArn"])
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
    return None


def publish_layer(lam: Any, s3: Any, bucket: str, options: DeployOptions, build: LayerBuild, changes: list[str]) -> str:
    """Publish a built layer; zips over 50 MB go through the bucket."""
    content: dict[str, Any]
    key = f"{DEPLOY_PREFIX}/{options.layer_name}-{build.spec_hash}.zip"
    if build.needs_s3_upload:
        s3.put_object(Bucket=bucket, Key=key, Body=build.zip_bytes)
        content = {"S3Bucket": bucket, "S3Key": key}
    else:
        content = {"ZipFile": build.zip_bytes}
    try:
        answer = lam.publish_layer_version(
            LayerName=options.layer_name,
            Description=f"{LAYER_DESCRIPTION} spec={build.spec_hash}: {' '.join(build.packages)}"[:256],
            Content=content,
            CompatibleRuntimes=[options.runtime],
            CompatibleArchitectures=[options.architecture],
        )
    finally:
        if build.needs_s3_upload:
            s3.delete_object(Bucket=bucket, Key=key)
    changes.append(
        f"published layer {options.layer_name} version {answer['Version']} "
        f"({build.zipped_size / 2**20:.1f} MB zipped, {build.unzipped_size / 2**20:.1f} MB unzipped)"
    )
    return str(answer["LayerVersionArn"])


#: Lambda's limit on the function's environment variables, all together
ENVIRONMENT_LIMIT = 4096


def environment(bucket: str, key: SecretRef, grants: Grants) -> dict[str, str]:
    """What the function's environment holds: versions for the driver's check, the bucket,
    where the signing key is (the secret's ARN and key version: never the key itself) and
    the S3 grants of the role, which the driver checks its jobs against."""
    variables = {
        ENV_VERSION: __version__,
        ENV_PROTOCOL: str(PROTOCOL_VERSION),
        ENV_STORAGE: f"s3://{bucket}",
        ENV_SECRET: key.arn,
        ENV_KEY_VERSION: key.version_id,
        ENV_GRANTS: grants.to_json(),
    }
    if sum(len(k) + len(v) for k, v in variables.items()) > ENVIRONMENT_LIMIT:
        raise ConfigurationError(
            f"the grants do not fit in the function's environment (Lambda allows {ENVIRONMENT_LIMIT} bytes "
            f"in all): grant common parent prefixes instead of {len(grants.read)} read and "
            f"{len(grants.write)} write prefixes, and drop old ones with --revoke"
        )
    return variables


def function_settings(
    options: DeployOptions, *, role_arn: str, layer_arn: str, bucket: str, key: SecretRef, grants: Grants
) -> dict[str, Any]:
    """The function's configuration as deploy sets it (compared field by field on redeploy)."""
    return {
        "Runtime": options.runtime,
        "Role": role_arn,
        "Handler": HANDLER,
        "MemorySize": options.memory_mb,
        "Timeout": options.timeout_s,
        "Layers": [layer_arn],
        "Environment": {"Variables": environment(bucket, key, grants)},
        "Description": f"lambdamr {__version__} runtime",
    }


def ensure_function(
    lam: Any,
    options: DeployOptions,
    *,
    role_arn: str,
    layer_arn: str,
    package: bytes,
    bucket: str,
    key: SecretRef,
    grants: Grants,
    changes: list[str],
    sleep: Callable[[float], None],
) -> str:
    """Create or update the function; return its ARN."""
    from botocore.exceptions import ClientError

    try:
        current = lam.get_function(FunctionName=options.function_name)
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        current = None
    settings = function_settings(options, role_arn=role_arn, layer_arn=layer_arn, bucket=bucket, key=key, grants=grants)
    if current is None:
        answer = retry_until_role_usable(
            lambda: lam.create_function(
                FunctionName=options.function_name,
                Code={"ZipFile": package},
                Architectures=[options.architecture],
                Tags=options.tags(),
                **settings,
            ),
            sleep=sleep,
        )
        changes.append(f"created function {options.function_name} ({options.runtime}, {options.architecture})")
        wait_updated(lam, options.function_name, sleep=sleep)
        return str(answer["FunctionArn"])
    config = current["Configuration"]
    if (current.get("Tags") or {}).get(MANAGED_TAG) != "true":
        raise ResourceNotOursError.named("Lambda function", options.function_name)
    architecture = (config.get("Architectures") or ["x86_64"])[0]
    if config.get("CodeSha256") != code_sha256(package) or architecture != options.architecture:
        lam.update_function_code(FunctionName=options.function_name, ZipFile=package, Architectures=[options.architecture])
        changes.append(f"updated the code of {options.function_name}")
        wait_updated(lam, options.function_name, sleep=sleep)
    drift = config_drift(config, settings)
    if drift:
        retry_until_role_usable(
            lambda: lam.update_function_configuration(FunctionName=options.function_name, **settings), sleep=sleep
        )
        changes.append(f"updated the configuration of {options.function_name} ({', '.join(drift)})")
        wait_updated(lam, options.function_name, sleep=sleep)
    return str(config["FunctionArn"])


def config_drift(config: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    """The names of the settings whose value in ``config`` (GetFunctionConfiguration) differs."""
    drift = []
    for key, wanted in settings.items():
        have = config.get(key)
        if key == "Layers":
            have = [layer["Arn"] for layer in have or []]
        elif key == "Environment":
            have = {"Variables": (have or {}).get("Variables", {})}
        if have != wanted:
            drift.append(key)
    return drift


def ensure_async_config(lam: Any, options: DeployOptions, changes: list[str], *, sleep: Callable[[float], None]) -> None:
    """Turn off Lambda's own retries of failed async invocations, on ``$LATEST`` and on every
    ``m{memory}-t{timeout}`` alias already there (each qualifier has its own config; the
    aliases made later get theirs from ``ensure_alias``): the driver retries with a new
    attempt number itself, and the service's retries would only add duplicates."""
    qualifiers = {"$LATEST": float(options.timeout_s)}
    for page in lam.get_paginator("list_aliases").paginate(FunctionName=options.function_name):
        for alias in page.get("Aliases", []):
            timeout = alias_timeout(str(alias["Name"]))
            if timeout is not None:
                qualifiers[str(alias["Name"])] = timeout
    for qualifier, timeout in qualifiers.items():
        if ensure_no_async_retries(lam, options.function_name, qualifier, timeout, sleep=sleep):
            changes.append(
                f"turned off Lambda's automatic retries of {options.function_name}:{qualifier} "
                f"(the driver retries; events older than {max_event_age(timeout)} s are dropped)"
            )


def alias_timeout(name: str) -> float | None:
    """The timeout in an alias name made by ``alias_name`` (``m1024-t300`` -> 300), else None."""
    match = _ALIAS_RE.match(name)
    return float(match.group(1)) if match else None


def prune_layers(lam: Any, layer_name: str, keep_arn: str, changes: list[str]) -> None:
    """Delete the layer versions deploy published before ``keep_arn`` (the one in use).

    Function versions published with an older layer version keep working: Lambda keeps a
    copy of a deleted layer version while a function version uses it."""
    old = []
    for page in lam.get_paginator("list_layer_versions").paginate(LayerName=layer_name):
        for version in page.get("LayerVersions", []):
            ours = (version.get("Description") or "").startswith(LAYER_DESCRIPTION)
            if ours and version["LayerVersionArn"] != keep_arn:
                old.append(int(version["Version"]))
    for number in sorted(old):
        lam.delete_layer_version(LayerName=layer_name, VersionNumber=number)
    if old:
        changes.append(f"deleted {len(old)} old version(s) of layer {layer_name}: {', '.join(map(str, sorted(old)))}")


def ensure_log_group(logs: Any, options: DeployOptions, changes: list[str]) -> None:
    """Create the function's log group with a retention, so logs do not pile up forever."""
    groups = logs.describe_log_groups(logGroupNamePrefix=options.log_group).get("logGroups", [])
    group = next((g for g in groups if g["logGroupName"] == options.log_group), None)
    if group is None:
        logs.create_log_group(logGroupName=options.log_group, tags=options.tags())
        changes.append(f"created log group {options.log_group}")
    elif not log_group_is_ours(logs, options.log_group):
        return  # Lambda or the user made it: leave its settings alone
    if (group or {}).get("retentionInDays") != LOG_RETENTION_DAYS:
        logs.put_retention_policy(logGroupName=options.log_group, retentionInDays=LOG_RETENTION_DAYS)
        if group is not None:
            changes.append(f"set the retention of {options.log_group} to {LOG_RETENTION_DAYS} days")


def log_group_is_ours(logs: Any, name: str) -> bool:
    tags = logs.list_tags_log_group(logGroupName=name).get("tags", {})
    return bool(tags.get(MANAGED_TAG) == "true")


def delete_function(
    lam: Any, logs: Any, options: DeployOptions, removed: list[str], kept: list[str], *, dry_run: bool = False
) -> None:
    """Delete the function, its layer versions and its log group — each only if deploy made
    it. ``dry_run`` only lists what would go (read calls only)."""
    from botocore.exceptions import ClientError

    try:
        current = lam.get_function(FunctionName=options.function_name)
        if (current.get("Tags") or {}).get(MANAGED_TAG) == "true":
            removed.append(f"function {options.function_name}")
            if not dry_run:
                lam.delete_function(FunctionName=options.function_name)
        else:
            kept.append(f"function {options.function_name} (not created by lambdamr deploy)")
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
    try:
        for page in lam.get_paginator("list_layer_versions").paginate(LayerName=options.layer_name):
            for version in page.get("LayerVersions", []):
                if (version.get("Description") or "").startswith(LAYER_DESCRIPTION):
                    removed.append(f"layer {options.layer_name}:{version['Version']}")
                    if not dry_run:
                        lam.delete_layer_version(LayerName=options.layer_name, VersionNumber=version["Version"])
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
    groups = logs.describe_log_groups(logGroupNamePrefix=options.log_group).get("logGroups", [])
    if any(g["logGroupName"] == options.log_group for g in groups):
        if log_group_is_ours(logs, options.log_group):
            removed.append(f"log group {options.log_group}")
            if not dry_run:
                logs.delete_log_group(logGroupName=options.log_group)
        else:
            kept.append(f"log group {options.log_group} (not created by lambdamr deploy)")
