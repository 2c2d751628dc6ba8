"""Which AWS region the driver and ``lambdamr deploy`` use: one rule for both.

An explicit region wins; then ``AWS_REGION`` (what the AWS SDKs and Lambda itself set), then
``AWS_DEFAULT_REGION`` (what boto3 alone reads), then the profile's ``region`` in
``~/.aws/config``. boto3 by itself skips ``AWS_REGION``, so a deploy and a driver left to
boto3 could pick different regions; both go through this module instead.
"""

from __future__ import annotations

import os
from typing import Any


def region_from_environment() -> str | None:
    """``AWS_REGION``, else ``AWS_DEFAULT_REGION``, else ``None`` (no boto3 needed)."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def resolve_region(explicit: str | None = None, session: Any = None) -> str | None:
    """The region to use: ``explicit``, the environment, then the profile of ``session``
    (a ``boto3.session.Session``; a new default one when ``None``). ``None`` when none is set."""
    if explicit:
        return explicit
    found = region_from_environment()
    if found:
        return found
    if session is None:
        import boto3

        session = boto3.session.Session()
    return session.region_name or None
