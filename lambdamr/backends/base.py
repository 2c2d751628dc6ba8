"""The backend interface: where tasks run.

A backend receives ``Invocation``s — each one task event, exactly the payload AWS Lambda
would pass to the handler — and runs the runtime handler on them somewhere. It reports back
through one callback:

* a backend that learns each invocation's fate (the local worker pool, synchronous Lambda
  invokes) calls ``on_outcome`` once per invocation, with the handler's response or the
  infrastructure error that stopped it; it sets ``reports_outcomes = True``;
* a fire-and-forget backend (asynchronous Lambda invokes) calls ``on_outcome`` only when an
  invocation could not be launched; the driver learns of results by listing storage and of
  lost invocations by deadline.

The scheduler keeps at most ``capacity`` invocations in flight, so a backend may queue
internally but never needs to hold a whole job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lambdamr.protocol import TaskEvent

if TYPE_CHECKING:
    from lambdamr.config import ExecutorConfig
    from lambdamr.storage import Storage


class Invocation:
    """One attempt at one task: the event to hand to the runtime handler."""

    __slots__ = ("event", "_payload")

    def __init__(self, event: TaskEvent, payload: bytes | None = None) -> None:
        self.event = event
        self._payload = payload

    @classmethod
    def of(cls, event: TaskEvent) -> Invocation:
        """Wrap an event (serialised once, when a backend first asks for ``payload``)."""
        return cls(event)

    @property
    def payload(self) -> bytes:
        """The event as the JSON payload of an invoke request (the local wire never needs it)."""
        if self._payload is None:
            self._payload = self.event.to_json()
        return self._payload

    def __repr__(self) -> str:
        return f"Invocation(event={self.event!r})"

    @property
    def key(self) -> tuple[str, int, int]:
        """(job id, task id, attempt): unique per invocation."""
        return (self.event.job_id, self.event.task_id, self.event.attempt)


@dataclass(frozen=True)
class InvocationOutcome:
    """How an invocation ended, as far as the backend knows.

    Exactly one of ``response`` (the handler's return value), ``record`` (the result record
    itself, authenticated by the backend) and ``error`` (a lambdamr ``TaskError`` or
    ``BackendError`` saying why there is no response) is set.
    """

    invocation: Invocation
    response: dict[str, Any] | None = None
    error: BaseException | None = None
    started_at: float | None = None
    ended_at: float | None = None
    #: an unsigned result record the backend already authenticated as this invocation's (the
    #: local wire signs a frame of records at once); set instead of ``response``
    record: bytes | memoryview | None = None

    @classmethod
    def of_record(
        cls, invocation: Invocation, record: bytes | memoryview, started_at: float | None, ended_at: float
    ) -> InvocationOutcome:
        """The outcome of an invocation that returned ``record`` (authenticated), made without the
        frozen dataclass's ``__init__``: the local backend reports one per task."""
        outcome = object.__new__(cls)
        outcome.__dict__.update(
            invocation=invocation, response=None, error=None, started_at=started_at, ended_at=ended_at, record=record,
        )
        return outcome


OutcomeCallback = Callable[[InvocationOutcome], None]
#: ``report(outcomes)``: several outcomes at once (a backend that learns of them together)
OutcomesCallback = Callable[[list[InvocationOutcome]], None]
#: ``claim(invocation) -> bool``: asked by a backend that queues invocations itself, as it
#: hands one to a worker; False means every call of it was cancelled meanwhile: drop it.
ClaimCallback = Callable[[Invocation], bool]


class Backend(ABC):
    """Runs invocations of the runtime handler. Implementations must be thread-safe."""

    #: registry name (``lambdamr.backends.BACKENDS``)
    name: str = ""
    #: whether every invocation ends in exactly one ``on_outcome`` call
    reports_outcomes: bool = True
    #: whether the worker can reach the driver's storage spec as-is (a remote backend cannot
    #: use a local folder)
    supports_local_storage: bool = True
    #: largest event payload in bytes this backend accepts
    max_payload_bytes: int = 6 * 1024 * 1024
    #: largest handler response in bytes that may come back inline
    max_response_bytes: int = 6 * 1024 * 1024
    #: whether the backend calls ``claim`` as it hands each invocation to a worker, so that
    #: calls it holds queued stay cancellable (``Future.running()`` is False) until a worker
    #: has them; otherwise the scheduler claims an invocation as it invokes the backend
    claims_handover: bool = False
    #: whether tasks run in the driver's own process (threads): then they share its
    #: environment, and a job's ``extra_env`` is refused
    shares_driver_process: bool = False
    _claim: ClaimCallback | None = None
    _on_outcomes: OutcomesCallback | None = None

    def set_claim(self, claim: ClaimCallback) -> None:
        """Give the backend the scheduler's ``claim`` (before ``start``)."""
        self._claim = claim

    def set_outcomes_callback(self, report: OutcomesCallback) -> None:
        """Give the backend a way to report several outcomes in one call (before ``start``);
        a backend that learns of outcomes together (a frame of completions) may use it
        instead of ``on_outcome`` once per outcome."""
        self._on_outcomes = report

    def claim(self, invocation: Invocation) -> bool:
        """Whether ``invocation`` may start now: its calls are marked running unless they were
        all cancelled (then the backend drops it: the scheduler already knows)."""
        return self._claim is None or self._claim(invocation)

    @classmethod
    @abstractmethod
    def from_config(cls, config: ExecutorConfig, storage: Storage) -> Backend:
        """Build the backend an executor's configuration describes: the shared settings are
        ``config``'s, the backend's own its options class's (``MyOptions.of(config)``)."""

    @classmethod
    def default_storage_url(cls, config: ExecutorConfig) -> str | None:
        """The storage to use when the user configured none (None: the local folder)."""
        return None

    def signing_key(self) -> bytes:
        """The key the runtime verifies payloads with (the local runtimes get this process's)."""
        from lambdamr.signing import process_key

        return process_key()

    def prepare(self, storage: Storage) -> None:
        """Check, before the first invocation, that the backend can run tasks against
        ``storage`` (versions match, storage reachable); raise a clear error if not."""

    def check_access(self, *, reads: Iterable[str] = (), writes: Iterable[str] = ()) -> None:
        """Raise ``ConfigurationError`` before anything runs if the runtime may not read
        ``reads`` or write ``writes`` (storage URLs; a trailing ``*`` stands for every key
        under it). Local runtimes can reach whatever the driver can: nothing to check, and
        the iterables are never consumed."""

    @property
    @abstractmethod
    def capacity(self) -> int:
        """How many invocations may usefully be in flight at once."""

    @abstractmethod
    def start(self, on_outcome: OutcomeCallback) -> None:
        """Get ready to run invocations; ``on_outcome`` may be called from any thread."""

    @abstractmethod
    def invoke(self, invocations: Sequence[Invocation]) -> None:
        """Launch these invocations without waiting for them to finish."""

    @abstractmethod
    def shutdown(self, wait: bool = True) -> None:
        """Stop accepting invocations and release workers or connections.

        With ``wait`` the call returns once running invocations have ended; without it,
        running work is abandoned (local workers are terminated).
        """

    def explain_lost(self, invocation: Invocation) -> BaseException | None:
        """Why an invocation left no result by its deadline (read from the platform's logs:
        timeout, out of memory, import failure...), or None when the backend cannot tell.
        Called off the scheduler thread; it may make network requests."""
        return None

    def describe(self) -> dict[str, Any]:
        """Facts about this backend for summaries and cost estimates."""
        return {"backend": self.name, "capacity": self.capacity}
