"""Collecting a job after its driver died: the task manifest and ``LambdaExecutor.attach``.

A *durable* job (the default on fire-and-forget backends such as Lambda's async invokes, or
``durable=True``) writes every result record to storage and, at submission, one more object:
``{job.prefix}/tasks`` (a streaming ``map`` adds one ``tasks.NNNNNN`` part per batch of tasks
it launches, NNNNNN its first task) — what is needed to re-run any of its tasks (function key, memory,
timeout, each task's call count and arguments, inline or as a byte range). The manifest is
signed for its job and key (``lambdamr.signing``) and ``attach`` verifies it before reading a
field: an edited function key, another job's manifest copied over this one, or an unsigned
one is refused. The stored result records are verified for the very task and attempt they
settle; one that is not is ignored and its task runs again.

``attach`` reads the manifest, settles the futures of every task whose result is already in
storage, and runs only the others again, with attempt numbers above any seen before, so
write-once result keys never collide.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from lambdamr.driver.job import Job, Task
from lambdamr.driver.results import open_record
from lambdamr.errors import ConfigurationError, IntegrityError, LambdaMRError, ObjectNotFound
from lambdamr.protocol import ArgsRange, session_of
from lambdamr.signing import Context, Signer
from lambdamr.storage import Storage

log = logging.getLogger("lambdamr")

TASKS_NAME = "tasks"
MANIFEST_VERSION = 2
RERUN_ATTEMPT_BASE = 1000


def task_manifest_context(job_id: str, key: str) -> Context:
    """What a job's task manifest is signed for."""
    return Context("task-manifest", session=session_of(job_id), job=job_id, key=key)


def job_prefix_of(base_prefix: str, job_id: str) -> str:
    """The storage prefix of a job, from its id (``{session}-{number}``)."""
    session, sep, number = job_id.rpartition("-")
    if not sep or not number.isdigit() or session.count("-") != 2:
        raise ConfigurationError(
            f"{job_id!r} is not a lambdamr job id (they look like 20261124-235959-a1b2c3-0001); "
            "`lambdamr jobs` lists them"
        )
    return f"{base_prefix}/{session}/{number}"


def manifest_part_key(job_prefix: str, first_task: int) -> str:
    """Where the task manifest part starting at task ``first_task`` lives."""
    return f"{job_prefix}/{TASKS_NAME}" if first_task == 0 else f"{job_prefix}/{TASKS_NAME}.{first_task:06d}"


def write_task_manifest(storage: Storage, job: Job, signer: Signer, batch: list[Task] | None = None) -> None:
    """Store what re-running any task of ``job`` needs: one put per job, or per ``batch``
    of tasks a streaming map launches (they follow one another)."""
    batch = job.tasks if batch is None else batch
    first = batch[0].task_id if batch else 0
    tasks = []
    for task in batch:
        entry: dict[str, Any] = {"calls": task.calls}
        if task.args_inline is not None:
            entry["args_inline"] = task.args_inline
        if task.args_range is not None:
            entry["args_range"] = [task.args_range.key, task.args_range.start, task.args_range.length]
        tasks.append(entry)
    manifest = {
        "version": MANIFEST_VERSION,
        "job_id": job.job_id,
        "function_key": job.function_key,
        "memory_mb": job.memory_mb,
        "timeout_s": job.timeout_s,
        "max_retries": job.max_retries,
        "submitted_at": job.submitted_at,
        "first_task": first,
        "tasks": tasks,
    }
    key = manifest_part_key(job.prefix, first)
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
    key = manifest_part_key(job_prefix, 0)
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
        if part.get("first_task", 0) != len(job.tasks):  # a part missing, or one moved under another name
            raise IntegrityError(
                f"the task manifest of job {job_id} is incomplete: a part starts at task "
                f"{part.get('first_task')} where task {len(job.tasks)} was expected"
            )
        for entry in part["tasks"]:
            task = job.new_task(int(entry["calls"]))
            task.args_inline = entry.get("args_inline")
            if entry.get("args_range"):
                args_key, start, length = entry["args_range"]
                task.args_range = ArgsRange(args_key, int(start), int(length))
    return job


def _read_manifest_part(storage: Storage, key: str, job_id: str, signer: Signer) -> dict[str, Any]:
    payload = signer.verify(storage.get(key), task_manifest_context(job_id, key), what=f"task manifest of job {job_id}")
    try:
        manifest = json.loads(bytes(payload))
    except ValueError as exc:
        raise IntegrityError(f"the task manifest of job {job_id} is signed but not JSON: {exc}") from None
    if manifest.get("version") != MANIFEST_VERSION or manifest.get("job_id") != job_id:
        raise ConfigurationError(f"the task manifest of job {job_id} is of another version or job")
    return manifest


def collect_stored_results(storage: Storage, job: Job, signer: Signer) -> list[Task]:
    """Settle every task whose result is in storage; return the tasks still to run.

    Each remaining task's attempts continue from ``RERUN_ATTEMPT_BASE``: the dead driver may
    have launched attempts that left no trace yet (still running on Lambda), and a re-run
    must never share a write-once result key with one of them.
    """
    latest: dict[int, int] = {}
    stored: dict[int, list[str]] = {}
    for info in storage.list(f"{job.prefix}/results/"):
        name = info.key.rsplit("/", 1)[-1]
        try:
            task_id, attempt = (int(part) for part in name.split("."))
        except ValueError:
            continue
        latest[task_id] = max(latest.get(task_id, 0), attempt)
        stored.setdefault(task_id, []).append(info.key)
    remaining = []
    for task in job.tasks:
        for key in sorted(stored.get(task.task_id, [])):
            attempt = int(key.rsplit(".", 1)[-1])
            try:
                record = open_record(
                    signer, storage.get(key), job_id=job.job_id, task_id=task.task_id, attempt=attempt,
                    key=key, expected_calls=task.calls,
                )
            except LambdaMRError as exc:
                if isinstance(exc, IntegrityError):
                    log.warning("lambdamr: %s", exc)
                continue  # a record we cannot trust or read is as good as none: run again
            task.timings, task.runtime = record.timings, record.runtime
            for future, call in zip(task.futures, record.calls):
                if call.ok:
                    future.set_result(call.value)
                else:
                    future.set_exception(call.exception)
            task.attempt = latest[task.task_id]
            task.attempt_base = task.attempt - len(stored[task.task_id])  # priced: the records found
            job.mark_task_done(task)
            break
        else:
            task.attempt = task.attempt_base = latest.get(task.task_id, 0) + RERUN_ATTEMPT_BASE
            remaining.append(task)
    return remaining
