"""The Lambda Runtime API of one execution environment, on loopback.

Lambda's runtime interface client (``awslambdaric``) polls this API for work, exactly as in
an execution environment (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html)::

    GET  /2018-06-01/runtime/invocation/next            -> 200, the event; headers
         Lambda-Runtime-Aws-Request-Id, -Deadline-Ms, -Invoked-Function-Arn, -Trace-Id
    POST /2018-06-01/runtime/invocation/{id}/response   -> 202 (the function's answer)
    POST /2018-06-01/runtime/invocation/{id}/error      -> 202 (Lambda-Runtime-Function-Error-Type)
    POST /2018-06-01/runtime/init/error                 -> 202 (the handler could not load)

``next`` blocks until the environment is handed an invocation: one at a time, as in Lambda.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_BASE = "/2018-06-01/runtime"
#: "Invocation payload (request and response): 6 MB each for synchronous invocations"
RESPONSE_LIMIT = 6 * 1024 * 1024


@dataclass
class RuntimeInvocation:
    """One invocation as the runtime sees it, and what the runtime answered."""

    request_id: str
    payload: bytes
    deadline_ms: int
    function_arn: str
    answered: threading.Event = field(default_factory=threading.Event)
    response: bytes | None = None
    error_type: str | None = None  # Lambda-Runtime-Function-Error-Type of an /error post
    error_body: bytes | None = None


@dataclass
class InitError:
    error_type: str
    body: bytes


class RuntimeApi:
    """The Runtime API one environment's runtime client talks to."""

    def __init__(self, on_answer: Callable[[], None] = lambda: None) -> None:
        self._on_answer = on_answer  # wakes the environment's watcher at once
        self._handoff: queue.Queue[RuntimeInvocation] = queue.Queue(maxsize=1)
        self._current: dict[str, RuntimeInvocation] = {}
        self._lock = threading.Lock()
        self.init_error: InitError | None = None
        self.init_failed = threading.Event()
        self.ready = threading.Event()  # the runtime asked for its first invocation: init is over
        self._stopped = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """``host:port``: what ``AWS_LAMBDA_RUNTIME_API`` holds."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def hand(self, invocation: RuntimeInvocation) -> None:
        """Give the runtime its next invocation (the environment runs one at a time)."""
        with self._lock:
            self._current[invocation.request_id] = invocation
        self._handoff.put(invocation)

    def stop(self) -> None:
        self._stopped.set()
        self._server.shutdown()
        self._server.server_close()

    # ---- what the HTTP handler calls ------------------------------------------------------
    def next_invocation(self) -> RuntimeInvocation | None:
        self.ready.set()
        while not self._stopped.is_set():
            try:
                return self._handoff.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def answer(self, request_id: str, body: bytes, error_type: str | None) -> bool:
        with self._lock:
            invocation = self._current.pop(request_id, None)
        if invocation is None:
            return False
        if error_type is None:
            invocation.response = body
        else:
            invocation.error_type, invocation.error_body = error_type, body
        invocation.answered.set()
        self._on_answer()
        return True

    def fail_init(self, error_type: str, body: bytes) -> None:
        self.init_error = InitError(error_type, body)
        self.init_failed.set()
        self._on_answer()


def _handler_class(api: RuntimeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            try:
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the environment was killed while its runtime waited

        def _status(self, status: int, error_type: str | None = None, message: str = "") -> None:
            doc = {"status": "OK"} if error_type is None else {"errorMessage": message, "errorType": error_type}
            self._send(status, json.dumps(doc).encode(), {"Content-Type": "application/json"})

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def do_GET(self) -> None:
            if self.path != f"{_BASE}/invocation/next":
                self._status(404, "InvalidRequest", f"unknown path {self.path}")
                return
            invocation = api.next_invocation()
            if invocation is None:  # the environment is shutting down
                self._status(500, "Runtime.Shutdown", "the execution environment is shutting down")
                return
            headers = {
                "Content-Type": "application/json",
                "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": invocation.function_arn,
                "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{invocation.request_id.replace('-', '')[:24]}",
            }
            self._send(200, invocation.payload, headers)

        def do_POST(self) -> None:
            body = self._body()
            parts = self.path.removeprefix(_BASE + "/").split("/")
            error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
            if parts == ["init", "error"]:
                api.fail_init(error_type or "Runtime.Unknown", body)
                self._status(202)
                return
            if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                if parts[2] == "response" and len(body) > RESPONSE_LIMIT:
                    doc = {
                        "errorMessage": f"Response payload size ({len(body)} bytes) exceeded maximum allowed "
                        f"payload size ({RESPONSE_LIMIT} bytes).",
                        "errorType": "Function.ResponseSizeTooLarge",
                    }
                    api.answer(parts[1], json.dumps(doc).encode(), "Function.ResponseSizeTooLarge")
                    self._status(413, "RequestEntityTooLarge", doc["errorMessage"])
                    return
                kind = None if parts[2] == "response" else (error_type or "Runtime.Unknown")
                if api.answer(parts[1], body, kind):
                    self._status(202)
                else:
                    self._status(400, "InvalidRequestID", f"unknown or already answered request id {parts[1]}")
                return
            self._status(404, "InvalidRequest", f"unknown path {self.path}")

    return Handler
