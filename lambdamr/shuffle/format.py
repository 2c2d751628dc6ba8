"""The intermediate object: one per mapper attempt, holding every partition plus an index.

Layout::

    segment 0 | segment 1 | ... | segment R-1 | index (JSON) | uint32 index length | b"LMRS"

    segment  = frame*                      the pairs for one reducer, sorted by key when possible
    frame    = uint32 n | pickle(list of (key, value))                       n < 2**31: in-band
             | uint32 (2**31 | n) | uint32 count | count x uint64 (size << 1 | writable)
               | pickle (n bytes, protocol 5) | buffer 0 | ... | buffer count-1    out-of-band

A frame holds about FRAME_BYTES of pairs. Large ``bytes`` values and large buffers (numpy
arrays) go *out of band* (pickle protocol 5): the pickle stream holds only their places, and
the buffers follow it verbatim. A mapper then writes a value's bytes straight from the
object ``map_fn`` returned (no pickling copy, no join: ``Storage.put_parts``), and a reducer
that streams its range (``Storage.open_range``) reads each buffer into the very ``bytes``
object it hands to ``reduce_fn`` (no unpickling copy).

The index (partition -> offset, length, pairs, sorted, digest) also travels back to the
driver in the mapper's return value, so a reducer reads its segment of every mapper with one
ranged GET and never reads an index; the footer copy makes a kept object self-describing.
Frames let a reducer decode a segment piece by piece when it merges from disk.

Unpickling is code execution, so a reducer unpickles a segment only after checking the
digest of all its bytes (buffers included; ``lambdamr.data.digest``) against the one in its task arguments —
which reached it signed, through the mapper's signed result record and the driver. Someone
who can write to the bucket can neither make a reducer run their pickle nor change a value.
"""

from __future__ import annotations

import io
import itertools
import json
import pickle
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol

import cloudpickle

from lambdamr.data import digest
from lambdamr.errors import SerializationError, StorageError
from lambdamr.shuffle.notes import short_repr

MAGIC = b"LMRS"
FORMAT_VERSION = 3  # 3: digests name their algorithm (BLAKE3)
#: target size of one frame: small enough that a merge of many runs keeps one frame of each
#: in memory, large enough that pickling overhead per frame does not matter
FRAME_BYTES = 64 * 1024
#: values (bytes) and buffers (numpy arrays) at least this big travel out of band
OUT_OF_BAND_BYTES = 16 * 1024
_U32 = struct.Struct("<I")
_TRAILER = struct.Struct("<I4s")
_OUT_OF_BAND = 1 << 31
#: a frame pickled without a memo larger than this is pickled again with one (shared objects?)
_SHARING_SUSPECTED = 4 * FRAME_BYTES
_MAX_FRAME = _OUT_OF_BAND - 1

#: what a frame is made of on the wire, before decoding: the pickle and its buffers
Buffer = bytes | bytearray | memoryview
RawFrame = tuple[Buffer, list[Buffer]]


@dataclass(frozen=True)
class Segment:
    """Where one partition lives inside one intermediate object."""

    offset: int
    length: int
    pairs: int
    sorted: bool
    digest: str  # of the segment's bytes (``lambdamr.data.digest``: "b3:" and 128 bits in hex)

    def as_tuple(self) -> tuple[int, int, int, bool, str]:
        return (self.offset, self.length, self.pairs, self.sorted, self.digest)


class Digest(Protocol):
    """What a segment's hasher offers (``hashlib``'s and ``blake3``'s objects are not a public type)."""

    def update(self, data: Buffer, /) -> None: ...

    def hexdigest(self) -> str: ...


def new_digest() -> Digest:
    """The hasher that authenticates a segment (or any stored pickle) through its digest
    (``lambdamr.data.digest``: BLAKE3, 4.4 GB/s on one core here, else SHA-256)."""
    hasher: Digest = digest.new_hasher()
    return hasher


def digest_of(data: bytes | memoryview) -> str:
    """The digest of ``data`` (``b3:`` and 128 bits in hex)."""
    return digest.digest_of(data)


def verify(data: bytes | memoryview, expected: str, *, what: str) -> None:
    """Refuse ``data`` whose digest is not the expected one (before anything unpickles it)."""
    digest.check(data, expected, what=what)


def _dumps_without_memo(pairs: list[tuple[Any, Any]], buffer_callback: Any) -> bytes:
    """``pickle.dumps`` in the pickler's *fast* mode: no memo, so no table entry per tuple,
    key and value on the way out and no memo opcode to replay on the way in (about twice
    as fast both ways for small pairs). An object referenced twice is written twice, and a
    cycle raises ``ValueError``: ``frame_parts`` checks the size and falls back."""
    out = io.BytesIO()
    pickler = pickle.Pickler(out, protocol=5, buffer_callback=buffer_callback)
    pickler.fast = True  # CPython's documented-deprecated switch, still the only one
    pickler.dump(pairs)
    return out.getvalue()


def dumps_frame(
    pairs: list[tuple[Any, Any]], *, where: str, memo: bool = True
) -> tuple[bytes, list[memoryview]]:
    """Pickle a list of pairs: the stream and its out-of-band buffers. Plain pickle first
    (fast; without a memo unless ``memo``), cloudpickle for dynamic classes."""
    buffers: list[memoryview] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        raw = buffer.raw()
        if raw.nbytes < OUT_OF_BAND_BYTES:
            return True  # in band
        buffers.append(raw)
        return False

    if not memo:
        try:
            return _dumps_without_memo(pairs, out_of_band), buffers
        except Exception:  # a cycle (ValueError), or a class only cloudpickle can pickle
            buffers.clear()
    try:
        return pickle.dumps(pairs, protocol=5, buffer_callback=out_of_band), buffers
    except Exception:
        buffers.clear()
    try:
        return cloudpickle.dumps(pairs, protocol=5, buffer_callback=out_of_band), buffers
    except Exception as exc:
        raise SerializationError(_culprit_message(pairs, where, exc)) from exc


def _culprit_message(pairs: list[tuple[Any, Any]], where: str, exc: Exception) -> str:
    for key, value in pairs:
        if isinstance(value, pickle.PickleBuffer):
            continue
        for role, obj in (("key", key), ("value", value)):
            try:
                cloudpickle.dumps(obj, protocol=5)
            except Exception as inner:
                of_key = "" if role == "key" else f" of key {short_repr(key)}"
                return (
                    f"{where}: a {role}{of_key} cannot be pickled: {short_repr(obj)} (a {type(obj).__name__}): "
                    f"{type(inner).__name__}: {inner}. Keys and values cross the shuffle through storage; "
                    "emit plain data (str, bytes, numbers, tuples, dataclasses, numpy arrays)"
                )
    return f"{where}: the pairs cannot be pickled: {type(exc).__name__}: {exc}"


def _large_bytes_out_of_band(pairs: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Pairs whose large ``bytes`` values are wrapped so that pickle puts them out of band
    (and gives them back as the same ``bytes`` objects the reducer reads)."""
    return [(k, pickle.PickleBuffer(v)) if type(v) is bytes and len(v) >= OUT_OF_BAND_BYTES else (k, v) for k, v in pairs]


def frame_parts(pairs: Sequence[tuple[Any, Any]], *, where: str) -> Iterator[bytes | memoryview]:
    """``pairs`` as frames of about ``FRAME_BYTES``: the pieces of each, in turn (buffers are
    views of the values themselves: write them before changing those)."""
    start = 0
    step = 256
    memo = False  # until a frame shows that pairs share objects (see _dumps_without_memo)
    while start < len(pairs):
        chunk = list(pairs[start : start + step])
        # look for large values while pairs are few per frame (and in the first frame), so
        # that jobs of many small pairs do not pay a scan per pair
        if step <= 64 or start == 0:
            chunk = _large_bytes_out_of_band(chunk)
        data, buffers = dumps_frame(chunk, where=where, memo=memo)
        if not memo and len(chunk) > 1 and len(data) + sum(b.nbytes for b in buffers) > _SHARING_SUSPECTED:
            # Objects shared between pairs are written once per pair without a memo: a
            # frame this big may be one object many times. Pickle it with the memo; keep
            # the memo for the rest of the partition if that made it much smaller.
            shared, shared_buffers = dumps_frame(chunk, where=where, memo=True)
            if (len(shared) + sum(b.nbytes for b in shared_buffers)) * 2 < len(data) + sum(b.nbytes for b in buffers):
                data, buffers, memo = shared, shared_buffers, True
        if len(data) > _MAX_FRAME:
            raise SerializationError(f"{where}: one pair pickles to {len(data)} bytes, over 2 GiB")
        size = len(data)
        if buffers:
            yield _U32.pack(_OUT_OF_BAND | len(data))
            yield struct.pack(f"<I{len(buffers)}Q", len(buffers), *((b.nbytes << 1) | (not b.readonly) for b in buffers))
            yield data
            yield from buffers
            size += sum(b.nbytes for b in buffers)
        else:
            yield _U32.pack(len(data))
            yield data
        start += len(chunk)
        per_pair = max(1, size // len(chunk))
        step = max(1, min(65536, FRAME_BYTES // per_pair))


def write_segment(out: IO[bytes], pairs: Sequence[tuple[Any, Any]], *, where: str) -> int:
    """Write ``pairs`` as frames; return the bytes written."""
    written = 0
    for part in frame_parts(pairs, where=where):
        out.write(part)
        written += len(part) if isinstance(part, bytes) else part.nbytes
    return written


def encode_parts(
    partitions: Sequence[Sequence[tuple[Any, Any]]], sorted_flags: Sequence[bool], *, where: str
) -> tuple[list[bytes | memoryview], list[Segment]]:
    """Encode every partition of one mapper and the footer: the object's pieces, in order
    (for ``Storage.put_parts``: large values are not copied), and the index."""
    parts: list[bytes | memoryview] = []
    index: list[Segment] = []
    offset = 0
    for pairs, is_sorted in zip(partitions, sorted_flags):
        hasher = new_digest()
        length = 0
        for part in frame_parts(pairs, where=where) if pairs else ():
            hasher.update(part)
            parts.append(part)
            length += len(part) if isinstance(part, bytes) else part.nbytes
        index.append(Segment(offset, length, len(pairs), bool(is_sorted), digest.finish(hasher)))
        offset += length
    footer = json.dumps({"v": FORMAT_VERSION, "partitions": [s.as_tuple() for s in index]}).encode()
    parts.append(footer)
    parts.append(_TRAILER.pack(len(footer), MAGIC))
    return parts, index


def encode_object(
    partitions: Sequence[Sequence[tuple[Any, Any]]], sorted_flags: Sequence[bool], *, where: str
) -> tuple[bytes, list[Segment]]:
    """Encode every partition of one mapper and the footer; return the bytes and the index."""
    parts, index = encode_parts(partitions, sorted_flags, where=where)
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


class _Truncated(Exception):
    """The stream ended, or a frame claims more bytes than are left."""


class _Reader:
    """Exact reads from a binary stream, hashed as they come, never beyond ``limit`` bytes."""

    def __init__(self, stream: IO[bytes], limit: int | None, hasher: Digest | None) -> None:
        self.stream = stream
        self.left = limit
        self.hasher = hasher

    def read(self, n: int, *, writable: bool = False) -> Buffer:
        if self.left is not None:
            if n > self.left:
                raise _Truncated
            self.left -= n
        if writable:  # a numpy array's buffer: give it memory it may write to
            data: Buffer = bytearray(n)
            got = self.stream.readinto(data) if n else 0  # type: ignore[attr-defined]
        else:
            data = self.stream.read(n)
            got = len(data)
        if got != n:
            raise _Truncated
        if self.hasher is not None:
            self.hasher.update(data)
        return data

    def at_end(self) -> bool:
        if self.left is not None:
            return self.left == 0
        return not self.stream.peek(1) if hasattr(self.stream, "peek") else self._probe()

    def _probe(self) -> bool:
        here = self.stream.tell()
        end = not self.stream.read(1)
        self.stream.seek(here)
        return end


def _raw_frames(reader: _Reader) -> Iterator[RawFrame]:
    while not reader.at_end():
        (header,) = _U32.unpack(reader.read(_U32.size))
        if not header & _OUT_OF_BAND:
            yield reader.read(header), []
            continue
        (count,) = _U32.unpack(reader.read(_U32.size))
        sizes = struct.unpack(f"<{count}Q", reader.read(8 * count))
        data = reader.read(header & _MAX_FRAME)
        yield data, [reader.read(size >> 1, writable=bool(size & 1)) for size in sizes]


def read_segment(stream: IO[bytes], length: int, expected: str, *, what: str) -> list[RawFrame]:
    """Read a segment of ``length`` bytes from ``stream``, check its digest, and return its
    frames, still pickled. Nothing is unpickled before the digest matches."""
    hasher = digest.hasher_for(expected)
    reader = _Reader(stream, length, hasher)
    try:
        frames = list(_raw_frames(reader))
        broken = False
    except _Truncated:
        frames = []
        broken = True
    while reader.left:  # a frame that claims too much: hash what is there, for the verdict
        piece = stream.read(min(reader.left, 1 << 20))
        if not piece:
            raise StorageError(f"{what}: storage returned fewer bytes than the mapper wrote")
        hasher.update(piece)
        reader.left -= len(piece)
    if not digest.matches(hasher, expected):
        raise digest.refused(what)
    if broken:
        raise SerializationError(f"{what}: truncated intermediate segment")
    return frames


def loads_frame(frame: Buffer | RawFrame) -> list[tuple[Any, Any]]:
    """Unpickle one frame (a pickle, or a pickle and its out-of-band buffers)."""
    data, buffers = frame if isinstance(frame, tuple) else (frame, [])
    try:
        pairs: list[tuple[Any, Any]] = pickle.loads(data, buffers=buffers)
        return pairs
    except Exception as exc:
        raise SerializationError(f"cannot unpickle intermediate pairs: {type(exc).__name__}: {exc}") from exc


def pairs_of(frames: Iterable[RawFrame]) -> Iterator[tuple[Any, Any]]:
    """Every pair of checked frames, in order (chained in C: no generator step per pair)."""
    return itertools.chain.from_iterable(map(loads_frame, frames))


def iter_pairs(data: bytes | memoryview) -> Iterator[tuple[Any, Any]]:
    """Every pair of a segment held in memory, in order."""
    reader = _Reader(io.BytesIO(data), len(data), None)
    try:
        frames = list(_raw_frames(reader))
    except _Truncated:
        raise SerializationError("truncated intermediate segment") from None
    yield from pairs_of(frames)


def read_file_frames(fh: IO[bytes]) -> Iterator[list[tuple[Any, Any]]]:
    """Decoded frames of a segment stored in a (checked) file, one at a time."""
    try:
        for frame in _raw_frames(_Reader(fh, None, None)):
            yield loads_frame(frame)
    except _Truncated:
        raise SerializationError("truncated spill file") from None


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
