"""When to launch a backup of a straggler (speculative execution).

Lambda's run times vary widely (the seed saw it; so did every serverless study after it): a
job's wall time is set by its slowest task. Near the end of a job, a task that has run far
longer than its finished peers gets one backup attempt; the first result wins.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from lambdamr.driver.job import Job, Task

#: fraction of a job's tasks that must be finished before backups are considered
MIN_DONE_FRACTION = 0.75
#: a task is a straggler when it has run longer than this many times the median...
SLOWDOWN = 3.0
#: ...and at least this many seconds longer than the median
MIN_EXTRA_S = 1.0
#: backups per task
MAX_BACKUPS = 1


def stragglers(job: Job, running: Iterable[Task], now: float | None = None) -> list[Task]:
    """Running tasks of ``job`` that deserve a backup now."""
    finished, median = job.finished_turnaround()  # the median of a sample beyond 2,048 tasks
    if median is None or finished < MIN_DONE_FRACTION * job.task_count:
        return []
    limit = max(SLOWDOWN * median, median + MIN_EXTRA_S)
    now = time.time() if now is None else now
    return [
        t
        for t in running
        if t.job is job
        and not t.done
        and len(t.backup_attempts) < MAX_BACKUPS
        and t.dispatched_at is not None
        and now - t.dispatched_at > limit
    ]
