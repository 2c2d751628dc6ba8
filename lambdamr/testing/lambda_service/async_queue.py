"""Lambda's asynchronous invocation: the event queue, retries per qualifier, event age.

An accepted Event waits in the queue for an environment. When the function fails (an error,
a timeout, a crash), Lambda retries it with the retries of the qualifier it was invoked
through (default 2), one minute before the first retry and two before the second, and drops
an event older than the qualifier's maximum event age (default 6 hours) instead of running it.
``retry_delay_scale`` shrinks the retry delays and ``event_age_scale`` the maximum event age,
so that tests see them in seconds (kept apart: a short age scaled down too would expire events
that merely wait for an environment).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lambdamr.testing.lambda_service.functions import FunctionVersion

#: "Lambda waits one minute before the first retry, and two minutes before the second"
RETRY_DELAYS_S = (60.0, 120.0)


@dataclass
class QueuedEvent:
    function: FunctionVersion
    payload: bytes
    request_id: str
    received_at: float = field(default_factory=time.monotonic)
    deliveries: int = 0  # how many times it was run so far


#: runs one delivery; True when the function failed (so that a retry is due)
Deliver = Callable[[QueuedEvent], bool]
#: (retries, maximum event age in seconds) of a function's qualifier
Settings = Callable[[FunctionVersion], tuple[int, int]]


class EventQueue:
    """Worker threads running queued events, with Lambda's retry schedule."""

    def __init__(
        self, deliver: Deliver, settings: Settings, workers: int, retry_delay_scale: float = 1.0, event_age_scale: float = 1.0
    ) -> None:
        self._deliver = deliver
        self._settings = settings
        self.retry_delay_scale = retry_delay_scale
        self.event_age_scale = event_age_scale
        self._heap: list[tuple[float, int, QueuedEvent]] = []
        self._order = itertools.count()
        self._ready = threading.Condition()
        self._stopped = False
        self._running = 0  # events being delivered right now
        self.expired: list[QueuedEvent] = []  # dropped for their age, never run again
        self.retried = 0
        self._threads = [threading.Thread(target=self._work, daemon=True, name=f"lambda-async-{i}") for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def put(self, event: QueuedEvent, delay_s: float = 0.0) -> None:
        with self._ready:
            heapq.heappush(self._heap, (time.monotonic() + delay_s, next(self._order), event))
            self._ready.notify()

    def stop(self) -> None:
        with self._ready:
            self._stopped = True
            self._ready.notify_all()

    def pending(self) -> int:
        with self._ready:
            return len(self._heap)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every accepted event has run out its deliveries (or expired)."""
        deadline = time.monotonic() + timeout_s
        with self._ready:
            while self._heap or self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._ready.wait(left)
            return True

    def _next(self) -> QueuedEvent | None:
        with self._ready:
            while not self._stopped:
                if self._heap and self._heap[0][0] <= time.monotonic():
                    self._running += 1
                    return heapq.heappop(self._heap)[2]
                timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                self._ready.wait(timeout)
            return None

    def _work(self) -> None:
        while (event := self._next()) is not None:
            try:
                self._run(event)
            finally:
                with self._ready:
                    self._running -= 1
                    self._ready.notify_all()

    def _run(self, event: QueuedEvent) -> None:
        retries, max_age_s = self._settings(event.function)
        if time.monotonic() - event.received_at > max_age_s * self.event_age_scale:
            self.expired.append(event)
            return
        event.deliveries += 1
        failed = self._deliver(event)
        if failed and event.deliveries <= retries:
            self.retried += 1
            delay = RETRY_DELAYS_S[min(event.deliveries, len(RETRY_DELAYS_S)) - 1] * self.retry_delay_scale
            self.put(event, delay)
