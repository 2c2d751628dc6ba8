"""Where the deployed function's signing key comes from: AWS Secrets Manager.

``lambdamr deploy`` keeps the key in one secret (KMS-encrypted, tagged ``lambdamr:managed``)
and puts only the secret's ARN and the key's version id in the function's environment::

    LAMBDAMR_SIGNING_KEY_SECRET   arn:aws:secretsmanager:REGION:ACCOUNT:secret:lambdamr/FN/signing-key-AbCdEf
    LAMBDAMR_SIGNING_KEY_VERSION  the secret version the function's code was published with

A container reads the key once (``lambdamr.signing.process_key`` caches it for the process)
and the driver reads it the same way. The version id pins each published function version
to the key it was published with: after ``lambdamr rotate-key`` a warm container of an older
version can never mix keys, and the driver re-publishes the versions it invokes.

The key's value never appears in a message, a log line or an exception: errors name the
secret and the permission, and botocore's own errors never carry a secret's value.
"""

from __future__ import annotations

import os
from typing import Any

from lambdamr.aws_errors import translate
from lambdamr.errors import ConfigurationError

ENV_SECRET = "LAMBDAMR_SIGNING_KEY_SECRET"
ENV_KEY_VERSION = "LAMBDAMR_SIGNING_KEY_VERSION"


def fetch_key_hex(secret_id: str, version_id: str | None = None, *, region: str | None = None, client: Any = None) -> str:
    """The hex key stored in ``secret_id`` (at ``version_id`` when given).

    Raises:
        ConfigurationError: the secret cannot be read (permission, missing, network), naming
            the secret but never its value.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    if client is None:
        import boto3

        client = boto3.session.Session().client("secretsmanager", region_name=_arn_region(secret_id) or region)
    kwargs = {"SecretId": secret_id}
    if version_id:
        kwargs["VersionId"] = version_id
    try:
        value = client.get_secret_value(**kwargs).get("SecretString")
    except (ClientError, BotoCoreError) as exc:  # from None: the key's secret stays out of tracebacks
        raise translate(exc, "secrets", f"cannot read the signing key from Secrets Manager secret {secret_id}") from None
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"the secret {secret_id} holds no signing key; run `lambdamr rotate-key` to set one")
    return value


def _arn_region(secret_id: str) -> str | None:
    parts = secret_id.split(":")
    return parts[3] if secret_id.startswith("arn:") and len(parts) > 3 and parts[3] else None


def key_from_environment() -> str | None:
    """The hex key named by this process's environment (a Lambda container's), or None when
    the environment names no secret."""
    secret = os.environ.get(ENV_SECRET)
    if not secret:
        return None
    return fetch_key_hex(secret, os.environ.get(ENV_KEY_VERSION) or None, region=os.environ.get("AWS_REGION"))


__all__ = ["ENV_KEY_VERSION", "ENV_SECRET", "fetch_key_hex", "key_from_environment"]
