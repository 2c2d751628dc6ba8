"""What a job did, in numbers: ``JobSummary``, and the billing arithmetic behind it.

``Job.summary()`` builds one from the running totals of its settled tasks (``driver.task_ledger``);
a ``map_reduce`` adds up its phases' (``driver.map_reduce_job``). The cost model (``lambdamr.cost``) prices it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from lambdamr.cost import CostEstimate, billed_ms, estimate_billed_cost
from lambdamr.errors import ConfigurationError

log = logging.getLogger("lambdamr")


@dataclass
class JobSummary:
    """What a job did, in numbers. ``str()`` gives a few readable lines."""

    job_id: str
    backend: str
    tasks: int
    calls: int
    succeeded: int
    failed: int
    cancelled: int
    retries: int
    duplicates: int
    cold_starts: int
    wall_s: float
    task_seconds: float  # sum of the runtime's own measurement of every finished task
    max_task_s: float
    memory_mb: int
    storage_requests: dict[str, int] = field(default_factory=dict)
    cost: CostEstimate | None = None  # when the cost model has prices for the region
    backups: int = 0  # speculative copies of slow tasks launched
    backups_won: int = 0  # tasks whose result came from a backup
    peak_concurrency: int = 0  # most tasks seen running at the same moment
    peak_memory_mb: float = 0.0  # largest peak RSS any task reported
    phases: list[JobSummary] = field(default_factory=list)  # a map_reduce's: each phase's own
    escalated: dict[int, int] = field(default_factory=dict)  # memory_mb -> tasks escalated to it (escalate_memory)
    budget_usd: float | None = None  # the job's budget_usd, if any
    budget_note: str | None = None  # what the budget guard did (driver.budget)
    bytes_shuffled: int | None = None  # a map_reduce's intermediate bytes

    @property
    def speedup(self) -> float:
        """Sum of task time over wall time: how many tasks ran at once, on average."""
        return self.task_seconds / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def parallel_efficiency(self) -> float:
        """Sum of task time over (wall time x peak concurrency), 0..1: how busy the slots the
        job reached were kept, start-up, stragglers and driver overhead included."""
        slots = max(self.peak_concurrency, 1)
        return min(1.0, self.speedup / slots) if self.wall_s > 0 else 0.0

    def __str__(self) -> str:
        requests = ", ".join(f"{v:,} {k}" for k, v in self.storage_requests.items() if v)
        extra = f", {self.duplicates} duplicates" if self.duplicates else ""
        won = f" ({self.backups_won} won)" if self.backups else ""
        lines = [
            f"lambdamr job {self.job_id} on {self.backend}: {self.tasks:,} tasks ({self.calls:,} calls): "
            f"{self.succeeded:,} ok, {self.failed:,} failed, {self.cancelled:,} cancelled; "
            f"{self.retries} retries, {self.backups} backups{won}{extra}",
            f"  wall {_duration(self.wall_s)} (submitted to last task settled), task time "
            f"{_duration(self.task_seconds)} (tasks' own run times summed, max {_duration(self.max_task_s)}): "
            f"{self.speedup:.1f}x parallel, "
            f"{self.parallel_efficiency:.0%} efficiency at peak concurrency {self.peak_concurrency}",
            f"  {self.cold_starts} cold starts, peak memory {self.peak_memory_mb:.0f} of {self.memory_mb} MB"
            + (f"; storage requests: {requests}" if requests else ""),
        ]
        if self.escalated:
            to = ", ".join(f"{n:,} to {mb:,} MB" for mb, n in self.escalated.items())
            lines.append(f"  memory escalated for {sum(self.escalated.values()):,} tasks: {to}")
        if self.budget_note:
            lines.append(f"  {self.budget_note}")
        if self.bytes_shuffled is not None:
            lines.append(f"  shuffled {self.bytes_shuffled / 2**20:.1f} MB between the phases")
        if self.cost is not None:
            lines.append(f"  estimated cost on AWS Lambda: {self.cost}")
        for phase in self.phases:
            lines.extend("  " + line for line in str(phase).splitlines())
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def task_billed_ms(timings: dict[str, Any]) -> int:
    """Billed milliseconds of a task: the backend's figure when it has one (Lambda's REPORT
    line), else started..finished plus a cold start's INIT phase, rounded up to 1 ms as
    Lambda bills (INIT is billed for on-demand zip functions since 1 August 2025)."""
    if timings.get("billed_ms") is not None:
        return int(timings["billed_ms"])
    return billed_ms(task_run_s(timings), task_init_s(timings))


def task_run_s(timings: dict[str, Any]) -> float:
    """How long the runtime ran the task (its started..finished)."""
    return max(0.0, float(timings["finished"]) - float(timings["started"]))


def task_init_s(timings: dict[str, Any]) -> float:
    """The INIT phase billed with a task: the runtime's ``init_ms`` on a cold start, else 0."""
    init_ms = timings.get("init_ms")
    if not timings.get("cold") or not isinstance(init_ms, (int, float)) or not init_ms > 0:
        return 0.0
    return float(init_ms) / 1000.0


class CostedJob(Protocol):
    """What the cost estimate reads of a job."""

    job_id: str
    memory_mb: int
    region: str | None
    architecture: str




def estimate_cost(
    job: CostedJob,
    billed: Mapping[int, int],
    run_billed: Mapping[int, int],
    invocations: int,
    requests: dict[str, int],
    failed_billed: Mapping[int, int] | None = None,
) -> CostEstimate | None:
    """The job's estimated Lambda cost from its settled tasks' billed milliseconds by memory
    (``billed`` with INIT phases, ``run_billed`` without: ``task_ledger.TaskTotals``; memory 0
    is the job's own) and those of attempts that did not settle their task (``failed_billed``,
    ``driver.billing``: no INIT); None for a region without prices (a summary must not fail for it)."""
    failed = failed_billed or {}
    try:
        return estimate_billed_cost(
            _at_memory(job.memory_mb, billed, failed),
            _at_memory(job.memory_mb, run_billed, failed),
            invocations=invocations,
            storage_requests=requests,
            region=job.region,
            architecture=job.architecture,
        )
    except ConfigurationError as exc:
        log.info("lambdamr: no cost estimate for job %s: %s", job.job_id, exc)
        return None


def _at_memory(job_memory_mb: int, *parts: Mapping[int, int]) -> dict[int, int]:
    """Billed milliseconds by memory size, summed over ``parts``; memory 0 is the job's own."""
    merged: dict[int, int] = {}
    for part in parts:
        for memory, ms in part.items():
            merged[memory or job_memory_mb] = merged.get(memory or job_memory_mb, 0) + ms
    return merged


def added_costs(costs: Sequence[CostEstimate | None]) -> CostEstimate | None:
    """The estimate of several jobs together (the phases of a map_reduce)."""
    known = [c for c in costs if c is not None]
    if not known:
        return None
    return CostEstimate(
        compute_usd=sum(c.compute_usd for c in known),
        requests_usd=sum(c.requests_usd for c in known),
        storage_usd=sum(c.storage_usd for c in known),
        gb_seconds=sum(c.gb_seconds for c in known),
        region=known[0].region,
        architecture=known[0].architecture,
        init_gb_seconds=sum(c.init_gb_seconds for c in known),
    )
