"""What a deployment costs while no job runs: Lambda code storage, the bucket, the secret and
the log group, at public list prices.

Prices are us-east-1 list prices, recorded 2026-12-01 from the pages named beside each (not
fetched at run time: deploy --plan works offline of the pricing API):

* S3 Standard storage, first 50 TB a month: $0.023 per GB-month — https://aws.amazon.com/s3/pricing/
* Secrets Manager: $0.40 per secret a month (and $0.05 per 10,000 API calls: one
  GetSecretValue per cold start) — https://aws.amazon.com/secrets-manager/pricing/
* CloudWatch Logs storage ("archived"): $0.03 per GB-month —
  https://aws.amazon.com/cloudwatch/pricing/
* Lambda code storage (function versions and layers): free, but capped at 75 GB per region
  (a quota that can be raised) — https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
"""

from __future__ import annotations

from dataclasses import dataclass

from lambdamr.deploy.options import LOG_RETENTION_DAYS

S3_USD_PER_GB_MONTH = 0.023
SECRET_USD_PER_MONTH = 0.40
LOGS_USD_PER_GB_MONTH = 0.03
LAMBDA_CODE_STORAGE_QUOTA = 75 * 2**30
PRICES_SOURCE = "us-east-1 list prices recorded 2026-12-01, see lambdamr/deploy/at_rest.py"
_GB = 2**30


@dataclass(frozen=True)
class AtRest:
    """One thing the deployment keeps, its size, and what it costs a month."""

    what: str
    size: int
    usd_per_month: float
    note: str


def at_rest(
    *,
    function_code: int,
    layer: int | None,
    bucket: str,
    bucket_bytes: int,
    bucket_complete: bool = True,
    log_group: str,
    log_bytes: int,
) -> list[AtRest]:
    """The deployment's standing costs; ``layer`` is None while the layer is still to be built.

    Args:
        function_code: bytes of the function package, times the copies Lambda keeps
            ($LATEST and each published version).
        bucket_complete: False when ``bucket_bytes`` counts only the first objects listed.
    """
    code = "function code" + (" and layer" if layer is not None else " (the layer's size is known after the build)")
    quota = f"free; counts against Lambda's {LAMBDA_CODE_STORAGE_QUOTA // _GB} GB code storage quota per region"
    return [
        AtRest(code, function_code + (layer or 0), 0.0, quota),
        AtRest(
            f"bucket {bucket}, as it is now" + ("" if bucket_complete else " (at least: only its first objects were listed)"),
            bucket_bytes,
            bucket_bytes / _GB * S3_USD_PER_GB_MONTH,
            f"S3 Standard at ${S3_USD_PER_GB_MONTH}/GB-month; temp objects expire after a day",
        ),
        AtRest("signing key secret", 0, SECRET_USD_PER_MONTH, f"${SECRET_USD_PER_MONTH:.2f} per secret a month"),
        AtRest(
            f"log group {log_group}",
            log_bytes,
            log_bytes / _GB * LOGS_USD_PER_GB_MONTH,
            f"${LOGS_USD_PER_GB_MONTH}/GB-month, kept {LOG_RETENTION_DAYS} days",
        ),
    ]
