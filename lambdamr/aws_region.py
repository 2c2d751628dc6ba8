"""Which AWS region a lambdamr command talks to — one order for the driver and for deploy.

botocore reads only ``AWS_DEFAULT_REGION`` and the profile's ``region``; the Lambda runtime,
the AWS CLI v2 and most SDKs read ``AWS_REGION`` first. lambdamr follows the SDKs, so the
driver and ``lambdamr deploy`` / ``status`` / ``teardown`` always agree:

1. the region passed explicitly (``region=...``, ``--region``);
2. ``AWS_REGION``;
3. ``AWS_DEFAULT_REGION``;
4. the ``region`` of the active profile (``AWS_PROFILE``, ``~/.aws/config``).
"""

from __future__ import annotations

import os
from typing import Any

from lambdamr.errors import ConfigurationError

REGION_ENV_VARS = ("AWS_REGION", "AWS_DEFAULT_REGION")

HOW_TO_SET_REGION = (
    "pass region='us-east-1' (or --region on the command line), set AWS_REGION or "
    "AWS_DEFAULT_REGION, or give the profile a region (`aws configure set region us-east-1`, "
    "with AWS_PROFILE naming the profile)"
)


def region_from_environment() -> str | None:
    """``AWS_REGION``, else ``AWS_DEFAULT_REGION``, else ``None`` (no boto3 needed: the
    executor's configuration reads it, and that runs remotely too)."""
    for name in REGION_ENV_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def resolve_region(explicit: str | None = None, session: Any = None) -> str | None:
    """The region to use, in lambdamr's order (see the module docstring); None if unset.

    Args:
        explicit: the region the caller passed (None or "" when not given).
        session: a ``boto3.session.Session`` whose profile's region is the last resort
            (default: a new session, which reads ``AWS_PROFILE`` and ``~/.aws/config``).

    Raises:
        ConfigurationError: ``AWS_PROFILE`` names a profile that does not exist.
    """
    if explicit:
        return explicit
    found = region_from_environment()
    if found:
        return found
    if session is None:
        import boto3
        from botocore.exceptions import ProfileNotFound

        try:
            session = boto3.session.Session()
        except ProfileNotFound as exc:
            raise ConfigurationError(
                f"{exc}: AWS_PROFILE={os.environ.get('AWS_PROFILE', '')!r} names no profile in the AWS "
                "config files; create it (`aws configure --profile NAME`) or unset AWS_PROFILE"
            ) from exc
    return session.region_name or None


def require_region(explicit: str | None, session: Any = None, *, what: str = "using AWS Lambda") -> str:
    """``resolve_region``, or a ``ConfigurationError`` saying how to set one."""
    region = resolve_region(explicit, session)
    if not region:
        raise ConfigurationError(f"{what}: no AWS region is set; {HOW_TO_SET_REGION}")
    return region


__all__ = ["HOW_TO_SET_REGION", "REGION_ENV_VARS", "region_from_environment", "require_region", "resolve_region"]
