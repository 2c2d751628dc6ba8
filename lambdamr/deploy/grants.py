"""The deployment's S3 grants: what the last deploy recorded, plus this deploy's ``--read``
and ``--write``, less its ``--revoke``.

Grants accumulate across deploys, like the signing key: a redeploy to upgrade lambdamr or
add a package must not silently cut jobs off their inputs, and the command the driver
suggests for a missing grant (``lambdamr deploy --read s3://...``) only has to name what is
new. ``--revoke`` removes a grant; ``lambdamr status`` lists them all.
"""

from __future__ import annotations

from typing import Any

from lambdamr.aws_errors import error_code
from lambdamr.backends.aws.grants import Grants
from lambdamr.deploy.options import DeployOptions


def deployed_variables(lam: Any, function_name: str) -> dict[str, str]:
    """The environment of the deployed function's ``$LATEST``; empty when nothing is deployed."""
    from botocore.exceptions import ClientError

    try:
        cfg = lam.get_function_configuration(FunctionName=function_name)
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        return {}
    return dict((cfg.get("Environment") or {}).get("Variables") or {})


def deployment_grants(recorded: str | None, options: DeployOptions, bucket: str) -> Grants:
    """The grants this deploy gives the role. A temp prefix that moved (another bucket or
    ``--prefix``) stops being granted."""
    temp = Grants.build(f"s3://{bucket}/{options.prefix}/").temp
    if not recorded:
        return Grants.build(temp, options.reads, options.writes)
    before = Grants.parse(recorded)
    gone = set(options.revoke) | ({before.temp} if before.temp != temp else set())
    return Grants.build(
        temp,
        [*(u for u in before.read if u not in gone), *options.reads],
        [*(u for u in before.write if u not in gone), *options.writes],
    )
