"""A whole ``map_reduce`` (or ``map_then_reduce``) as one job: ``ex.last_job`` after it.

Each phase runs as one job (and one more per round of retries); ``MapReduceJob`` holds them
in order and sums them up: its summary counts both phases' tasks, time and cost, the bytes
shuffled and every storage request of the run, and lists each phase's own summary.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambdamr.driver.job import Job, TaskView
from lambdamr.driver.settled_task import TaskOutcome
from lambdamr.driver.summary import JobSummary, added_costs


def phase_summary(label: str, jobs: Sequence[Job]) -> JobSummary:
    """The jobs of one phase (its first run and its retries) summed into one summary."""
    parts = [job.summary() for job in jobs]
    return added_summaries(f"{jobs[0].job_id} ({label})", parts)


def added_summaries(job_id: str, parts: Sequence[JobSummary], *, wall_s: float | None = None) -> JobSummary:
    """Several summaries as one: counts and times added, peaks the largest."""
    requests: dict[str, int] = {}
    for part in parts:
        for kind, count in part.storage_requests.items():
            requests[kind] = requests.get(kind, 0) + count
    return JobSummary(
        job_id=job_id,
        backend=parts[0].backend,
        tasks=sum(p.tasks for p in parts),
        calls=sum(p.calls for p in parts),
        succeeded=sum(p.succeeded for p in parts),
        failed=sum(p.failed for p in parts),
        cancelled=sum(p.cancelled for p in parts),
        retries=sum(p.retries for p in parts),
        duplicates=sum(p.duplicates for p in parts),
        cold_starts=sum(p.cold_starts for p in parts),
        wall_s=sum(p.wall_s for p in parts) if wall_s is None else wall_s,
        task_seconds=sum(p.task_seconds for p in parts),
        max_task_s=max(p.max_task_s for p in parts),
        memory_mb=max(p.memory_mb for p in parts),
        storage_requests=requests,
        cost=added_costs([p.cost for p in parts]),
        backups=sum(p.backups for p in parts),
        backups_won=sum(p.backups_won for p in parts),
        peak_concurrency=max(p.peak_concurrency for p in parts),
        peak_memory_mb=max(p.peak_memory_mb for p in parts),
    )


class MapReduceJob:
    """The jobs of one ``map_reduce`` run, phase by phase, seen as one job.

    Args:
        phases: ``(label, jobs)`` per phase, in order (``"map"``, ``"reduce"``); a phase that
            never started has no jobs.
        requests: every storage request of the run (driver and tasks), when counted.
        bytes_shuffled: intermediate bytes the winning mappers wrote (None: no shuffle).
        wall_s: the run's wall time, from the call to the end of cleanup.
    """

    def __init__(
        self,
        phases: Sequence[tuple[str, Sequence[Job]]],
        *,
        requests: dict[str, int] | None = None,
        bytes_shuffled: int | None = None,
        wall_s: float | None = None,
    ) -> None:
        self.phases = [(label, list(jobs)) for label, jobs in phases if jobs]
        if not self.phases:
            raise ValueError("a MapReduceJob needs at least one phase that ran")
        self.requests = requests
        self.bytes_shuffled = bytes_shuffled
        self.wall_s = wall_s

    @property
    def jobs(self) -> list[Job]:
        """Every job of the run, in the order they were submitted."""
        return [job for _, jobs in self.phases for job in jobs]

    @property
    def job_id(self) -> str:
        """The id of the run's first job (its map phase)."""
        return self.jobs[0].job_id

    @property
    def backend(self) -> str:
        return self.jobs[0].backend

    @property
    def tasks(self) -> list[TaskView]:
        """The tasks every phase keeps (a big job keeps a sample: ``Job.tasks``), map tasks first."""
        return [task for job in self.jobs for task in job.tasks]

    def done(self) -> bool:
        """Whether every task of every phase has settled."""
        return all(job.done() for job in self.jobs)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every phase's tasks have settled (the run has returned or raised)."""
        return all(job.wait(timeout) for job in self.jobs)

    def summary(self) -> JobSummary:
        """Both phases summed (tasks, time, cost), the bytes shuffled and every storage request
        of the run; ``.phases`` holds each phase's own summary."""
        per_phase = [phase_summary(label, jobs) for label, jobs in self.phases]
        whole = added_summaries(f"{self.job_id} (map_reduce)", per_phase, wall_s=self.wall_s)
        if self.requests is not None:
            whole.storage_requests = dict(self.requests)
        whole.phases = per_phase
        whole.bytes_shuffled = self.bytes_shuffled
        return whole

    def logs(self) -> str:
        """The captured output of every task that printed or failed, phase by phase."""
        parts = []
        for label, jobs in self.phases:
            for job in jobs:
                text = job.logs()
                if text:
                    parts.append(f"--- {label} phase, job {job.job_id} ---\n{text}")
        return "".join(parts)

    def plot(self, path: str | Path | None = None) -> Any:
        """One timeline for the whole run: the map tasks, then the reduce tasks below them, on
        one time axis from the map's submission; saved at ``path`` (returned), or without one
        returned as a matplotlib ``Figure``. Each phase alone: ``.jobs[i].plot()``."""
        from lambdamr.report import plot_job

        return plot_job(RunTimeline(self), path)

    def __repr__(self) -> str:
        phases = ", ".join(f"{label}: {sum(j.task_count for j in jobs)} tasks" for label, jobs in self.phases)
        return f"<MapReduceJob {self.job_id}: {phases}, {'done' if self.done() else 'running'}>"


@dataclass(frozen=True)
class NumberedTask:
    """A task of one phase seen at its row in the whole run's timeline."""

    task_id: int
    attempt: int
    timings: dict[str, Any] | None
    logs: str | None
    outcome: TaskOutcome | None


class RunTimeline:
    """What ``report.plot_job`` reads, for every job of a run at once: tasks numbered in
    order across the phases (each job's rows follow the previous job's ``task_count``),
    times measured from the first job's submission."""

    def __init__(self, run: MapReduceJob) -> None:
        self._run = run
        self.job_id = f"{run.job_id} (map_reduce)"
        self.backend = run.backend
        jobs = run.jobs
        self.submitted_at = min(job.submitted_at for job in jobs)
        ends = [job.finished_at for job in jobs]
        self.finished_at = None if any(end is None for end in ends) else max(e for e in ends if e is not None)
        self._firsts: list[int] = []  # each job's first row
        self._jobs = jobs
        self.tasks: list[NumberedTask] = []
        row = 0
        for job in jobs:
            self._firsts.append(row)
            self.tasks.extend(_numbered(row + task.task_id, task) for task in job.tasks)
            row += job.task_count
        self.task_count = row

    def _locate(self, row: int) -> tuple[Job, int]:
        index = bisect.bisect_right(self._firsts, row) - 1
        return self._jobs[index], row - self._firsts[index]

    def task(self, row: int) -> NumberedTask | None:
        job, own_id = self._locate(row)
        task = job.task(own_id)
        return None if task is None else _numbered(row, task)

    def task_timing(self, row: int) -> dict[str, Any] | None:
        job, own_id = self._locate(row)
        return job.task_timing(own_id)

    def run_seconds_sample(self) -> list[float]:
        return [seconds for job in self._jobs for seconds in job.run_seconds_sample()]

    def done(self) -> bool:
        return self._run.done()

    def summary(self) -> Any:
        return self._run.summary()


def _numbered(row: int, task: TaskView) -> NumberedTask:
    return NumberedTask(row, task.attempt, task.timings, task.logs, task.outcome)
