"""A small loopback stand-in for the AWS Lambda service, for tests and benchmarks.

Nothing here can run Lambda code for real (no AWS account, no Docker), so this server plays
the part of the service explicitly: it answers the Invoke API on 127.0.0.1 the way Lambda
does and hands the exact event JSON to the real runtime handler, running in separate warm
worker processes (the local backend's pool)::

    boto3 lambda.invoke ──HTTP──> LambdaStandin ──> LocalBackend workers ──> runtime handler
                                        │                                        │
                 control plane ──proxy──┴──> moto server (functions, aliases)    └──> S3 (moto)

* ``POST /2015-03-31/functions/{name}/invocations``: 202 for ``X-Amz-Invocation-Type:
  Event`` (payloads over 1 MB refused with 413), 200 with the handler's response for
  ``RequestResponse`` (over 6 MB: 413), ``X-Amz-Function-Error: Unhandled`` and a Lambda-style
  error document when the runtime fails, a base64 ``X-Amz-Log-Result`` tail on request.
* ``GET /2016-08-19/account-settings``: the account's concurrency limit.
* anything else is forwarded to ``control_url`` (moto's server), so deploy, version checks
  and aliases run against moto while invocations run here.

Faults are injected by configuration (``Faults``): throttle the first N Invoke requests with
429 ``TooManyRequestsException``; accept but never run chosen (task, attempt) pairs (lost
invocations); deliver some twice; make some exceed their timeout.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from ..protocol import TaskEvent
from .base import Invocation, InvocationOutcome

ASYNC_PAYLOAD_LIMIT = 1024 * 1024  # "For asynchronous invocations, the maximum payload size is 1 MB"
SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024
_INVOKE_PREFIX = "/2015-03-31/functions/"

TaskAttempt = tuple[int, int]


@dataclass
class Faults:
    """Which faults the stand-in injects; (task id, attempt) pairs pick invocations."""

    throttle_first: int = 0  # answer 429 to the first N Invoke requests
    drop: set[TaskAttempt] = field(default_factory=set)  # accept (202) but never run
    duplicate: set[TaskAttempt] = field(default_factory=set)  # run twice
    timeout: set[TaskAttempt] = field(default_factory=set)  # run past the function's timeout


@dataclass
class _Call:
    invocation: Invocation
    request_id: str
    done: threading.Event = field(default_factory=threading.Event)
    outcome: InvocationOutcome | None = None


class LambdaStandin:
    """The stand-in service. ``runner``: a started-on-demand ``LocalBackend`` (the default),
    or ``None`` to accept invocations without running anything (driver benchmarks)."""

    def __init__(
        self,
        *,
        workers: int | None = 2,
        run: bool = True,
        control_url: str | None = None,
        account_concurrency: int = 1000,
        faults: Faults | None = None,
        logs_endpoint_url: str | None = None,
    ) -> None:
        self.run = run
        self.workers = workers
        self.control_url = control_url
        self.account_concurrency = account_concurrency
        self.faults = faults or Faults()
        self.logs_endpoint_url = logs_endpoint_url  # also write the log lines to CloudWatch Logs there
        self.function_name = ""
        self.requests = 0  # Invoke requests received
        self.accepted: list[tuple[int, int, str]] = []  # (task, attempt, invocation type)
        self.logs: dict[str, str] = {}  # request id -> the log lines Lambda would write
        self.known_functions: set[tuple[str, str]] = set()  # (name, qualifier) seen to exist
        self.environment: dict[str, str] = {}  # the invoked function's environment variables
        self._lock = threading.Lock()
        self._calls: dict[int, _Call] = {}
        self._backend: Any = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> LambdaStandin:
        """Start serving on 127.0.0.1 on a free port; returns self."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        """Stop serving and end the worker processes."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._backend is not None:
            self._backend.shutdown(wait=False)
            self._backend = None
        for call in list(self._calls.values()):
            call.done.set()

    def __enter__(self) -> LambdaStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- running invocations ------------------------------------------------------------
    def _workers_for(self, environment: dict[str, str]) -> Any:
        """The worker pool, started on first use with the function's signing key (as Lambda
        gives containers the function's environment)."""
        with self._lock:
            if self._backend is None:
                from ..signing import KEY_ENV, parse_key
                from .local import LocalBackend

                key = environment.get(KEY_ENV) or self._secret_key(environment)

                class FunctionWorkers(LocalBackend):
                    def signing_key(self) -> bytes:
                        return parse_key(key) if key else super().signing_key()

                self._backend = FunctionWorkers(self.workers, prefetch=1)
                self._backend.start(self._on_outcome)
            return self._backend

    def _secret_key(self, environment: dict[str, str]) -> str | None:
        """The key in the secret the environment names, read from the control-plane server
        (moto), as a Lambda container reads it from Secrets Manager."""
        import boto3

        from ..runtime.key_source import ENV_KEY_VERSION, ENV_SECRET, fetch_key_hex

        if not environment.get(ENV_SECRET) or not self.control_url:
            return None
        client = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=self.control_url)
        return fetch_key_hex(environment[ENV_SECRET], environment.get(ENV_KEY_VERSION), client=client)

    def _on_outcome(self, outcome: InvocationOutcome) -> None:
        with self._lock:
            call = self._calls.pop(id(outcome.invocation), None)
        if call is not None:
            call.outcome = outcome
            self._write_logs(call, outcome)
            call.done.set()

    def _launch(self, payload: bytes, sync: bool) -> _Call:
        event = TaskEvent.from_dict(json.loads(payload))
        call = _Call(Invocation(event=event, payload=payload), request_id=str(uuid.uuid4()))
        pair = (event.task_id, event.attempt)
        with self._lock:
            self.accepted.append((event.task_id, event.attempt, "RequestResponse" if sync else "Event"))
            dropped = pair in self.faults.drop
            timed_out = pair in self.faults.timeout
            copies = 2 if pair in self.faults.duplicate else 1
        if not self.run or dropped:
            self.logs[call.request_id] = ""  # never started: no log lines at all
            if not self.run:
                call.outcome = InvocationOutcome(call.invocation, response={"ok": True, "result_key": None})
                call.done.set()
            return call
        if timed_out:
            threading.Thread(target=self._time_out, args=(call,), daemon=True).start()
            return call
        for copy in range(copies):
            invocation = call.invocation if copy == 0 else Invocation(event=event, payload=payload)
            with self._lock:
                self._calls[id(invocation)] = call if copy == 0 else _Call(invocation, str(uuid.uuid4()))
            self._workers_for(self.environment).invoke([invocation])
        return call

    def _time_out(self, call: _Call) -> None:
        time.sleep(min(call.invocation.event.timeout_s, 30))
        from ..errors import TaskTimeoutError

        outcome = InvocationOutcome(call.invocation, error=TaskTimeoutError("timed out"))
        self._write_logs(call, outcome)
        call.outcome = outcome
        call.done.set()

    def _write_logs(self, call: _Call, outcome: InvocationOutcome) -> None:
        event = call.invocation.event
        rid = call.request_id
        lines = [f"START RequestId: {rid} Version: $LATEST"]
        status = ""
        error = outcome.error
        if error is not None:
            kind = type(error).__name__
            if kind == "TaskTimeoutError":
                lines.append(f"{rid} Task timed out after {event.timeout_s:.2f} seconds")
                status = "\tStatus: timeout"
            elif kind == "TaskOutOfMemoryError":
                status = "\tStatus: error\tError Type: Runtime.OutOfMemory"
            else:
                lines.append(f"[ERROR] {error}")
                status = "\tStatus: error\tError Type: Runtime.ExitError"
        used = event.memory_mb if status.endswith("OutOfMemory") else min(event.memory_mb, 80)
        lines.append(f"END RequestId: {rid}")
        lines.append(
            f"REPORT RequestId: {rid}\tDuration: 1.00 ms\tBilled Duration: 1 ms\t"
            f"Memory Size: {event.memory_mb} MB\tMax Memory Used: {used} MB{status}"
        )
        self.logs[rid] = "\n".join(lines)
        if self.logs_endpoint_url and self.function_name:
            self._put_logs(lines)

    def _put_logs(self, lines: list[str]) -> None:
        import boto3

        logs = boto3.client("logs", endpoint_url=self.logs_endpoint_url, region_name="us-east-1")
        group, stream = f"/aws/lambda/{self.function_name}", "lambdamr-standin"
        try:
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        now = int(time.time() * 1000)
        logs.put_log_events(
            logGroupName=group, logStreamName=stream, logEvents=[{"timestamp": now, "message": line} for line in lines]
        )

    def error_document(self, call: _Call) -> dict[str, Any] | None:
        """The Lambda error document for a failed call (None when it succeeded)."""
        outcome = call.outcome
        if outcome is None or outcome.error is None:
            return None
        kind = type(outcome.error).__name__
        rid = call.request_id
        if kind == "TaskTimeoutError":
            t = call.invocation.event.timeout_s
            return {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"RequestId: {rid} Error: Task timed out after {t:.2f} seconds",
            }
        if kind == "TaskOutOfMemoryError":
            return {
                "errorType": "Runtime.OutOfMemory",
                "errorMessage": f"RequestId: {rid} Error: Runtime exited with error: signal: killed",
            }
        message = str(outcome.error)
        error_type = "Runtime.ExitError" if kind == "WorkerLostError" and "handler failed" not in message else "Exception"
        if "handler failed: " in message:  # "the runtime handler failed: Type: text"
            error_type, _, message = message.split("handler failed: ", 1)[1].partition(": ")
        return {"errorType": error_type, "errorMessage": message, "stackTrace": []}

    # ---- control plane ------------------------------------------------------------------
    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """Relay a control-plane request to ``control_url``."""
        if not self.control_url:
            doc = {"Type": "User", "Message": f"the stand-in does not implement {method} {path}"}
            return 404, [("x-amzn-ErrorType", "ResourceNotFoundException")], json.dumps(doc).encode()
        target = urlparse(self.control_url)
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        try:
            drop = {"host", "content-length", "transfer-encoding", "expect", "connection"}
            conn.request(method, path, body=body, headers={k: v for k, v in headers.items() if k.lower() not in drop})
            answer = conn.getresponse()
            data = answer.read()
            skip = {"transfer-encoding", "connection", "content-length", "server", "date"}
            return answer.status, [(k, v) for k, v in answer.getheaders() if k.lower() not in skip], data
        finally:
            conn.close()


def _handler_class(standin: LambdaStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: boto3 reuses its connections
        disable_nagle_algorithm = True  # or every answer waits ~40-90 ms for a delayed ACK

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, headers: list[tuple[str, str]] | dict[str, str] = ()) -> None:
            self.send_response(status)
            items = headers.items() if isinstance(headers, dict) else headers
            for key, value in items:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, code: str, message: str) -> None:
            doc = json.dumps({"Type": "User", "message": message}).encode()
            self._send(
                status, doc, {"Content-Type": "application/json", "x-amzn-ErrorType": code, "x-amzn-RequestId": str(uuid.uuid4())}
            )

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def do_GET(self) -> None:
            if self.path.startswith("/2016-08-19/account-settings"):
                limit = standin.account_concurrency
                doc = {
                    "AccountLimit": {
                        "ConcurrentExecutions": limit,
                        "UnreservedConcurrentExecutions": limit,
                        "TotalCodeSize": 80530636800,
                        "CodeSizeUnzipped": 262144000,
                        "CodeSizeZipped": 52428800,
                    },
                    "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": 1},
                }
                self._send(200, json.dumps(doc).encode(), {"Content-Type": "application/json"})
                return
            self._relay("GET")

        def do_DELETE(self) -> None:
            self._relay("DELETE")

        def do_PUT(self) -> None:
            self._relay("PUT")

        def _relay(self, method: str) -> None:
            status, headers, data = standin.forward(method, self.path, dict(self.headers.items()), self._body())
            self._send(status, data, headers)

        def do_POST(self) -> None:
            parsed = urlparse(self.path)
            if not (parsed.path.startswith(_INVOKE_PREFIX) and parsed.path.endswith("/invocations")):
                self._relay("POST")
                return
            body = self._body()
            kind = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
            with standin._lock:
                standin.requests += 1
                throttle = standin.requests <= standin.faults.throttle_first
            if throttle:
                self._error(429, "TooManyRequestsException", "Rate Exceeded.")
                return
            limit = ASYNC_PAYLOAD_LIMIT if kind == "Event" else SYNC_PAYLOAD_LIMIT
            if len(body) > limit:
                self._error(
                    413,
                    "RequestEntityTooLargeException",
                    f"{len(body)} byte payload is too large for the {kind} invocation type (limit {limit} bytes)",
                )
                return
            if standin.control_url and not self._function_exists(parsed):
                return
            try:
                call = standin._launch(body, sync=kind != "Event")
            except Exception as exc:  # not a lambdamr event: the handler itself would fail on it
                doc = json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()
                self._send(200, doc, {"X-Amz-Function-Error": "Unhandled", "X-Amz-Executed-Version": "$LATEST"})
                return
            if kind == "Event":
                self._send(202, b"", {"x-amzn-RequestId": call.request_id})
                return
            call.done.wait()
            headers = {"Content-Type": "application/json", "x-amzn-RequestId": call.request_id, "X-Amz-Executed-Version": "1"}
            if self.headers.get("X-Amz-Log-Type") == "Tail":
                tail = standin.logs.get(call.request_id, "")[-4096:]
                headers["X-Amz-Log-Result"] = base64.b64encode(tail.encode()).decode()
            error = standin.error_document(call)
            if error is not None:
                headers["X-Amz-Function-Error"] = "Unhandled"
                self._send(200, json.dumps(error).encode(), headers)
                return
            assert call.outcome is not None
            self._send(200, json.dumps(call.outcome.response).encode(), headers)

        def _function_exists(self, parsed: Any) -> bool:
            name = unquote(parsed.path[len(_INVOKE_PREFIX) : -len("/invocations")])
            qualifier = parse_qs(parsed.query).get("Qualifier", [""])[0]
            if (name, qualifier) in standin.known_functions:
                return True
            path = f"{_INVOKE_PREFIX}{name}/configuration" + (f"?Qualifier={qualifier}" if qualifier else "")
            status, headers, data = standin.forward("GET", path, dict(self.headers.items()), b"")
            if status == 200:
                standin.environment = (json.loads(data).get("Environment") or {}).get("Variables") or {}
                standin.function_name = name
                standin.known_functions.add((name, qualifier))
                return True
            self._send(status, data, headers)
            return False

    return Handler


def main(argv: list[str] | None = None) -> None:
    """``python -m lambdamr.backends.aws_standin --null``: serve until stdin closes (benchmarks)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--null", action="store_true", help="accept invocations without running them")
    args = parser.parse_args(argv)
    standin = LambdaStandin(run=not args.null).start()
    print(standin.url, flush=True)
    sys.stdin.read()
    standin.stop()


if __name__ == "__main__":
    main()
