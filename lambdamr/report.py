"""Reading a finished job: its tasks' logs, their phases, and a timeline plot.

A job of more than ``driver.task_ledger.FIRST_KEPT`` tasks keeps a sample of its task
records (the first ones, the failed, the slowest, a uniform draw of the rest): the timeline
draws those, the histogram a uniform sample of every run time, ``logs()`` the kept tasks'.

Every task passes through up to six moments, all in seconds since the epoch::

    submitted ─ queue ─► dispatched ─ retries ─► invoked ─ start-up ─► started ─ run ─► finished ─ result ─► fetched
     driver              first attempt sent      winning attempt       runtime          runtime            driver decoded it

* queue: waiting in the driver for a free slot (``backend.capacity`` tasks are in flight);
* retries: attempts that failed before the one whose result won;
* start-up: the invoke, a cold start when there is one, a wait behind another task;
* run: loading the function and arguments, and the calls themselves;
* result: writing the record, the driver noticing it (listing or response) and decoding it.

``started`` and ``finished`` come from the runtime's clock, the others from the driver's:
a small skew between machines is clamped away when drawing.
"""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class TaskOutcomeRecord(Protocol):
    """How a settled task's calls ended (``lambdamr.driver.job.TaskOutcome``)."""

    @property
    def failed(self) -> int: ...

    @property
    def cancelled(self) -> int: ...

    @property
    def error(self) -> str | None: ...


class TaskRecord(Protocol):
    """What a report reads of one task (``lambdamr.driver.job.Task``)."""

    @property
    def task_id(self) -> int: ...

    @property
    def attempt(self) -> int: ...

    @property
    def timings(self) -> dict[str, Any] | None: ...

    @property
    def logs(self) -> str | None: ...

    @property
    def outcome(self) -> TaskOutcomeRecord | None: ...


class JobRecord(Protocol):
    """What a report reads of a job (``lambdamr.driver.job.Job``): this module stays below the driver."""

    @property
    def job_id(self) -> str: ...

    @property
    def backend(self) -> str: ...

    @property
    def submitted_at(self) -> float: ...

    @property
    def finished_at(self) -> float | None: ...

    @property
    def tasks(self) -> Sequence[TaskRecord]: ...  # those kept: a big job keeps a sample

    @property
    def task_count(self) -> int: ...  # every task, kept or not

    def task(self, task_id: int) -> TaskRecord | None: ...

    def run_seconds_sample(self) -> Sequence[float]: ...

    def task_timing(self, task_id: int) -> dict[str, Any] | None: ...

    def done(self) -> bool: ...

    def summary(self) -> Any: ...


class WatchedJob(Protocol):
    """A job whose end can be waited for (``verbose=True``'s summary printer)."""

    def summary(self) -> Any: ...

    def add_done_callback(self, fn: Any) -> None: ...


#: (phase, from, to, colour) in drawing order
PHASES = (
    ("queue", "submitted", "dispatched", "#c7c7c7"),
    ("retries", "dispatched", "invoked", "#9467bd"),
    ("start-up", "invoked", "started", "#ff9f4a"),
    ("run", "started", "finished", "#1f77b4"),
    ("result", "finished", "fetched", "#2ca02c"),
)
LEGEND = {
    "queue": "queue: waiting in the driver",
    "retries": "failed attempts, retried",
    "result": "result: write, notice, fetch",
    "lost": "lost: no result came back",
}
COLD_COLOUR = "#8c564b"
FAILED_COLOUR = "#d62728"
PLOT_HINT = "job.plot() needs matplotlib, an optional extra: pip install 'lambdamr[plot]' (or pip install matplotlib)"


@dataclass(frozen=True)
class TaskPhases:
    """One task's phases as (start, duration) in seconds since the job was submitted."""

    task_id: int
    phases: dict[str, tuple[float, float]]
    ok: bool
    cold: bool

    @property
    def run_s(self) -> float | None:
        """Seconds the runtime spent on the task, if it reported them."""
        run = self.phases.get("run")
        return run[1] if run else None


def task_phases(job: JobRecord) -> list[TaskPhases]:
    """The phases of every settled task the job keeps that was dispatched, in task order."""
    rows = []
    origin = job.submitted_at
    for task in job.tasks:
        timing = job.task_timing(task.task_id)
        if timing is None or timing.get("dispatched") is None:
            continue  # still running, or cancelled before it was sent
        ok = task.outcome is not None and not (task.outcome.failed or task.outcome.cancelled)
        phases: dict[str, tuple[float, float]] = {}
        if "started" not in timing:  # no result record: the attempt was lost, timed out...
            phases["queue"] = (0.0, max(0.0, timing["dispatched"] - origin))
            end = max(timing["dispatched"], timing.get("completed") or timing["dispatched"])
            phases["lost"] = (timing["dispatched"] - origin, end - timing["dispatched"])
            rows.append(TaskPhases(task.task_id, phases, False, False))
            continue
        previous = origin
        for name, begin, end, _ in PHASES:
            # Clamp to the previous moment: runtime and driver clocks may differ slightly.
            start = max(timing.get(begin) or previous, previous)
            stop = max(timing.get(end) or start, start)
            if stop > start or name == "run":
                phases[name] = (start - origin, stop - start)
            previous = stop
        rows.append(TaskPhases(task.task_id, phases, ok, bool(timing.get("cold"))))
    return rows


def plot_job(job: JobRecord, path: str | Path | None = None) -> Any:
    """The job's timeline (one bar per task, coloured by phase) and a histogram of its task
    durations: saved as an image at ``path`` (format from the suffix, e.g. ``.png``), which
    is returned; without ``path`` the matplotlib ``Figure`` itself (a notebook shows it).

    Raises:
        ImportError: matplotlib is not installed (it is the ``plot`` extra).
    """
    figure = timeline_figure(job)
    if path is None:
        return figure
    path = Path(path)
    figure.savefig(path, dpi=110)
    return path


def timeline_figure(job: JobRecord) -> Any:
    """The timeline and histogram as a matplotlib ``Figure`` (drawn with Agg, no GUI)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError as exc:
        raise ImportError(PLOT_HINT) from exc

    rows = task_phases(job)
    figure = Figure(figsize=(10, 7), layout="constrained")
    FigureCanvasAgg(figure)  # never a GUI backend, whatever pyplot is configured to use
    timeline, histogram = figure.subplots(2, 1, height_ratios=(3, 1))
    bar = 1.0 if len(rows) > 60 else 0.8
    colours = {name: colour for name, _, _, colour in PHASES}
    colours["lost"] = FAILED_COLOUR
    used: dict[str, str] = {}
    for name, colour in colours.items():
        pick = [r for r in rows if name in r.phases]
        if not pick:
            continue
        if name == "start-up":  # cold starts stand out in their own colour
            for cold, label in ((False, "start-up: invoke, backend queue"), (True, "start-up with a cold start")):
                group = [r for r in pick if r.cold is cold]
                if group:
                    _bars(timeline, group, name, COLD_COLOUR if cold else colour, bar)
                    used[label] = COLD_COLOUR if cold else colour
            continue
        if name == "run":
            failed = [r for r in pick if not r.ok]
            _bars(timeline, [r for r in pick if r.ok], name, colour, bar)
            used["run: load + calls"] = colour
            if failed:
                _bars(timeline, failed, name, FAILED_COLOUR, bar)
                used["run (raised)"] = FAILED_COLOUR
            continue
        _bars(timeline, pick, name, colour, bar)
        used[LEGEND.get(name, name)] = colour
    end = (job.finished_at or max((sum(p) for r in rows for p in r.phases.values()), default=0.0) + job.submitted_at)
    wall = end - job.submitted_at
    timeline.axvline(wall, color="black", linewidth=0.8, linestyle="--")
    timeline.set_xlim(0, max(wall, 1e-3) * 1.02)
    timeline.set_ylim(job.task_count - 0.5, -0.5)
    timeline.set_xlabel("seconds since the job was submitted")
    timeline.set_ylabel("task")
    figure.legend(
        handles=[Patch(color=c, label=label) for label, c in used.items()],
        loc="outside lower center", fontsize="small", ncol=3, frameon=False,
    )
    summary = job.summary() if job.done() else None
    title = f"job {job.job_id} on {job.backend}: {job.task_count:,} tasks, wall {wall:.2f} s"
    if len(rows) < job.task_count and job.done():
        title += f" ({len(rows):,} drawn: a sample)"
    if summary is not None:
        title += (
            f", {summary.speedup:.1f}x parallel ({summary.parallel_efficiency:.0%} of peak "
            f"{summary.peak_concurrency}), {summary.cold_starts} cold starts, {summary.failed} failed"
        )
    timeline.set_title(title, fontsize="medium")

    durations = list(job.run_seconds_sample())  # every task's, or a uniform sample of a big job's
    if durations:
        bins = max(5, min(50, int(len(durations) ** 0.5) * 2))
        histogram.hist(durations, bins=bins, color=colours["run"], edgecolor="white", linewidth=0.5)
    histogram.set_xlabel("task run time (s), runtime's measure")
    histogram.set_ylabel("tasks")
    return figure


def _bars(axes: Any, rows: list[TaskPhases], phase: str, colour: str, height: float) -> None:
    """One rectangle per row as a single collection (thousands of ``barh`` patches are slow)."""
    from matplotlib.collections import PolyCollection

    boxes = []
    half = height / 2
    for r in rows:
        left, width = r.phases[phase]
        right = left + max(width, 1e-6)
        y = r.task_id
        boxes.append(((left, y - half), (right, y - half), (right, y + half), (left, y + half)))
    axes.add_collection(PolyCollection(boxes, facecolors=colour, edgecolors="none", linewidths=0))


class SummaryPrinter:
    """``verbose=True``: prints a job's summary on stderr once — when the caller has consumed
    its last result (``print()``), or when the job ends, whichever comes first, so that a job
    whose results raised is reported too."""

    def __init__(self, job: WatchedJob) -> None:
        self._job = job
        self._lock = threading.Lock()
        self._printed = False
        job.add_done_callback(lambda _: self.print())

    def print(self) -> None:
        with self._lock:
            if self._printed:
                return
            self._printed = True
        print(self._job.summary(), file=sys.stderr, flush=True)


def job_logs(job: JobRecord, task_id: int | None = None) -> str:
    """Captured output of task ``task_id`` (its bare text), or of every task the job keeps
    that printed or failed, each under a header line."""
    if task_id is not None:
        task = job.task(task_id)
        return (task.logs if task is not None else None) or ""
    parts = []
    for task in job.tasks:
        error = task.outcome.error if task.outcome is not None else None
        if not task.logs and not error:
            continue
        parts.append(task_header(task.task_id, task.attempt, task.timings, error))
        if task.logs:
            parts.append(task.logs.rstrip("\n"))
    return "\n".join(parts) + ("\n" if parts else "")


def task_header(task_id: int, attempt: int, timings: dict[str, Any] | None, error: Any = None) -> str:
    """``=== task 3 (attempt 1, 0.012 s, cold): ValueError: bad ===`` — one line per task."""
    facts = [f"attempt {attempt}"]
    if timings and "finished" in timings and "started" in timings:
        facts.append(f"{timings['finished'] - timings['started']:.3f} s")
        if timings.get("cold"):
            facts.append("cold")
    status = ""
    if error is not None:
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        status = ": " + text.splitlines()[0] if text else ""
    return f"=== task {task_id} ({', '.join(facts)}){status} ==="


#: how much of a failed call's traceback a task's record (and the job history) keeps
MAX_TRACEBACK_CHARS = 8_000


def exception_traceback(exc: BaseException) -> str:
    """What Python prints for ``exc`` (its remote traceback when one came back as text), the
    last ``MAX_TRACEBACK_CHARS`` characters of it."""
    text = "".join(traceback.format_exception(exc))
    remote = getattr(exc, "remote_traceback", None)
    if remote and remote not in text:
        text = f"{text}\nremote traceback:\n{remote}"
    return text[-MAX_TRACEBACK_CHARS:]
