"""A progress bar for long jobs (tqdm), shown only when it helps.

The bar appears after ``DELAY_S`` seconds (short jobs never show one), in terminals and
notebooks (``tqdm.auto``), and stays silent when stderr is not a terminal unless asked.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from .futures import LambdaFuture
from .job import Job

DELAY_S = 2.0


def progress_enabled(setting: bool | None) -> bool:
    """Resolve the ``progress`` option: None means 'when a person is watching'."""
    if setting is not None:
        return setting
    if "ipykernel" in sys.modules:
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class JobProgress:
    """Counts done / failed calls of a job on a tqdm bar."""

    def __init__(self, job: Job, description: str = "") -> None:
        from tqdm.auto import tqdm

        self._bar: Any = tqdm(
            total=len(job.futures), desc=description or f"job {job.job_id}", unit="task", delay=DELAY_S, leave=False
        )
        self._lock = threading.Lock()
        self._failed = 0
        self._remaining = len(job.futures)
        for future in job.futures:
            future.add_done_callback(self._on_done)

    def _on_done(self, future: LambdaFuture) -> None:
        with self._lock:
            if not future.cancelled() and future.exception() is not None:
                self._failed += 1
                self._bar.set_postfix(failed=self._failed, refresh=False)
            self._bar.update(1)
            self._remaining -= 1
            if self._remaining == 0:
                self._bar.close()
