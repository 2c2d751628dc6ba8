"""``Chunk``: a byte range of one input object, read where the task runs.

Text (``mode="lines"``) is read the way Hadoop splits it: a chunk owns every line that
*starts* inside its byte range ``[start, end)``, so it skips the partial line it begins in and
reads past its end to finish its last line. Every line is read by exactly one chunk, with one
ranged GET (a second one only when a line is longer than the overshoot). ``records`` and
``bytes`` chunks read exactly ``[start, end)``.

The object lives in a store (``storage`` is its spec: S3 or a local folder, ``key`` its key)
or behind an HTTP(S) URL (``storage`` is ``{"kind": "http", "ranges": ...}``, ``key`` the URL).
``http_source`` (urllib) is imported only by a chunk of a URL: a task that reads none does not
pay for urllib at a cold start.
"""

from __future__ import annotations

import os
from typing import Any

from lambdamr.storage import open_cached

#: bytes read past a text chunk's end to finish its last line (one GET for normal lines)
LINE_OVERSHOOT = 64 * 1024


def http_spec(ranged: bool) -> dict[str, Any]:
    """The ``storage`` of a chunk of an HTTP(S) object: no store, the URL is its key."""
    return {"kind": "http", "ranges": ranged}


class Chunk:
    """A byte range of one input object: one mapper's input. Reading happens where it runs.

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
    def is_http(self) -> bool:
        """Whether the object is read over HTTP(S) (no store, no IAM grant)."""
        return self.storage.get("kind") == "http"

    @property
    def url(self) -> str:
        """Where the object lives, for messages (an HTTP URL without its query string)."""
        if self.is_http:
            from lambdamr.data.http_source import display_url

            return display_url(self.key)
        if self.storage.get("kind") == "s3":
            return f"s3://{self.storage['bucket']}/{self.key}"
        return os.path.join(self.storage.get("root", ""), self.key)

    def __len__(self) -> int:
        return self.end - self.start

    def read(self) -> bytes:
        """The chunk's bytes: whole lines (``lines`` mode) or exactly ``[start, end)``."""
        if self.mode != "lines":
            return self._get(self.start, self.end)
        return self._read_lines()

    def _get(self, start: int, end: int) -> bytes:
        self.requests += 1
        if self.is_http:
            from lambdamr.data import http_source

            return http_source.read_range(
                self.key, start, end, size=self.object_size, ranged=bool(self.storage.get("ranges", True))
            )
        return open_cached(self.storage).get(self.key, start, end)

    def _read_lines(self) -> bytes:
        start, end, size = self.start, self.end, self.object_size
        if start >= end:
            return b""
        lo = start - 1 if start > 0 else 0  # the byte before: is our first line a whole one?
        data = self._get(lo, min(size, end + LINE_OVERSHOOT))
        first = 0
        if start > 0:
            newline = data.find(b"\n", 0, end - 1 - lo)
            if newline < 0:  # no line starts inside [start, end): the previous chunk has it
                return b""
            first = newline + 1
        stop = data.find(b"\n", end - 1 - lo)
        while stop < 0 and lo + len(data) < size:  # a line longer than the overshoot
            more = self._get(lo + len(data), min(size, lo + 2 * len(data)))
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
        whole = "" if self.storage.get("ranges", True) else " whole"
        return f"Chunk({self.url} [{self.start}:{self.end}) {self.mode}{whole})"


__all__ = ["LINE_OVERSHOOT", "Chunk", "http_spec"]
