"""Reducer output objects (one per reducer) in three formats, and reading them back.

* ``pickle`` (default): frames of pickled (key, value) lists — ``read_output`` gives the
  pairs back with their types;
* ``text``: one ``key<TAB>value`` line per key (Hadoop's text output), UTF-8;
* ``raw``: the values, which must be bytes, concatenated in key order (a sort's records).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from lambdamr.errors import SerializationError
from lambdamr.shuffle.format import iter_pairs, verify, write_segment
from lambdamr.storage import Storage


class OutputWriter:
    """Accumulates one reducer's (key, value) results in the chosen format."""

    def __init__(self, fmt: str, *, where: str) -> None:
        self.format = fmt
        self.where = where
        self.buffer = io.BytesIO()
        self._pending: list[tuple[Any, Any]] = []
        self.keys = 0

    def add(self, key: Any, value: Any) -> None:
        self.keys += 1
        if self.format == "pickle":
            self._pending.append((key, value))
            if len(self._pending) >= 1024:
                self._flush()
        elif self.format == "text":
            self.buffer.write(f"{key}\t{value}\n".encode())
        else:
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise SerializationError(
                    f"{self.where}: output_format='raw' needs bytes values, but reduce_fn returned a "
                    f"{type(value).__name__} for key {key!r}; return bytes or use output_format='pickle'"
                )
            self.buffer.write(value)

    def _flush(self) -> None:
        if self._pending:
            write_segment(self.buffer, self._pending, where=self.where)
            self._pending = []

    def getvalue(self) -> bytes:
        self._flush()
        return self.buffer.getvalue()


def read_output(storage: Storage, key: str, digest: str) -> Iterator[tuple[Any, Any]]:
    """The (key, value) pairs of one ``pickle``-format output object, once its digest
    (reported by the reducer that wrote it) checks out."""
    data = storage.get(key)
    verify(data, digest, what=f"output object {storage.url(key)}")
    yield from iter_pairs(data)
