"""The one owner of a job's storage layout: every key of a job is built and parsed here.

Under the executor's session prefix, each job has a folder ``{session}/{number}``::

    {job}/job.json             the job record: state, function, counts, summary (``lambdamr jobs``)
    {job}/logs.json            captured output of the tasks that printed or failed (``keep_temp``)
    {job}/tasks[.NNNNNN]       the task manifest of a durable job: what re-running a task needs
                               (``attach``); a streaming map adds a part per batch, NNNNNN its first task
    {job}/args[.NNNNNN]        the packed arguments (``driver.staging``)
    {job}/results/TTTTTT.A     the result record of task T, attempt A (written by the runtime)

The job record is written at submission (state ``running``) and again when the job ends
(``done``, ``failed`` or ``cancelled``, with the summary's numbers) by ``driver.record_writer``
on a thread of its own. The task manifest is written as tasks are staged. All of them live
under the session prefix and go away with its temp objects at shutdown unless
``keep_temp=True``.

Every document is signed for its job and key, like every other object (``lambdamr.signing``),
and the readers here treat storage as untrusted: a job record, a logs document, a task manifest
or a result record that does not verify — or was signed for another job, task or attempt — is
refused (``attach``) or skipped with a warning (the CLI), never shown.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
from collections.abc import Iterator, Sequence
from typing import Any

from lambdamr._version import __version__
from lambdamr.driver.job import Job, TaskView
from lambdamr.errors import ConfigurationError, IntegrityError, LambdaMRError, ObjectNotFound
from lambdamr.protocol import ArgsRange, decode_result, encode_inline_args, result_context, session_of
from lambdamr.signing import Context, Signer, process_key
from lambdamr.storage import Storage

log = logging.getLogger("lambdamr")

JOB_RECORD_NAME = "job.json"
LOGS_NAME = "logs.json"
TASKS_NAME = "tasks"
RESULTS_FOLDER = "results"
STATES = ("running", "done", "failed", "cancelled")
TASK_MANIFEST_VERSION = 2


# ---- the layout ---------------------------------------------------------------------------
def job_prefix_of(base_prefix: str, job_id: str) -> str:
    """The storage prefix of a job, from its id (``{session}-{number}``)."""
    session, sep, number = job_id.rpartition("-")
    if not sep or not number.isdigit() or session.count("-") != 2:
        raise ConfigurationError(
            f"{job_id!r} is not a lambdamr job id (they look like 20261124-235959-a1b2c3-0001); "
            "`lambdamr jobs` lists them"
        )
    return f"{base_prefix}/{session}/{number}"


def job_id_of_key(key: str) -> str | None:
    """The job a ``{session}/{number}/job.json`` or ``logs.json`` key belongs to."""
    parts = key.split("/")
    if len(parts) < 3 or not parts[-2].isdigit():
        return None
    return f"{parts[-3]}-{parts[-2]}"


def job_record_key(job_prefix: str) -> str:
    """Where a job's record (``job.json``) lives."""
    return f"{job_prefix}/{JOB_RECORD_NAME}"


def logs_key(job_prefix: str) -> str:
    """Where a job's logs document (``logs.json``) lives."""
    return f"{job_prefix}/{LOGS_NAME}"


def task_manifest_key(job_prefix: str, first_task: int) -> str:
    """Where the task manifest part starting at task ``first_task`` lives."""
    return f"{job_prefix}/{TASKS_NAME}" if first_task == 0 else f"{job_prefix}/{TASKS_NAME}.{first_task:06d}"


def results_prefix(job_prefix: str) -> str:
    """The folder of a job's result records (listed by the scheduler, ``attach`` and the CLI)."""
    return f"{job_prefix}/{RESULTS_FOLDER}/"


def result_key(job_prefix: str, task_id: int, attempt: int) -> str:
    """Where the runtime writes the result record of one attempt of one task (write-once).
    Task ids are zero-padded so that keys list in task order."""
    return f"{results_prefix(job_prefix)}{task_id:06d}.{attempt}"


def results_before(job_prefix: str, task_id: int) -> str:
    """A listing's ``start_after`` that skips the records of every task before ``task_id``."""
    return f"{results_prefix(job_prefix)}{task_id:06d}"


def parse_result_key(key: str) -> tuple[int, int] | None:
    """``(task_id, attempt)`` of a result key; None for any other key."""
    task, dot, attempt = key.rsplit("/", 1)[-1].partition(".")
    if not dot or not task.isdigit() or not attempt.isdigit():
        return None
    return int(task), int(attempt)


# ---- signing contexts ---------------------------------------------------------------------
def document_context(job_id: str, key: str) -> Context:
    """What a job's manifest (``job.json``) or logs document (``logs.json``) is signed for."""
    kind = "task-logs" if key.endswith("/" + LOGS_NAME) else "job-record"
    return Context(kind, session=session_of(job_id), job=job_id, key=key)


def task_manifest_context(job_id: str, key: str) -> Context:
    """What a job's task manifest is signed for."""
    return Context("task-manifest", session=session_of(job_id), job=job_id, key=key)


# ---- job records: job.json and logs.json --------------------------------------------------
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


def job_identity(job: Job, fn: str) -> dict[str, Any]:
    """What any record of a job says of it whatever its progress (``fn``: its function's name)."""
    return {
        "lambdamr": __version__,
        "job_id": job.job_id,
        "function": fn,
        "submitted": job.submitted_at,
        "backend": job.backend,
        "memory_mb": job.memory_mb,
        "timeout_s": job.timeout_s,
        "region": job.region,
        "prefix": job.prefix,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def submitted_record(job: Job, fn: Any) -> dict[str, Any]:
    """The record of a job that has just been submitted."""
    return {
        **job_identity(job, function_name(fn)),
        "state": "running",
        "tasks": job.task_count,
        "calls": job.calls,
    }


def final_record(job: Job, submitted: dict[str, Any]) -> dict[str, Any]:
    """The record of a job that has ended, with its summary's numbers."""
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


# ---- the task manifest (durable jobs) -------------------------------------------------------
def write_task_manifest(storage: Storage, job: Job, signer: Signer, batch: Sequence[TaskView] | None = None) -> None:
    """Store what re-running any task of ``job`` needs: one put per job, or per ``batch``
    of tasks a streaming map launches (they follow one another)."""
    batch = job.tasks if batch is None else batch
    first = batch[0].task_id if batch else 0
    tasks = []
    for task in batch:
        entry: dict[str, Any] = {"calls": task.calls}
        signed = task.args_inline  # signed when read: once
        if signed is not None:
            entry["args_inline"] = encode_inline_args(signed)
        if task.args_range is not None:
            entry["args_range"] = [task.args_range.key, task.args_range.start, task.args_range.length]
        tasks.append(entry)
    manifest = {
        "version": TASK_MANIFEST_VERSION,
        "job_id": job.job_id,
        "function_key": job.function_key,
        "memory_mb": job.memory_mb,
        "timeout_s": job.timeout_s,
        "max_retries": job.max_retries,
        "submitted_at": job.submitted_at,
        "first_task": first,
        "tasks": tasks,
    }
    key = task_manifest_key(job.prefix, first)
    data = json.dumps(manifest, separators=(",", ":")).encode()
    storage.put(key, signer.sign(data, task_manifest_context(job.job_id, key)))


def load_job(
    storage: Storage, job_prefix: str, job_id: str, signer: Signer, *, backend: str, region: str | None
) -> Job:
    """Rebuild a job (its tasks and fresh futures) from its task manifest.

    Raises:
        ConfigurationError: the job has no manifest (not durable, or deleted).
        IntegrityError: the manifest is unsigned, modified, or another job's.
    """
    key = task_manifest_key(job_prefix, 0)
    try:
        manifest = _read_manifest_part(storage, key, job_id, signer)
    except ObjectNotFound:
        raise ConfigurationError(
            f"job {job_id} has no task manifest at {storage.url(job_prefix)}: it was not durable "
            "(run it with durable=True), or its temp objects were already deleted"
        ) from None
    job = Job(
        job_id,
        job_prefix,
        manifest["function_key"],
        memory_mb=int(manifest["memory_mb"]),
        timeout_s=float(manifest["timeout_s"]),
        backend=backend,
        region=region,
        max_retries=int(manifest.get("max_retries", 2)),
    )
    job.submitted_at = float(manifest.get("submitted_at", job.submitted_at))
    parts = [manifest]
    later = sorted(info.key for info in storage.list(f"{key}.") if info.key.rsplit(".", 1)[-1].isdigit())
    parts += [_read_manifest_part(storage, part_key, job_id, signer) for part_key in later]
    for part in parts:
        if part.get("first_task", 0) != job.task_count:  # a part missing, or one moved under another name
            raise IntegrityError(
                f"the task manifest of job {job_id} is incomplete: a part starts at task "
                f"{part.get('first_task')} where task {job.task_count} was expected"
            )
        for entry in part["tasks"]:
            task = job.new_task(int(entry["calls"]))
            if entry.get("args_inline") is not None:
                task.args_inline = decode_inline_args(entry["args_inline"], job_id)
            if entry.get("args_range"):
                args_key, start, length = entry["args_range"]
                task.args_range = ArgsRange(args_key, int(start), int(length))
    return job


def decode_inline_args(text: Any, job_id: str) -> bytes:
    """A task's inline arguments as the manifest stores them (base64), back to their bytes."""
    try:
        return base64.b64decode(text, validate=True)
    except (TypeError, ValueError) as exc:
        raise IntegrityError(f"the task manifest of job {job_id} holds arguments that are not base64: {exc}") from None


def _read_manifest_part(storage: Storage, key: str, job_id: str, signer: Signer) -> dict[str, Any]:
    payload = signer.verify(storage.get(key), task_manifest_context(job_id, key), what=f"task manifest of job {job_id}")
    try:
        manifest = json.loads(bytes(payload))
    except ValueError as exc:
        raise IntegrityError(f"the task manifest of job {job_id} is signed but not JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise IntegrityError(f"the task manifest of job {job_id} is signed but not a JSON object")
    if manifest.get("version") != TASK_MANIFEST_VERSION or manifest.get("job_id") != job_id:
        raise ConfigurationError(f"the task manifest of job {job_id} is of another version or job")
    return manifest


# ---- reading back (the CLI) -----------------------------------------------------------------
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
        if not info.key.endswith("/" + JOB_RECORD_NAME):
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
    key = job_record_key(job_prefix_of(prefix.strip("/"), job_id))
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
        kept = read_document(storage, signer, job_id, logs_key(prefix))["tasks"]
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
    for info in storage.list(results_prefix(prefix)):
        parsed = parse_result_key(info.key)
        if parsed is None:
            continue
        task, attempt = parsed
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
