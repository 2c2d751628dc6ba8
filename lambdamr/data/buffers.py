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

Where driver and workers share a host and the job is not durable, a sink may hold a
*scratch* folder in RAM (``lambdamr.storage.scratch``): the buffers go there while it has
room, and the manifest names that folder instead of the store. A result's frame says
``"release": true``: its one reader, the driver, deletes its buffers once it has mapped
them (an unlinked file stays mapped), so a long map of big results holds in RAM only the
results not yet read.
"""

from __future__ import annotations

import json
import pickle
import struct
from typing import Any

from lambdamr.data import digest
from lambdamr.errors import IntegrityError, SerializationError, StorageError, StorageFullError
from lambdamr.storage import Storage, open_cached
from lambdamr.storage.local import LocalStorage
from lambdamr.storage.scratch import has_room

MAGIC = b"LMOB"
#: buffers smaller than this stay in the pickle (an object per buffer costs a request)
OUT_OF_BAND_MIN = 1024 * 1024
_LEN = struct.Struct("<I")
_MAX_MANIFEST = 16 * 1024 * 1024
#: the event option (``TaskEvent.options``) naming the scratch folder of a job's results:
#: the path of a local folder on the workers' host, set only for jobs that are not durable
BUFFERS_OPTION = "buffers"


class BufferSink:
    """Where a writer stores the out-of-band buffers of what it pickles: content-addressed
    objects ``{prefix}/{digest}`` (the same buffer twice is stored once).

    They go to ``store``; or to ``scratch`` (a folder in RAM on this host, for values only
    this host's processes read) while it has room for them. With ``release`` the frame's
    reader deletes the scratch buffers once it has mapped them (a result: read once).
    """

    def __init__(
        self, store: Storage, prefix: str, *, min_bytes: int = OUT_OF_BAND_MIN,
        scratch: LocalStorage | None = None, release: bool = False,
    ) -> None:
        self.store = store
        self.prefix = prefix.rstrip("/")
        self.min_bytes = min_bytes
        self.scratch = scratch
        self.release = release

    def target(self, nbytes: int) -> tuple[Storage, bool]:
        """The store ``nbytes`` of buffers go to, and whether their reader releases them."""
        if self.scratch is not None and has_room(self.scratch.root, nbytes):
            return self.scratch, self.release
        return self.store, False

    def store_buffers(self, buffers: list[memoryview], store: Storage | None = None) -> list[list[Any]]:
        """Hash and store each buffer (in ``store``, by default the sink's own); return the
        manifest entries ``[key, size, digest]``."""
        store = store or self.store
        entries = []
        for view in buffers:
            found = digest.digest_of(view)
            key = f"{self.prefix}/{found.replace(':', '-')}"
            store.store_buffer(key, view)
            entries.append([key, view.nbytes, found])
        return entries


def result_values_prefix(result_key: str) -> str:
    """Where the runtime stores the buffers of a task's results: ``{job}/values``, beside
    ``{job}/results/`` (which the driver lists, so nothing else goes there)."""
    job_prefix, found, _ = result_key.rpartition("/results/")
    return f"{job_prefix}/values" if found else f"{result_key}.values"


def result_sink(store: Storage, result_key: str, scratch_root: Any = None) -> BufferSink:
    """The sink of a task attempt's return values.

    With ``scratch_root`` (``BUFFERS_OPTION``: a local folder of the driver's host) the
    buffers go there, under ``{job}/returned/{attempt}/``: the attempt's own folder, as the
    driver releases them once it has read them and the same array returned by two tasks
    must not vanish with the first; apart from ``{job}/values/``, the job's arguments,
    released when the job ends (a future may be read later).
    """
    scratch = _store_of({"kind": LocalStorage.kind, "root": scratch_root}) if isinstance(scratch_root, str) else None
    if not isinstance(scratch, LocalStorage):
        return BufferSink(store, result_values_prefix(result_key))
    job_prefix, found, attempt = result_key.rpartition("/results/")
    prefix = f"{job_prefix}/returned/{attempt}" if found else f"{result_key}.returned"
    return BufferSink(store, prefix, scratch=scratch, release=True)


def frame(pickled: bytes, sink: BufferSink, buffers: list[memoryview]) -> bytes:
    """The buffered frame of a pickle whose out-of-band ``buffers`` go to ``sink``."""
    store, release = sink.target(sum(view.nbytes for view in buffers))
    try:
        entries = sink.store_buffers(buffers, store)
    except StorageFullError:
        if store is sink.store:
            raise
        store, release = sink.store, False  # the scratch filled up meanwhile (other writers)
        entries = sink.store_buffers(buffers, store)
    fields: dict[str, Any] = {"storage": store.spec(), "buffers": entries}
    if release:
        fields["release"] = True
    manifest = json.dumps(fields, separators=(",", ":")).encode()
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
    if manifest.get("release") is True:
        _release(manifest)
    return pickle.loads(pickled, buffers=buffers)


def _release(manifest: dict[str, Any]) -> None:
    """Delete the buffers of a frame read once, now mapped (an unlinked file stays mapped)."""
    store = _store_of(manifest["storage"])
    try:
        store.delete([str(entry[0]) for entry in manifest["buffers"]])
    except StorageError:  # the folder goes with its session anyway
        pass
