"""The AWS half of ``benchmarks/chaos.py`` (run it alone or through ``chaos.py --path aws``):
the real AWS backend (boto3-signed Invoke requests) against the loopback Lambda stand-in (``lambdamr.testing.lambda_service``: the
deployed package and real layer under awslambdaric, the role's own credentials), with S3 on
a moto server that enforces IAM.

Injected: throttled Invoke requests (429 TooManyRequestsException), lost invocations
(accepted, never run), duplicate deliveries, containers killed past their timeout, and 503s on
the driver's result reads. Lost and killed tasks are found by their deadline, which this run
shortens (``LOST_GRACE_S``) so the benchmark finishes in minutes, not the production 10 s+.
Every call must be settled exactly once with its right value (a ``SettlementLedger`` counts
what the job settled); the run exits 1 otherwise.

    python benchmarks/chaos_aws.py [--tasks 2000]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

from chaos import ChaosRun, SettlementLedger, chaotic_task, report  # the sibling script

import lambdamr.driver.scheduler
from lambdamr import LambdaExecutor
from lambdamr.storage.s3 import S3Storage
from lambdamr.testing.aws_account import AwsAccount
from lambdamr.testing.faults import FlakyStorage
from lambdamr.testing.lambda_service import Faults

REGION = "us-east-1"


def _faults(n: int, seed: int = 7) -> Faults:
    rng = random.Random(seed)
    tasks = list(range(n))
    rng.shuffle(tasks)
    one, two = max(1, n // 100), max(1, n // 50)
    return Faults(
        throttle_first=50,
        drop={(t, 1) for t in tasks[:one]},
        duplicate={(t, 1) for t in tasks[one : one + two]},
        timeout={(t, 1) for t in tasks[one + two : one + two + max(1, n // 200)]},
    )


def run_aws(n: int) -> bool:
    """Run the job with and without faults, print the comparison; whether every call of both
    runs was settled exactly once, with its right value."""
    lambdamr.driver.scheduler.LOST_GRACE_S = 2.0
    workers = os.cpu_count() or 2
    rows = []
    account = AwsAccount.start(region=REGION)
    try:
        deployer = account.standin()
        try:
            function, bucket = account.deploy(deployer, memory_mb=256, timeout_s=5)
        finally:
            deployer.stop()
        account.act_as_driver()
        for with_faults in (False, True):
            faults = _faults(n) if with_faults else Faults()
            # Lambda's own retries scaled down 100x, so a re-delivery comes in 0.6 s, not 1 min
            standin = account.standin(faults=faults, max_environments=workers, retry_delay_scale=0.01)
            store = S3Storage(bucket, endpoint_url=account.endpoint, region=REGION)
            if with_faults:
                store = FlakyStorage(store, failure_rate=0.02, seed=3)
            try:
                with SettlementLedger() as ledger, LambdaExecutor(
                    backend="aws", storage=store, region=REGION, function_name=function, endpoint_url=account.endpoint,
                    lambda_endpoint_url=standin.url, memory_mb=256, timeout_s=5, poll_interval_s=0.2, progress=False,
                    # Real Lambda runs every accepted invocation at once; the stand-in has only
                    # `workers` environments, so more in flight would just queue and miss deadlines.
                    max_concurrency=2 * workers,
                ) as ex:
                    started = time.perf_counter()
                    # buffersize=n: every task is launched at once, as chaos.py's local run does
                    job = ex.map(chaotic_task, range(n), [None] * n, buffersize=n).job
                    assert job is not None
                    job.wait()
                    wall = time.perf_counter() - started
                    settlement = ledger.settlement(job, [i * i for i in range(n)])
                    summary = job.summary()
            finally:
                standin.stop()
            injected = {
                "throttled invokes": min(faults.throttle_first, standin.requests),
                "lost invocations": len(faults.drop),
                "duplicate deliveries": len(faults.duplicate),
                "killed containers (timeouts)": len(faults.timeout),
                "storage 503s": getattr(store, "injected", 0),
            }
            rows.append(ChaosRun(with_faults, wall, summary, settlement, injected))
    finally:
        account.stop()
    return report("aws backend, Lambda stand-in (awslambdaric), S3 on moto server with IAM", n, rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000, help="tasks per run (default: 2000)")
    return 0 if run_aws(parser.parse_args().tasks) else 1


if __name__ == "__main__":
    sys.exit(main())
