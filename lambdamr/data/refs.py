"""References to objects a task stored: small, picklable, opened anywhere (driver or task).

A task returns a reference instead of a huge value (``lambdamr.data.task_storage``): the
result record carries a few hundred bytes, and whoever holds the reference reads the object
straight from storage.

* ``ObjectRef`` — raw bytes. Reading them as bytes unpickles nothing, so they are not
  signed; the reference carries their size and digest (``lambdamr.data.digest``), and
  ``get()`` (or ``open()``, at the end of the stream) refuses bytes that were replaced. The
  reference itself arrives inside a signed result record or signed task arguments, so
  someone who can write the bucket without the key cannot change what it expects.
* ``ValueRef`` — a pickled value, signed (``LMS2``, kind ``task-value``) for the session,
  job, task, attempt and key it was written for. ``get()`` demands exactly that context
  back before it unpickles: a value copied over another, or from another session, is refused.

The signature is checked with the key whose id the reference names: the runtime's own (a
task), or the key of an executor of this process (``trust_signer``: a driver on AWS holds
the deployment's key, which is not this process's own).
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from typing import IO, Any, Generic, TypeVar

from lambdamr import serialize
from lambdamr.data import digest
from lambdamr.errors import IntegrityError, ObjectNotFound
from lambdamr.signing import Context, Signer, process_key
from lambdamr.storage import Storage, open_cached

T = TypeVar("T")

#: what a temp reference's message adds when its object is gone
_TEMP_HINT = (
    "; objects a task puts under a plain name live in the executor's temp prefix and are "
    "deleted when it shuts down: put them to a URL (put('s3://bucket/out/name', ...)) to keep them"
)

_signers_lock = threading.Lock()
#: signers by key id: this process's own key, and each executor's (a few keys at most)
_signers: dict[str, Signer] = {}


def trust_signer(signer: Signer) -> None:
    """Let references signed with ``signer``'s key be opened in this process (an executor
    calls it with its deployment's key)."""
    with _signers_lock:
        _signers.setdefault(signer.key_id, signer)


def signer_for(key_id: str) -> Signer:
    """The signer of key ``key_id``: an executor's, or this process's own.

    Raises:
        IntegrityError: no key of this process has that id.
    """
    with _signers_lock:
        found = _signers.get(key_id)
    if found is not None:
        return found
    own = Signer(process_key())
    trust_signer(own)
    if own.key_id == key_id:
        return own
    raise IntegrityError(
        f"refusing to load a task's value: it was signed with key id {key_id!r}, which no executor of this "
        f"process holds (this process's own key is {own.key_id!r}). Open it while the executor of that "
        "deployment is open, or from a task of it"
    )


def task_value_context(session: str, job: str, task: int, attempt: int, key: str) -> Context:
    """What a task's pickled value is signed for: the attempt that wrote it, and its key."""
    return Context("task-value", session=session, job=job, task=task, attempt=attempt, key=key)


def location_of(spec: dict[str, Any], key: str) -> str:
    """The URL of ``key`` in the store ``spec`` names (``s3://B/key``, ``file:///root/key``)."""
    if spec.get("kind") == "s3":
        return f"s3://{spec['bucket']}/{key}"
    return f"file://{str(spec.get('root', '')).rstrip('/')}/{key}"


def _read(store: Storage, key: str, temporary: bool) -> bytes:
    try:
        return store.get(key)
    except ObjectNotFound as exc:
        raise ObjectNotFound(f"{exc}{_TEMP_HINT if temporary else ''}") from None


@dataclass(frozen=True, eq=False)
class ObjectRef:
    """Raw bytes a task stored: ``get()`` them (checked), ``open()`` a stream, or give ``url``."""

    storage: dict[str, Any] = field(repr=False)
    key: str
    size: int
    digest: str = field(repr=False)
    temporary: bool = False  # in the executor's temp prefix: deleted at its shutdown

    @property
    def url(self) -> str:
        """Where the object is: ``s3://bucket/key`` or ``file:///folder/key``."""
        return location_of(self.storage, self.key)

    def get(self) -> bytes:
        """The object's bytes, after checking their size and digest.

        Raises:
            ObjectNotFound: the object is gone (a temp object after its executor's shutdown).
            IntegrityError: the object was replaced or changed in storage.
        """
        data = _read(open_cached(self.storage), self.key, self.temporary)
        what = f"object {self.url}"
        if len(data) != self.size:
            raise IntegrityError(f"{what} has {len(data)} bytes, its task stored {self.size}: it was replaced in storage")
        digest.check(data, self.digest, what=what)
        return data

    def open(self) -> IO[bytes]:
        """The object as a binary stream (to close after use); its digest is checked as the
        stream reaches its end, which raises ``IntegrityError`` if the bytes were changed."""
        store = open_cached(self.storage)
        try:
            raw = store.open_range(self.key, 0, self.size)
        except ObjectNotFound as exc:
            raise ObjectNotFound(f"{exc}{_TEMP_HINT if self.temporary else ''}") from None
        return io.BufferedReader(_CheckedStream(raw, self.size, self.digest, f"object {self.url}"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and (self.url, self.digest) == (other.url, other.digest)

    def __hash__(self) -> int:
        return hash((self.url, self.digest))


@dataclass(frozen=True, eq=False)
class ValueRef(Generic[T]):
    """A pickled value a task stored, signed for the attempt that wrote it: ``get()`` it."""

    storage: dict[str, Any] = field(repr=False)
    key: str
    size: int
    session: str = field(repr=False)
    job: str = field(repr=False)
    task: int = field(repr=False)
    attempt: int = field(repr=False)
    key_id: str = field(repr=False)
    temporary: bool = False

    @property
    def url(self) -> str:
        """Where the signed pickle is (``s3://bucket/key`` or ``file:///folder/key``)."""
        return location_of(self.storage, self.key)

    def context(self) -> Context:
        """What the stored value must have been signed for."""
        return task_value_context(self.session, self.job, self.task, self.attempt, self.key)

    def get(self) -> T:
        """The value, unpickled once its signature and context check out.

        Raises:
            ObjectNotFound: the object is gone (a temp object after its executor's shutdown).
            IntegrityError: not signed by this deployment's key, or signed for another place.
        """
        blob = _read(open_cached(self.storage), self.key, self.temporary)
        what = f"value {self.url}"
        payload = signer_for(self.key_id).verify(blob, self.context(), what=what)
        value: T = serialize.loads(payload, what=what)
        return value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ValueRef) and self.context() == other.context()

    def __hash__(self) -> int:
        return hash(self.context())


class _CheckedStream(io.RawIOBase):
    """A stream that hashes what it reads and refuses, at its end, bytes that do not match."""

    def __init__(self, raw: IO[bytes], size: int, expected: str, what: str) -> None:
        self._raw = raw
        self._size = size
        self._expected = expected
        self._what = what
        self._hasher = digest.hasher_for(expected)
        self._count = 0
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._raw.read(len(view))
        n = len(data)
        if n:
            view[:n] = data
            self._hasher.update(data)
            self._count += n
        elif not self._checked and len(view):
            self._checked = True
            if self._count != self._size:
                raise IntegrityError(f"{self._what} has {self._count} bytes, its task stored {self._size}: it was replaced")
            if not digest.matches(self._hasher, self._expected):
                raise digest.refused(self._what)
        return n

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()
