"""The signing key's secret: created by deploy, rotated on request, removed by teardown.

Why AWS Secrets Manager rather than an SSM SecureString parameter: a secret is encrypted
with KMS by default (the AWS managed key ``aws/secretsmanager``, so neither the role nor the
driver needs ``kms:Decrypt``), carries a resource policy (so that only the execution role and
the deploying principals may read it, whatever broad ``secretsmanager:*`` grants others
have), keeps the previous key as ``AWSPREVIOUS`` through a rotation, can be tagged
``lambdamr:managed`` at creation, and deletes with a recovery window. It costs $0.40 a month
and one GetSecretValue per cold start; SecureString parameters have no resource policy.

Teardown schedules the secret's deletion with Secrets Manager's shortest recovery window
(7 days) rather than deleting it at once: a teardown by mistake can be undone with
``aws secretsmanager restore-secret`` (and a redeploy under the same name restores it), and
durable results signed with the key stay verifiable for that week. ``teardown
--delete-key-now`` deletes it without recovery.

The function's environment holds only the secret's ARN and the key's version id; the
deployment's older plaintext ``LAMBDAMR_SIGNING_KEY`` is moved into the secret on redeploy,
and every published version that still carries it is deleted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lambdamr.aws_errors import error_code
from lambdamr.backends.aws.function import ENV_SIGNING_KEY
from lambdamr.deploy.options import MANAGED_TAG, DeployOptions
from lambdamr.errors import ResourceNotOursError
from lambdamr.signing import new_key_hex

#: Secrets Manager's shortest recovery window
RECOVERY_WINDOW_DAYS = 7
POLICY_SID = "OnlyLambdamrReadsTheKey"


@dataclass(frozen=True)
class SecretRef:
    """Where the key is: the secret's ARN and the version id of the current key."""

    arn: str
    version_id: str


def current_key_version(description: dict[str, Any]) -> str:
    for version, stages in (description.get("VersionIdsToStages") or {}).items():
        if "AWSCURRENT" in stages:
            return str(version)
    raise LookupError(f"the secret {description.get('ARN')} has no AWSCURRENT version")


def describe_secret(sm: Any, name: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        return dict(sm.describe_secret(SecretId=name))
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise


def is_ours(description: dict[str, Any]) -> bool:
    return any(t.get("Key") == MANAGED_TAG and t.get("Value") == "true" for t in description.get("Tags") or [])


def ensure_secret(sm: Any, options: DeployOptions, *, plaintext_key: str | None, changes: list[str]) -> SecretRef:
    """The deployment's secret, created (holding ``plaintext_key`` when a deployment from
    before the secret store is migrated, else a fresh key) or restored if teardown had
    scheduled its deletion."""
    name = options.secret_name
    description = describe_secret(sm, name)
    if description is None:
        sm.create_secret(
            Name=name,
            Description=f"Signing key of the lambdamr function {options.function_name} (HMAC of every pickled payload)",
            SecretString=plaintext_key or new_key_hex(),
            Tags=[{"Key": k, "Value": v} for k, v in options.tags().items()],
        )
        changes.append(
            f"moved the signing key into Secrets Manager secret {name} (it was readable in the function's "
            "configuration: run `lambdamr rotate-key` to replace it)"
            if plaintext_key
            else f"created Secrets Manager secret {name} holding a new signing key"
        )
        description = describe_secret(sm, name) or {}
    elif not is_ours(description):
        raise ResourceNotOursError.named("Secrets Manager secret", name)
    elif description.get("DeletedDate"):
        sm.restore_secret(SecretId=name)
        changes.append(f"restored Secrets Manager secret {name} (teardown had scheduled its deletion)")
        description = describe_secret(sm, name) or {}
    return SecretRef(str(description["ARN"]), current_key_version(description))


def principal_id(caller: dict[str, Any]) -> str:
    """The ``aws:userid`` pattern of the deploying principal (GetCallerIdentity's answer):
    an IAM user's id, the account for root, or every session of an assumed role."""
    user_id = str(caller["UserId"])
    role_id, sep, _session = user_id.partition(":")
    return f"{role_id}:*" if sep else user_id


def secret_policy(readers: list[str]) -> dict[str, Any]:
    """Deny reading the key to every principal whose ``aws:userid`` is not among ``readers``
    (unique ids, which survive a role's path and cannot be reused by a new role of the same
    name; no Principal element, so a just-created role needs no propagation delay)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": POLICY_SID,
                "Effect": "Deny",
                "Principal": "*",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": "*",
                "Condition": {"StringNotLike": {"aws:userid": sorted(set(readers))}},
            }
        ],
    }


def ensure_secret_policy(sm: Any, secret: SecretRef, *, role_id: str, caller: dict[str, Any], changes: list[str]) -> None:
    """Let the execution role and every principal that deployed read the key, no one else.

    Whoever can deploy can already read the key (by deploying code that prints it), so each
    deploying principal is added and none is removed."""
    current = sm.get_resource_policy(SecretId=secret.arn).get("ResourcePolicy")
    wanted = wanted_secret_policy(current, role_id=role_id, caller=caller)
    if not current or json.loads(current) != wanted:
        sm.put_resource_policy(SecretId=secret.arn, ResourcePolicy=json.dumps(wanted), BlockPublicPolicy=True)
        changes.append(secret_policy_change(wanted))


def wanted_secret_policy(current: str | None, *, role_id: str, caller: dict[str, Any]) -> dict[str, Any]:
    """The resource policy the secret should have, given the one it has (``current``, JSON
    or None): the role and this caller added to the readers already named."""
    readers = [f"{role_id}:*", principal_id(caller)]
    if current:
        for statement in json.loads(current).get("Statement", []):
            if statement.get("Sid") == POLICY_SID:
                known = statement.get("Condition", {}).get("StringNotLike", {}).get("aws:userid", [])
                readers += [known] if isinstance(known, str) else list(known)
    return secret_policy(readers)


def secret_policy_change(policy: dict[str, Any]) -> str:
    """How deploy reports setting ``policy`` on the secret."""
    readers = policy["Statement"][0]["Condition"]["StringNotLike"]["aws:userid"]
    return f"limited who may read the signing key to the role and {len(readers) - 1} deploying principal(s)"


def remove_plaintext_versions(lam: Any, function_name: str, changes: list[str]) -> None:
    """Delete every published version whose environment still holds the plaintext key (and
    the aliases pointing at them: drivers re-publish an alias when they need it)."""
    versions = []
    for page in lam.get_paginator("list_versions_by_function").paginate(FunctionName=function_name):
        for cfg in page.get("Versions", []):
            variables = (cfg.get("Environment") or {}).get("Variables") or {}
            if cfg.get("Version") != "$LATEST" and ENV_SIGNING_KEY in variables:
                versions.append(str(cfg["Version"]))
    if not versions:
        return
    for alias in lam.list_aliases(FunctionName=function_name).get("Aliases", []):
        if str(alias.get("FunctionVersion")) in versions:
            lam.delete_alias(FunctionName=function_name, Name=alias["Name"])
    for version in versions:
        lam.delete_function(FunctionName=function_name, Qualifier=version)
    changes.append(f"deleted {len(versions)} published version(s) of {function_name} that held the plaintext signing key")


def put_new_key(sm: Any, secret_arn: str) -> SecretRef:
    """Store a fresh key as the secret's current version (the old one stays AWSPREVIOUS)."""
    answer = sm.put_secret_value(SecretId=secret_arn, SecretString=new_key_hex())
    return SecretRef(secret_arn, str(answer["VersionId"]))


def delete_secret(
    sm: Any, options: DeployOptions, removed: list[str], kept: list[str], *, now: bool = False, dry_run: bool = False
) -> None:
    """Delete the deployment's secret if deploy made it: after the recovery window, or
    ``now`` (``dry_run``: only list it)."""
    description = describe_secret(sm, options.secret_name)
    if description is None or (description.get("DeletedDate") and not now):
        return
    if not is_ours(description):
        kept.append(f"Secrets Manager secret {options.secret_name} (not created by lambdamr deploy)")
        return
    if now:
        removed.append(f"Secrets Manager secret {options.secret_name} (deleted without recovery)")
        if not dry_run:
            sm.delete_secret(SecretId=description["ARN"], ForceDeleteWithoutRecovery=True)
    else:
        removed.append(f"Secrets Manager secret {options.secret_name} (deleted in {RECOVERY_WINDOW_DAYS} days unless restored)")
        if not dry_run:
            sm.delete_secret(SecretId=description["ARN"], RecoveryWindowInDays=RECOVERY_WINDOW_DAYS)
