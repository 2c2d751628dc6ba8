"""A progress bar for long jobs (tqdm): calls done, with running and failed ones alongside.

The bar appears after ``DELAY_S`` seconds (short jobs never show one), in terminals and
notebooks (``tqdm.auto``), and stays silent when stderr is not a terminal unless asked
(``progress=True``). A small thread refreshes it every ``REFRESH_S`` so that the running
count moves even while no call finishes.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from lambdamr.driver.job import Job

DELAY_S = 2.0
REFRESH_S = 0.5


def progress_enabled(setting: bool | None) -> bool:
    """Resolve the ``progress`` option: None means 'when a person is watching'."""
    if setting is not None:
        return setting
    if "ipykernel" in sys.modules:
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class JobProgress:
    """Shows a job's calls done on a tqdm bar, with ``running=`` and ``failed=`` beside it."""

    def __init__(self, job: Job, description: str = "", *, delay: float = DELAY_S, file: Any = None) -> None:
        from tqdm.auto import tqdm

        self.job = job
        self._show_after = time.monotonic() + delay
        self._bar: Any = tqdm(
            total=job.calls,
            desc=description or f"job {job.job_id}",
            unit="call",
            delay=delay,
            leave=False,
            file=file,
            dynamic_ncols=True,
        )
        self._lock = threading.Lock()
        self.failed = 0
        for future in job.futures:
            future.add_done_callback(self._on_done)
        self._thread = threading.Thread(target=self._refresh_until_done, name="lambdamr-progress", daemon=True)
        self._thread.start()

    def track(self, tasks: list[Any]) -> None:
        """Count the calls of tasks a streaming map added after the bar was made."""
        if not tasks:
            return
        with self._lock:
            self._bar.total += sum(t.calls for t in tasks)
        for task in tasks:
            for future in task.futures:
                future.add_done_callback(self._on_done)

    def running(self) -> int:
        """Calls whose task has been sent to the backend and has not settled."""
        # Read without the scheduler's cooperation: a count off by one for an instant is fine.
        return sum(t.calls for t in self.job.live_tasks if t.first_dispatched_at is not None and not t.done)

    def _on_done(self, future: Any) -> None:
        with self._lock:
            if not future.cancelled() and future.exception() is not None:
                self.failed += 1
                self._postfix()
            self._bar.update(1)

    def _postfix(self) -> None:
        self._bar.set_postfix(running=self.running(), failed=self.failed, refresh=False)

    def _refresh_until_done(self) -> None:
        while not self.job.wait(REFRESH_S):
            if time.monotonic() >= self._show_after:  # refresh() would show the bar before its delay
                with self._lock:
                    self._postfix()
                    self._bar.refresh()
        with self._lock:
            self._postfix()
            if time.monotonic() >= self._show_after:
                self._bar.refresh()  # the final counts, before leave=False clears the line
            self._bar.close()
