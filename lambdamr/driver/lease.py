"""Session leases: how ``lambdamr clean`` tells a live driver's objects from leftovers.

Every executor keeps one small object fresh while it is open, written before anything else
of its session::

    {prefix}/{session}/~lease.json      rewritten every LEASE_REFRESH_S by the driver

``clean`` groups the objects under ``{prefix}/`` by session (the first folder below the
prefix) and spares every session whose lease was written less than ``LEASE_TTL_S`` ago: its
driver is alive and its tasks are reading those objects. A driver that stopped (crashed,
killed, or shut down with ``keep_temp``) stops refreshing; ``LEASE_TTL_S`` later its objects
are leftovers. ``attach`` leases the session of the job it collects in the same way.

The name sorts after every other key of a session (``~`` follows digits and letters), and
the lease is written before the session's first object: a listing, which runs in key order,
that saw any object of a session therefore also sees its lease. The writes use their own
connection to the store, like the job manifests, so they never count in a job's requests.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable

from lambdamr.errors import LambdaMRError
from lambdamr.storage import Storage, reopen_storage

log = logging.getLogger("lambdamr")

LEASE_NAME = "~lease.json"
#: how often a live driver rewrites its lease
LEASE_REFRESH_S = 60.0
#: a lease older than this belongs to a driver that is gone (5 missed refreshes)
LEASE_TTL_S = 300.0


def session_of(key: str, prefix: str) -> str | None:
    """The session folder (``{prefix}/{session}``) a key belongs to, or None outside one."""
    base = prefix.rstrip("/") + "/"
    if not key.startswith(base):
        return None
    session, sep, _ = key[len(base):].partition("/")
    return base + session if sep else None


def keys_to_clean(
    entries: Iterable[tuple[str, float]], prefix: str, *, older_than_s: float = 0.0, now: float | None = None
) -> list[str]:
    """Of ``(key, last modified)`` entries under ``prefix``, the keys no live driver owns:
    every key outside a session with a fresh lease, modified ``older_than_s`` ago or more."""
    now = time.time() if now is None else now
    by_session: dict[str | None, list[tuple[str, float]]] = {}
    for key, modified in entries:
        by_session.setdefault(session_of(key, prefix), []).append((key, modified))
    doomed: list[str] = []
    for session, items in by_session.items():
        leases = [modified for key, modified in items if key.rsplit("/", 1)[-1] == LEASE_NAME]
        if session is not None and leases and now - max(leases) < LEASE_TTL_S:
            continue  # a live driver's session
        doomed += [key for key, modified in items if now - modified >= older_than_s]
    return doomed


def clean_storage(storage: Storage, prefix: str, *, older_than_s: float = 0.0) -> int:
    """Delete what no live driver owns under ``prefix`` of a store that reports modification
    times (the local folder); return how many objects went."""
    entries = [(info.key, info.modified) for info in storage.list(prefix.rstrip("/") + "/") if info.modified is not None]
    keys = keys_to_clean(entries, prefix, older_than_s=older_than_s)
    if keys:
        storage.delete(keys)
    return len(keys)


class SessionLease:
    """Keeps the lease objects of one executor fresh while it is open."""

    def __init__(self, storage: Storage, session_prefix: str) -> None:
        self._source = storage
        self._keys = [f"{session_prefix}/{LEASE_NAME}"]
        self._store: Storage | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "ttl_s": LEASE_TTL_S}).encode()

    def hold(self) -> bool:
        """Write the lease now (once) and keep it fresh from here on; call it before the
        session's first write, so that no object of a live session goes unleased. Returns
        whether this call wrote it."""
        with self._lock:  # held through the write: no caller goes on to write before the lease is there
            if self._thread is not None or self._stop.is_set():
                return False
            self._write(list(self._keys))
            self._thread = threading.Thread(target=self._run, name="lambdamr-lease", daemon=True)
            self._thread.start()
            return True

    def hold_session_of(self, job_prefix: str) -> None:
        """Also lease the session a job collected by ``attach`` belongs to."""
        key = f"{job_prefix.rsplit('/', 1)[0]}/{LEASE_NAME}"
        with self._lock:
            if key in self._keys:
                return
            self._keys.append(key)
        if not self.hold():
            self._write([key])

    def release(self, *, delete_adopted: bool) -> None:
        """Stop refreshing. The executor's own lease goes with its session's objects (or
        expires); with ``delete_adopted`` the leases of attached sessions are deleted."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=5)
        adopted = self._keys[1:]
        if delete_adopted and adopted:
            try:
                self._writer().delete(adopted)
            except LambdaMRError as exc:  # they expire anyway
                log.warning("lambdamr: could not delete the leases %s: %s", adopted, exc)

    def _run(self) -> None:
        while not self._stop.wait(LEASE_REFRESH_S):
            with self._lock:
                keys = list(self._keys)
            self._write(keys)

    def _write(self, keys: list[str]) -> None:
        store = self._writer()
        for key in keys:
            try:
                store.put(key, self._body)
            except LambdaMRError as exc:  # one missed refresh is harmless; the TTL covers five
                log.warning("lambdamr: could not refresh the session lease %s: %s", store.url(key), exc)

    def _writer(self) -> Storage:
        if self._store is None:
            self._store = reopen_storage(self._source)
        return self._store
