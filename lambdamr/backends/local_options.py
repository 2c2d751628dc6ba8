"""The local backend's own options: how many worker processes it runs, and where the big
buffers of values that only this host reads go (``lambdamr.storage.scratch``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from lambdamr.config import BackendOptions, is_whole_number, parse_text, parse_whole, setting
from lambdamr.errors import ConfigurationError
from lambdamr.storage.scratch import DEFAULT_SCRATCH_BASE

#: the most local worker processes one executor starts: each is a Python interpreter
#: (30-60 MB before the user's imports), so past this the machine thrashes instead of working
LOCAL_WORKERS_PER_CPU = 16
LOCAL_WORKERS_FLOOR = 64


def max_local_workers() -> int:
    """The cap on ``workers``: 16 per CPU, at least 64."""
    return max(LOCAL_WORKERS_FLOOR, LOCAL_WORKERS_PER_CPU * (os.cpu_count() or 1))


def validate_workers(workers: Any, label: str | None = None) -> int | None:
    """A local worker count, 1 to ``max_local_workers()``, or None for the CPU count."""
    if workers is None:
        return None
    label = label or f"workers={workers!r}"
    if not is_whole_number(workers) or workers < 1:
        raise ConfigurationError(f"{label}: give at least 1 worker (a whole number), or None for the CPU count")
    cap = max_local_workers()
    if workers > cap:
        raise ConfigurationError(
            f"{label}: at most {cap} local workers on this machine ({LOCAL_WORKERS_PER_CPU} per CPU): each is "
            "a Python process; for more parallelism use the aws backend"
        )
    return int(workers)


#: ``buffer_folder`` values that keep every buffer in the store
BUFFER_FOLDER_OFF = ("", "off", "none")


def validate_buffer_folder(folder: Any, label: str | None = None) -> str:
    """A folder path for big buffers (normally in RAM), or ``"off"``."""
    label = label or f"buffer_folder={folder!r}"
    if isinstance(folder, os.PathLike):
        folder = os.fspath(folder)
    if not isinstance(folder, str):
        raise ConfigurationError(f"{label}: give a folder path (e.g. '/dev/shm'), or 'off' to keep big buffers in the store")
    if folder.strip().lower() in BUFFER_FOLDER_OFF:
        return "off"
    expanded: str = os.path.expanduser(folder)
    if not os.path.isabs(expanded):
        raise ConfigurationError(f"{label}: give an absolute folder path (e.g. '/dev/shm'), or 'off'")
    return expanded


@dataclass(frozen=True)
class LocalOptions(BackendOptions):
    """``LambdaExecutor(workers=4)``: options of the local backend."""

    workers: int | None = setting(None, validate_workers, parse_whole)  # worker processes; None = the CPU count
    #: where the big buffers (numpy arrays' data) of jobs that are not durable go, in a folder
    #: of the session's: RAM by default; the store when it is missing, full or "off"
    buffer_folder: str = setting(DEFAULT_SCRATCH_BASE, validate_buffer_folder, parse_text)

    def scratch_base(self) -> str | None:
        """The folder to make session scratch folders in, or None (``"off"``)."""
        return None if self.buffer_folder == "off" else self.buffer_folder
