"""A job's history record, built from the driver's ``Job`` (``lambdamr.driver.history`` writes it).

What a record holds: the job's fixed facts (``static_fields``), its state and counts, the
summary's text and numbers (the running cost among them), the phases of the tasks the job
keeps in seconds since the submission (``task_row``: the dashboard's task stream; a job of
more than ``task_ledger.FIRST_KEPT`` tasks keeps a sample, ``task_rows_truncated`` says so)
and the first failures it keeps with their traceback and log tail. ``fingerprint`` tells whether a running job changed since its
record was last written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lambdamr.driver.jobstore import function_name, job_identity
from lambdamr.driver.task_ledger import task_state
from lambdamr.runtime.capture import log_tail

if TYPE_CHECKING:
    from lambdamr.driver.job import Job, TaskView

#: a record's format; readers skip other versions
RECORD_VERSION = 1
#: tasks whose phases a record keeps (a bigger job keeps its counts and summary only)
MAX_TASK_ROWS = 10_000
#: failed tasks whose error, traceback and log tail a record keeps
MAX_FAILURES = 50

def _rel(moment: Any, origin: float) -> float | None:
    return None if not isinstance(moment, (int, float)) else round(moment - origin, 4)


def task_row(task: TaskView, origin: float) -> dict[str, Any]:
    """One task's phases (seconds since the job's submission) and facts, for the task stream."""
    timings = task.timings or {}
    row: dict[str, Any] = {
        "id": task.task_id,
        "state": task_state(task),
        "attempts": task.attempt - task.attempt_base,
        "backups": len(task.backup_attempts),
        "dispatched": _rel(task.first_dispatched_at, origin),
        "invoked": _rel(task.dispatched_at, origin),
        "started": _rel(timings.get("started"), origin),
        "finished": _rel(timings.get("finished"), origin),
        "completed": _rel(task.completed_at, origin),
    }
    if timings.get("cold"):
        row["cold"] = True
    if timings.get("peak_rss_mb") is not None:
        row["peak_mb"] = round(float(timings["peak_rss_mb"]), 1)
    if task.outcome is not None and task.outcome.error:
        row["error"] = task.outcome.error
    return row


def failure_entry(task: TaskView) -> dict[str, Any]:
    outcome = task.outcome
    return {
        "task_id": task.task_id,
        "attempt": task.attempt,
        "error": outcome.error if outcome is not None else None,
        "traceback": (outcome.traceback if outcome is not None else None) or "",
        "log_tail": log_tail(task.logs),
    }


def summary_numbers(job: Job) -> dict[str, Any]:
    """The summary's numbers, JSON-ready, with its text."""
    summary = job.summary()
    cost = summary.cost
    return {
        "text": str(summary),
        **{
            name: getattr(summary, name)
            for name in (
                "tasks", "calls", "succeeded", "failed", "cancelled", "retries", "backups", "backups_won",
                "duplicates", "cold_starts", "peak_concurrency", "memory_mb",
            )
        },
        "wall_s": round(summary.wall_s, 3),
        "task_seconds": round(summary.task_seconds, 3),
        "max_task_s": round(summary.max_task_s, 3),
        "parallel_efficiency": round(summary.parallel_efficiency, 3),
        "peak_memory_mb": round(summary.peak_memory_mb, 1),
        "storage_requests": summary.storage_requests,
        "cost_usd": None if cost is None else cost.total_usd,
    }


def job_record(job: Job, static: dict[str, Any], *, now: float, heartbeat_s: float, stale_after_s: float) -> dict[str, Any]:
    """A job's history record as it stands ``now`` (``static``: what does not change)."""
    tasks = job.tasks  # every unsettled task and a sample of the settled (driver.task_ledger)
    counts = job.task_states()
    numbers = summary_numbers(job)
    if job.done():
        state = "failed" if numbers["failed"] else "cancelled" if numbers["cancelled"] else "done"
    else:
        state = "running"
    failures = [failure_entry(t) for t in tasks if task_state(t) == "failed"][:MAX_FAILURES]
    return {
        **static,
        "state": state,
        "sealed": job.sealed,
        "heartbeat": now,
        "heartbeat_s": heartbeat_s,
        "stale_after_s": stale_after_s,
        "finished": job.finished_at,
        "tasks": job.task_count,
        "calls": numbers["calls"],
        "counts": counts,
        "summary": numbers,
        "task_rows": [task_row(t, job.submitted_at) for t in tasks[:MAX_TASK_ROWS]],
        "task_rows_truncated": job.task_count > min(len(tasks), MAX_TASK_ROWS),
        "failures": failures,
    }


def static_fields(job: Job, fn: Any, logs_key: str) -> dict[str, Any]:
    """What a job's record says whatever its progress (``logs_key``: its logs document)."""
    return {
        "record_version": RECORD_VERSION,
        **job_identity(job, function_name(fn) if fn is not None else "(attached)"),
        "logs": logs_key,
    }


def fingerprint(job: Job) -> tuple[int, ...]:
    """Changes whenever a task is added, launched, retried, backed up or settled."""
    return (
        job.task_count,
        job.settled,
        job.invocations,
        job.backups,
        int(job.sealed),
        int(job.done()),
    )
