"""Collecting a job after its driver died: ``LambdaExecutor.attach``'s re-run logic.

A *durable* job (the default on fire-and-forget backends such as Lambda's async invokes, or
``durable=True``) writes every result record to storage and a task manifest
(``driver.jobstore``: what re-running any of its tasks needs, signed for its job and key).
``attach`` rebuilds the job from the manifest (``jobstore.load_job``, which refuses an edited,
unsigned or foreign one), then settles the futures of every task whose result is already in
storage and runs only the others again, with attempt numbers above any seen before, so
write-once result keys never collide. The stored result records are verified for the very
task and attempt they settle; one that is not is ignored and its task runs again.
"""

from __future__ import annotations

import logging

from lambdamr.driver.job import Job, Task
from lambdamr.driver.jobstore import parse_result_key, results_prefix
from lambdamr.driver.results import open_record
from lambdamr.errors import IntegrityError, LambdaMRError
from lambdamr.signing import Signer
from lambdamr.storage import Storage

log = logging.getLogger("lambdamr")

RERUN_ATTEMPT_BASE = 1000


def collect_stored_results(storage: Storage, job: Job, signer: Signer) -> list[Task]:
    """Settle every task whose result is in storage; return the tasks still to run.

    Each remaining task's attempts continue from ``RERUN_ATTEMPT_BASE``: the dead driver may
    have launched attempts that left no trace yet (still running on Lambda), and a re-run
    must never share a write-once result key with one of them.
    """
    latest: dict[int, int] = {}
    stored: dict[int, list[tuple[int, str]]] = {}
    for info in storage.list(results_prefix(job.prefix)):
        parsed = parse_result_key(info.key)
        if parsed is None:
            continue
        task_id, attempt = parsed
        latest[task_id] = max(latest.get(task_id, 0), attempt)
        stored.setdefault(task_id, []).append((attempt, info.key))
    remaining = []
    for task in job.live_tasks:  # every task of a job just loaded
        for attempt, key in sorted(stored.get(task.task_id, [])):
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
