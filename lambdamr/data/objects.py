"""Inputs in storage: ``lambdamr.objects(...)`` splits objects into byte-range chunks.

    for chunk in lambdamr.objects("s3://bucket/logs/", chunk_bytes=64 << 20):   # or a folder
        ...   # each chunk is one mapper's input; chunk.read() fetches only its range

Text (``lines=True``, the default) is split the way Hadoop splits it: a chunk owns every
line that *starts* inside its byte range ``[start, end)``, so it skips the partial line it
begins in and reads past its end to finish its last line. Every line is read by exactly one
chunk, with one ranged GET (a second one only when a line is longer than the overshoot).
Fixed-size binary records (``record_bytes=100``) are split on record boundaries instead.

Listing happens in the driver (one LIST per 1,000 objects); reading happens in the task.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lambdamr.errors import ConfigurationError
from lambdamr.storage import Storage, open_cached, open_storage, storage_from_url

#: default chunk size: a comfortable mapper input on Lambda at 1-2 GB of memory
DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024
#: bytes read past a text chunk's end to finish its last line (one GET for normal lines)
LINE_OVERSHOOT = 64 * 1024


def objects(
    location: str,
    *,
    chunk_bytes: int | None = None,
    chunks: int | None = None,
    lines: bool = True,
    record_bytes: int | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> ObjectSource:
    """Storage objects as mapper inputs: every object under ``location``, split into chunks.

    Args:
        location: ``s3://bucket/prefix/`` (every object under it), ``s3://bucket/key`` (that
            object, or the objects under ``key/``), a folder, or one file.
        chunk_bytes: target size of a chunk (default 64 MiB). Chunks never span objects.
        chunks: instead of ``chunk_bytes``: about this many chunks in all, spread over the
            objects by size (at least one per non-empty object).
        lines: align chunks to lines (text). ``False`` for raw byte ranges.
        record_bytes: align chunks to fixed-size records of this many bytes (binary data).
        region / endpoint_url: for S3; default to the executor's settings.

    Returns:
        An ``ObjectSource``: pass it as ``inputs`` to ``map_reduce`` / ``map``; iterating it
        lists the objects and yields ``Chunk`` objects.
    """
    return ObjectSource(location, chunk_bytes, chunks, lines, record_bytes, region, endpoint_url)


@dataclass(frozen=True)
class ObjectSource:
    """A description of storage inputs; ``resolve()`` lists them and returns their chunks."""

    location: str
    chunk_bytes: int | None = None
    chunks: int | None = None
    lines: bool = True
    record_bytes: int | None = None
    region: str | None = None
    endpoint_url: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.location, str) or not self.location:
            raise ConfigurationError(f"objects({self.location!r}): give s3://bucket/prefix/ or a folder path")
        if self.chunk_bytes is not None and self.chunks is not None:
            raise ConfigurationError("objects(): give chunk_bytes or chunks, not both")
        for name in ("chunk_bytes", "chunks", "record_bytes"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigurationError(f"objects(): {name}={value!r}: give a whole number >= 1")
        if self.record_bytes is not None and self.lines:
            object.__setattr__(self, "lines", False)  # records, not lines

    @property
    def mode(self) -> str:
        """How chunk boundaries are aligned: "lines", "records" or "bytes"."""
        if self.record_bytes:
            return "records"
        return "lines" if self.lines else "bytes"

    def open(self, *, region: str | None = None, endpoint_url: str | None = None) -> tuple[Storage, list[tuple[str, int]]]:
        """The store holding the objects and every (key, size) to read, in key order."""
        location = self.location
        region = self.region or region
        endpoint_url = self.endpoint_url or endpoint_url
        if location.startswith("s3://"):
            store, prefix = storage_from_url(location, region=region, endpoint_url=endpoint_url)
            if prefix and location.endswith("/"):
                prefix += "/"  # "data/" must not match "data-old/..."
            listing = [(i.key, i.size) for i in store.list(prefix) if not i.key.endswith("/")]
            if prefix and not prefix.endswith("/"):
                exact = [(k, s) for k, s in listing if k == prefix]
                listing = exact or [(k, s) for k, s in listing if k.startswith(prefix + "/")]
            where = store.url(prefix)
        else:
            path = os.path.abspath(os.path.expanduser(location.removeprefix("file://")))
            if os.path.isfile(path):
                store = open_storage({"kind": "local", "root": os.path.dirname(path)})
                listing = [(os.path.basename(path), os.path.getsize(path))]
            elif os.path.isdir(path):
                store = open_storage({"kind": "local", "root": path})
                listing = [(i.key, i.size) for i in store.list("")]
            else:
                raise ConfigurationError(f"objects({location!r}): no such file or folder")
            where = path
        if not listing:
            raise ConfigurationError(f"objects({location!r}): no objects under {where}; check the location")
        return store, listing

    def split(self, store: Storage, listing: list[tuple[str, int]]) -> list[Chunk]:
        """Split listed objects into chunks (in key order, then offset order)."""
        spec = store.spec()
        sizes = [size for _, size in listing]
        ranges = split_objects(sizes, chunk_bytes=self.chunk_bytes, chunks=self.chunks, align=self.record_bytes or 1)
        out: list[Chunk] = []
        for (key, size), pieces in zip(listing, ranges):
            for start, end in pieces:
                out.append(Chunk(spec, key, start, end, size, self.mode, len(out)))
        return out

    def resolve(self, *, region: str | None = None, endpoint_url: str | None = None) -> list[Chunk]:
        """List the objects and split them into chunks."""
        return self.split(*self.open(region=region, endpoint_url=endpoint_url))

    def __iter__(self) -> Iterator[Chunk]:
        from lambdamr.config import ExecutorConfig

        config = ExecutorConfig.resolve()
        return iter(self.resolve(region=config.region, endpoint_url=config.endpoint_url))


def split_objects(
    sizes: list[int], *, chunk_bytes: int | None, chunks: int | None, align: int = 1
) -> list[list[tuple[int, int]]]:
    """Byte ranges ``[start, end)`` for each object; boundaries fall on multiples of ``align``."""
    if chunks is not None:
        counts = _spread_counts(sizes, chunks)
    else:
        step = max(align, (chunk_bytes or DEFAULT_CHUNK_BYTES) // align * align)
        counts = [math.ceil(size / step) if size else 0 for size in sizes]
    out = []
    for size, count in zip(sizes, counts):
        cuts = sorted({min(size, round(size * j / count) // align * align) for j in range(1, count)} - {0}) if count else []
        bounds = [0, *cuts, size] if count else []
        out.append([(a, b) for a, b in zip(bounds, bounds[1:]) if b > a])
    return out


def _spread_counts(sizes: list[int], chunks: int) -> list[int]:
    """Split ``chunks`` over objects in proportion to size; every non-empty object gets one."""
    total = sum(sizes)
    shares = [chunks * size / total if total else 0.0 for size in sizes]
    counts = [max(1, int(share)) if size else 0 for size, share in zip(sizes, shares)]
    leftover = chunks - sum(counts)
    by_remainder = sorted((i for i, s in enumerate(sizes) if s), key=lambda i: shares[i] - int(shares[i]), reverse=True)
    for i in by_remainder[: max(0, leftover)]:
        counts[i] += 1
    return counts


class Chunk:
    """A byte range of one storage object: one mapper's input. Reading happens where it runs.

    Attributes: ``key``, ``start``, ``end`` (the nominal range), ``object_size``, ``mode``
    ("lines", "records" or "bytes"), ``index`` (its position among all chunks), ``url``.
    """

    __slots__ = ("storage", "key", "start", "end", "object_size", "mode", "index", "requests")

    def __init__(
        self, storage: dict[str, Any], key: str, start: int, end: int, object_size: int, mode: str = "lines", index: int = 0
    ) -> None:
        self.storage = storage
        self.key = key
        self.start = start
        self.end = end
        self.object_size = object_size
        self.mode = mode
        self.index = index
        self.requests = 0  # GETs made by read() in this process

    @property
    def url(self) -> str:
        """Where the object lives, for messages."""
        if self.storage.get("kind") == "s3":
            return f"s3://{self.storage['bucket']}/{self.key}"
        return os.path.join(self.storage.get("root", ""), self.key)

    def __len__(self) -> int:
        return self.end - self.start

    def read(self) -> bytes:
        """The chunk's bytes: whole lines (``lines`` mode) or exactly ``[start, end)``."""
        store = open_cached(self.storage)
        if self.mode != "lines":
            self.requests += 1
            return store.get(self.key, self.start, self.end)
        return self._read_lines(store)

    def _read_lines(self, store: Storage) -> bytes:
        start, end, size = self.start, self.end, self.object_size
        if start >= end:
            return b""
        lo = start - 1 if start > 0 else 0  # the byte before: is our first line a whole one?
        data = store.get(self.key, lo, min(size, end + LINE_OVERSHOOT))
        self.requests += 1
        first = 0
        if start > 0:
            newline = data.find(b"\n", 0, end - 1 - lo)
            if newline < 0:  # no line starts inside [start, end): the previous chunk has it
                return b""
            first = newline + 1
        stop = data.find(b"\n", end - 1 - lo)
        while stop < 0 and lo + len(data) < size:  # a line longer than the overshoot
            more = store.get(self.key, lo + len(data), min(size, lo + 2 * len(data)))
            self.requests += 1
            searched = len(data)
            data += more
            stop = data.find(b"\n", searched)
        return data[first : stop + 1 if stop >= 0 else len(data)]

    def text(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        """``read()`` decoded."""
        return self.read().decode(encoding, errors)

    def lines(self, encoding: str = "utf-8", errors: str = "strict") -> list[str]:
        """The chunk's lines, without line endings."""
        return self.text(encoding, errors).splitlines()

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.storage, self.key, self.start, self.end, self.object_size, self.mode, self.index)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.storage, self.key, self.start, self.end, self.object_size, self.mode, self.index = state
        self.requests = 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Chunk) and self.__getstate__() == other.__getstate__()

    def __hash__(self) -> int:
        return hash((self.key, self.start, self.end))

    def __repr__(self) -> str:
        return f"Chunk({self.url} [{self.start}:{self.end}) {self.mode})"


__all__ = ["Chunk", "ObjectSource", "objects", "split_objects"]
