"""The job history: a small record per job that outlives its executor.

A job's own objects live under its session (``{prefix}/{session}/{number}/``) and go away at
shutdown. The history keeps, beside the temp prefix (not under it: a deployed bucket's
lifecycle rule expires everything under ``{prefix}/`` after a day)::

    {prefix}-history/{job_id}.json          state, counts, summary, every task's phases, failures
    {prefix}-history/{job_id}.logs.json     what the tasks that printed or failed printed (at the end)
    {prefix}-history/{session}.driver.json  the driver's heartbeat, while it has jobs running

The driver writes a job's record (``lambdamr.driver.history_record``) when the job is
submitted, again whenever it changed — at most once per ``heartbeat_s`` — and a last time
when it ends. While it has jobs running it also rewrites its heartbeat object every
``heartbeat_s``: one write per driver, however many jobs it runs. A record that says
``running`` while neither it nor its driver's heartbeat was written in ``stale_after_s``
belongs to a driver that died (SIGKILL, a lost machine): readers show it ``abandoned``
(``lambdamr.driver.history_reader``). The session lease (``lambdamr.driver.lease``) tells the
same for the session's objects, but refreshes every minute, too slowly to watch a job.

The history is bounded (``HistoryPolicy``): when an executor shuts down, and on
``lambdamr clean`` of a local folder, the records past ``max_jobs`` (oldest first: job ids
begin with their session's UTC time) or older than ``max_age_days`` are deleted — one LIST,
no GET.

Records are signed like the job manifests (kind ``job-record``, bound to the job and the key)
and read back as untrusted. The writes run on one background thread with a connection of its
own, so a job never waits for them and its storage counters do not count them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from lambdamr.driver.history_record import fingerprint, job_record, static_fields
from lambdamr.driver.jobstore import sign_document, task_log_entries
from lambdamr.errors import ConfigurationError, LambdaMRError
from lambdamr.protocol import session_of
from lambdamr.signing import Signer
from lambdamr.storage import Storage, reopen_storage

if TYPE_CHECKING:
    from lambdamr.driver.job import Job

log = logging.getLogger("lambdamr")

RECORD_SUFFIX = ".json"
LOGS_SUFFIX = ".logs.json"
DRIVER_SUFFIX = ".driver.json"
#: a running job is abandoned when neither its record nor its driver's heartbeat was
#: written for this many heartbeats
MISSED_HEARTBEATS = 10
#: tasks whose output the logs document keeps
MAX_LOGGED_TASKS = 1_000
#: a dead driver's heartbeat object is pruned this long after its last write
DRIVER_HEARTBEAT_KEPT_S = 86_400.0
#: a running job's record is rewritten no sooner than this many times what its last write
#: cost in CPU: a big job's record (its summary, up to 10,000 task rows) costs in proportion
#: to its tasks, and rewriting it every heartbeat would take a growing share of the driver;
#: this keeps the rewrites under about 1/REWRITE_SPACING of a core (the driver's heartbeat,
#: not the record, proves the job alive; the final record is always written)
REWRITE_SPACING = 20


@dataclasses.dataclass(frozen=True)
class HistoryPolicy:
    """How much history to keep and how often a driver beats.

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


# ---- layout --------------------------------------------------------------------------------
def history_prefix(prefix: str) -> str:
    """The history's folder for an executor's temp prefix: its sibling ``{prefix}-history``
    (``lambdamr-history`` by default), which no temp-object lifecycle rule covers."""
    return f"{prefix.strip('/') or 'lambdamr'}-history"


def record_key(prefix: str, job_id: str) -> str:
    return f"{history_prefix(prefix)}/{job_id}{RECORD_SUFFIX}"


def logs_key(prefix: str, job_id: str) -> str:
    return f"{history_prefix(prefix)}/{job_id}{LOGS_SUFFIX}"


def driver_key(prefix: str, session: str) -> str:
    return f"{history_prefix(prefix)}/{session}{DRIVER_SUFFIX}"


@dataclasses.dataclass(frozen=True)
class HistoryListing:
    """One LIST of the history: its records, newest job first, and when each driver last beat."""

    folder: str  # the history's prefix
    records: list[tuple[str, str, float | None]]  # (job id, key, modified)
    drivers: dict[str, float]  # session -> modified


def list_history_folder(storage: Storage, prefix: str) -> HistoryListing:
    """What the history folder holds (one LIST; nothing is read or verified)."""
    return history_listing(prefix, ((info.key, info.modified) for info in storage.list(history_prefix(prefix) + "/")))


def history_listing(prefix: str, objects: Iterable[tuple[str, float | None]]) -> HistoryListing:
    """The history of ``prefix`` as the ``(key, modified)`` of a LIST of its folder shows it
    (from a ``Storage`` or, in ``lambdamr clean``, straight from S3)."""
    records = []
    drivers: dict[str, float] = {}
    for key, modified in objects:
        name = key.rsplit("/", 1)[-1]
        if name.endswith(DRIVER_SUFFIX):
            if modified is not None:
                drivers[name[: -len(DRIVER_SUFFIX)]] = modified
        elif name.endswith(RECORD_SUFFIX) and not name.endswith(LOGS_SUFFIX):
            job_id = name[: -len(RECORD_SUFFIX)]
            if job_id.count("-") >= 3:  # {session}-{number}, the session itself dated
                records.append((job_id, key, modified))
    return HistoryListing(history_prefix(prefix), sorted(records, reverse=True), drivers)


# ---- bounds ----------------------------------------------------------------------------------
def keys_to_prune(listing: HistoryListing, policy: HistoryPolicy, now: float | None = None) -> list[str]:
    """The keys past ``max_jobs`` (oldest jobs first) or older than ``max_age_days``, with
    their logs documents, and the heartbeats of drivers gone for a day."""
    now = time.time() if now is None else now
    doomed = []
    for index, (_, key, modified) in enumerate(listing.records):
        too_old = modified is not None and now - modified > policy.max_age_days * 86400
        if index >= policy.max_jobs or too_old:
            doomed += [key, key[: -len(RECORD_SUFFIX)] + LOGS_SUFFIX]
    for session, modified in listing.drivers.items():
        if now - modified > DRIVER_HEARTBEAT_KEPT_S:
            doomed.append(f"{listing.folder}/{session}{DRIVER_SUFFIX}")
    return doomed


def prune_history(storage: Storage, prefix: str, policy: HistoryPolicy, now: float | None = None) -> int:
    """Delete what ``keys_to_prune`` names (only keys that exist); return how many went."""
    listing = list_history_folder(storage, prefix)
    doomed = keys_to_prune(listing, policy, now)
    if not doomed:
        return 0
    present = {info.key for info in storage.list(history_prefix(prefix) + "/")}
    keys = [key for key in doomed if key in present]
    if keys:
        storage.delete(keys)
    return len(keys)


# ---- writing (one background thread per executor) ------------------------------------------
@dataclasses.dataclass(eq=False)
class _Tracked:
    job: Job
    static: dict[str, Any]
    written: tuple[int, ...] | None = None  # the fingerprint last written
    written_at: float = float("-inf")  # monotonic
    write_cpu_s: float = 0.0  # what building and writing the record took last time


class JobHistory:
    """Writes the history records of one executor's jobs and its heartbeat; prunes the
    history when the executor closes."""

    def __init__(self, storage: Storage, signer: Signer, prefix: str, policy: HistoryPolicy | None = None) -> None:
        self._source = storage
        self._signer = signer
        self._prefix = prefix
        self.policy = policy or HistoryPolicy.from_env()
        self._store: Storage | None = None
        self._running: dict[str, _Tracked] = {}
        self._ended: list[_Tracked] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._beat_keys: set[str] = set()
        self._beat_at = float("-inf")
        self._beat_body = json.dumps({"host": socket.gethostname(), "pid": os.getpid()}).encode()

    def track(self, job: Job, fn: Any = None) -> None:
        """Record ``job`` from now on (``fn`` names it; None for a job collected by attach)."""
        if not self.policy.enabled:
            return
        entry = _Tracked(job, static_fields(job, fn, logs_key(self._prefix, job.job_id)))
        with self._cond:
            if self._closed:
                return
            self._running[job.job_id] = entry
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
        while True:
            with self._cond:
                unwritten = any(e.written is None for e in self._running.values())
                if not (self._ended or self._closed or unwritten):
                    self._cond.wait(self.policy.heartbeat_s)
                ended, self._ended = self._ended, []
                running = list(self._running.values())
                closing = self._closed
            now = time.monotonic()
            if running and now - self._beat_at >= self.policy.heartbeat_s:
                self._beat(running, now)
            for entry in ended:
                self._write(entry, final=True)
            for entry in running:
                due = now - entry.written_at >= max(self.policy.heartbeat_s, REWRITE_SPACING * entry.write_cpu_s)
                if entry.written is None or closing or (due and fingerprint(entry.job) != entry.written):
                    self._write(entry, final=closing)
            if closing:
                self._stop_beating(still_running=bool(running))
                return

    def _beat(self, running: list[_Tracked], now: float) -> None:
        self._beat_at = now
        sessions = {session_of(e.job.job_id) for e in running}
        for session in sessions:
            key = driver_key(self._prefix, session)
            self._beat_keys.add(key)
            try:
                self._writer().put(key, self._beat_body)
            except LambdaMRError as exc:  # one missed beat is harmless: staleness takes ten
                log.warning("lambdamr: could not write the driver heartbeat %s: %s", key, exc)

    def _stop_beating(self, *, still_running: bool) -> None:
        if still_running or not self._beat_keys:
            return  # jobs left running: let the heartbeat go stale, so they show abandoned
        try:
            self._writer().delete(sorted(self._beat_keys))
        except LambdaMRError as exc:
            log.warning("lambdamr: could not delete the driver heartbeat: %s", exc)

    def _write(self, entry: _Tracked, *, final: bool) -> None:
        job = entry.job
        key = record_key(self._prefix, job.job_id)
        cpu_started = time.thread_time()
        try:
            mark = fingerprint(job)
            record = job_record(
                job, entry.static, now=time.time(), heartbeat_s=self.policy.heartbeat_s,
                stale_after_s=self.policy.stale_after_s,
            )
            store = self._writer()
            store.put(key, sign_document(self._signer, job.job_id, key, record))
            entry.written, entry.written_at = mark, time.monotonic()
            entry.write_cpu_s = time.thread_time() - cpu_started
            if final and (entries := task_log_entries(job)):
                kept = dict(list(entries.items())[:MAX_LOGGED_TASKS])
                lkey = logs_key(self._prefix, job.job_id)
                store.put(lkey, sign_document(self._signer, job.job_id, lkey, {"job_id": job.job_id, "tasks": kept}))
        except Exception as exc:  # a history record is a convenience: never fail a job for it
            log.warning("lambdamr: could not write the history record %s: %s", key, exc)

    def _writer(self) -> Storage:
        if self._store is None:
            self._store = reopen_storage(self._source)
        return self._store

    def close(self, timeout: float = 30.0) -> None:
        """Write every job's latest record (one still running stays ``running`` and turns
        ``abandoned`` once stale), then prune the history."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is None:
            return
        thread.join(timeout)
        if thread.is_alive():
            log.warning("lambdamr: job history still unwritten after %.0f s; giving up", timeout)
            return
        try:
            prune_history(self._writer(), self._prefix, self.policy)
        except LambdaMRError as exc:
            log.warning("lambdamr: could not prune the job history: %s", exc)
        if self._store is not None and self._store is not self._source:
            self._store.close()
