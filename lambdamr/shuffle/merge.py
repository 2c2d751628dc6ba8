"""Grouping a reducer's partition: in memory when it fits, else a k-way merge from /tmp.

Each mapper wrote its part of the partition sorted by key, so every segment is already a
sorted run. When the partition is too big for the reducer's memory budget, the reducer
streams each segment to a file under ``tempfile.gettempdir()`` (Lambda's /tmp), then merges
the files with ``heapq.merge`` holding one decoded frame per file — in several passes when
there are more files than the budget allows open at once. Values of a key come in mapper
order on both paths.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from typing import Any

from lambdamr.data.digest import hasher_for, matches, refused
from lambdamr.errors import ConfigurationError
from lambdamr.shuffle.format import FRAME_BYTES, read_file_frames, write_frames
from lambdamr.shuffle.partition import not_a_groupable_key

#: a decoded frame takes about this many times its pickled size in memory
FRAME_EXPANSION = 8
MAX_FAN_IN = 512
_FILE_BUFFER = 256 * 1024


def group_in_memory(segments: Iterable[Iterable[tuple[Any, Any]]]) -> dict[Any, list[Any]]:
    """key -> values over the pairs of segments given in mapper order (keys in first-seen order)."""
    groups: dict[Any, list[Any]] = {}
    get = groups.get
    for pairs in segments:
        for key, value in pairs:
            values = get(key)
            if values is None:
                if key != key:  # NaN: every copy would be a group of its own
                    raise not_a_groupable_key(key)
                groups[key] = [value]
            else:
                values.append(value)
    return groups


def sorted_keys(groups: dict[Any, list[Any]]) -> list[Any]:
    """The keys in order when they are mutually orderable, else in first-seen order."""
    keys = list(groups)
    try:
        keys.sort()
    except (TypeError, ValueError):
        pass
    return keys


def fan_in(budget_bytes: int) -> int:
    """How many runs one merge pass may read at once within ``budget_bytes``."""
    return max(2, min(MAX_FAN_IN, budget_bytes // (FRAME_BYTES * FRAME_EXPANSION)))


class SpillMerger:
    """Sorted runs on local disk, merged into (key, values) groups in key order."""

    def __init__(self, budget_bytes: int, *, where: str) -> None:
        self.where = where
        self.fan_in = fan_in(budget_bytes)
        self.folder = tempfile.mkdtemp(prefix="lambdamr-merge-")
        self.runs: list[str] = []
        self.spilled_bytes = 0
        self.passes = 0
        self._names = itertools.count()
        self._lock = threading.Lock()

    def reserve(self, count: int) -> None:
        """Make room for ``count`` runs added by position (from several threads)."""
        self.runs = [""] * count

    def _new_path(self) -> str:
        with self._lock:
            return os.path.join(self.folder, f"run-{next(self._names):06d}")

    def add_run(
        self, pieces: Iterable[bytes], *, position: int | None = None, digest: str | None = None, what: str = "run"
    ) -> None:
        """Store one sorted run (a segment's bytes, maybe in pieces) as a file.

        ``position`` (after ``reserve``) keeps runs in mapper order when they are added from
        several threads; ``digest`` is checked before anything in the run is unpickled.
        """
        path = self._new_path()
        hasher = hasher_for(digest) if digest is not None else None
        try:
            with open(path, "wb", buffering=_FILE_BUFFER) as fh:
                for piece in pieces:
                    if hasher is not None:
                        hasher.update(piece)
                    fh.write(piece)
                    with self._lock:
                        self.spilled_bytes += len(piece)
        except OSError as exc:
            raise self._disk_error(exc) from exc
        if digest is not None and not matches(hasher, digest):
            raise refused(what)
        if position is None:
            self.runs.append(path)
        else:
            self.runs[position] = path

    def _disk_error(self, exc: OSError) -> Exception:
        if exc.errno == errno.ENOSPC:
            return ConfigurationError(
                f"{self.where}: /tmp is full after spilling {self.spilled_bytes / 2**20:.0f} MB of its partition; "
                "use more reducers, more memory_mb, or a larger ephemeral storage for the function"
            )
        return exc

    @staticmethod
    def _pairs(path: str) -> Iterator[tuple[Any, Any]]:
        with open(path, "rb", buffering=_FILE_BUFFER) as fh:
            for frame in read_file_frames(fh):
                yield from frame

    def _merged(self, paths: list[str]) -> Iterator[tuple[Any, Any]]:
        # heapq.merge breaks ties by input position: values of a key stay in run order.
        return heapq.merge(*(self._pairs(p) for p in paths), key=itemgetter(0))

    def _reduce_runs(self) -> None:
        runs = [r for r in self.runs if r]
        while len(runs) > self.fan_in:
            self.passes += 1
            merged = []
            for i in range(0, len(runs), self.fan_in):
                group = runs[i : i + self.fan_in]
                if len(group) == 1:
                    merged.append(group[0])
                    continue
                path = self._new_path()
                try:
                    with open(path, "wb", buffering=_FILE_BUFFER) as fh:
                        write_frames(fh, self._merged(group), where=self.where)
                except OSError as exc:
                    raise self._disk_error(exc) from exc
                for old in group:
                    os.unlink(old)
                merged.append(path)
            runs = merged
        self.runs = runs

    def groups(self) -> Iterator[tuple[Any, list[Any]]]:
        """(key, values) in key order; consecutive equal keys form one group."""
        self._reduce_runs()
        self.passes += 1
        try:
            for key, group in itertools.groupby(self._merged(self.runs), key=itemgetter(0)):
                if key != key:  # NaN sorts nowhere: the merge order, and so every group, would be wrong
                    raise not_a_groupable_key(key)
                yield key, [value for _, value in group]
        except TypeError as exc:
            raise ConfigurationError(
                f"{self.where}: its keys cannot be compared ({exc}), so its partition can only be grouped in "
                "memory, and it is over the memory budget: use more reducers or more memory_mb"
            ) from exc

    def close(self) -> None:
        """Remove the run files (Lambda keeps /tmp between warm invocations)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> SpillMerger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pieces_of(fetch: Callable[[int, int], bytes], offset: int, length: int, piece_bytes: int) -> Iterator[bytes]:
    """A segment as ranged reads of at most ``piece_bytes`` (one read when it is small)."""
    end = offset + length
    while offset < end:
        stop = min(end, offset + piece_bytes)
        yield fetch(offset, stop)
        offset = stop
