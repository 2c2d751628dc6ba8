"""Objects shared by every task of a job, stored once instead of once per task.

``ex.share(data)`` pickles ``data`` into storage one time and returns a ``Shared`` handle:
a few hundred bytes that travel in each task's arguments. Inside a task, ``handle.value``
fetches and unpickles the object once per warm process and serves it from memory after.

The object is stored under a content-addressed key (``{session}/shared/{sha256}``) and signed
for that key and session; ``.value`` checks both, and the hash, before unpickling — a shared
object copied over another, or from another session, is refused.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Generic, TypeVar

from lambdamr import serialize
from lambdamr.signing import Context, Signer, check_content_key, process_key
from lambdamr.storage import open_cached

T = TypeVar("T")

_CACHE_ENTRIES = 8
_lock = threading.Lock()
_values: OrderedDict[str, Any] = OrderedDict()


def shared_context(session: str, key: str) -> Context:
    """What a shared object is signed for: its session and its content-addressed key."""
    return Context("shared", session=session, key=key)


class Shared(Generic[T]):
    """A handle to an object kept in storage; ``.value`` loads it (cached per process)."""

    __slots__ = ("storage_spec", "key", "size", "session")

    def __init__(self, storage_spec: dict[str, Any], key: str, size: int, *, session: str) -> None:
        self.storage_spec = storage_spec
        self.key = key
        self.size = size
        self.session = session

    @property
    def value(self) -> T:
        """The shared object, fetched from storage the first time in this process."""
        with _lock:
            if self.key in _values:
                _values.move_to_end(self.key)
                cached: T = _values[self.key]
                return cached
        store = open_cached(self.storage_spec)
        what = f"shared object {self.key}"
        payload = Signer(process_key()).verify(store.get(self.key), shared_context(self.session, self.key), what=what)
        check_content_key(payload, self.key, what=what)
        value: T = serialize.loads(payload, what=f"shared object {self.key}")
        with _lock:
            _values[self.key] = value
            while len(_values) > _CACHE_ENTRIES:
                _values.popitem(last=False)
        return value

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.storage_spec, self.key, self.size, self.session)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.storage_spec, self.key, self.size, self.session = state

    def __repr__(self) -> str:
        return f"Shared({self.key!r}, {self.size} bytes)"
