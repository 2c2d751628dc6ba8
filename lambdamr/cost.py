"""What a job would cost on AWS Lambda, from its measured task durations.

Pure arithmetic over one price table: no AWS call is made. The model follows Lambda's billing
rules for on-demand functions:

* duration is billed per invocation, rounded UP to the next whole millisecond;
* a cold start also bills its INIT phase: since 1 August 2025 on-demand functions packaged as
  a .zip archive on a managed runtime (what ``lambdamr deploy`` makes) pay for INIT like for
  the invocation itself, so billed duration = Init Duration + Duration, rounded up to 1 ms;
* compute = GB-seconds x the region's price for the architecture, where
  GB-seconds = memory_mb / 1024 x billed seconds;
* every invocation is a request (a retried task is one more invocation);
* each attempt is billed at its own memory size (``escalate_memory`` re-runs a task with more);
* S3 Standard requests: PUT, COPY, POST and LIST at one price, GET and the rest at another;
  DELETE is free.

It uses the first pricing tier and ignores the free tier, ephemeral storage above 512 MB,
data transfer and stored GB-months (a job's temporary objects live for minutes): an estimate
for comparing runs, not an invoice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lambdamr.config import validate_memory
from lambdamr.errors import ConfigurationError

DEFAULT_REGION = "us-east-1"
ARCHITECTURES = ("x86_64", "arm64")
STORAGE_REQUEST_KINDS = ("puts", "gets", "lists", "deletes")


@dataclass(frozen=True)
class RegionPrices:
    """On-demand prices in one region, in US dollars."""

    gb_second_x86_64: float  # per GB-second, first tier
    gb_second_arm64: float  # per GB-second, first tier
    per_request: float  # per Lambda invocation (same for both architectures)
    s3_put_per_1000: float  # S3 Standard PUT, COPY, POST, LIST
    s3_get_per_1000: float  # S3 Standard GET and all other requests (DELETE is free)

    def gb_second(self, architecture: str) -> float:
        """The GB-second price for ``architecture`` (x86_64 or arm64)."""
        if architecture not in ARCHITECTURES:
            raise ConfigurationError(f"architecture={architecture!r}: Lambda offers {' or '.join(ARCHITECTURES)}")
        return self.gb_second_x86_64 if architecture == "x86_64" else self.gb_second_arm64


# Public on-demand prices, checked 2026-11-24.
# Sources: https://aws.amazon.com/lambda/pricing/ (GB-second, first 6 billion GB-seconds a
# month, and $0.20 per 1M requests; the calculator's per-region feed shows the same figures in
# every region listed here) and https://aws.amazon.com/s3/pricing/ (S3 Standard requests).
# Regions not listed have other prices: add a row after checking those pages, never guess.
PRICES: Mapping[str, RegionPrices] = {
    #                          GB-s x86_64   GB-s arm64    request  S3 PUT/LIST  S3 GET
    "us-east-1": RegionPrices(0.0000166667, 0.0000133334, 0.20e-6, 0.005, 0.0004),
    "us-east-2": RegionPrices(0.0000166667, 0.0000133334, 0.20e-6, 0.005, 0.0004),
    "us-west-2": RegionPrices(0.0000166667, 0.0000133334, 0.20e-6, 0.005, 0.0004),
    "eu-west-1": RegionPrices(0.0000166667, 0.0000133334, 0.20e-6, 0.005, 0.0004),
    "eu-west-2": RegionPrices(0.0000166667, 0.0000133334, 0.20e-6, 0.0053, 0.00042),
    "eu-central-1": RegionPrices(0.0000166667, 0.0000133334, 0.20e-6, 0.0054, 0.00043),
    "ap-northeast-1": RegionPrices(0.0000166667, 0.0000133334, 0.20e-6, 0.0047, 0.00037),
}


def region_prices(region: str | None = None) -> RegionPrices:
    """The price row of ``region`` (``None`` means us-east-1).

    Raises:
        ConfigurationError: the region is not in the table.
    """
    name = region or DEFAULT_REGION
    try:
        return PRICES[name]
    except KeyError:
        raise ConfigurationError(
            f"no Lambda prices for region {name!r}; known regions: {', '.join(sorted(PRICES))}. "
            "Pass one of them (the nearest in price) or add the region to lambdamr.cost.PRICES."
        ) from None


def billed_ms(seconds: float, init_seconds: float = 0.0) -> int:
    """Milliseconds Lambda bills for one invocation of ``seconds``, after an INIT phase of
    ``init_seconds`` on a cold start: their sum, rounded up to 1 ms."""
    for value in (seconds, init_seconds):
        if value < 0 or math.isnan(value):
            raise ValueError(f"a task duration cannot be {value!r} seconds")
    # Round to the nanosecond first so that 0.003 s (3.0000000000000004 ms in binary) bills 3 ms.
    return math.ceil(round((seconds + init_seconds) * 1000.0, 6))


def gb_seconds(
    task_seconds: Sequence[float], memory_mb: int | Sequence[int], init_seconds: Sequence[float] | None = None
) -> float:
    """Billed GB-seconds of invocations lasting ``task_seconds`` at ``memory_mb`` (one size
    for all, or each invocation's own: an attempt re-run with more memory is billed at it),
    each after the INIT phase of the same position in ``init_seconds`` (0 for a warm start)."""
    billed, _ = billed_ms_by_memory(task_seconds, memory_mb, init_seconds)
    return mb_ms_to_gb_s(billed)


def billed_ms_by_memory(
    task_seconds: Sequence[float], memory_mb: int | Sequence[int], init_seconds: Sequence[float] | None = None
) -> tuple[dict[int, int], dict[int, int]]:
    """The billed milliseconds of these invocations by memory size: with their INIT phases,
    and without (what ``estimate_billed_cost`` takes)."""
    inits = _inits(task_seconds, init_seconds)
    if isinstance(memory_mb, Sequence):
        if len(memory_mb) != len(task_seconds):
            raise ConfigurationError(
                f"memory_mb has {len(memory_mb)} entries for {len(task_seconds)} invocations; give one "
                "memory size, or one per invocation"
            )
        memories: Sequence[int] = [validate_memory(m) for m in memory_mb]
    else:
        memories = [validate_memory(memory_mb)] * len(task_seconds)
    billed: dict[int, int] = {}
    run: dict[int, int] = {}
    for seconds, init, memory in zip(task_seconds, inits, memories):
        billed[memory] = billed.get(memory, 0) + billed_ms(seconds, init)
        run[memory] = run.get(memory, 0) + billed_ms(seconds)
    return billed, run


def mb_ms_to_gb_s(billed_ms_by_memory: Mapping[int, int]) -> float:
    """GB-seconds of billed milliseconds at each memory size."""
    return sum(memory * ms for memory, ms in billed_ms_by_memory.items()) / 1024.0 / 1000.0


def attempt_usd(seconds: float, memory_mb: int, prices: RegionPrices, architecture: str = "x86_64") -> float:
    """Dollars of one invocation of ``seconds`` at ``memory_mb``: its request and its GB-seconds."""
    return prices.per_request + gb_seconds([seconds], memory_mb) * prices.gb_second(architecture)


def _inits(task_seconds: Sequence[float], init_seconds: Sequence[float] | None) -> Sequence[float]:
    if init_seconds is None:
        return [0.0] * len(task_seconds)
    if len(init_seconds) != len(task_seconds):
        raise ConfigurationError(
            f"init_seconds has {len(init_seconds)} entries for {len(task_seconds)} invocations; give "
            "one per invocation (0 for a warm start)"
        )
    return init_seconds


@dataclass(frozen=True)
class CostEstimate:
    """Estimated dollars of one job on Lambda, split by what is billed."""

    compute_usd: float
    requests_usd: float
    storage_usd: float
    gb_seconds: float = 0.0  # INIT phases included
    region: str = DEFAULT_REGION
    architecture: str = "x86_64"
    init_gb_seconds: float = 0.0  # the part of gb_seconds billed for cold starts' INIT phase

    @property
    def total_usd(self) -> float:
        """Compute + requests + S3 requests."""
        return self.compute_usd + self.requests_usd + self.storage_usd

    def __str__(self) -> str:
        return (
            f"{format_usd(self.total_usd)} (compute {format_usd(self.compute_usd)}, "
            f"requests {format_usd(self.requests_usd)}, S3 {format_usd(self.storage_usd)})"
        )


def format_usd(amount: float) -> str:
    """Dollars with three significant digits, never in scientific notation: ``$0.000123``."""
    if amount == 0:
        return "$0"
    decimals = max(2, 2 - math.floor(math.log10(abs(amount))))
    whole, fraction = f"{amount:.{decimals}f}".split(".")
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"


def estimate_job_cost(
    task_seconds: Sequence[float],
    memory_mb: int | Sequence[int],
    *,
    invocations: int | None = None,
    storage_requests: Mapping[str, int] | None = None,
    region: str | None = None,
    architecture: str = "x86_64",
    init_seconds: Sequence[float] | None = None,
) -> CostEstimate:
    """Estimate what a job costs on Lambda.

    Args:
        task_seconds: billed duration of every invocation (one entry per attempt).
        init_seconds: the INIT phase before each of them (the REPORT line's Init Duration;
            0 for a warm start); None: all warm.
        memory_mb: the function's memory size, 128 to 10,240 MB; or one per invocation (a
            task whose memory was escalated is billed at each attempt's own).
        invocations: requests to charge; defaults to ``len(task_seconds)``.
        storage_requests: S3 request counts by kind: ``puts``, ``gets``, ``lists``, ``deletes``.
        region: AWS region of the function and bucket; ``None`` means us-east-1.
        architecture: ``x86_64`` or ``arm64``.

    Returns:
        The estimate, split into compute, Lambda requests and S3 requests.

    Raises:
        ConfigurationError: unknown region or architecture, memory out of Lambda's range,
            an unknown kind of storage request, or not one INIT entry per invocation.
    """
    billed, run = billed_ms_by_memory(task_seconds, memory_mb, init_seconds)
    return estimate_billed_cost(
        billed,
        run if init_seconds is not None else None,
        invocations=len(task_seconds) if invocations is None else invocations,
        storage_requests=storage_requests,
        region=region,
        architecture=architecture,
    )


def estimate_billed_cost(
    billed: Mapping[int, int],
    run_billed: Mapping[int, int] | None,
    *,
    invocations: int,
    storage_requests: Mapping[str, int] | None = None,
    region: str | None = None,
    architecture: str = "x86_64",
) -> CostEstimate:
    """``estimate_job_cost`` from running totals (a job adds each task's figure as it settles).

    Args:
        billed: memory size (MB) -> the sum of its invocations' ``billed_ms(seconds, init_seconds)``.
        run_billed: the same without the INIT phases (``billed_ms(seconds)``); None: no INIT.
        invocations, storage_requests, region, architecture: as ``estimate_job_cost``.

    Raises:
        ConfigurationError: as ``estimate_job_cost``.
    """
    for memory in billed:
        validate_memory(memory)
    prices = region_prices(region)
    per_gb_second = prices.gb_second(architecture)
    billed_gb_s = mb_ms_to_gb_s(billed)
    init_gb_s = billed_gb_s - mb_ms_to_gb_s(run_billed) if run_billed is not None else 0.0
    if invocations < 0:
        raise ConfigurationError(f"invocations={invocations}: a request count cannot be negative")
    return CostEstimate(
        compute_usd=billed_gb_s * per_gb_second,
        requests_usd=invocations * prices.per_request,
        storage_usd=storage_requests_usd(storage_requests or {}, prices),
        gb_seconds=billed_gb_s,
        region=region or DEFAULT_REGION,
        architecture=architecture,
        init_gb_seconds=max(0.0, init_gb_s),
    )


def storage_requests_usd(counts: Mapping[str, int], prices: RegionPrices) -> float:
    """Dollars of S3 Standard requests; LIST bills like PUT, DELETE is free."""
    unknown = sorted(set(counts) - set(STORAGE_REQUEST_KINDS))
    if unknown:
        raise ConfigurationError(f"unknown storage request kind(s) {', '.join(unknown)}; use {', '.join(STORAGE_REQUEST_KINDS)}")
    put_class = counts.get("puts", 0) + counts.get("lists", 0)
    get_class = counts.get("gets", 0)
    return (put_class * prices.s3_put_per_1000 + get_class * prices.s3_get_per_1000) / 1000.0


# --- break-even: when does fanning out to Lambda beat a fixed number of local cores? ---


def local_wall_seconds(tasks: int, task_seconds: float, cores: int) -> float:
    """Wall time of ``tasks`` equal tasks on ``cores`` local cores (waves of ``cores``)."""
    if cores < 1:
        raise ValueError("cores must be at least 1")
    return math.ceil(tasks / cores) * task_seconds


def lambda_wall_seconds(tasks: int, task_seconds: float, overhead_seconds: float, concurrency: int = 1000) -> float:
    """Wall time of ``tasks`` equal tasks on Lambda: a fixed overhead, then waves of
    ``concurrency`` (the account's default limit is 1,000 concurrent executions)."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    return overhead_seconds + math.ceil(tasks / concurrency) * task_seconds


def break_even_tasks(
    local_task_seconds: float,
    cores: int,
    lambda_task_seconds: float,
    lambda_overhead_seconds: float = 0.0,
    *,
    concurrency: int = 1000,
    max_tasks: int = 100_000,
) -> int | None:
    """The smallest task count at which Lambda finishes before ``cores`` local cores.

    Both sides run equal, independent tasks; the local machine runs them in waves of
    ``cores``, Lambda pays ``lambda_overhead_seconds`` once (driver, uploads, cold starts)
    and runs waves of ``concurrency``. Returns ``None`` if Lambda never wins up to
    ``max_tasks``.
    """
    # Both wall times are step functions; Lambda can only start winning where the local side
    # steps up, i.e. at k * cores + 1 tasks, so checking those points (and 1) is exact.
    candidates = [1] + list(range(cores + 1, max_tasks + 1, cores))
    for tasks in candidates:
        local = local_wall_seconds(tasks, local_task_seconds, cores)
        remote = lambda_wall_seconds(tasks, lambda_task_seconds, lambda_overhead_seconds, concurrency)
        if remote < local:
            return tasks
    return None


def first_crossing(sizes: Sequence[float], challenger: Sequence[float], incumbent: Sequence[float]) -> float | None:
    """The first size at which ``challenger`` is below ``incumbent`` and stays below, else None.

    For measured series (e.g. wall times of Lambda and of local cores over tree counts).
    """
    if not len(sizes) == len(challenger) == len(incumbent):
        raise ValueError("sizes and both series must have the same length")
    crossing: float | None = None
    for size, a, b in zip(sizes, challenger, incumbent):
        if a < b:
            crossing = size if crossing is None else crossing
        else:
            crossing = None
    return crossing
