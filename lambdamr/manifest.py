"""Job manifests: what ``lambdamr jobs`` and ``lambdamr logs`` read back from storage.

For every job the driver writes ``{job.prefix}/job.json``: at submission (state ``running``,
the function, task count, backend, memory) and again when the job ends (state ``done``,
``failed`` or ``cancelled``, and the summary's numbers). With ``keep_temp`` it also writes
``{job.prefix}/logs.json``, the captured output of every task that printed or failed, because
backends that answer with the result record inline never store the records themselves.

The writes run on one background thread, so the scheduler never waits for storage; pending
writes of one job collapse into the latest. They use their own connection to the store, so
a job's storage counters (``job.summary()``) count only the job's own requests. Manifests
live under the executor's session prefix and go away with its temp objects at shutdown
unless ``keep_temp=True``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import LambdaMRError, ObjectNotFound
from .protocol import decode_result
from .recovery import job_prefix_of
from .signing import MAGIC, OVERHEAD
from .storage import Storage, open_storage

if TYPE_CHECKING:
    from .job import Job

log = logging.getLogger("lambdamr")

MANIFEST_NAME = "job.json"
LOGS_NAME = "logs.json"
STATES = ("running", "done", "failed", "cancelled")


def manifest_key(job_prefix: str) -> str:
    """Where a job's manifest lives."""
    return f"{job_prefix}/{MANIFEST_NAME}"


def function_name(fn: Any) -> str:
    """``module.qualname`` of a function, for listings."""
    module = getattr(fn, "__module__", None) or ""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    return f"{module}.{name}" if module and module != "__main__" else name


def submitted_manifest(job: Job, fn: Any) -> dict[str, Any]:
    """The manifest of a job that has just been submitted."""
    return {
        "lambdamr": __version__,
        "job_id": job.job_id,
        "state": "running",
        "function": function_name(fn),
        "tasks": len(job.tasks),
        "calls": sum(t.calls for t in job.tasks),
        "submitted": job.submitted_at,
        "backend": job.backend,
        "memory_mb": job.memory_mb,
        "timeout_s": job.timeout_s,
        "region": job.region,
        "prefix": job.prefix,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def final_manifest(job: Job, submitted: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a job that has ended, with its summary's numbers."""
    summary = job.summary()
    state = "failed" if summary.failed else "cancelled" if summary.cancelled else "done"
    numbers = {
        name: getattr(summary, name)
        for name in ("succeeded", "failed", "cancelled", "retries", "backups", "cold_starts", "peak_concurrency")
    }
    numbers.update(
        wall_s=round(summary.wall_s, 3),
        task_seconds=round(summary.task_seconds, 3),
        parallel_efficiency=round(summary.parallel_efficiency, 3),
        storage_requests=summary.storage_requests,
        cost_usd=None if summary.cost is None else summary.cost.total_usd,
    )
    return dict(submitted, state=state, finished=job.finished_at, summary=numbers)


def task_log_entries(job: Job) -> dict[str, dict[str, Any]]:
    """The output of every task that printed or failed, keyed by task id (for ``logs.json``)."""
    entries: dict[str, dict[str, Any]] = {}
    for task in job.tasks:
        errors = [f.exception() for f in task.futures if f.done() and not f.cancelled() and f.exception() is not None]
        if not task.logs and not errors:
            continue
        timings = task.timings or {}
        entries[str(task.task_id)] = {
            "attempt": task.attempt,
            "logs": task.logs or "",
            "error": f"{type(errors[0]).__name__}: {errors[0]}".splitlines()[0] if errors else None,
            **{k: timings[k] for k in ("started", "finished", "cold") if k in timings},
        }
    return entries


class ManifestWriter:
    """Writes the manifests of one executor's jobs on a background thread."""

    def __init__(self, storage: Storage, *, keep_logs: bool) -> None:
        self._source = storage
        self._keep_logs = keep_logs
        self._store: Storage | None = None
        self._pending: dict[str, Callable[[], dict[str, Any] | None]] = {}
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def job_submitted(self, job: Job, fn: Any) -> None:
        """Record a new job (state ``running``); its final state is written when it ends."""
        doc = submitted_manifest(job, fn)
        self._enqueue(manifest_key(job.prefix), lambda: doc)
        job.add_done_callback(lambda done: self._job_done(done, doc))

    def job_attached(self, job: Job) -> None:
        """Record the end of a job collected with ``attach``, in the manifest its first driver
        wrote (the state it left there, ``running``, would otherwise stay forever)."""
        try:
            doc = json.loads(self._source.get(manifest_key(job.prefix)))
        except (ObjectNotFound, ValueError):
            return
        job.add_done_callback(lambda done: self._job_done(done, doc))

    def _job_done(self, job: Job, submitted: dict[str, Any]) -> None:
        self._enqueue(manifest_key(job.prefix), lambda: final_manifest(job, submitted))
        if self._keep_logs:
            self._enqueue(
                f"{job.prefix}/{LOGS_NAME}",
                lambda: {"job_id": job.job_id, "tasks": entries} if (entries := task_log_entries(job)) else None,
            )

    def _enqueue(self, key: str, build: Callable[[], dict[str, Any] | None]) -> None:
        with self._cond:
            if self._closed:
                return
            self._pending.pop(key, None)  # a newer state replaces one not yet written, keeps order
            self._pending[key] = build
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lambdamr-manifest", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    if self._store is not None and self._store is not self._source:
                        self._store.close()
                    return
                key = next(iter(self._pending))
                build = self._pending.pop(key)
                self._busy = True
            try:
                doc = build()
                if doc is not None:
                    self._writer().put(key, json.dumps(doc, default=str).encode())
            except Exception as exc:  # a manifest is a convenience: never fail a job for it
                log.warning("lambdamr: could not write %s: %s", key, exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _writer(self) -> Storage:
        if self._store is None:
            try:
                self._store = open_storage(self._source.spec())
            except Exception:  # a store that cannot be rebuilt from its spec: share it
                self._store = self._source
        return self._store

    def close(self, *, flush: bool, timeout: float = 30.0) -> None:
        """Stop the thread: write what is pending first with ``flush``, else drop it; either
        way wait for a write in progress (shutdown deletes temp objects next)."""
        with self._cond:
            if not flush:
                self._pending.clear()
            deadline = time.monotonic() + timeout
            while (self._pending or self._busy) and self._thread is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning("lambdamr: job manifests still unwritten after %.0f s; giving up", timeout)
                    self._pending.clear()
                    break
                self._cond.wait(remaining)
            self._closed = True
            self._cond.notify_all()


# ---- reading back (the CLI) -------------------------------------------------------------
def unsigned(record: bytes) -> bytes:
    """A stored result record without its signature. Only the JSON header is read from it,
    never a pickle, so the CLI needs no signing key (and trusts the logs as much as the bucket)."""
    return record[OVERHEAD:] if record[: len(MAGIC)] == MAGIC else record


def list_jobs(storage: Storage, prefix: str) -> list[dict[str, Any]]:
    """Manifests of every job under ``prefix`` (the executor's base prefix), newest first.

    One listing of everything under ``prefix`` (kept jobs' results included) and one GET
    per job.
    """
    jobs = []
    for info in storage.list(prefix.rstrip("/") + "/" if prefix else ""):
        if info.key.endswith("/" + MANIFEST_NAME):
            try:
                jobs.append(json.loads(storage.get(info.key)))
            except (LambdaMRError, ValueError) as exc:  # deleted meanwhile, or half written
                log.warning("lambdamr: skipping %s: %s", info.key, exc)
    return sorted(jobs, key=lambda doc: doc.get("submitted") or 0, reverse=True)


def find_job(storage: Storage, prefix: str, job_id: str) -> dict[str, Any]:
    """The manifest of ``job_id`` (``{session}-{number}``) under ``prefix``.

    Raises:
        ObjectNotFound: no such job in this storage (deleted at shutdown, or another prefix).
    """
    key = manifest_key(job_prefix_of(prefix.strip("/"), job_id))
    try:
        return json.loads(storage.get(key))
    except ObjectNotFound:
        for doc in list_jobs(storage, prefix):  # a job written under another layout
            if doc.get("job_id") == job_id:
                return doc
    raise ObjectNotFound(
        f"no job {job_id!r} under {storage.url(prefix)}: a job's objects are deleted when its "
        "executor shuts down unless it was created with keep_temp=True; `lambdamr jobs` lists "
        "the jobs still in storage"
    )


def read_task_logs(storage: Storage, manifest: dict[str, Any], task_id: int | None = None) -> Iterator[dict[str, Any]]:
    """Each task's captured output as ``{task_id, attempt, logs, error, started, finished, cold}``.

    From ``logs.json`` when the job wrote one (``keep_temp``), else from the result records
    in storage (jobs still running on a backend that stores its records).
    """
    prefix = manifest["prefix"]
    try:
        kept = json.loads(storage.get(f"{prefix}/{LOGS_NAME}"))["tasks"]
    except ObjectNotFound:
        kept = None
    if kept is not None:
        for key in sorted(kept, key=int):
            if task_id is None or int(key) == task_id:
                yield {"task_id": int(key), **kept[key]}
        return
    latest: dict[int, tuple[int, str]] = {}
    for info in storage.list(f"{prefix}/results/"):
        try:
            task, attempt = (int(part) for part in info.key.rsplit("/", 1)[-1].split("."))
        except ValueError:
            continue
        if (task_id is None or task == task_id) and attempt >= latest.get(task, (-1, ""))[0]:
            latest[task] = (attempt, info.key)
    for task, (attempt, key) in sorted(latest.items()):
        header, _ = decode_result(unsigned(storage.get(key)))
        failed = [c for c in header.get("calls", []) if not c.get("ok")]
        if header.get("task_error"):
            failed = [header["task_error"]]
        error = f"{failed[0]['error_type'].rsplit('.', 1)[-1]}: {failed[0]['error_message']}" if failed else None
        if task_id is None and not header.get("logs") and not error:
            continue
        timings = header.get("timings", {})
        yield {
            "task_id": task,
            "attempt": attempt,
            "logs": header.get("logs") or "",
            "error": error,
            **{k: timings[k] for k in ("started", "finished", "cold") if k in timings},
        }
