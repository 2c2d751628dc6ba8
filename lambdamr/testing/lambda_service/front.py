"""The HTTP front of the stand-in: signature check, then the route.

* ``POST /2015-03-31/functions/{name}/invocations``: Invoke (``LambdaService.invoke``);
* ``/2019-09-25/functions/{name}/event-invoke-config``: answered here, per qualifier;
* ``GET /2016-08-19/account-settings``: the account's concurrency limit;
* anything else is relayed to the control plane (moto) with its original ``Host`` header, so
  that moto can check the caller's signature too; uploads of code are kept on the way.
"""

from __future__ import annotations

import http.client
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlparse

from lambdamr.testing.lambda_service.code_store import CodeStore
from lambdamr.testing.lambda_service.event_config import ConfigError, EventInvokeConfigs
from lambdamr.testing.lambda_service.functions import FunctionDirectory, FunctionVersion, NotFound
from lambdamr.testing.lambda_service.reply import Reply, error_reply
from lambdamr.testing.lambda_service.signature import SignatureVerifier


class ServiceApi(Protocol):
    """What the front asks of ``service.LambdaService`` (which starts the front: a protocol, not an import)."""

    control_url: str | None
    account_concurrency: int
    verifier: SignatureVerifier
    code: CodeStore
    configs: EventInvokeConfigs
    directory: FunctionDirectory | None

    def resolve(self, name: str, qualifier: str | None) -> FunctionVersion | None: ...

    def invoke(self, name: str, qualifier: str | None, kind: str, payload: bytes, tail: bool) -> Reply: ...

_FUNCTIONS = "/2015-03-31/functions/"
_EVENT_CONFIG = "/2019-09-25/functions/"
_HOP_HEADERS = {"content-length", "transfer-encoding", "expect", "connection"}


def function_and_qualifier(raw: str, query: str) -> tuple[str, str | None]:
    """A function name, ARN or partial ARN (with an optional ``:qualifier``) and ``?Qualifier=``."""
    name = unquote(raw)
    qualifier = parse_qs(query).get("Qualifier", [None])[0]
    parts = name.split(":")
    if name.startswith("arn:") and len(parts) >= 7:
        name, qualifier = parts[6], (parts[7] if len(parts) > 7 else qualifier)
    elif len(parts) == 2:
        name, qualifier = parts[0], parts[1]
    return name, qualifier or None


def relay(service: ServiceApi, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
    """Send a control-plane request on to moto; keep uploaded code; forget cached resolutions."""
    if not service.control_url:
        return error_reply(404, "ResourceNotFoundException", f"the stand-in does not implement {method} {path}")
    target = urlparse(service.control_url)
    connection = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=120)
    try:
        connection.request(method, path, body=body, headers={k: v for k, v in headers.items() if k.lower() not in _HOP_HEADERS})
        answer = connection.getresponse()
        data = answer.read()
        skip = _HOP_HEADERS | {"server", "date"}
        reply = Reply(answer.status, data, {k: v for k, v in answer.getheaders() if k.lower() not in skip})
    finally:
        connection.close()
    service.code.observe(method, path, body, reply.status, reply.body)
    if method != "GET" and service.directory is not None:
        service.directory.forget()
    return reply


def event_invoke_config(service: ServiceApi, method: str, path: str, query: str, body: bytes) -> Reply:
    rest = path[len(_EVENT_CONFIG) :]
    raw_name, _, tail = rest.partition("/event-invoke-config")
    name, qualifier = function_and_qualifier(raw_name, query)
    try:
        function = service.resolve(name, qualifier)
        arn = function.invoked_arn if function else name
        if tail == "/list" and method == "GET":
            doc: dict[str, Any] | None = service.configs.list(name)
        elif method == "PUT":
            doc = service.configs.put(name, qualifier, arn, json.loads(body or b"{}"))
        elif method == "POST":
            doc = service.configs.update(name, qualifier, arn, json.loads(body or b"{}"))
        elif method == "GET":
            doc = service.configs.get(name, qualifier, arn)
        elif method == "DELETE":
            service.configs.delete(name, qualifier, arn)
            doc = None
        else:
            return error_reply(405, "MethodNotAllowed", f"{method} is not supported on {path}")
    except (NotFound, ConfigError) as exc:
        return error_reply(exc.status, exc.code, exc.message)
    if doc is None:
        return Reply(204)
    return Reply(200, json.dumps(doc).encode(), {"Content-Type": "application/json"})


def account_settings(service: ServiceApi) -> Reply:
    limit = service.account_concurrency
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
    return Reply(200, json.dumps(doc).encode(), {"Content-Type": "application/json"})


def route(service: ServiceApi, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Reply:
    refusal = service.verifier.check(method, headers.get("Host", ""), raw_path, headers, body)
    if refusal is not None:
        return error_reply(refusal.status, refusal.code, refusal.message)
    parsed = urlparse(raw_path)
    path = parsed.path
    if method == "POST" and path.startswith(_FUNCTIONS) and path.endswith("/invocations"):
        name, qualifier = function_and_qualifier(path[len(_FUNCTIONS) : -len("/invocations")], parsed.query)
        kind = headers.get("X-Amz-Invocation-Type", "RequestResponse")
        tail = headers.get("X-Amz-Log-Type") == "Tail"
        return service.invoke(name, qualifier, kind, body, tail)
    if path.startswith(_EVENT_CONFIG) and "/event-invoke-config" in path:
        return event_invoke_config(service, method, path, parsed.query, body)
    if method == "GET" and path.startswith("/2016-08-19/account-settings"):
        return account_settings(service)
    return relay(service, method, raw_path, headers, body)


def serve(service: ServiceApi) -> ThreadingHTTPServer:
    """Start the front on a free loopback port, in a daemon thread."""
    import threading

    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(service))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def _handler_class(service: ServiceApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: boto3 reuses its connections
        disable_nagle_algorithm = True  # or every answer waits ~40 ms for a delayed ACK

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                reply = route(service, self.command, self.path, dict(self.headers.items()), body)
            except Exception as exc:  # the service's own failure: what Lambda calls ServiceException
                reply = error_reply(500, "ServiceException", f"the Lambda stand-in failed: {type(exc).__name__}: {exc}")
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    return Handler
