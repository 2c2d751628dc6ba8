"""The job history: a small record per job that outlives its executor.

A job's own objects live under its session (``{prefix}/{session}/{number}/``) and go away at
shutdown. The history keeps, under the executor's base prefix and outside every session::

    {prefix}/history/{job_id}.json        state, counts, summary, every task's timeline, failures
    {prefix}/history/{job_id}.logs.json   what the tasks that printed or failed printed (at the end)

The driver writes a job's record when the job is submitted, rewrites it every
``heartbeat_s`` while the job runs (the *heartbeat*: done/running/failed counts, the tasks'
phases, the running cost) and a last time when it ends. A record that says ``running`` but
whose heartbeat is older than ``stale_after_s`` belongs to a driver that died (SIGKILL, a
lost machine): readers show it as ``abandoned`` (``record_state``). The session lease
(``lambdamr.driver.lease``) tells the same for the session's objects, but refreshes every
minute: too slowly to watch a job, hence a heartbeat of its own.

The history is bounded (``HistoryPolicy``): when an executor shuts down, and on
``lambdamr clean``, the records past ``max_jobs`` (oldest first: job ids begin with their
session's UTC time) or older than ``max_age_days`` are deleted — one LIST, no GET.

Everything here is signed like the job manifests (kind ``job-record``, bound to the job and
the key) and read back as untrusted: what does not verify is skipped with a warning. Writes
run on one background thread with a connection of its own, so a job never waits for them
and its storage counters do not count them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from lambdamr._version import __version__
from lambdamr.driver.jobstore import function_name, read_document, sign_document, task_log_entries
from lambdamr.driver.lease import HISTORY_FOLDER
from lambdamr.errors import ConfigurationError, IntegrityError, LambdaMRError, ObjectNotFound
from lambdamr.runtime.capture import log_tail
from lambdamr.signing import Signer
from lambdamr.storage import Storage, reopen_storage

if TYPE_CHECKING:
    from lambdamr.driver.job import Job, Task

log = logging.getLogger("lambdamr")

RECORD_SUFFIX = ".json"
LOGS_SUFFIX = ".logs.json"
#: a record's format; readers skip other versions
RECORD_VERSION = 1
#: a running record whose heartbeat is this many heartbeats old belongs to a dead driver
MISSED_HEARTBEATS = 10
#: tasks whose phases a record keeps (a bigger job keeps its counts and summary only)
MAX_TASK_ROWS = 10_000
#: failed tasks whose error, traceback and log tail a record keeps
MAX_FAILURES = 50
#: tasks whose output the logs document keeps
MAX_LOGGED_TASKS = 1_000
STATES = ("running", "done", "failed", "cancelled", "abandoned")


@dataclasses.dataclass(frozen=True)
class HistoryPolicy:
    """How much history to keep and how often a running job's record is rewritten.

    ``LAMBDAMR_HISTORY_MAX_JOBS`` (0 keeps no history at all), ``LAMBDAMR_HISTORY_MAX_AGE_DAYS``
    and ``LAMBDAMR_HISTORY_HEARTBEAT_S`` set them for every executor of a process.
    """

    max_jobs: int = 500
    max_age_days: float = 30.0
    heartbeat_s: float = 2.0

    def __post_init__(self) -> None:
        if self.max_jobs < 0 or self.max_age_days <= 0 or not 0.05 <= self.heartbeat_s <= 300:
            raise ConfigurationError(
                f"job history: max_jobs={self.max_jobs} (want >= 0), max_age_days={self.max_age_days} (want > 0), "
                f"heartbeat_s={self.heartbeat_s} (want 0.05 to 300)"
            )

    @property
    def enabled(self) -> bool:
        return self.max_jobs > 0

    @property
    def stale_after_s(self) -> float:
        return MISSED_HEARTBEATS * self.heartbeat_s

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> HistoryPolicy:
        """The policy the ``LAMBDAMR_HISTORY_*`` variables set (defaults for the others)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, field, kind in (
            ("LAMBDAMR_HISTORY_MAX_JOBS", "max_jobs", int),
            ("LAMBDAMR_HISTORY_MAX_AGE_DAYS", "max_age_days", float),
            ("LAMBDAMR_HISTORY_HEARTBEAT_S", "heartbeat_s", float),
        ):
            raw = env.get(name, "").strip()
            if raw:
                try:
                    values[field] = kind(raw)
                except ValueError:
                    raise ConfigurationError(f"{name}={raw!r} is not a number") from None
        return cls(**values)


def history_prefix(prefix: str) -> str:
    """The folder of the history under an executor's base prefix."""
    return f"{prefix.strip('/')}/{HISTORY_FOLDER}" if prefix.strip("/") else HISTORY_FOLDER


def record_key(prefix: str, job_id: str) -> str:
    return f"{history_prefix(prefix)}/{job_id}{RECORD_SUFFIX}"


def logs_key(prefix: str, job_id: str) -> str:
    return f"{history_prefix(prefix)}/{job_id}{LOGS_SUFFIX}"


def job_id_of_history_key(key: str) -> str | None:
    """The job a history record's key names (None for a logs document or a stranger)."""
    name = key.rsplit("/", 1)[-1]
    if not name.endswith(RECORD_SUFFIX) or name.endswith(LOGS_SUFFIX):
        return None
    job_id = name[: -len(RECORD_SUFFIX)]
    return job_id if job_id.count("-") >= 3 else None


# ---- building a record (the driver) -----------------------------------------------------
def _rel(moment: Any, origin: float) -> float | None:
    return None if not isinstance(moment, (int, float)) else round(moment - origin, 4)


def task_state(task: Task) -> str:
    """``pending``, ``running``, ``ok``, ``failed`` or ``cancelled``."""
    outcome = task.outcome
    if task.done and outcome is not None:
        return "failed" if outcome.failed else "cancelled" if outcome.cancelled and not outcome.succeeded else "ok"
    return "running" if task.attempt > 0 else "pending"


def task_row(task: Task, origin: float) -> dict[str, Any]:
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


def failure_entry(task: Task) -> dict[str, Any]:
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


def job_record(job: Job, static: dict[str, Any], policy: HistoryPolicy, now: float | None = None) -> dict[str, Any]:
    """A job's history record as it stands now (``static``: what does not change)."""
    now = time.time() if now is None else now
    tasks = list(job.tasks)
    states = [task_state(t) for t in tasks]
    counts = {name: states.count(name) for name in ("pending", "running", "ok", "failed", "cancelled")}
    numbers = summary_numbers(job)
    if job.done():
        state = "failed" if numbers["failed"] else "cancelled" if numbers["cancelled"] else "done"
    else:
        state = "running"
    failures = [failure_entry(t) for t, s in zip(tasks, states) if s == "failed"][:MAX_FAILURES]
    return {
        **static,
        "state": state,
        "sealed": job.sealed,
        "heartbeat": now,
        "heartbeat_s": policy.heartbeat_s,
        "stale_after_s": policy.stale_after_s,
        "finished": job.finished_at,
        "tasks": len(tasks),
        "calls": numbers["calls"],
        "counts": counts,
        "summary": numbers,
        "task_rows": [task_row(t, job.submitted_at) for t in tasks[:MAX_TASK_ROWS]],
        "task_rows_truncated": len(tasks) > MAX_TASK_ROWS,
        "failures": failures,
    }


def static_fields(job: Job, fn: Any, prefix: str) -> dict[str, Any]:
    return {
        "record_version": RECORD_VERSION,
        "lambdamr": __version__,
        "job_id": job.job_id,
        "function": function_name(fn) if fn is not None else "(attached)",
        "submitted": job.submitted_at,
        "backend": job.backend,
        "memory_mb": job.memory_mb,
        "timeout_s": job.timeout_s,
        "region": job.region,
        "prefix": job.prefix,
        "logs": logs_key(prefix, job.job_id),
        "host": _hostname(),
        "pid": os.getpid(),
    }


def _hostname() -> str:
    import socket

    return socket.gethostname()


# ---- writing (one background thread per executor) ---------------------------------------
class JobHistory:
    """Keeps the history records of one executor's jobs: at submission, every heartbeat
    while they run, and at their end; prunes the history when the executor closes."""

    def __init__(self, storage: Storage, signer: Signer, prefix: str, policy: HistoryPolicy | None = None) -> None:
        self._source = storage
        self._signer = signer
        self._prefix = prefix
        self.policy = policy or HistoryPolicy.from_env()
        self._store: Storage | None = None
        self._running: dict[str, tuple[Job, dict[str, Any]]] = {}  # job id -> (job, static fields)
        self._ended: list[tuple[Job, dict[str, Any]]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._busy = False
        self._thread: threading.Thread | None = None

    def track(self, job: Job, fn: Any = None) -> None:
        """Record ``job`` from now on (``fn`` names it; None for a job collected by attach)."""
        if not self.policy.enabled:
            return
        static = static_fields(job, fn, self._prefix)
        with self._cond:
            if self._closed:
                return
            self._running[job.job_id] = (job, static)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lambdamr-history", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        job.add_done_callback(self._ended_job)

    def _ended_job(self, job: Job) -> None:
        with self._cond:
            entry = self._running.pop(job.job_id, None)
            if entry is not None:
                self._ended.append(entry)
                self._cond.notify_all()

    def _run(self) -> None:
        first = True
        while True:
            with self._cond:
                if not first and not self._ended and not self._closed:
                    self._cond.wait(self.policy.heartbeat_s)
                first = False
                ended, self._ended = self._ended, []
                running = list(self._running.values())
                closing = self._closed
                self._busy = True
            try:
                for job, static in ended:
                    self._write(job, static, final=True)
                for job, static in running:
                    self._write(job, static, final=closing)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
            if closing:
                return

    def _write(self, job: Job, static: dict[str, Any], *, final: bool) -> None:
        key = record_key(self._prefix, job.job_id)
        try:
            record = job_record(job, static, self.policy)
            store = self._writer()
            store.put(key, sign_document(self._signer, job.job_id, key, record))
            if final and (entries := task_log_entries(job)):
                logged = dict(list(entries.items())[:MAX_LOGGED_TASKS])
                lkey = logs_key(self._prefix, job.job_id)
                store.put(lkey, sign_document(self._signer, job.job_id, lkey, {"job_id": job.job_id, "tasks": logged}))
        except Exception as exc:  # a history record is a convenience: never fail a job for it
            log.warning("lambdamr: could not write the history record %s: %s", key, exc)

    def _writer(self) -> Storage:
        if self._store is None:
            self._store = reopen_storage(self._source)
        return self._store

    def close(self, timeout: float = 30.0) -> None:
        """Write every job's latest record (a job still running stays ``running`` and turns
        ``abandoned`` once its heartbeat is stale), then prune the history."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("lambdamr: job history still unwritten after %.0f s; giving up", timeout)
        if self.policy.enabled and thread is not None:
            try:
                prune_history(self._writer(), self._prefix, self.policy)
            except LambdaMRError as exc:
                log.warning("lambdamr: could not prune the job history: %s", exc)
        if self._store is not None and self._store is not self._source:
            self._store.close()


# ---- reading back (CLI, dashboard) -------------------------------------------------------
def record_state(record: dict[str, Any], now: float | None = None) -> str:
    """The state to show: the stored one, or ``abandoned`` for a running job whose driver
    stopped beating."""
    state = str(record.get("state", "?"))
    if state != "running":
        return state
    now = time.time() if now is None else now
    heartbeat = record.get("heartbeat")
    stale = record.get("stale_after_s") or HistoryPolicy().stale_after_s
    if isinstance(heartbeat, (int, float)) and isinstance(stale, (int, float)) and now - heartbeat > stale:
        return "abandoned"
    return state


def history_keys(storage: Storage, prefix: str) -> list[tuple[str, str, float | None]]:
    """``(job id, key, modified)`` of every record in the history, newest job first."""
    found = []
    for info in storage.list(history_prefix(prefix) + "/"):
        job_id = job_id_of_history_key(info.key)
        if job_id is not None:
            found.append((job_id, info.key, info.modified))
    return sorted(found, reverse=True)


def read_record(storage: Storage, prefix: str, job_id: str, signer: Signer, now: float | None = None) -> dict[str, Any]:
    """One job's verified history record, its ``state`` as ``record_state`` tells.

    Raises:
        ObjectNotFound: no record of that job (never recorded, or pruned).
        IntegrityError: it does not verify for that job.
    """
    record = read_document(storage, signer, job_id, record_key(prefix, job_id))
    if record.get("record_version") != RECORD_VERSION:
        raise IntegrityError(f"the history record of job {job_id} is of format {record.get('record_version')!r}")
    record["state"] = record_state(record, now)
    return record


def list_history(
    storage: Storage, prefix: str, signer: Signer, *, limit: int = 0, now: float | None = None, rows: bool = False
) -> list[dict[str, Any]]:
    """The newest ``limit`` records (0: all), newest first; without ``rows`` each record
    drops its task rows and failures (a listing needs neither)."""
    records: list[dict[str, Any]] = []
    for job_id, key, _ in history_keys(storage, prefix):
        if limit and len(records) >= limit:
            break
        try:
            record = read_record(storage, prefix, job_id, signer, now)
        except IntegrityError as exc:
            log.warning("lambdamr: skipping %r, which does not verify: %s", key, exc)
            continue
        except LambdaMRError:  # pruned meanwhile
            continue
        if not rows:
            record.pop("task_rows", None)
            record.pop("failures", None)
        records.append(record)
    return records


def read_history_logs(storage: Storage, prefix: str, job_id: str, signer: Signer) -> dict[str, dict[str, Any]] | None:
    """The kept output of a job's tasks, keyed by task id, or None when there is none."""
    key = logs_key(prefix, job_id)
    try:
        tasks = read_document(storage, signer, job_id, key).get("tasks")
    except ObjectNotFound:
        return None
    except IntegrityError as exc:
        log.warning("lambdamr: ignoring %r, which does not verify: %s", key, exc)
        return None
    return tasks if isinstance(tasks, dict) else None


def keys_to_prune(
    entries: Iterable[tuple[str, str, float | None]], policy: HistoryPolicy, now: float | None = None
) -> list[str]:
    """Of ``(job id, record key, modified)``, the keys past ``max_jobs`` (oldest jobs first)
    or older than ``max_age_days``, with their logs documents."""
    now = time.time() if now is None else now
    ordered = sorted(entries, reverse=True)
    doomed = []
    for index, (_, key, modified) in enumerate(ordered):
        too_old = modified is not None and now - modified > policy.max_age_days * 86400
        if index >= policy.max_jobs or too_old:
            doomed += [key, key[: -len(RECORD_SUFFIX)] + LOGS_SUFFIX]
    return doomed


def prune_history(storage: Storage, prefix: str, policy: HistoryPolicy, now: float | None = None) -> int:
    """Delete the records ``keys_to_prune`` names; return how many objects went."""
    doomed = keys_to_prune(history_keys(storage, prefix), policy, now)
    present = {info.key for info in storage.list(history_prefix(prefix) + "/")} if doomed else set()
    keys = [key for key in doomed if key in present]
    if keys:
        storage.delete(keys)
    return len(keys)
