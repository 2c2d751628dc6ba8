"""Reading the job history back (``lambdamr jobs`` / ``logs``, the dashboard).

Storage is untrusted: a record is shown only once it verifies for the job its key names
(``jobstore.read_document``), and only records of this format. A record's state is the stored
one, except that a ``running`` job whose record and driver heartbeat both went stale is
``abandoned`` (``record_state``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from lambdamr.driver.history import (
    HistoryListing,
    HistoryPolicy,
    driver_key,
    list_history_folder,
    logs_key,
    record_key,
)
from lambdamr.driver.history_record import RECORD_VERSION
from lambdamr.driver.jobstore import read_document
from lambdamr.errors import IntegrityError, LambdaMRError, ObjectNotFound
from lambdamr.protocol import session_of
from lambdamr.signing import Signer
from lambdamr.storage import Storage

log = logging.getLogger("lambdamr")


def record_state(record: dict[str, Any], now: float | None = None, driver_beat: float | None = None) -> str:
    """The state to show: the stored one, or ``abandoned`` for a running job whose record
    and driver heartbeat (``driver_beat``: when it was last written) are both stale."""
    state = str(record.get("state", "?"))
    if state != "running":
        return state
    now = time.time() if now is None else now
    beats = [t for t in (record.get("heartbeat"), driver_beat) if isinstance(t, (int, float))]
    stale = record.get("stale_after_s")
    if not isinstance(stale, (int, float)):
        stale = HistoryPolicy().stale_after_s
    return "abandoned" if beats and now - max(beats) > stale else state


def driver_beat_of(storage: Storage, prefix: str, job_id: str) -> float | None:
    """When the driver of ``job_id`` last wrote its heartbeat (None: not beating)."""
    key = driver_key(prefix, session_of(job_id))
    return next((i.modified for i in storage.list(key) if i.key == key), None)


def read_record(
    storage: Storage, prefix: str, job_id: str, signer: Signer, now: float | None = None,
    driver_beat: float | None = None,
) -> dict[str, Any]:
    """One job's verified history record, its ``state`` as ``record_state`` tells (the
    driver's heartbeat is looked up unless given).

    Raises:
        ObjectNotFound: no record of that job (never recorded, or pruned).
        IntegrityError: it does not verify for that job, or is of another format.
    """
    record = read_document(storage, signer, job_id, record_key(prefix, job_id))
    if record.get("record_version") != RECORD_VERSION:
        raise IntegrityError(f"the history record of job {job_id} is of format {record.get('record_version')!r}")
    if record.get("state") == "running" and driver_beat is None:
        driver_beat = driver_beat_of(storage, prefix, job_id)
    record["stored_state"] = record.get("state")
    record["state"] = record_state(record, now, driver_beat)
    return record


def list_history(
    storage: Storage, prefix: str, signer: Signer, *, limit: int = 0, now: float | None = None, rows: bool = False,
    listing: HistoryListing | None = None,
) -> list[dict[str, Any]]:
    """The newest ``limit`` records (0: all), newest first; without ``rows`` each record
    drops its task rows and failures (a listing needs neither)."""
    listing = listing or list_history_folder(storage, prefix)
    records: list[dict[str, Any]] = []
    for job_id, key, _ in listing.records:
        if limit and len(records) >= limit:
            break
        beat = listing.drivers.get(session_of(job_id))
        try:
            record = read_record(storage, prefix, job_id, signer, now, driver_beat=beat or 0.0)
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
