"""A session's scratch folder in shared memory, for the big buffers of values that only
this host's processes read.

On the local backend the driver and its workers share one host, and an out-of-band buffer
(``lambdamr.data.buffers``) of a job that is not durable is read by one process of it: the
task its arguments go to, or the driver its result goes back to. Such a buffer goes to a
folder in RAM (``/dev/shm`` when it is there, writable and has room) instead of the store:
a store on a disk pays the page cache's first touch of fresh pages on every write, which on
some machines costs more than the copy through a pipe it replaces. Every rule of the store
holds: the buffer is named by its digest, listed in the signed frame and checked before it
is unpickled.

The folder, ``{base}/lambdamr-{uid}/{session}/`` (0700), lives as long as its session::

    lambdamr-{uid}/{session}.lock   held (flock) by the driver while the session lives
    lambdamr-{uid}/{session}/...    the buffers: the same keys the store would have used

It is emptied as its buffers are consumed (a result's buffers once the driver has mapped
them: an unlinked file stays mapped; a job's arguments when the job ends) and removed when
the session ends. A driver that died leaves its lock free: the next session on the host
removes such folders (``sweep_stale``) before it makes its own, and ``lambdamr clean`` lists
them (``stale_folders``) and removes them. (The lock's descriptor is
not inherited by exec'd processes such as the local workers; a child *forked* by the driver
shares it, and keeps a dead driver's folder until it exits too.)

A buffer goes to scratch only while the file system keeps ``RESERVE_FRACTION`` of itself
free and the machine as much of its memory available (``has_room``); otherwise to the store.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambdamr.storage.local import LocalStorage, make_private_folders

log = logging.getLogger("lambdamr")

#: where scratch folders go by default: the RAM-backed tmpfs of Linux
DEFAULT_SCRATCH_BASE = "/dev/shm"
#: the share of the scratch file system, and of the machine's memory, never used for buffers
RESERVE_FRACTION = 0.25
#: and at least this many bytes of each
RESERVE_MIN_BYTES = 256 * 1024 * 1024
_MEMINFO = "/proc/meminfo"


def _available_memory(meminfo: str = _MEMINFO) -> tuple[int, int] | None:
    """(MemAvailable, MemTotal) in bytes from ``/proc/meminfo``, None where there is none."""
    try:
        with open(meminfo, "rb") as fh:
            fields = dict(line.split(b":", 1) for line in fh.read().splitlines() if b":" in line)
        return int(fields[b"MemAvailable"].split()[0]) * 1024, int(fields[b"MemTotal"].split()[0]) * 1024
    except (OSError, KeyError, ValueError, IndexError):
        return None


def _reserve(total: int) -> int:
    return max(RESERVE_MIN_BYTES, int(total * RESERVE_FRACTION))


def has_room(folder: str | os.PathLike[str], nbytes: int) -> bool:
    """Whether ``nbytes`` more fit in ``folder``'s file system, and in the machine's memory
    (tmpfs pages are RAM), each keeping its reserve free."""
    try:
        info = os.statvfs(folder)
    except OSError:
        return False
    free, total = info.f_bavail * info.f_frsize, info.f_blocks * info.f_frsize
    if free - nbytes < _reserve(total):
        return False
    memory = _available_memory()
    return memory is None or memory[0] - nbytes >= _reserve(memory[1])


def _user_folder(base: str | os.PathLike[str]) -> Path:
    return Path(base) / f"lambdamr-{os.geteuid()}"


@dataclass(frozen=True)
class StaleFolder:
    """A scratch folder whose driver is gone: what ``lambdamr clean`` lists before it deletes."""

    path: Path
    size: int  # bytes of the buffers it still holds


def _lock_is_free(lock: Path) -> bool | None:
    """Whether no live driver holds ``lock`` (True), one does (False), or it is gone (None)."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held: its session is alive
        return False
    finally:
        os.close(fd)  # closing the descriptor gives up a lock it took
    return True


def _stale_names(folder: Path, names: list[str]) -> list[str]:
    """The session folders among ``names`` (entries of ``folder``) that no live driver holds."""
    stale = []
    entries = set(names)
    for name in names:
        if name.endswith(".lock"):
            if _lock_is_free(folder / name) and name[: -len(".lock")] not in entries:
                stale.append(name[: -len(".lock")])  # a lock left alone: its folder is gone already
        elif f"{name}.lock" not in entries or _lock_is_free(folder / f"{name}.lock"):
            # A folder is made after its lock and removed before it: without one it is left
            # over (a late write after its session ended made it again).
            stale.append(name)
    return stale


def _folder_size(path: Path) -> int:
    size = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                size += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return size


def stale_folders(base: str | os.PathLike[str]) -> list[StaleFolder]:
    """The scratch folders under ``base`` whose driver is gone, with their sizes; nothing is
    deleted (``sweep_stale`` does that)."""
    folder = _user_folder(base)
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [StaleFolder(folder / name, _folder_size(folder / name)) for name in _stale_names(folder, names)]


def sweep_stale(base: str | os.PathLike[str], only: Collection[str] | None = None) -> int:
    """Remove the scratch folders under ``base`` whose driver is gone (its lock is free, or
    it has no lock file) — of those, only the ones named in ``only`` when it is given —
    and return how many were removed."""
    folder = _user_folder(base)
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    removed = 0
    for name in _stale_names(folder, names):
        if only is not None and name not in only:
            continue
        lock = folder / f"{name}.lock"
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:  # no lock: a left-over folder
            shutil.rmtree(folder / name, ignore_errors=True)
            removed += 1
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # again, holding it this time
        except OSError:  # a driver took it since: it is alive
            os.close(fd)
            continue
        try:
            shutil.rmtree(folder / name, ignore_errors=True)
            _unlink(lock)
        finally:
            os.close(fd)
        removed += 1
    return removed


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


class SessionScratch:
    """One session's scratch folder: a ``LocalStorage`` in RAM, locked while the session lives."""

    def __init__(self, store: LocalStorage, lock_path: Path, lock_fd: int) -> None:
        self.store = store
        self._lock_path = lock_path
        self._lock_fd: int | None = lock_fd

    @classmethod
    def open(cls, session_id: str, base: str | os.PathLike[str] | None = DEFAULT_SCRATCH_BASE) -> SessionScratch | None:
        """The scratch folder of ``session_id`` under ``base``, after removing the stale
        folders of dead drivers; None when ``base`` is None, missing, not writable or full
        (then buffers stay in the store)."""
        if not base or not os.path.isdir(base) or not os.access(base, os.W_OK | os.X_OK):
            return None
        if not has_room(base, 0):
            return None
        folder = _user_folder(base)
        lock_path = folder / f"{session_id}.lock"
        try:
            make_private_folders(folder)
            info = os.stat(folder)
            if info.st_uid != os.geteuid() or info.st_mode & 0o077:
                log.warning("lambdamr: not using %s for big buffers: it is not this user's private folder", folder)
                return None
            sweep_stale(base)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            log.debug("lambdamr: no scratch folder under %s: %s", base, exc)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(lock_path).st_ino != os.fstat(fd).st_ino:
                raise OSError("another driver's sweep took the lock file between its creation and its lock")
            store = LocalStorage(folder / session_id)  # made after the lock: see sweep_stale
        except Exception:
            os.close(fd)
            _unlink(lock_path)
            return None
        return cls(store, lock_path, fd)

    @property
    def root(self) -> Path:
        return self.store.root

    def release(self, prefix: str) -> None:
        """Delete the buffers under ``prefix`` (a job's, once it ended)."""
        try:
            self.store.delete_prefix(prefix.rstrip("/") + "/")
        except Exception as exc:  # RAM is given back at the session's end anyway
            log.warning("lambdamr: could not delete the buffers under %s: %s", self.store.url(prefix), exc)

    def release_arguments(self, job: Any) -> None:
        """Delete the buffers of a job's arguments, ``{job.prefix}/values/`` (it ended)."""
        self.release(f"{job.prefix}/values/")

    def close(self) -> None:
        """Remove the folder and give up its lock (the session ended)."""
        if self._lock_fd is None:
            return
        try:
            shutil.rmtree(self.root, ignore_errors=True)  # what it cannot remove, the next sweep does
        finally:
            _unlink(self._lock_path)
            os.close(self._lock_fd)
            self._lock_fd = None
