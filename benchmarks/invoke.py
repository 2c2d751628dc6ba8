"""The driver's cost of launching Lambda tasks: CPU per invoke, invokes per second, memory.

    python benchmarks/invoke.py                      # 1,000 and 10,000 invokes, round trip, a 2,000-task map
    python benchmarks/invoke.py --tasks 2000 --no-map

Part 1 sends asynchronous (Event) invokes through ``AwsLambdaBackend`` to the Lambda
stand-in in accept-only mode (``python -m lambdamr.testing.lambda_service --null``, in its own
process so that it does not share the driver's interpreter; it still checks every request's
SigV4 signature), once with the lean Invoke client the backend uses and once with plain boto3
``invoke``, and prints driver CPU microseconds per invoke and invokes per second. On real AWS
the endpoint is not on the driver's machine; here it takes one of the two cores, so the
figures are a lower bound.

Part 2 deploys lambdamr on a loopback account (moto with IAM enforced, the layer built with
real pip) and measures the warm round trip of one small task: a synchronous Invoke through the
stand-in to ``awslambdaric`` running the deployed handler and back.

Part 3 runs a whole ``LambdaExecutor.map`` on that deployment (S3 on moto) and prints the
driver's peak memory (target: under 300 MB) and its wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lambdamr.backends.aws.backend import AwsLambdaBackend  # noqa: E402
from lambdamr.backends.base import Invocation  # noqa: E402
from lambdamr.protocol import TaskEvent, encode_inline_args  # noqa: E402

os.environ.update(AWS_ACCESS_KEY_ID="benchmark", AWS_SECRET_ACCESS_KEY="benchmark")  # the stand-in checks them
os.environ.pop("AWS_SESSION_TOKEN", None)


def start_standin(*args: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "lambdamr.testing.lambda_service", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def invocations(n: int) -> list[Invocation]:
    args = encode_inline_args(b"\x80\x05" + b"x" * 200)  # a small pickled argument list
    return [
        Invocation.of(
            TaskEvent(
                job_id="bench",
                task_id=i,
                attempt=1,
                storage={"kind": "s3", "bucket": "bench"},
                function_key="bench/fn",
                result_key=f"bench/results/{i:06d}.1",
                timeout_s=60,
                memory_mb=1024,
                args_inline=args,
            )
        )
        for i in range(n)
    ]


def launch(url: str, n: int, *, fast: bool, threads: int) -> tuple[float, float, int]:
    """Invokes per second, driver CPU µs per invoke, failures."""
    failures = []
    backend = AwsLambdaBackend(
        "bench",
        region="us-east-1",
        endpoint_url=url,
        aliases=False,
        max_concurrency=max(n, 1),
        invoke_threads=threads,
        fast_invoke=fast,
    )
    backend.start(failures.append)
    backend.invoke(invocations(min(n, 500)))  # warm up connections and threads
    backend.wait_sent()
    batch = invocations(n)
    cpu, wall = time.process_time(), time.perf_counter()
    backend.invoke(batch)
    backend.wait_sent()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    backend.shutdown()
    return n / wall, 1e6 * cpu / n, len(failures)


def identity(x: int) -> int:
    return x


def on_a_loopback_account(run) -> None:
    """Deploy on moto (IAM enforced) through a stand-in, and call ``run(account, service, function, bucket)``."""
    from lambdamr.testing.aws_account import AwsAccount

    account = AwsAccount.start()
    try:
        service = account.standin(max_environments=os.cpu_count() or 2)
        try:
            function, bucket = account.deploy(service, memory_mb=1024, timeout_s=60, in_subprocess=True)
            account.act_as_driver()
            run(account, service, function, bucket)
        finally:
            service.stop()
    finally:
        account.stop()


def _executor(account, service, function: str, bucket: str, **options):
    """An aws-backend executor on the loopback account's deployment, through ``service``."""
    from lambdamr import LambdaExecutor

    return LambdaExecutor(
        backend="aws", storage=f"s3://{bucket}", region="us-east-1", function_name=function,
        endpoint_url=account.endpoint, lambda_endpoint_url=service.url, memory_mb=1024, timeout_s=60,
        progress=False, **options,
    )


def round_trip(account, service, function: str, bucket: str, n: int = 200) -> None:
    """Median wall time of a warm synchronous task: Invoke -> awslambdaric -> handler -> response."""
    import statistics


    with _executor(account, service, function, bucket, invocation_type="RequestResponse") as executor:
        executor.submit(identity, 0).result()  # cold start, function upload
        times = []
        for i in range(n):
            started = time.perf_counter()
            assert executor.submit(identity, i).result() == i
            times.append(time.perf_counter() - started)
    print(f"\nwarm round trip of one task (submit -> result, sync Invoke through awslambdaric), {n} tasks:")
    print(f"  median {1000 * statistics.median(times):.1f} ms, p90 {1000 * sorted(times)[int(0.9 * n)]:.1f} ms")


def full_map(account, service, function: str, bucket: str, n: int, threads: int) -> None:

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    wall = time.perf_counter()
    with _executor(account, service, function, bucket, poll_interval_s=0.1, max_concurrency=1000) as executor:
        results = list(executor.map(identity, range(n)))
    wall = time.perf_counter() - wall
    assert results == list(range(n))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{n:,}-task map on the aws backend (stand-in: {os.cpu_count()} awslambdaric environments, S3 on moto):")
    print(
        f"  driver peak memory {peak:.0f} MB (before the map: {before:.0f} MB; target < 300 MB), "
        f"wall {wall:.1f} s ({n / wall:,.0f} tasks/s, bound by the local environments and moto)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--threads", type=int, default=64, help="invoker threads (the backend's default: 64)")
    parser.add_argument("--no-map", action="store_true", help="skip the round trip and the map (no deployment)")
    parser.add_argument("--map-tasks", type=int, default=2000, help="tasks of the whole map (part 3)")
    args = parser.parse_args()
    process, url = start_standin("--null")
    try:
        print(f"Event invokes against a local Invoke API endpoint ({os.cpu_count()} cores, {args.threads} invoker threads)")
        launch(url, 2000, fast=True, threads=args.threads)  # warm the endpoint's own threads up
        print(f"{'tasks':>7} {'client':>8} {'invokes/s':>10} {'CPU µs/invoke':>14} {'failed':>7}")
        for n in args.tasks:
            for fast, label in ((True, "lean"), (False, "boto3")):
                rate, cpu, failed = launch(url, n, fast=fast, threads=args.threads)
                print(f"{n:>7,} {label:>8} {rate:>10,.0f} {cpu:>14,.0f} {failed:>7}")
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)
    if not args.no_map:
        on_a_loopback_account(lambda *deployed: (round_trip(*deployed), full_map(*deployed, args.map_tasks, args.threads)))


if __name__ == "__main__":
    main()
