"""Writing the job records (``{job}/job.json``, ``logs.json``) of one executor, off the scheduler.

The writes run on one background thread, so the scheduler never waits for storage; pending
writes of one job collapse into the latest. They use their own connection to the store, so
a job's storage counters (``job.summary()``) count only the job's own requests. What is
written, and where, is ``driver.jobstore``'s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from lambdamr.driver.job import Job
from lambdamr.driver.jobstore import (
    final_record,
    job_record_key,
    logs_key,
    read_document,
    sign_document,
    submitted_record,
    task_log_entries,
)
from lambdamr.errors import IntegrityError, ObjectNotFound
from lambdamr.signing import Signer
from lambdamr.storage import Storage, reopen_storage

log = logging.getLogger("lambdamr")


class JobRecordWriter:
    """Writes the records of one executor's jobs on a background thread."""

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
        doc = submitted_record(job, fn)
        self._enqueue(job.job_id, job_record_key(job.prefix), lambda: doc)
        job.add_done_callback(lambda done: self._job_done(done, doc))

    def job_attached(self, job: Job) -> None:
        """Record the end of a job collected with ``attach``, in the record its first driver
        wrote (the state it left there, ``running``, would otherwise stay forever)."""
        try:
            doc = read_document(self._source, self._signer, job.job_id, job_record_key(job.prefix))
        except ObjectNotFound:
            return
        except IntegrityError as exc:
            log.warning("lambdamr: not updating the record of job %s: %s", job.job_id, exc)
            return
        job.add_done_callback(lambda done: self._job_done(done, doc))

    def _job_done(self, job: Job, submitted: dict[str, Any]) -> None:
        self._enqueue(job.job_id, job_record_key(job.prefix), lambda: final_record(job, submitted))
        if self._keep_logs:
            self._enqueue(
                job.job_id,
                logs_key(job.prefix),
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
            except Exception as exc:  # a job record is a convenience: never fail a job for it
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
                    log.warning("lambdamr: job records still unwritten after %.0f s; giving up", timeout)
                    self._pending.clear()
                    break
                self._cond.wait(remaining)
            self._closed = True
            self._cond.notify_all()
