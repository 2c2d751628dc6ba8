"""The bucket: private, encrypted, TLS only, and a lifecycle rule as a safety net that
expires the temp prefix after a day (executors delete their objects themselves)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from ..lease import keys_to_clean
from .options import DEPLOY_PREFIX, MANAGED_TAG, DeployOptions, partition_of

TEMP_EXPIRY_DAYS = 1
_BLOCK_ALL = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
_ENCRYPTION = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": True}]}


def tls_only_policy(bucket: str, partition: str = "aws") -> dict[str, Any]:
    """Deny every request to the bucket that does not use TLS (``partition`` of the region's
    ARNs: ``aws``, ``aws-cn``, ``aws-us-gov``)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:{partition}:s3:::{bucket}", f"arn:{partition}:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def lifecycle_rules(prefix: str) -> list[dict[str, Any]]:
    """Expire temp objects after a day; abort stuck multipart uploads after a day."""
    return [
        {
            "ID": "lambdamr-expire-temp",
            "Filter": {"Prefix": f"{prefix}/"},
            "Status": "Enabled",
            "Expiration": {"Days": TEMP_EXPIRY_DAYS},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": TEMP_EXPIRY_DAYS},
        }
    ]


def bucket_tags(s3: Any, bucket: str) -> dict[str, str] | None:
    """The bucket's tags, ``{}`` when it has none, None when it does not exist."""
    from botocore.exceptions import ClientError

    try:
        return {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket).get("TagSet", [])}
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code in ("NoSuchTagSet", "NoSuchTagSetError"):
            return {}
        if code in ("NoSuchBucket", "404"):
            return None
        raise


def ensure_bucket(s3: Any, bucket: str, options: DeployOptions, region: str, changes: list[str]) -> bool:
    """Create or configure the bucket; returns whether lambdamr manages it.

    A bucket that exists without lambdamr's tag is used as it is: its settings are the
    owner's, and teardown never deletes it.
    """
    from botocore.exceptions import ClientError

    from ..errors import ConfigurationError

    try:
        s3.head_bucket(Bucket=bucket)
        exists = True
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code in ("403", "AccessDenied", "Forbidden"):
            raise ConfigurationError(
                f"bucket {bucket!r} exists but belongs to another account (or denies you); "
                "bucket names are global: choose another with --bucket"
            ) from exc
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise
        exists = False
    if not exists:
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**kwargs)
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in options.tags().items()]})
        changes.append(f"created bucket {bucket}")
    elif (bucket_tags(s3, bucket) or {}).get(MANAGED_TAG) != "true":
        return False
    _ensure_settings(s3, bucket, options, partition_of(region), changes)
    return True


def _get(call: Any, key: str, missing: tuple[str, ...], **kwargs: Any) -> Any:
    from botocore.exceptions import ClientError

    try:
        return call(**kwargs).get(key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in missing:
            return None
        raise


def _ensure_settings(s3: Any, bucket: str, options: DeployOptions, partition: str, changes: list[str]) -> None:
    block = _get(
        s3.get_public_access_block, "PublicAccessBlockConfiguration", ("NoSuchPublicAccessBlockConfiguration",), Bucket=bucket
    )
    if block != _BLOCK_ALL:
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=_BLOCK_ALL)
        changes.append(f"blocked public access to {bucket}")
    rules = _get(
        s3.get_bucket_encryption,
        "ServerSideEncryptionConfiguration",
        ("ServerSideEncryptionConfigurationNotFoundError",),
        Bucket=bucket,
    )
    algorithms = [r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in (rules or {}).get("Rules", [])]
    if not algorithms or not any(algorithms):
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=_ENCRYPTION)
        changes.append(f"turned on default encryption of {bucket}")
    policy = _get(s3.get_bucket_policy, "Policy", ("NoSuchBucketPolicy",), Bucket=bucket)
    if not options.require_tls:
        if policy is not None and json.loads(policy) == tls_only_policy(bucket, partition):
            s3.delete_bucket_policy(Bucket=bucket)
            changes.append(f"removed the TLS-only policy of {bucket}")
    elif policy is None or json.loads(policy) != tls_only_policy(bucket, partition):
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(tls_only_policy(bucket, partition)))
        changes.append(f"set the TLS-only policy of {bucket}")
    current = _get(s3.get_bucket_lifecycle_configuration, "Rules", ("NoSuchLifecycleConfiguration",), Bucket=bucket)
    wanted = lifecycle_rules(options.prefix)
    if not _same_rules(current or [], wanted):
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": wanted})
        changes.append(f"set the lifecycle rule expiring {options.prefix}/ after {TEMP_EXPIRY_DAYS} day")


def _same_rules(current: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> bool:
    def key(rule: dict[str, Any]) -> tuple[Any, ...]:
        prefix = (rule.get("Filter") or {}).get("Prefix", rule.get("Prefix"))
        return (rule.get("ID"), prefix, rule.get("Status"), (rule.get("Expiration") or {}).get("Days"))

    return sorted(map(key, current)) == sorted(map(key, wanted))


def delete_keys(s3: Any, bucket: str, prefix: str, older_than_s: float = 0.0) -> int:
    """Delete every object under ``prefix`` (last modified more than ``older_than_s`` ago),
    live sessions included: for ``teardown``, which removes everything lambdamr made."""
    cutoff = time.time() - older_than_s
    keys = [
        item["Key"]
        for item in _listing(s3, bucket, prefix)
        if not (older_than_s and item["LastModified"].timestamp() > cutoff)
    ]
    return _delete_batches(s3, bucket, keys)


def clean_keys(s3: Any, bucket: str, prefix: str, older_than_s: float = 0.0) -> int:
    """Delete the objects under ``prefix`` that no live driver owns (see ``lambdamr.lease``):
    sessions whose lease is fresh keep everything, even while ``lambdamr clean`` runs."""
    entries = [(item["Key"], item["LastModified"].timestamp()) for item in _listing(s3, bucket, prefix)]
    return _delete_batches(s3, bucket, keys_to_clean(entries, prefix, older_than_s=older_than_s))


def _listing(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def _delete_batches(s3: Any, bucket: str, keys: list[str]) -> int:
    for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
        batch = [{"Key": key} for key in keys[start : start + 1000]]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
    return len(keys)


def delete_bucket(s3: Any, bucket: str, prefix: str, removed: list[str], kept: list[str]) -> None:
    """Delete lambdamr's keys, then the bucket if lambdamr made it and nothing else is in it."""
    tags = bucket_tags(s3, bucket)
    if tags is None:
        return
    count = delete_keys(s3, bucket, f"{prefix}/") + delete_keys(s3, bucket, f"{DEPLOY_PREFIX}/")
    if count:
        removed.append(f"{count} objects under s3://{bucket}/{prefix}/")
    if tags.get(MANAGED_TAG) != "true":
        kept.append(f"bucket {bucket} (not created by lambdamr deploy)")
        return
    if s3.list_objects_v2(Bucket=bucket, MaxKeys=1).get("KeyCount", 0):
        kept.append(f"bucket {bucket} (it holds objects lambdamr did not write)")
        return
    s3.delete_bucket(Bucket=bucket)
    removed.append(f"bucket {bucket}")
