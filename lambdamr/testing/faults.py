"""Fault injection for chaos tests and benchmarks: wrappers that make a store or a backend
misbehave the way real ones do, deterministically (seeded), and count what they injected.

    store = FlakyStorage(inner_store, failure_rate=0.05, seed=1)   # 503 SlowDown on 5% of requests
    backend = DuplicatingBackend(inner_backend, rate=0.02, seed=2)  # 2% of events delivered twice

Nothing in lambdamr imports this module; it exists so that tests and ``benchmarks/chaos.py``
exercise the real retry paths instead of mocking them away.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from lambdamr.backends.base import Backend, Invocation, OutcomeCallback
from lambdamr.errors import StorageUnavailable
from lambdamr.storage.base import ObjectInfo, Storage


class FlakyStorage(Storage):
    """Delegates to ``inner`` but fails a fraction of requests with ``StorageUnavailable``
    (what S3's ``503 SlowDown`` becomes once botocore's own retries are exhausted)."""

    def __init__(self, inner: Storage, failure_rate: float, seed: int = 0) -> None:
        super().__init__()
        self.inner = inner
        self.kind = inner.kind
        self.stats = inner.stats
        self.failure_rate = failure_rate
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.injected = 0

    def _maybe_fail(self, what: str) -> None:
        with self._lock:
            fail = self._random.random() < self.failure_rate
            if fail:
                self.injected += 1
        if fail:
            raise StorageUnavailable(f"{what}: injected 503 SlowDown")

    def put(self, key: str, data: bytes | memoryview, *, if_absent: bool = False) -> bool:
        self._maybe_fail(f"writing {key}")
        return self.inner.put(key, data, if_absent=if_absent)

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        self._maybe_fail(f"reading {key}")
        return self.inner.get(key, start, end)

    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        self._maybe_fail(f"listing {prefix}")
        return self.inner.list(prefix, start_after)

    def delete(self, keys: Iterable[str]) -> int:
        return self.inner.delete(keys)

    def delete_prefix(self, prefix: str) -> int:
        return self.inner.delete_prefix(prefix)

    def spec(self) -> dict[str, Any]:
        return self.inner.spec()  # the runtime talks to the real store

    def url(self, key: str = "") -> str:
        return self.inner.url(key)


class DuplicatingBackend(Backend):
    """Delegates to ``inner`` but delivers a fraction of invocations twice, as Lambda's
    asynchronous invocation may."""

    def __init__(self, inner: Backend, rate: float, seed: int = 0) -> None:
        self.inner = inner
        self.name = inner.name
        self.reports_outcomes = inner.reports_outcomes
        self.supports_local_storage = inner.supports_local_storage
        self.max_payload_bytes = inner.max_payload_bytes
        self.max_response_bytes = inner.max_response_bytes
        self.rate = rate
        self._random = random.Random(seed)
        self.injected = 0

    @classmethod
    def from_config(cls, config: Any, storage: Storage) -> Backend:
        raise TypeError("wrap an existing backend: DuplicatingBackend(inner, rate)")

    @property
    def capacity(self) -> int:
        return self.inner.capacity

    def signing_key(self) -> bytes:
        return self.inner.signing_key()

    def prepare(self, storage: Storage) -> None:
        self.inner.prepare(storage)

    def check_access(self, *, reads: Iterable[str] = (), writes: Iterable[str] = ()) -> None:
        self.inner.check_access(reads=reads, writes=writes)

    def start(self, on_outcome: OutcomeCallback) -> None:
        self.inner.start(on_outcome)

    def invoke(self, invocations: Sequence[Invocation]) -> None:
        doubled = []
        for invocation in invocations:
            doubled.append(invocation)
            if self._random.random() < self.rate:
                self.injected += 1
                doubled.append(invocation)
        self.inner.invoke(doubled)

    def shutdown(self, wait: bool = True) -> None:
        self.inner.shutdown(wait)

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "duplicates_injected": self.injected}
