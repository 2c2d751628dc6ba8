"""Staging tasks and handing them to the scheduler: what a session and its pipeline share.

``Session`` stages a job's tasks as it builds them; the pipeline's launcher
(``driver.pipeline``) stages a task later, once the futures among its arguments are done. Both
go through ``TaskLaunch``, which holds the session's parts but not the session: a launcher
thread waiting on it never keeps a dropped executor alive.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

from lambdamr.backends import Backend
from lambdamr.driver.access import referenced_reads
from lambdamr.driver.inputs import Call
from lambdamr.driver.job import Job, Task
from lambdamr.driver.jobstore import write_task_manifest
from lambdamr.driver.scheduler import Scheduler
from lambdamr.driver.staging import Stager
from lambdamr.errors import StorageUnavailable
from lambdamr.signing import Signer
from lambdamr.storage import Storage

#: waits between attempts to stage a batch of tasks while the store is throttling
STAGING_BACKOFF_S = (0.05, 0.2, 0.8)


def contiguous_runs(tasks: list[Task]) -> Iterator[list[Task]]:
    """``tasks`` (in id order) cut where an id is skipped: one task manifest part each
    (``attach`` reads the parts in order and refuses a gap)."""
    run: list[Task] = []
    for task in tasks:
        if run and task.task_id != run[-1].task_id + 1:
            yield run
            run = []
        run.append(task)
    if run:
        yield run


class TaskLaunch:
    """Stages tasks' calls (waiting out a busy store) and launches them on the scheduler."""

    def __init__(
        self, *, storage: Storage, stager: Stager, scheduler: Scheduler, signer: Signer, backend: Backend, durable: bool
    ) -> None:
        self.storage = storage
        self.stager = stager
        self.scheduler = scheduler
        self.signer = signer
        self.backend = backend
        self.durable = durable

    def stage(self, job: Job, tasks: list[Task], calls: list[list[Call]]) -> None:
        """Stage each task's calls (and, durable, write their task manifest parts)."""
        self.backend.check_access(reads=referenced_reads(calls))
        # A streaming map stages while results flow: a busy store (503) is waited out, as
        # result reads are, rather than failing the rest of the map. Writes are idempotent.
        for delay in (*STAGING_BACKOFF_S, None):
            try:
                self.stager.stage_calls(job.prefix, tasks, calls)
                if self.durable:
                    for run in contiguous_runs(tasks):
                        write_task_manifest(self.storage, job, self.signer, run)
                return
            except StorageUnavailable:
                if delay is None:
                    raise
                time.sleep(delay * (0.5 + random.random()))

    def launch_resolved(self, job: Job, tasks: list[Task], calls: list[list[Call]]) -> None:
        """Stage and launch tasks of a job the scheduler already has (pipelined calls whose
        upstream futures are done): also after shutdown began, which waits for them."""
        self.stage(job, tasks, calls)
        self.scheduler.submit(job, tasks)

    def settle_unlaunched(self, job: Job, task: Task) -> None:
        """``task`` never ran and its futures are settled (failed upstream, cancelled): count
        it done; the scheduler finishes the job if that was its last task."""
        job.mark_task_done(task)
        if job.sealed:  # a streaming map not yet sealed finishes when it is
            self.scheduler.seal(job)
