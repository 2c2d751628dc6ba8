"""The function's execution role: trusted by Lambda only, allowed only what the runtime does.

The inline policy ``lambdamr-runtime`` holds these statements and nothing else (``P`` is the
region's partition — ``aws``, ``aws-cn`` or ``aws-us-gov`` — derived from the region):

* ``ReadObjects`` — ``s3:GetObject`` on ``arn:P:s3:::B/PREFIX*`` for each read grant (the
  temp prefix always among them). The runtime reads the pickled function, packed arguments
  (ranged GET), ``share()`` objects, shuffle intermediates (ranged GETs by reducers),
  ``objects()`` inputs (ranged GETs) and what tasks read with ``task_storage()``, and nothing else.
* ``WriteObjects`` — ``s3:PutObject`` and ``s3:AbortMultipartUpload`` on each write grant (the
  temp prefix always among them). The runtime writes result records and shuffle
  intermediates (write-once, ``If-None-Match``), ``map_reduce`` output parts and what tasks
  put with ``task_storage()`` (plain names under the temp prefix); a part over
  64 MiB goes up as a multipart upload (covered by ``s3:PutObject``), which boto3 aborts when
  it fails — hence ``s3:AbortMultipartUpload``, so that a failed upload leaves no parts.
* ``SigningKey`` — ``secretsmanager:GetSecretValue`` on exactly the deployment's secret: a
  container reads the signing key once (``lambdamr.runtime.key_source``). The secret uses the
  AWS managed key ``aws/secretsmanager``, so no ``kms:Decrypt`` is needed.
* ``OwnLogs`` — ``logs:CreateLogStream`` and ``logs:PutLogEvents`` on the function's own log
  group, which Lambda uses (with the role) to ship what the handler prints. Deploy creates
  the group itself (with a retention), so the role needs no ``logs:CreateLogGroup``.

Not granted, because the runtime never does it: ``s3:ListBucket`` (the driver lists results
and inputs with its own credentials; the runtime is told every key), ``s3:DeleteObject``
(the driver deletes temp objects at shutdown; the lifecycle rule expires what is left).
Without ``s3:ListBucket`` S3 answers a GET of a missing key with 403 rather than 404, which
the runtime reports as a storage permission error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from lambdamr.aws_errors import describe_failure, error_code
from lambdamr.backends.aws.grants import Grants
from lambdamr.deploy.options import DeployOptions, partition_of

POLICY_NAME = "lambdamr-runtime"
#: IAM's limit on a role's inline policies, in characters without whitespace
INLINE_POLICY_LIMIT = 10240

TRUST_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def s3_object_arn(location: str, partition: str) -> str:
    """``s3://B/prefix`` as the IAM resource of every object under it."""
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    return f"arn:{partition}:s3:::{bucket}/{prefix}*"


def runtime_policy(
    grants: Grants, *, region: str, account: str, log_group: str, secret_arn: str
) -> dict[str, Any]:
    """The least-privilege policy document of the runtime role."""
    partition = partition_of(region)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadObjects",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": [s3_object_arn(u, partition) for u in grants.read],
            },
            {
                "Sid": "WriteObjects",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
                "Resource": [s3_object_arn(u, partition) for u in grants.write],
            },
            {
                "Sid": "SigningKey",
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": secret_arn,
            },
            {
                "Sid": "OwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"arn:{partition}:logs:{region}:{account}:log-group:{log_group}:*",
            },
        ],
    }


def _document(value: Any) -> dict[str, Any]:
    # IAM returns documents URL-encoded (the raw API) or already decoded (boto3 does it).
    document: dict[str, Any] = json.loads(unquote(value)) if isinstance(value, str) else value
    return document


def checked_runtime_policy(
    options: DeployOptions, grants: Grants, secret_arn: str, region: str, account: str
) -> dict[str, Any]:
    """``runtime_policy``, refused when it is over IAM's size limit for inline policies."""
    from lambdamr.errors import ConfigurationError

    policy = runtime_policy(grants, region=region, account=account, log_group=options.log_group, secret_arn=secret_arn)
    if len(json.dumps(policy, separators=(",", ":"))) > INLINE_POLICY_LIMIT:
        raise ConfigurationError(
            f"the role's policy would exceed IAM's {INLINE_POLICY_LIMIT}-character limit with "
            f"{len(grants.read)} read and {len(grants.write)} write grants: grant common parent prefixes "
            "instead, and drop old ones with --revoke"
        )
    return policy


def existing_role(iam: Any, role_name: str) -> dict[str, Any] | None:
    """The role deploy made (``Arn``, ``RoleId``...), None when there is none; read only.

    Raises:
        ResourceNotOursError: a role of that name exists without lambdamr's tag.
    """
    from botocore.exceptions import ClientError

    from lambdamr.errors import ResourceNotOursError

    try:
        role = iam.get_role(RoleName=role_name)["Role"]
    except ClientError as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        return None
    tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=role_name).get("Tags", [])}
    if tags.get("lambdamr:managed") != "true":
        raise ResourceNotOursError.named("IAM role", role_name)
    return dict(role)


def current_policy(iam: Any, role_name: str) -> dict[str, Any] | None:
    """The role's inline ``lambdamr-runtime`` policy as attached now, None when it has none."""
    from botocore.exceptions import ClientError

    try:
        return _document(iam.get_role_policy(RoleName=role_name, PolicyName=POLICY_NAME)["PolicyDocument"])
    except ClientError as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        return None


def ensure_role(
    iam: Any, options: DeployOptions, grants: Grants, secret_arn: str, region: str, account: str, changes: list[str]
) -> dict[str, Any]:
    """Create or update the role and its inline policy; return the role (``Arn``, ``RoleId``)."""
    policy = checked_runtime_policy(options, grants, secret_arn, region, account)
    role = existing_role(iam, options.role_name)
    if role is None:
        role = iam.create_role(
            RoleName=options.role_name,
            AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
            Description=f"Execution role of the lambdamr function {options.function_name}",
            Tags=[{"Key": k, "Value": v} for k, v in options.tags().items()],
        )["Role"]
        changes.append(f"created IAM role {options.role_name}")
    current = current_policy(iam, options.role_name)
    if current != policy:
        iam.put_role_policy(RoleName=options.role_name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(policy))
        changes.append(f"{'updated' if current else 'attached'} the runtime policy of {options.role_name}")
    return dict(role)


def delete_role(iam: Any, role_name: str, removed: list[str], *, dry_run: bool = False) -> None:
    """Delete the role (and its inline policies) if deploy made it (``dry_run``: only list it)."""
    from botocore.exceptions import ClientError

    try:
        tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=role_name).get("Tags", [])}
    except ClientError as exc:
        if error_code(exc) == "NoSuchEntity":
            return
        raise
    if tags.get("lambdamr:managed") != "true":
        return
    removed.append(f"IAM role {role_name}")
    if dry_run:
        return
    for name in iam.list_role_policies(RoleName=role_name).get("PolicyNames", []):
        iam.delete_role_policy(RoleName=role_name, PolicyName=name)
    iam.delete_role(RoleName=role_name)


def retry_until_role_usable(
    call: Callable[[], Any], *, timeout_s: float = 90.0, sleep: Callable[[float], None] = time.sleep
) -> Any:
    """Run ``call``, retrying while Lambda cannot assume a just-created role yet (IAM is
    eventually consistent: a new role takes seconds to be usable)."""
    from botocore.exceptions import ClientError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except ClientError as exc:
            failure = describe_failure(exc)
            if failure.code != "InvalidParameterValueException" or "role" not in failure.message.lower():
                raise
            if time.monotonic() > deadline:
                raise
            sleep(2.0)
