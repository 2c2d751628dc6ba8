"""The storage interface: where the bytes of functions, arguments and results live.

A store implements five primitives — ``put``, ``get`` (whole or a byte range), ``list``,
``delete`` and ``spec`` — and inherits the rest. Keys are ``/``-separated strings; a store
never interprets them beyond that. Every store counts its requests in ``stats`` because on S3
each request is latency and money.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from lambdamr.counters import Counters


@dataclass(frozen=True)
class ObjectInfo:
    """A listed object: its key, size in bytes and, when the store tells, when it was last
    written (seconds since the epoch)."""

    key: str
    size: int
    modified: float | None = None


@dataclass
class StorageStats(Counters):
    """Requests and bytes a store has served, by kind. Thread-safe to update via ``add``."""

    puts: int = 0
    gets: int = 0
    lists: int = 0
    deletes: int = 0
    bytes_written: int = 0
    bytes_read: int = 0


class Storage(ABC):
    """Object storage as lambdamr needs it. Implementations must be thread-safe."""

    #: the name of this implementation in the registry (``lambdamr.storage.STORES``)
    kind: str = ""
    #: requests worth making at once from one task: a remote store hides its latency with
    #: several in flight; a local one gains nothing but threads fighting over two cores
    concurrent_requests: int = 8

    def __init__(self) -> None:
        self.stats = StorageStats()

    @abstractmethod
    def put(self, key: str, data: bytes | memoryview, *, if_absent: bool = False) -> bool:
        """Store ``data`` at ``key`` atomically: a reader sees the old object or the new one.

        With ``if_absent`` the write happens only when ``key`` does not exist yet, and the
        return value says whether it happened. Without it, an existing object is replaced and
        the return value is ``True``.
        """

    @abstractmethod
    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        """Read the object at ``key``, or its bytes ``[start, end)`` when given.

        Raises ``ObjectNotFound`` when the key does not exist.
        """

    @abstractmethod
    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with ``prefix``, in key order, skipping keys
        up to and including ``start_after`` (S3's ``StartAfter``: fewer pages to read)."""

    @abstractmethod
    def delete(self, keys: Iterable[str]) -> int:
        """Delete these keys (missing ones are ignored); return how many requests it took."""

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """A JSON-able description from which ``open_storage`` rebuilds an equivalent store.

        It is sent to the runtime in every task event, so it must never hold credentials.
        """

    # ---- derived operations -------------------------------------------------------------
    def put_parts(self, key: str, parts: Sequence[bytes | memoryview], *, if_absent: bool = False) -> bool:
        """``put`` of the concatenation of ``parts`` (one request). Stores that can write
        pieces one after the other override it to skip the join."""
        return self.put(key, b"".join(parts), if_absent=if_absent)

    def open_range(self, key: str, start: int, end: int) -> IO[bytes]:
        """Bytes ``[start, end)`` of ``key`` as a readable binary stream (one GET), to close
        after use. Stores that can stream override it, so that a reader may read pieces
        straight into their own objects; by default the range is read with ``get``."""
        return io.BytesIO(self.get(key, start, end))

    def store_buffer(self, key: str, data: bytes | memoryview) -> None:
        """Store a big buffer (an out-of-band part of a pickled value) under its
        content-addressed ``key``. Stores override it to write in parallel parts (S3)."""
        self.put(key, data)

    def load_buffer(self, key: str, size: int) -> memoryview:
        """The object at ``key`` as writable memory (a numpy array is rebuilt on it), read
        whole: a private copy-on-write map of a local file, parallel ranged GETs on S3; by
        default one read into a ``bytearray`` of ``size`` bytes.

        The caller checks the bytes against their digest before using them.

        Raises ``ObjectNotFound`` when the key does not exist.
        """
        memory = memoryview(bytearray(size))
        count = 0
        with self.open_range(key, 0, size) as stream:
            while count < size:
                got = stream.readinto(memory[count:])  # type: ignore[attr-defined]
                if not got:
                    break
                count += got
        return memory[:count]

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; return the number of objects deleted."""
        if not prefix:
            raise ValueError("refusing to delete an empty prefix (that is the whole store)")
        keys = [info.key for info in self.list(prefix)]
        if keys:
            self.delete(keys)
        return len(keys)

    def url(self, key: str = "") -> str:
        """A human-readable location of ``key``, for messages."""
        return f"{self.kind}:{key}"

    def close(self) -> None:
        """Release connections or handles (optional)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec()!r})"
