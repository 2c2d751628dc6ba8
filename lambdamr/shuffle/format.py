"""The intermediate object: one per mapper attempt, holding every partition plus an index.

Layout::

    segment 0 | segment 1 | ... | segment R-1 | index (JSON) | uint32 index length | b"LMRS"

    segment  = frame*                      the pairs for one reducer, sorted by key when possible
    frame    = uint32 length | pickle(list of (key, value))    about FRAME_BYTES each

The index (partition -> offset, length, pairs, sorted, digest) also travels back to the
driver in the mapper's return value, so a reducer reads its segment of every mapper with one
ranged GET and never reads an index; the footer copy makes a kept object self-describing.
Frames let a reducer decode a segment piece by piece when it merges from disk.

Unpickling is code execution, so a reducer unpickles a segment only after checking its
SHA-256 digest against the one in its task arguments — which reached it signed, through the
mapper's signed result record and the driver. Someone who can write to the bucket cannot
make a reducer run their pickle.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

import cloudpickle

from ..errors import IntegrityError, SerializationError

MAGIC = b"LMRS"
FORMAT_VERSION = 1
#: target size of one frame: small enough that a merge of many runs keeps one frame of each
#: in memory, large enough that pickling overhead per frame does not matter
FRAME_BYTES = 64 * 1024
_U32 = struct.Struct("<I")
_TRAILER = struct.Struct("<I4s")
_MAX_FRAME = 2**32 - 1


@dataclass(frozen=True)
class Segment:
    """Where one partition lives inside one intermediate object."""

    offset: int
    length: int
    pairs: int
    sorted: bool
    digest: str  # SHA-256 of the segment's bytes, first 128 bits in hex

    def as_tuple(self) -> tuple[int, int, int, bool, str]:
        return (self.offset, self.length, self.pairs, self.sorted, self.digest)


def new_digest() -> Any:
    """The hash that authenticates a segment (or any stored pickle) through its digest:
    SHA-256, which CPUs accelerate (several times faster than BLAKE2b here)."""
    return hashlib.sha256()


def digest_of(data: bytes | memoryview) -> str:
    """The hex digest of ``data`` (128 bits of SHA-256)."""
    h = new_digest()
    h.update(data)
    return h.hexdigest()[:32]


def verify(data: bytes | memoryview, digest: str, *, what: str) -> None:
    """Refuse ``data`` whose digest is not the expected one (before anything unpickles it)."""
    if digest_of(data) != digest:
        raise IntegrityError(
            f"{what} does not match the digest its writer reported: it was changed or replaced in "
            "storage after it was written; refusing to unpickle it"
        )


def dumps_frame(pairs: list[tuple[Any, Any]], *, where: str) -> bytes:
    """Pickle a list of pairs; plain pickle first (fast), cloudpickle for dynamic classes."""
    try:
        return pickle.dumps(pairs, protocol=5)
    except Exception:
        pass
    try:
        return cloudpickle.dumps(pairs, protocol=5)
    except Exception as exc:
        raise SerializationError(_culprit_message(pairs, where, exc)) from exc


def _culprit_message(pairs: list[tuple[Any, Any]], where: str, exc: Exception) -> str:
    for key, value in pairs:
        for role, obj in (("key", key), ("value", value)):
            try:
                cloudpickle.dumps(obj, protocol=5)
            except Exception as inner:
                of_key = "" if role == "key" else f" of key {_short(key)}"
                return (
                    f"{where}: a {role}{of_key} cannot be pickled: {_short(obj)} (a {type(obj).__name__}): "
                    f"{type(inner).__name__}: {inner}. Keys and values cross the shuffle through storage; "
                    "emit plain data (str, bytes, numbers, tuples, dataclasses, numpy arrays)"
                )
    return f"{where}: the pairs cannot be pickled: {type(exc).__name__}: {exc}"


def _short(obj: Any, limit: int = 80) -> str:
    try:
        text = repr(obj)
    except Exception:
        text = f"<{type(obj).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def frame_parts(pairs: Sequence[tuple[Any, Any]], *, where: str) -> Iterator[bytes]:
    """``pairs`` as frames of about ``FRAME_BYTES``: header and body of each, in turn."""
    start = 0
    step = 256
    while start < len(pairs):
        chunk = list(pairs[start : start + step])
        data = dumps_frame(chunk, where=where)
        if len(data) > _MAX_FRAME:
            raise SerializationError(f"{where}: one pair pickles to {len(data)} bytes, over 4 GiB")
        yield _U32.pack(len(data))
        yield data
        start += len(chunk)
        per_pair = max(1, len(data) // len(chunk))
        step = max(1, min(65536, FRAME_BYTES // per_pair))


def write_segment(out: IO[bytes], pairs: Sequence[tuple[Any, Any]], *, where: str) -> int:
    """Write ``pairs`` as frames; return the bytes written."""
    written = 0
    for part in frame_parts(pairs, where=where):
        out.write(part)
        written += len(part)
    return written


def encode_object(
    partitions: Sequence[Sequence[tuple[Any, Any]]], sorted_flags: Sequence[bool], *, where: str
) -> tuple[bytes, list[Segment]]:
    """Encode every partition of one mapper and the footer; return the bytes and the index."""
    parts: list[bytes] = []  # joined once at the end: no buffer regrowth copies
    index: list[Segment] = []
    offset = 0
    for pairs, is_sorted in zip(partitions, sorted_flags):
        hasher = new_digest()
        length = 0
        for part in frame_parts(pairs, where=where) if pairs else ():
            hasher.update(part)
            parts.append(part)
            length += len(part)
        index.append(Segment(offset, length, len(pairs), bool(is_sorted), hasher.hexdigest()[:32]))
        offset += length
    footer = json.dumps({"v": FORMAT_VERSION, "partitions": [s.as_tuple() for s in index]}).encode()
    parts.append(footer)
    parts.append(_TRAILER.pack(len(footer), MAGIC))
    return b"".join(parts), index


def read_index(data: bytes) -> list[Segment]:
    """The index in the footer of a whole intermediate object (for kept objects, debugging)."""
    if len(data) < _TRAILER.size:
        raise SerializationError("not a lambdamr intermediate object: too short")
    length, magic = _TRAILER.unpack_from(data, len(data) - _TRAILER.size)
    if magic != MAGIC:
        raise SerializationError("not a lambdamr intermediate object: bad trailer")
    start = len(data) - _TRAILER.size - length
    footer = json.loads(data[start : start + length])
    if footer.get("v") != FORMAT_VERSION:
        raise SerializationError(f"intermediate object of format {footer.get('v')}, expected {FORMAT_VERSION}")
    return [Segment(o, n, p, bool(s), d) for o, n, p, s, d in footer["partitions"]]


def iter_frames(data: bytes | memoryview) -> Iterator[memoryview]:
    """The frames of a segment held in memory."""
    view = memoryview(data)
    pos = 0
    end = len(view)
    while pos < end:
        if pos + _U32.size > end:
            raise SerializationError("truncated intermediate segment (frame header)")
        (length,) = _U32.unpack_from(view, pos)
        pos += _U32.size
        if pos + length > end:
            raise SerializationError("truncated intermediate segment (frame body)")
        yield view[pos : pos + length]
        pos += length


def iter_pairs(data: bytes | memoryview) -> Iterator[tuple[Any, Any]]:
    """Every pair of a segment held in memory, in order."""
    for frame in iter_frames(data):
        yield from loads_frame(frame)


def loads_frame(frame: bytes | memoryview) -> list[tuple[Any, Any]]:
    """Unpickle one frame."""
    try:
        return pickle.loads(frame)
    except Exception as exc:
        raise SerializationError(f"cannot unpickle intermediate pairs: {type(exc).__name__}: {exc}") from exc


def read_file_frames(fh: IO[bytes]) -> Iterator[list[tuple[Any, Any]]]:
    """Decoded frames of a segment stored in a file, one at a time."""
    while True:
        header = fh.read(_U32.size)
        if not header:
            return
        if len(header) < _U32.size:
            raise SerializationError("truncated spill file (frame header)")
        (length,) = _U32.unpack(header)
        body = fh.read(length)
        if len(body) < length:
            raise SerializationError("truncated spill file (frame body)")
        yield loads_frame(body)


def write_frames(out: IO[bytes], pairs: Iterable[tuple[Any, Any]], *, where: str, batch: int = 1024) -> int:
    """Write a stream of pairs as frames (used for merged runs); return the pairs written."""
    count = 0
    buffer: list[tuple[Any, Any]] = []
    for pair in pairs:
        buffer.append(pair)
        if len(buffer) >= batch:
            count += len(buffer)
            write_segment(out, buffer, where=where)
            buffer = []
    if buffer:
        count += len(buffer)
        write_segment(out, buffer, where=where)
    return count
