"""The AWS half of ``benchmarks/chaos.py``: the real AWS backend (boto3-signed Invoke
requests) against the loopback Lambda stand-in, with S3 on moto's server.

Injected: throttled Invoke requests (429 TooManyRequestsException), lost invocations
(accepted, never run), duplicate deliveries, containers killed past their timeout, and 503s on
the driver's result reads. Lost and killed tasks are found by their deadline, which this run
shortens (``LOST_GRACE_S``) so the benchmark finishes in minutes, not the production 10 s+.
"""

from __future__ import annotations

import logging
import os
import random
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from chaos import chaotic_task, report  # the sibling script

import lambdamr.scheduler
from lambdamr import LambdaExecutor
from lambdamr.backends.aws_standin import Faults, LambdaStandin
from lambdamr.deploy import deploy
from lambdamr.faults import FlakyStorage
from lambdamr.storage.s3 import S3Storage

REGION = "us-east-1"


def _local_pip(command: Sequence[str]) -> None:
    """The stand-in runs the handler in this machine's Python, which has the runtime's
    packages already: the layer only needs to exist, so 'installing' writes stubs."""
    target = Path(command[command.index("--target") + 1])
    for package in command[command.index("--target") + 2 :]:
        (target / f"{package.replace('-', '_')}_stub").mkdir(parents=True, exist_ok=True)


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


def run_aws(n: int) -> None:
    """Run the job with and without faults and print the comparison."""
    from moto.server import ThreadedMotoServer

    for var, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_DEFAULT_REGION", REGION)):
        os.environ.setdefault(var, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    lambdamr.scheduler.LOST_GRACE_S = 2.0
    workers = os.cpu_count() or 2
    rows = []
    try:
        suffix = uuid.uuid4().hex[:8]
        function, bucket = f"lmr-chaos-{suffix}", f"lambdamr-chaos-{suffix}"
        deploy(
            region=REGION, bucket=bucket, function_name=function, memory_mb=256, timeout_s=5,
            endpoint_url=endpoint, pip=_local_pip, require_tls=False,  # moto speaks plain HTTP
        )
        for with_faults in (False, True):
            faults = _faults(n) if with_faults else Faults()
            standin = LambdaStandin(control_url=endpoint, faults=faults, workers=workers).start()
            store = S3Storage(bucket, endpoint_url=endpoint, region=REGION)
            if with_faults:
                store = FlakyStorage(store, failure_rate=0.02, seed=3)
            try:
                with LambdaExecutor(
                    backend="aws", storage=store, region=REGION, function_name=function, endpoint_url=endpoint,
                    lambda_endpoint_url=standin.url, memory_mb=256, timeout_s=5, poll_interval_s=0.2, progress=False,
                    # Real Lambda runs every accepted invocation at once; the stand-in has only
                    # `workers` processes, so more in flight would just queue and miss deadlines.
                    max_concurrency=2 * workers,
                ) as ex:
                    started = time.perf_counter()
                    results = list(ex.map(chaotic_task, range(n), [None] * n))
                    wall = time.perf_counter() - started
                    summary = ex.last_job.summary()
            finally:
                standin.stop()
            expected = [i * i for i in range(n)]
            lost = sum(1 for got, want in zip(results, expected) if got != want) + max(0, n - len(results))
            injected = {
                "throttled invokes": min(faults.throttle_first, standin.requests),
                "lost invocations": len(faults.drop),
                "duplicate deliveries": len(faults.duplicate),
                "killed containers (timeouts)": len(faults.timeout),
                "storage 503s": getattr(store, "injected", 0),
            }
            rows.append((with_faults, wall, summary, lost, max(0, len(results) - n), injected))
    finally:
        server.stop()
    report("aws backend, Lambda stand-in, S3 on moto server", n, rows)
