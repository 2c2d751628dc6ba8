"""What the dashboard shows, read from storage only (the job history, ``lambdamr.driver.history``).

The dashboard never talks to a driver: every driver that uses the storage and prefix — on
this machine or another — writes its jobs' records there, and this reader turns them into
the JSON the page polls. Records are verified with the deployment's signing key like every
other stored object; one that does not verify is left out. Nothing this module returns holds
the key or anything derived from it.

A listing costs one LIST and a GET per record that changed since the previous poll (a
record is cached by its key and modification time); a running job's state is worked out
afresh at every poll from its record and its driver's heartbeat (``history_reader``).
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

from lambdamr.driver.history import list_history_folder
from lambdamr.driver.history_reader import read_history_logs, read_record, record_state
from lambdamr.errors import IntegrityError, LambdaMRError, ObjectNotFound
from lambdamr.protocol import session_of
from lambdamr.signing import Signer
from lambdamr.storage import Storage

#: a running task is a straggler once it has run this many times the median finished task...
STRAGGLER_FACTOR = 2.0
#: ...and at least this long, with at least this many finished tasks to compare with
STRAGGLER_MIN_S = 1.0
STRAGGLER_MIN_FINISHED = 3
#: the jobs a listing shows
LIST_LIMIT = 200
#: characters of one task's output the task view shows (its end)
TASK_LOG_CHARS = 20_000


class JobNotFound(LambdaMRError):
    """The dashboard was asked for a job the history does not hold."""


class DashboardReader:
    """Reads the job history of one storage and prefix for the dashboard's JSON API."""

    def __init__(self, storage: Storage, prefix: str, signer: Signer) -> None:
        self.storage = storage
        self.prefix = prefix
        self._signer = signer
        self._cache: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}
        self._lock = threading.Lock()

    @property
    def location(self) -> str:
        """Where the history lives (for the page's header)."""
        return self.storage.url(self.prefix)

    def _record(self, job_id: str, key: str, stamp: tuple[Any, ...]) -> dict[str, Any] | None:
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            record = read_record(self.storage, self.prefix, job_id, self._signer, driver_beat=0.0)
        except (IntegrityError, ObjectNotFound):
            return None
        with self._lock:
            self._cache[key] = (stamp, record)
        return record

    def jobs(self, now: float | None = None) -> dict[str, Any]:
        """The newest jobs, newest first, each with its counts and summary (no task rows)."""
        now = time.time() if now is None else now
        listing = list_history_folder(self.storage, self.prefix)
        listed = []
        for job_id, key, modified in listing.records[:LIST_LIMIT]:
            record = self._record(job_id, key, (modified,))
            if record is not None:
                listed.append(job_overview(record, now, listing.drivers.get(session_of(job_id), 0.0)))
        return {"location": self.location, "now": now, "jobs": listed}

    def job(self, job_id: str, now: float | None = None) -> dict[str, Any]:
        """One job's record with its task rows, failures and stragglers.

        Raises:
            JobNotFound: the history holds no (verified) record of it.
        """
        now = time.time() if now is None else now
        try:
            record = read_record(self.storage, self.prefix, job_id, self._signer, now)
        except (ObjectNotFound, IntegrityError) as exc:
            raise JobNotFound(f"no verified history record of job {job_id!r}: {exc}") from None
        detail = job_overview(record, now, None)
        rows = record.get("task_rows") or []
        detail.update(
            task_rows=rows,
            task_rows_truncated=bool(record.get("task_rows_truncated")),
            failures=record.get("failures") or [],
            stragglers=stragglers(rows, now - float(record.get("submitted") or now)),
            summary_text=(record.get("summary") or {}).get("text", ""),
        )
        return detail

    def task(self, job_id: str, task_id: int) -> dict[str, Any]:
        """One task: its row, its error and traceback if it failed, its output if kept.

        Raises:
            JobNotFound: no such job or task in the history.
        """
        detail = self.job(job_id)
        rows = [row for row in detail["task_rows"] if row.get("id") == task_id]
        if not rows:
            raise JobNotFound(f"job {job_id!r} has no task {task_id} in its history record")
        failure = next((f for f in detail["failures"] if f.get("task_id") == task_id), None)
        kept = read_history_logs(self.storage, self.prefix, job_id, self._signer) or {}
        entry = kept.get(str(task_id)) if isinstance(kept.get(str(task_id)), dict) else None
        logs = str(entry.get("logs") or "") if entry else (failure or {}).get("log_tail", "")
        return {
            "job_id": job_id,
            "task": rows[0],
            "error": (failure or {}).get("error") or rows[0].get("error"),
            "traceback": (failure or {}).get("traceback", ""),
            "logs": logs[-TASK_LOG_CHARS:],
            "logs_complete": entry is not None and len(logs) <= TASK_LOG_CHARS,
        }


def job_overview(record: dict[str, Any], now: float, driver_beat: float | None) -> dict[str, Any]:
    """What the job list shows of a record (``driver_beat``: its driver's last heartbeat;
    None keeps the state ``read_record`` found)."""
    state = record["state"] if driver_beat is None else record_state(
        {**record, "state": record.get("stored_state", record["state"])}, now, driver_beat
    )
    summary = record.get("summary") or {}
    counts = record.get("counts") or {}
    return {
        "job_id": record.get("job_id"),
        "state": state,
        "function": record.get("function"),
        "backend": record.get("backend"),
        "host": record.get("host"),
        "submitted": record.get("submitted"),
        "finished": record.get("finished"),
        "heartbeat": record.get("heartbeat"),
        "sealed": record.get("sealed", True),
        "tasks": record.get("tasks", 0),
        "calls": record.get("calls", 0),
        "memory_mb": record.get("memory_mb"),
        "counts": counts,
        "done": counts.get("ok", 0) + counts.get("failed", 0) + counts.get("cancelled", 0),
        "cost_usd": summary.get("cost_usd"),
        "cold_starts": summary.get("cold_starts", 0),
        "peak_memory_mb": summary.get("peak_memory_mb", 0.0),
        "backups": summary.get("backups", 0),
        "retries": summary.get("retries", 0),
        "wall_s": summary.get("wall_s"),
        "task_seconds": summary.get("task_seconds"),
        "parallel_efficiency": summary.get("parallel_efficiency"),
    }


def stragglers(rows: list[dict[str, Any]], elapsed_s: float) -> list[dict[str, Any]]:
    """Tasks in flight ``STRAGGLER_FACTOR`` times as long as the median finished task was
    (and ``STRAGGLER_MIN_S``), longest first. Both are measured from the invoke of the
    latest attempt (a task in flight has no runtime timings yet); ``elapsed_s`` is the time
    since the job's submission."""
    finished = [
        r["completed"] - r["invoked"] for r in rows if r.get("completed") is not None and r.get("invoked") is not None
    ]
    if len(finished) < STRAGGLER_MIN_FINISHED:
        return []
    limit = max(STRAGGLER_FACTOR * statistics.median(finished), STRAGGLER_MIN_S)
    slow = []
    for row in rows:
        since = row.get("invoked")
        if row.get("state") == "running" and since is not None and elapsed_s - since > limit:
            slow.append({"id": row["id"], "running_s": round(elapsed_s - since, 2), "backups": row.get("backups", 0)})
    return sorted(slow, key=lambda s: s["running_s"], reverse=True)
