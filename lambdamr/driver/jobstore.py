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

Both are signed for their job and key, like every other object (``lambdamr.signing``), and
the readers here treat storage as untrusted: a manifest, a logs document or a result record
that does not verify — or was signed for another job, task or attempt — is skipped with a
warning, never shown.
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

from lambdamr._version import __version__
from lambdamr.driver.attach import job_prefix_of
from lambdamr.errors import IntegrityError, LambdaMRError, ObjectNotFound
from lambdamr.protocol import decode_result, result_context, session_of
from lambdamr.signing import Context, Signer, process_key
from lambdamr.storage import Storage, reopen_storage

if TYPE_CHECKING:
    from lambdamr.driver.job import Job

log = logging.getLogger("lambdamr")

MANIFEST_NAME = "job.json"
LOGS_NAME = "logs.json"
STATES = ("running", "done", "failed", "cancelled")


def manifest_key(job_prefix: str) -> str:
    """Where a job's manifest lives."""
    return f"{job_prefix}/{MANIFEST_NAME}"


def document_context(job_id: str, key: str) -> Context:
    """What a job's manifest (``job.json``) or logs document (``logs.json``) is signed for."""
    kind = "task-logs" if key.endswith("/" + LOGS_NAME) else "job-record"
    return Context(kind, session=session_of(job_id), job=job_id, key=key)


def job_id_of_key(key: str) -> str | None:
    """The job a ``{session}/{number}/job.json`` or ``logs.json`` key belongs to."""
    parts = key.split("/")
    if len(parts) < 3 or not parts[-2].isdigit():
        return None
    return f"{parts[-3]}-{parts[-2]}"


def sign_document(signer: Signer, job_id: str, key: str, doc: dict[str, Any]) -> bytes:
    """A manifest or logs document as stored: JSON, signed for its job and key."""
    return signer.sign(json.dumps(doc, default=str).encode(), document_context(job_id, key))


def read_document(storage: Storage, signer: Signer, job_id: str, key: str) -> dict[str, Any]:
    """A stored manifest or logs document, once it verifies for ``job_id`` and ``key``.

    Raises:
        ObjectNotFound: no such object.
        IntegrityError: unsigned, modified, another job's, or not a JSON object.
    """
    what = f"{'logs' if key.endswith(LOGS_NAME) else 'manifest'} of job {job_id}"
    payload = signer.verify(storage.get(key), document_context(job_id, key), what=what)
    try:
        doc = json.loads(bytes(payload))
    except ValueError as exc:
        raise IntegrityError(f"the {what} is signed but not JSON: {exc}") from None
    if not isinstance(doc, dict) or ("job_id" in doc and doc["job_id"] != job_id):
        raise IntegrityError(f"the {what} does not describe job {job_id}")
    return doc


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
    # A streaming map adds tasks after submission: its final counts are the summary's.
    return dict(submitted, state=state, finished=job.finished_at, tasks=summary.tasks, calls=summary.calls, summary=numbers)


def task_log_entries(job: Job) -> dict[str, dict[str, Any]]:
    """The output of every task that printed or failed, keyed by task id (for ``logs.json``)."""
    entries: dict[str, dict[str, Any]] = {}
    for task in job.tasks:
        error = task.outcome.error if task.outcome is not None else None  # results are not kept: the outcome is
        if not task.logs and not error:
            continue
        timings = task.timings or {}
        entries[str(task.task_id)] = {
            "attempt": task.attempt,
            "logs": task.logs or "",
            "error": error,
            **{k: timings[k] for k in ("started", "finished", "cold") if k in timings},
        }
    return entries


class ManifestWriter:
    """Writes the manifests of one executor's jobs on a background thread."""

    def __init__(self, storage: Storage, signer: Signer, *, keep_logs: bool) -> None:
        self._source = storage
        self._signer = signer
        self._keep_logs = keep_logs
        self._store: Storage | None = None
        self._pending: dict[str, tuple[str, Callable[[], dict[str, Any] | None]]] = {}
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def job_submitted(self, job: Job, fn: Any) -> None:
        """Record a new job (state ``running``); its final state is written when it ends."""
        doc = submitted_manifest(job, fn)
        self._enqueue(job.job_id, manifest_key(job.prefix), lambda: doc)
        job.add_done_callback(lambda done: self._job_done(done, doc))

    def job_attached(self, job: Job) -> None:
        """Record the end of a job collected with ``attach``, in the manifest its first driver
        wrote (the state it left there, ``running``, would otherwise stay forever)."""
        try:
            doc = read_document(self._source, self._signer, job.job_id, manifest_key(job.prefix))
        except ObjectNotFound:
            return
        except IntegrityError as exc:
            log.warning("lambdamr: not updating the manifest of job %s: %s", job.job_id, exc)
            return
        job.add_done_callback(lambda done: self._job_done(done, doc))

    def _job_done(self, job: Job, submitted: dict[str, Any]) -> None:
        self._enqueue(job.job_id, manifest_key(job.prefix), lambda: final_manifest(job, submitted))
        if self._keep_logs:
            self._enqueue(
                job.job_id,
                f"{job.prefix}/{LOGS_NAME}",
                lambda: {"job_id": job.job_id, "tasks": entries} if (entries := task_log_entries(job)) else None,
            )

    def _enqueue(self, job_id: str, key: str, build: Callable[[], dict[str, Any] | None]) -> None:
        with self._cond:
            if self._closed:
                return
            self._pending.pop(key, None)  # a newer state replaces one not yet written, keeps order
            self._pending[key] = (job_id, build)
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
                job_id, build = self._pending.pop(key)
                self._busy = True
            try:
                doc = build()
                if doc is not None:
                    self._writer().put(key, sign_document(self._signer, job_id, key, doc))
            except Exception as exc:  # a manifest is a convenience: never fail a job for it
                log.warning("lambdamr: could not write %s: %s", key, exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _writer(self) -> Storage:
        if self._store is None:
            self._store = reopen_storage(self._source)
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
def _default_signer(signer: Signer | None) -> Signer:
    return signer if signer is not None else Signer(process_key())


def list_jobs(storage: Storage, prefix: str, signer: Signer | None = None) -> list[dict[str, Any]]:
    """Manifests of every job under ``prefix`` (the executor's base prefix), newest first.

    One listing of everything under ``prefix`` (kept jobs' results included) and one GET
    per job. A manifest that does not verify for the job its key names is skipped.
    """
    signer = _default_signer(signer)
    jobs = []
    for info in storage.list(prefix.rstrip("/") + "/" if prefix else ""):
        if not info.key.endswith("/" + MANIFEST_NAME):
            continue
        job_id = job_id_of_key(info.key)
        if job_id is None:
            continue
        try:
            jobs.append(read_document(storage, signer, job_id, info.key))
        except IntegrityError as exc:
            log.warning("lambdamr: skipping %r, which does not verify: %s", info.key, exc)
        except LambdaMRError as exc:  # deleted meanwhile
            log.warning("lambdamr: skipping %r: %s", info.key, exc)
    return sorted(jobs, key=lambda doc: doc.get("submitted") or 0, reverse=True)


def find_job(storage: Storage, prefix: str, job_id: str, signer: Signer | None = None) -> dict[str, Any]:
    """The manifest of ``job_id`` (``{session}-{number}``) under ``prefix``.

    Raises:
        ObjectNotFound: no such job in this storage (deleted at shutdown, or another prefix).
        IntegrityError: its manifest does not verify.
    """
    signer = _default_signer(signer)
    key = manifest_key(job_prefix_of(prefix.strip("/"), job_id))
    try:
        return read_document(storage, signer, job_id, key)
    except ObjectNotFound:
        for doc in list_jobs(storage, prefix, signer):  # a job written under another layout
            if doc.get("job_id") == job_id:
                return doc
    raise ObjectNotFound(
        f"no job {job_id!r} under {storage.url(prefix)}: a job's objects are deleted when its "
        "executor shuts down unless it was created with keep_temp=True; `lambdamr jobs` lists "
        "the jobs still in storage"
    )


def _stored_record_header(storage: Storage, signer: Signer, job_id: str, task: int, attempt: int, key: str) -> dict[str, Any]:
    """The header of a stored result record, once it verifies for this task and attempt.
    Only the JSON header is read, never a pickle."""
    what = f"result of task {task} (attempt {attempt}) of job {job_id}"
    payload = signer.verify(storage.get(key), result_context(job_id, task, attempt, key), what=what)
    header, _ = decode_result(payload)
    if (header.get("job_id"), header.get("task_id"), header.get("attempt")) != (job_id, task, attempt):
        raise IntegrityError(f"the {what} has a header of another task")
    return header


def read_task_logs(
    storage: Storage, manifest: dict[str, Any], task_id: int | None = None, signer: Signer | None = None
) -> Iterator[dict[str, Any]]:
    """Each task's captured output as ``{task_id, attempt, logs, error, started, finished, cold}``.

    From ``logs.json`` when the job wrote one (``keep_temp``), else from the result records
    in storage (jobs still running on a backend that stores its records). Only verified
    documents and records are read: one that does not verify is skipped with a warning (for
    a task, its latest verified record is shown instead).
    """
    signer = _default_signer(signer)
    prefix = manifest["prefix"]
    job_id = str(manifest["job_id"])
    kept: dict[str, Any] | None
    try:
        kept = read_document(storage, signer, job_id, f"{prefix}/{LOGS_NAME}")["tasks"]
    except ObjectNotFound:
        kept = None
    except (IntegrityError, KeyError, TypeError) as exc:
        log.warning("lambdamr: ignoring the stored logs of job %s, which do not verify: %s", job_id, exc)
        kept = None
    if isinstance(kept, dict):
        for key in sorted((k for k in kept if k.isdigit() and isinstance(kept[k], dict)), key=int):
            if task_id is None or int(key) == task_id:
                yield {"task_id": int(key), **kept[key]}
        return
    stored: dict[int, list[tuple[int, str]]] = {}
    for info in storage.list(f"{prefix}/results/"):
        try:
            task, attempt = (int(part) for part in info.key.rsplit("/", 1)[-1].split("."))
        except ValueError:
            continue
        if task_id is None or task == task_id:
            stored.setdefault(task, []).append((attempt, info.key))
    for task, attempts in sorted(stored.items()):
        header = None
        for attempt, key in sorted(attempts, reverse=True):  # the latest attempt that verifies
            try:
                header = _stored_record_header(storage, signer, job_id, task, attempt, key)
                break
            except LambdaMRError as exc:
                log.warning("lambdamr: skipping %r, which does not verify: %s", key, exc)
        if header is None:
            continue
        failed = [c for c in header.get("calls", []) if isinstance(c, dict) and not c.get("ok")]
        if header.get("task_error"):
            failed = [header["task_error"]]
        error = (
            f"{str(failed[0].get('error_type', '')).rsplit('.', 1)[-1]}: {failed[0].get('error_message', '')}"
            if failed else None
        )
        if task_id is None and not header.get("logs") and not error:
            continue
        timings = header.get("timings", {})
        yield {
            "task_id": task,
            "attempt": attempt,
            "logs": str(header.get("logs") or ""),
            "error": error,
            **{k: timings[k] for k in ("started", "finished", "cold") if k in timings},
        }
