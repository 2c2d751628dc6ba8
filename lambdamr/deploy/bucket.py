"""The bucket: private, encrypted, TLS only, and a lifecycle rule as a safety net that
expires the temp prefix after a day (executors delete their objects themselves)."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from lambdamr.aws_errors import error_code
from lambdamr.deploy.contents import bucket_contents, list_objects, plural
from lambdamr.deploy.options import MANAGED_TAG, DeployOptions, partition_of
from lambdamr.driver.history import HistoryPolicy, history_listing, history_prefix, keys_to_prune
from lambdamr.driver.lease import keys_to_clean

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
        code = error_code(exc)
        if code in ("NoSuchTagSet", "NoSuchTagSetError"):
            return {}
        if code in ("NoSuchBucket", "404"):
            return None
        raise


@dataclass(frozen=True)
class BucketStep:
    """One write deploy makes to the bucket: what it does (as deploy reports it), the call,
    and the document it sets, if any (shown in full by ``deploy --plan``)."""

    change: str
    apply: Callable[[], Any]
    document: Any = None


def bucket_exists(s3: Any, bucket: str) -> bool:
    """Whether ``bucket`` exists (and is ours to use); read only.

    Raises:
        ConfigurationError: it exists in another account, or denies this principal.
    """
    from botocore.exceptions import ClientError

    from lambdamr.errors import ConfigurationError

    try:
        s3.head_bucket(Bucket=bucket)
        return True
    except ClientError as exc:
        code = error_code(exc)
        if code in ("403", "AccessDenied", "Forbidden"):
            raise ConfigurationError(
                f"bucket {bucket!r} exists but belongs to another account (or denies you); "
                "bucket names are global: choose another with --bucket"
            ) from exc
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise
        return False


def bucket_steps(s3: Any, bucket: str, options: DeployOptions, region: str) -> list[BucketStep] | None:
    """What deploy would do to the bucket, from read calls only; None for a bucket that
    exists without lambdamr's tag (used as it is: its settings are the owner's)."""
    steps: list[BucketStep] = []
    exists = bucket_exists(s3, bucket)
    if not exists:
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        tagging = {"TagSet": [{"Key": k, "Value": v} for k, v in options.tags().items()]}
        steps.append(BucketStep(f"created bucket {bucket}", lambda: s3.create_bucket(**kwargs), kwargs))
        steps.append(
            BucketStep(f"tagged bucket {bucket} {MANAGED_TAG}", lambda: s3.put_bucket_tagging(Bucket=bucket, Tagging=tagging))
        )
    elif (bucket_tags(s3, bucket) or {}).get(MANAGED_TAG) != "true":
        return None
    return steps + _settings_steps(s3, bucket, options, partition_of(region), exists=exists)


def ensure_bucket(s3: Any, bucket: str, options: DeployOptions, region: str, changes: list[str]) -> bool:
    """Create or configure the bucket; returns whether lambdamr manages it.

    A bucket that exists without lambdamr's tag is used as it is: its settings are the
    owner's, and teardown never deletes it.
    """
    steps = bucket_steps(s3, bucket, options, region)
    for step in steps or ():
        step.apply()
        changes.append(step.change)
    return steps is not None


def _get(call: Any, key: str, missing: tuple[str, ...], **kwargs: Any) -> Any:
    from botocore.exceptions import ClientError

    try:
        return call(**kwargs).get(key)
    except ClientError as exc:
        if error_code(exc) in missing:
            return None
        raise


def _settings_steps(s3: Any, bucket: str, options: DeployOptions, partition: str, *, exists: bool) -> list[BucketStep]:
    """The settings to write; a bucket still to be created has none yet (nothing is read)."""
    def read(call: Any, key: str, *missing: str) -> Any:
        return _get(call, key, missing, Bucket=bucket) if exists else None

    steps = []
    if read(s3.get_public_access_block, "PublicAccessBlockConfiguration", "NoSuchPublicAccessBlockConfiguration") != _BLOCK_ALL:
        steps.append(
            BucketStep(
                f"blocked public access to {bucket}",
                lambda: s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=_BLOCK_ALL),
                _BLOCK_ALL,
            )
        )
    rules = read(s3.get_bucket_encryption, "ServerSideEncryptionConfiguration", "ServerSideEncryptionConfigurationNotFoundError")
    algorithms = [r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in (rules or {}).get("Rules", [])]
    if not algorithms or not any(algorithms):
        steps.append(
            BucketStep(
                f"turned on default encryption of {bucket}",
                lambda: s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=_ENCRYPTION),
                _ENCRYPTION,
            )
        )
    policy = read(s3.get_bucket_policy, "Policy", "NoSuchBucketPolicy")
    wanted_policy = tls_only_policy(bucket, partition)
    if not options.require_tls:
        if policy is not None and json.loads(policy) == wanted_policy:
            steps.append(BucketStep(f"removed the TLS-only policy of {bucket}", lambda: s3.delete_bucket_policy(Bucket=bucket)))
    elif policy is None or json.loads(policy) != wanted_policy:
        steps.append(
            BucketStep(
                f"set the TLS-only policy of {bucket}",
                lambda: s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(wanted_policy)),
                wanted_policy,
            )
        )
    current = read(s3.get_bucket_lifecycle_configuration, "Rules", "NoSuchLifecycleConfiguration")
    wanted = lifecycle_rules(options.prefix)
    if not _same_rules(current or [], wanted):
        steps.append(
            BucketStep(
                f"set the lifecycle rule expiring {options.prefix}/ after {TEMP_EXPIRY_DAYS} day",
                lambda: s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": wanted}),
                {"Rules": wanted},
            )
        )
    return steps


def _same_rules(current: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> bool:
    def key(rule: dict[str, Any]) -> tuple[Any, ...]:
        prefix = (rule.get("Filter") or {}).get("Prefix", rule.get("Prefix"))
        return (rule.get("ID"), prefix, rule.get("Status"), (rule.get("Expiration") or {}).get("Days"))

    return sorted(map(key, current)) == sorted(map(key, wanted))


def delete_keys(s3: Any, bucket: str, prefix: str) -> int:
    """Delete every object under ``prefix``, live sessions included: for ``teardown``, which
    removes everything lambdamr made once the user has confirmed the list."""
    return _delete_batches(s3, bucket, [item["Key"] for item in list_objects(s3, bucket, prefix)])


def cleanable_objects(s3: Any, bucket: str, prefix: str, older_than_s: float = 0.0) -> list[tuple[str, int]]:
    """``(key, size)`` of the objects under ``prefix`` that no live driver owns (see
    ``lambdamr.driver.lease``), last modified ``older_than_s`` ago or more, and of the job
    history beside it (``{prefix}-history/``) what lies past its bounds
    (``HistoryPolicy.from_env()``, as an executor prunes it); read only."""
    listing = [
        (item["Key"], int(item.get("Size", 0)), item["LastModified"].timestamp()) for item in list_objects(s3, bucket, prefix)
    ]
    doomed = set(keys_to_clean(((key, modified) for key, _, modified in listing), prefix, older_than_s=older_than_s))
    cleanable = [(key, size) for key, size, _ in listing if key in doomed]
    base = prefix.rstrip("/")
    history = [
        (item["Key"], int(item.get("Size", 0)), item["LastModified"].timestamp())
        for item in list_objects(s3, bucket, history_prefix(base) + "/")
    ]
    past_bounds = set(keys_to_prune(history_listing(base, ((k, m) for k, _, m in history)), HistoryPolicy.from_env()))
    return cleanable + [(key, size) for key, size, _ in history if key in past_bounds]


def clean_keys(
    s3: Any, bucket: str, prefix: str, older_than_s: float = 0.0, *, only: Collection[str] | None = None
) -> int:
    """Delete the objects under ``prefix`` that no live driver owns: sessions whose lease is
    fresh keep everything, even while ``lambdamr clean`` runs. With ``only`` (the keys the
    user confirmed), a key is deleted only if it is in both: a session that came back to life
    since the listing is spared."""
    keys = [key for key, _ in cleanable_objects(s3, bucket, prefix, older_than_s) if only is None or key in only]
    return _delete_batches(s3, bucket, keys)


def _delete_batches(s3: Any, bucket: str, keys: list[str]) -> int:
    for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
        batch = [{"Key": key} for key in keys[start : start + 1000]]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
    return len(keys)


def delete_bucket(
    s3: Any,
    bucket: str,
    prefix: str,
    removed: list[str],
    kept: list[str],
    *,
    delete_user_objects: bool = False,
    dry_run: bool = False,
) -> None:
    """Delete lambdamr's objects (temp and deploy prefixes), then the bucket if deploy made
    it and it holds nothing else. Objects lambdamr did not write (``map_reduce`` output, a
    user's inputs) are kept, with the bucket, unless ``delete_user_objects`` — and never in a
    bucket deploy did not create. ``dry_run`` only lists (read calls only)."""
    tags = bucket_tags(s3, bucket)
    if tags is None:
        return
    contents = bucket_contents(s3, bucket, prefix)
    location = f"s3://{bucket}"
    for usage in contents.ours:
        removed.append(usage.describe(location))
        if not dry_run:
            delete_keys(s3, bucket, usage.prefix)
    if tags.get(MANAGED_TAG) != "true":
        kept.append(f"bucket {bucket} (not created by lambdamr deploy)")
        return
    users = contents.users
    if users and not delete_user_objects:
        kept.extend(f"{usage.describe(location)} (not written by lambdamr)" for usage in users)
        count = plural(sum(u.count for u in users), "object")
        kept.append(
            f"bucket {bucket} (it holds {count} lambdamr did not write; "
            "`lambdamr teardown --delete-user-objects` deletes those too, and then the bucket)"
        )
        return
    removed.extend(f"{usage.describe(location)} (not written by lambdamr; --delete-user-objects)" for usage in users)
    if users and not dry_run:
        delete_keys(s3, bucket, "")  # every object left: what was listed (and confirmed) above
    if not dry_run and s3.list_objects_v2(Bucket=bucket, MaxKeys=1).get("KeyCount", 0):
        kept.append(f"bucket {bucket} (objects were written to it during the teardown)")
        return
    removed.append(f"bucket {bucket}")
    if not dry_run:
        s3.delete_bucket(Bucket=bucket)
