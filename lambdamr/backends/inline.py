"""The inline backend: the runtime handler on threads of the driver process.

For fast unit tests and debugging (a breakpoint in your function works). It runs the very
same handler over the same events, but shares the driver's interpreter, so it cannot enforce
memory or timeouts and does not prove that a function ships; the local backend does.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lambdamr.backends.base import Backend, Invocation, InvocationOutcome, OutcomeCallback
from lambdamr.config import BackendOptions, check_whole, parse_whole, setting
from lambdamr.errors import BackendError, WorkerLostError

if TYPE_CHECKING:
    from lambdamr.config import ExecutorConfig
    from lambdamr.storage import Storage


#: threads when ``workers`` is not given
DEFAULT_THREADS = 4


def _threads(value: Any, label: str) -> int | None:
    return check_whole(value, label, 1, f"the number of threads, or None for {DEFAULT_THREADS}", optional=True)


@dataclass(frozen=True)
class InlineOptions(BackendOptions):
    """``LambdaExecutor(backend="inline", workers=2)``: options of the inline backend."""

    workers: int | None = setting(None, _threads, parse_whole)  # threads of the driver; None = 4


class _Context:
    function_name = "lambdamr-inline"

    def __init__(self, memory_mb: int, deadline: float) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self.memory_limit_in_mb = str(memory_mb)
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


class InlineBackend(Backend):
    """Runs tasks on ``workers`` threads of the driver."""

    name = "inline"
    reports_outcomes = True
    shares_driver_process = True
    claims_handover = True  # a call is running once a thread starts it

    def __init__(self, workers: int = DEFAULT_THREADS) -> None:
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._on_outcome: OutcomeCallback | None = None

    @classmethod
    def from_config(cls, config: ExecutorConfig, storage: Storage) -> InlineBackend:
        return cls(workers=InlineOptions.of(config).workers or DEFAULT_THREADS)

    @property
    def capacity(self) -> int:
        return self.workers * 2

    def start(self, on_outcome: OutcomeCallback) -> None:
        self._on_outcome = on_outcome
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="lambdamr-inline")

    def invoke(self, invocations: Sequence[Invocation]) -> None:
        if self._pool is None:
            raise BackendError("the inline backend was not started")
        for invocation in invocations:
            self._pool.submit(self._run, invocation)

    def _run(self, invocation: Invocation) -> None:
        import json

        from lambdamr.runtime.handler import handler

        if not self.claim(invocation):
            return  # cancelled while it waited for a thread
        event = invocation.event
        started = time.time()
        context = _Context(event.memory_mb, started + event.timeout_s)
        outcome: InvocationOutcome
        try:
            response: dict[str, Any] = handler(json.loads(invocation.payload), context)
            outcome = InvocationOutcome(invocation, response=response, started_at=started, ended_at=time.time())
        except BaseException as exc:  # noqa: BLE001 - the outcome must be reported whatever escaped
            error = WorkerLostError(
                f"the runtime handler failed: {type(exc).__name__}: {exc}",
                job_id=event.job_id, task_id=event.task_id, attempt=event.attempt,
                request_id=context.aws_request_id,
            )
            outcome = InvocationOutcome(invocation, error=error, started_at=started, ended_at=time.time())
        assert self._on_outcome is not None
        self._on_outcome(outcome)

    def shutdown(self, wait: bool = True) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=not wait)
            self._pool = None
