"""The concurrent Lambda invoker: many ``Invoke`` requests in flight from one driver.

A fixed pool of invoker threads shares one boto3 Lambda client (whose connection pool is as
large as the thread pool). Each thread takes an invocation from a queue and sends it::

    submit() ──> queue ──> invoker thread ──> lambda.invoke ──> 202 Accepted   (Event)
                                  │  ▲                     └──> 200 + response (RequestResponse)
                                  └──┘ throttled / 5xx: full-jitter backoff, same thread

Throttling (``TooManyRequestsException`` and friends), service errors (any 5xx, a bare 502
from a load balancer included, but those naming a broken function configuration) and
connection errors are retried with exponential backoff and full jitter until
``throttle_deadline_s`` has passed since the first attempt; then the invocation fails with
``ThrottledError``, so a task is never dropped silently and the driver never hangs. Errors
that retrying cannot fix (payload too large, function missing, access denied, a TLS
certificate the driver does not trust) are reported at once. botocore's own retries are
off: one loop, with one budget, owns every retry.

A synchronous invoke waits at most its task's deadline — ``timeout_s`` plus the same grace
an Event task gets before it counts as lost (``sync_deadline_s``) — and is then abandoned as
a ``WorkerLostError``, which the scheduler retries like a lost Event task.
"""

from __future__ import annotations

import base64
import json
import math
import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lambdamr.aws_errors import THROTTLING_CODES, error_code, translate
from lambdamr.backends.aws.errors import function_error
from lambdamr.backends.base import Invocation, InvocationOutcome, OutcomeCallback
from lambdamr.counters import Counters
from lambdamr.errors import ConfigurationError, LambdaMRError, PayloadTooLargeError, ThrottledError, WorkerLostError

#: a sync invoke is abandoned this long after its task's timeout (the scheduler's
#: LOST_GRACE_S for Event tasks: one deadline for both kinds of invocation)
SYNC_GRACE_S = 10.0
_REQUEST_IDS_KEPT = 200_000


def sync_deadline_s(timeout_s: float) -> float:
    """How long a synchronous invoke of a task with ``timeout_s`` may wait for its answer."""
    return timeout_s + max(SYNC_GRACE_S, 0.1 * timeout_s)


class BotoClientPerTimeout:
    """boto3 Lambda clients, one per read timeout, behind one ``invoke``: what sync invokes
    use when the lean client does not apply (a proxy), since botocore fixes a client's read
    timeout when it is built.

    Args:
        make_client: builds a boto3 Lambda client with the given read timeout in seconds.
    """

    accepts_read_timeout = True

    def __init__(self, make_client: Callable[[int], Any]) -> None:
        self._make_client = make_client
        self._clients: dict[int, Any] = {}
        self._lock = threading.Lock()

    def invoke(self, *, read_timeout_s: float, **kwargs: Any) -> Any:
        """``boto3`` ``invoke`` on the client whose read timeout is ``read_timeout_s``
        (rounded up to a whole second)."""
        seconds = max(1, math.ceil(read_timeout_s))
        with self._lock:
            client = self._clients.get(seconds)
            if client is None:
                client = self._clients[seconds] = self._make_client(seconds)
        return client.invoke(**kwargs)


@dataclass
class InvokerStats(Counters):
    """Counters of what the invoker has done (read them any time; updated under a lock)."""

    sent: int = 0  # invocations accepted by the service (202, or 200 for a sync call)
    requests: int = 0  # Invoke requests made, retries included
    throttled: int = 0  # answers that asked us to slow down
    failed: int = 0  # invocations reported as errors


class LambdaInvoker:
    """Sends invocations of one function from ``threads`` threads sharing ``client``.

    Args:
        client: a boto3 Lambda client (``max_pool_connections`` >= ``threads``, retries off).
        function_name: the function to invoke.
        on_outcome: called with an ``InvocationOutcome`` for every sync response and for
            every invocation that could not be launched.
        invocation_type: ``"Event"`` (fire and forget) or ``"RequestResponse"``.
        threads: invoker threads (= requests in flight at most).
        max_payload_bytes: payloads above this are refused before sending.
        qualifier_for: the alias or version to invoke for an invocation (None: $LATEST).
        payload_for: the bytes to send for an invocation (default: its payload).
        throttle_deadline_s: how long one invocation may keep being throttled.
        sync_deadline_for: how long a sync invocation may wait for its answer (default:
            ``sync_deadline_s`` of its task's timeout).
    """

    def __init__(
        self,
        client: Any,
        function_name: str,
        on_outcome: OutcomeCallback,
        *,
        invocation_type: str = "Event",
        threads: int = 32,
        max_payload_bytes: int = 1024 * 1024,
        qualifier_for: Callable[[Invocation], str | None] | None = None,
        payload_for: Callable[[Invocation], bytes] | None = None,
        throttle_deadline_s: float = 300.0,
        sync_deadline_for: Callable[[Invocation], float] | None = None,
        backoff_base_s: float = 0.05,
        backoff_cap_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if invocation_type not in ("Event", "RequestResponse"):
            raise ConfigurationError(f"invocation_type={invocation_type!r}: use 'Event' or 'RequestResponse'")
        self.client = client
        self.function_name = function_name
        self.on_outcome = on_outcome
        self.invocation_type = invocation_type
        self.sync = invocation_type == "RequestResponse"
        self.threads = max(1, threads)
        self.max_payload_bytes = max_payload_bytes
        self.qualifier_for = qualifier_for or (lambda invocation: None)
        self.payload_for = payload_for or (lambda invocation: invocation.payload)
        self.throttle_deadline_s = throttle_deadline_s
        self.sync_deadline_for = sync_deadline_for or (lambda invocation: sync_deadline_s(invocation.event.timeout_s))
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self._sleep = sleep
        self._rng = rng
        self._clock = clock
        self.stats = InvokerStats()
        self._queue: queue.SimpleQueue[Invocation | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._started = False
        self._stopping = threading.Event()
        self._pending = 0
        self._pending_lock = threading.Condition()
        self._request_ids: OrderedDict[tuple[str, int, int], str] = OrderedDict()
        self._ids_lock = threading.Lock()

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Get ready; threads are started as work arrives, up to ``threads``."""
        self._started = True

    def _add_threads(self, wanted: int) -> None:
        # Sync mode may allow ~1,000 threads; only start as many as there is work for.
        while len(self._workers) < min(self.threads, wanted):
            thread = threading.Thread(target=self._run, name=f"lambdamr-invoke-{len(self._workers)}", daemon=True)
            thread.start()
            self._workers.append(thread)

    def submit(self, invocations: Sequence[Invocation]) -> None:
        """Queue invocations; they are sent as soon as a thread is free."""
        with self._pending_lock:
            self._pending += len(invocations)
            self._add_threads(self._pending)
        for invocation in invocations:
            self._queue.put(invocation)

    def wait_sent(self, timeout: float | None = None) -> bool:
        """Wait until every submitted invocation has been sent (or failed); False on timeout."""
        with self._pending_lock:
            return self._pending_lock.wait_for(lambda: self._pending == 0, timeout)

    def shutdown(self, wait: bool = True) -> None:
        """Stop the threads; with ``wait``, after every queued invocation has been sent."""
        if wait:
            self.wait_sent()
        else:
            self._stopping.set()
        for _ in self._workers:
            self._queue.put(None)
        for thread in self._workers:
            thread.join(timeout=10)
        self._workers = []

    def request_id(self, invocation: Invocation) -> str | None:
        """The request id the service gave an invocation (Event mode), if known."""
        with self._ids_lock:
            return self._request_ids.get(invocation.key)

    # ---- the invoker threads ------------------------------------------------------------
    def _run(self) -> None:
        while True:
            invocation = self._queue.get()
            if invocation is None:
                return
            try:
                if not self._stopping.is_set():
                    self._invoke(invocation)
            except Exception as exc:  # a bug here must fail the task, not kill the thread
                self._fail(invocation, WorkerLostError(f"invoking the function failed unexpectedly: {exc!r}"))
            finally:
                with self._pending_lock:
                    self._pending -= 1
                    if self._pending == 0:
                        self._pending_lock.notify_all()

    def _invoke(self, invocation: Invocation) -> None:
        try:
            payload = self.payload_for(invocation)
            qualifier = self.qualifier_for(invocation)
        except LambdaMRError as exc:  # e.g. the version for this memory cannot be published
            self._fail(invocation, exc)
            return
        if len(payload) > self.max_payload_bytes:
            self._fail(
                invocation,
                PayloadTooLargeError(
                    f"task {invocation.event.task_id}'s event is {len(payload):,} bytes; the "
                    f"{self.invocation_type} Invoke API accepts at most {self.max_payload_bytes:,}: "
                    "lower inline_args_max so that large arguments travel through storage"
                ),
            )
            return
        kwargs: dict[str, Any] = {
            "FunctionName": self.function_name,
            "InvocationType": self.invocation_type,
            "Payload": payload,
        }
        if qualifier:
            kwargs["Qualifier"] = qualifier
        if self.sync:
            kwargs["LogType"] = "Tail"
            if getattr(self.client, "accepts_read_timeout", False):
                kwargs["read_timeout_s"] = self.sync_deadline_for(invocation)
        started = time.time()
        response = self._call_with_backoff(invocation, kwargs)
        if response is not None:
            self._handle_response(invocation, response, started)

    def _call_with_backoff(self, invocation: Invocation, kwargs: dict[str, Any]) -> dict[str, Any] | None:
        from botocore.exceptions import (
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            ReadTimeoutError,
            SSLError,
        )

        first = self._clock()
        retry = 0
        while True:
            try:
                self.stats.add(requests=1)
                answer: dict[str, Any] = self.client.invoke(**kwargs)
                return answer
            except ReadTimeoutError as exc:
                if self.sync:  # the function may still be running: it is lost to us
                    self._fail(invocation, self._abandoned(invocation, kwargs, exc))
                    return None
                failure: Exception = exc
            except (
                ClientError, NoCredentialsError, EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, SSLError
            ) as exc:
                failure = exc
            error = translate(
                failure,
                "invoke",
                f"invoking {self.function_name!r}",
                function_name=self.function_name,
                task_id=invocation.event.task_id,
                size=len(invocation.payload),
                endpoint=_endpoint(self.client),
            )
            if not getattr(error, "retryable", False):  # the table's verdict: retrying cannot fix it
                self._fail(invocation, error)
                return None
            if isinstance(failure, ClientError):
                self.stats.add(throttled=1)
            code = error_code(failure)
            reason = f"HTTP {code} with no error type" if code.isdigit() else code
            delay = self._rng() * min(self.backoff_cap_s, self.backoff_base_s * (2**retry))
            if self._clock() + delay - first > self.throttle_deadline_s:
                self._fail(invocation, self._gave_up(invocation, reason, retry + 1))
                return None
            retry += 1
            self._sleep(delay)

    def _gave_up(self, invocation: Invocation, reason: str, attempts: int) -> ThrottledError:
        if reason in THROTTLING_CODES:
            advice = (
                "lower max_concurrency, or ask AWS for a higher concurrency quota (Service Quotas > "
                "AWS Lambda > Concurrent executions)"
            )
        else:
            advice = (
                "the Lambda service or the network to it kept failing: check the endpoint and the "
                "network, and the AWS Health Dashboard for the region, then run the job again"
            )
        return ThrottledError(
            f"task {invocation.event.task_id} could not be launched: the Lambda service "
            f"kept refusing it ({reason}) for {self.throttle_deadline_s:g} s over "
            f"{attempts} attempts; {advice}"
        )

    def _abandoned(self, invocation: Invocation, kwargs: dict[str, Any], exc: Exception) -> WorkerLostError:
        waited = kwargs.get("read_timeout_s")
        if waited is None:
            return WorkerLostError(f"no answer from the Lambda service in time: {exc}", **_where(invocation))
        return WorkerLostError(
            f"no answer within {waited:g} s of invoking task {invocation.event.task_id} (its "
            f"timeout of {invocation.event.timeout_s:g} s plus a grace period): the invocation was "
            "abandoned as lost",
            **_where(invocation),
        )

    def _handle_response(self, invocation: Invocation, response: dict[str, Any], started: float) -> None:
        request_id = response.get("ResponseMetadata", {}).get("RequestId", "")
        if not self.sync:
            # Read the (empty) body even so: an unread body keeps boto3's connection from
            # going back to its pool, and every invoke would open a new one.
            body = response["Payload"].read() if response.get("Payload") is not None else b""
            if response.get("FunctionError"):
                self._fail(invocation, function_error(response["FunctionError"], body, None, invocation, request_id))
                return
            self.stats.add(sent=1)
            if request_id:
                with self._ids_lock:
                    self._request_ids[invocation.key] = request_id
                    if len(self._request_ids) > _REQUEST_IDS_KEPT:
                        self._request_ids.popitem(last=False)
            return
        body = response["Payload"].read()
        ended = time.time()
        self.stats.add(sent=1)
        logs = _log_tail(response.get("LogResult"))
        if response.get("FunctionError"):
            error = function_error(response["FunctionError"], body, logs, invocation, request_id)
            self._fail(invocation, error, started, ended)
            return
        try:
            answer = json.loads(body)
            if not isinstance(answer, dict):
                raise ValueError(f"expected a JSON object, got {type(answer).__name__}")
        except ValueError as exc:
            error = WorkerLostError(
                f"the function answered something that is not a lambdamr response: {exc}",
                **_where(invocation, request_id),
                logs=logs,
            )
            self._fail(invocation, error, started, ended)
            return
        self.on_outcome(InvocationOutcome(invocation, response=answer, started_at=started, ended_at=ended))

    def _fail(
        self, invocation: Invocation, error: BaseException, started: float | None = None, ended: float | None = None
    ) -> None:
        self.stats.add(failed=1)
        self.on_outcome(InvocationOutcome(invocation, error=error, started_at=started, ended_at=ended or time.time()))


def _endpoint(client: Any) -> str:
    meta = getattr(client, "meta", None)
    return str(getattr(meta, "endpoint_url", None) or "the Lambda endpoint")


def _log_tail(log_result: str | None, lines: int = 20) -> str | None:
    if not log_result:
        return None
    try:
        text = base64.b64decode(log_result).decode("utf-8", "replace")
    except ValueError:
        return None
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _where(invocation: Invocation, request_id: str | None = None) -> dict[str, Any]:
    event = invocation.event
    return {"job_id": event.job_id, "task_id": event.task_id, "attempt": event.attempt, "request_id": request_id}
