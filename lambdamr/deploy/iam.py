"""The function's execution role: trusted by Lambda only, allowed only what the runtime does.

The inline policy grants, and nothing else:

* ``s3:GetObject``, ``s3:PutObject``, ``s3:DeleteObject`` on ``arn:aws:s3:::BUCKET/PREFIX/*``;
* ``s3:ListBucket`` on the bucket, conditioned on ``s3:prefix`` being under ``PREFIX/``;
* ``logs:CreateLogStream`` and ``logs:PutLogEvents`` on the function's own log group.

The log group itself is created by deploy (with a retention), so the role needs no
``logs:CreateLogGroup``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from .options import DeployOptions

POLICY_NAME = "lambdamr-runtime"

TRUST_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def runtime_policy(bucket: str, prefix: str, region: str, account: str, log_group: str) -> dict[str, Any]:
    """The least-privilege policy document of the runtime role."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "TaskObjects",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": f"arn:aws:s3:::{bucket}/{prefix}/*",
            },
            {
                "Sid": "ListTaskObjects",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{bucket}",
                "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*"]}},
            },
            {
                "Sid": "OwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"arn:aws:logs:{region}:{account}:log-group:{log_group}:*",
            },
        ],
    }


def _document(value: Any) -> dict[str, Any]:
    # IAM returns documents URL-encoded (the raw API) or already decoded (boto3 does it).
    return json.loads(unquote(value)) if isinstance(value, str) else value


def ensure_role(iam: Any, options: DeployOptions, bucket: str, region: str, account: str, changes: list[str]) -> str:
    """Create or update the role and its inline policy; return the role ARN."""
    from botocore.exceptions import ClientError

    from .errors import not_ours

    policy = runtime_policy(bucket, options.prefix, region, account, options.log_group)
    try:
        role = iam.get_role(RoleName=options.role_name)["Role"]
        tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=options.role_name).get("Tags", [])}
        if tags.get("lambdamr:managed") != "true":
            raise not_ours("IAM role", options.role_name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchEntity":
            raise
        role = iam.create_role(
            RoleName=options.role_name,
            AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
            Description=f"Execution role of the lambdamr function {options.function_name}",
            Tags=[{"Key": k, "Value": v} for k, v in options.tags().items()],
        )["Role"]
        changes.append(f"created IAM role {options.role_name}")
    try:
        current = _document(iam.get_role_policy(RoleName=options.role_name, PolicyName=POLICY_NAME)["PolicyDocument"])
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchEntity":
            raise
        current = None
    if current != policy:
        iam.put_role_policy(RoleName=options.role_name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(policy))
        changes.append(f"{'updated' if current else 'attached'} the runtime policy of {options.role_name}")
    return str(role["Arn"])


def delete_role(iam: Any, role_name: str, removed: list[str]) -> None:
    """Delete the role (and its inline policies) if deploy made it."""
    from botocore.exceptions import ClientError

    try:
        tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=role_name).get("Tags", [])}
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchEntity":
            return
        raise
    if tags.get("lambdamr:managed") != "true":
        return
    for name in iam.list_role_policies(RoleName=role_name).get("PolicyNames", []):
        iam.delete_role_policy(RoleName=role_name, PolicyName=name)
    iam.delete_role(RoleName=role_name)
    removed.append(f"IAM role {role_name}")


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
            message = exc.response["Error"].get("Message", "")
            if exc.response["Error"]["Code"] != "InvalidParameterValueException" or "role" not in message.lower():
                raise
            if time.monotonic() > deadline:
                raise
            sleep(2.0)
