"""Big values out of band: the buffers of a pickle stored as objects of their own.

Pickle protocol 5 lets an object hand its large memory (a numpy array's data, a
``PickleBuffer``) to the pickler *out of band*: the pickle stream keeps only its place. A
writer with a ``BufferSink`` stores each such buffer of at least ``OUT_OF_BAND_MIN`` bytes
as one object, straight from the array's memory (no pickling copy, no join), named by its
digest; the pickle becomes a small *buffered frame* that lists them::

    b"LMOB" | uint32 n | manifest (n bytes of UTF-8 JSON) | pickle (protocol 5)
    manifest = {"storage": spec, "buffers": [[key, size, digest], ...]}

The frame is the payload of something signed and bound to its task — a task's arguments,
a result record, a shared object — so each buffer's digest is covered by that signature;
``load`` checks every buffer against its digest before ``pickle.loads`` sees it. Someone
who can write to storage can neither change a value nor swap one buffer for another.

On the local store a buffer is read as a private copy-on-write map of its file
(``Storage.load_buffer``): a 100 MB array is written once by its producer and read by its
consumer without a copy (the pages are the page cache's until written to). On S3 big
buffers go up as multipart uploads and come down as parallel ranged GETs into one block of
memory (``lambdamr.storage.transfer``).
"""

from __future__ import annotations

import json
import pickle
import struct
from typing import Any

from lambdamr.data import digest
from lambdamr.errors import IntegrityError, SerializationError
from lambdamr.storage import Storage, open_cached

MAGIC = b"LMOB"
#: buffers smaller than this stay in the pickle (an object per buffer costs a request)
OUT_OF_BAND_MIN = 1024 * 1024
_LEN = struct.Struct("<I")
_MAX_MANIFEST = 16 * 1024 * 1024



class BufferSink:
    """Where a writer stores the out-of-band buffers of what it pickles: content-addressed
    objects ``{prefix}/{digest}`` in ``store`` (the same buffer twice is stored once)."""

    def __init__(self, store: Storage, prefix: str, *, min_bytes: int = OUT_OF_BAND_MIN) -> None:
        self.store = store
        self.prefix = prefix.rstrip("/")
        self.min_bytes = min_bytes

    def store_buffers(self, buffers: list[memoryview]) -> list[list[Any]]:
        """Hash and store each buffer; return the manifest entries ``[key, size, digest]``."""
        entries = []
        for view in buffers:
            found = digest.digest_of(view)
            key = f"{self.prefix}/{found.replace(':', '-')}"
            self.store.store_buffer(key, view)
            entries.append([key, view.nbytes, found])
        return entries


def result_values_prefix(result_key: str) -> str:
    """Where the runtime stores the buffers of a task's results: ``{job}/values``, beside
    ``{job}/results/`` (which the driver lists, so nothing else goes there)."""
    job_prefix, found, _ = result_key.rpartition("/results/")
    return f"{job_prefix}/values" if found else f"{result_key}.values"


def frame(pickled: bytes, sink: BufferSink, buffers: list[memoryview]) -> bytes:
    """The buffered frame of a pickle whose out-of-band ``buffers`` go to ``sink``."""
    manifest = json.dumps(
        {"storage": sink.store.spec(), "buffers": sink.store_buffers(buffers)}, separators=(",", ":")
    ).encode()
    return b"".join((MAGIC, _LEN.pack(len(manifest)), manifest, pickled))


def is_buffered(data: bytes | bytearray | memoryview) -> bool:
    """Whether ``data`` is a buffered frame (a plain pickle starts with its protocol opcode)."""
    return bytes(data[: len(MAGIC)]) == MAGIC


def _store_of(spec: dict[str, Any]) -> Storage:
    return open_cached(spec)  # the one per-process store of a spec (the runtime's too)


def split(data: bytes | bytearray | memoryview) -> tuple[dict[str, Any], memoryview]:
    """A buffered frame's manifest and its pickle (no copy of the pickle)."""
    view = memoryview(data)
    if len(view) < len(MAGIC) + _LEN.size:
        raise SerializationError("truncated out-of-band frame")
    (length,) = _LEN.unpack_from(view, len(MAGIC))
    start = len(MAGIC) + _LEN.size
    if length > _MAX_MANIFEST or start + length > len(view):
        raise SerializationError("corrupt out-of-band frame: its manifest overruns it")
    try:
        manifest = json.loads(bytes(view[start : start + length]))
        if not isinstance(manifest, dict) or not isinstance(manifest.get("buffers"), list):
            raise ValueError("not a manifest")
    except ValueError as exc:
        raise SerializationError(f"corrupt out-of-band frame: {exc}") from exc
    return manifest, view[start + length :]


def load_buffers(manifest: dict[str, Any], *, what: str) -> list[memoryview]:
    """Every buffer a manifest lists, each checked against its digest.

    Raises:
        IntegrityError: a buffer was changed, replaced or truncated in storage.
        ObjectNotFound: a buffer object is gone (deleted with its job?).
    """
    spec = manifest.get("storage")
    if not isinstance(spec, dict):
        raise SerializationError(f"corrupt out-of-band frame of the {what}: no storage")
    store = _store_of(spec)
    views = []
    for i, entry in enumerate(manifest["buffers"]):
        try:
            key, size, expected = str(entry[0]), int(entry[1]), str(entry[2])
        except (TypeError, ValueError, IndexError) as exc:
            raise SerializationError(f"corrupt out-of-band frame of the {what}: entry {i}") from exc
        view = store.load_buffer(key, size)
        where = f"buffer {i} ({store.url(key)}) of the {what}"
        if view.nbytes != size:
            raise IntegrityError(f"{where} has {view.nbytes} bytes, its writer stored {size}: it was replaced")
        digest.check(view, expected, what=where)
        views.append(view)
    return views


def loads(data: bytes | bytearray | memoryview, *, what: str) -> Any:
    """Unpickle a buffered frame: its buffers checked first, then given to ``pickle.loads``
    (a numpy array comes back writable, in the buffer's own memory)."""
    manifest, pickled = split(data)
    buffers = load_buffers(manifest, what=what)
    return pickle.loads(pickled, buffers=buffers)
