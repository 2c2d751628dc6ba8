"""The dashboard's web server: one static page and a small read-only JSON API.

Built on the standard library's ``http.server`` (a ``ThreadingHTTPServer``): the dashboard
serves one user on one machine, a handful of requests a second, so an ASGI stack would add
dependencies and nothing the page needs. The page is plain HTML, CSS and JavaScript shipped
in the package (``static/``), loaded from this server only — no CDN, it works offline.

Routes (``GET`` and ``HEAD`` only; anything else is ``405``)::

    /                               the page
    /static/{app.js,app.css}        its script and style
    /api/jobs                       the newest jobs of the history, with counts and cost
    /api/jobs/{job_id}              one job: task rows (the task stream), failures, stragglers
    /api/jobs/{job_id}/tasks/{n}    one task: error, traceback, output

It binds 127.0.0.1 unless told otherwise, and refuses a request whose ``Host`` header names
another host (a web page elsewhere cannot reach it through DNS rebinding). It reads storage
only (``DashboardReader``) and never sends the signing key.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lambdamr.dashboard.reader import DashboardReader, JobNotFound
from lambdamr.errors import LambdaMRError

log = logging.getLogger("lambdamr")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
}
_JOB = re.compile(r"^/api/jobs/([0-9A-Za-z-]{1,80})$")
_TASK = re.compile(r"^/api/jobs/([0-9A-Za-z-]{1,80})/tasks/([0-9]{1,9})$")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
#: the page may load only what this server serves, and run no inline script
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors *",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


STATIC_FOLDER = Path(__file__).resolve().parent / "static"


def static_file(name: str) -> bytes:
    # Beside this module (package data): naming the package by string would be an import cycle.
    return (STATIC_FOLDER / name).read_bytes()


class DashboardHandler(BaseHTTPRequestHandler):
    """Answers the page's GETs from the server's ``DashboardReader``."""

    server: DashboardHTTPServer
    server_version = "lambdamr-dashboard"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(send_body=False)

    def _refuse(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "the dashboard is read-only: GET only"})

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815

    def _answer(self, *, send_body: bool) -> None:
        if not self._host_allowed():
            self._send(HTTPStatus.FORBIDDEN, {"error": "unexpected Host header"}, send_body=send_body)
            return
        path = urlsplit(self.path).path
        try:
            if path in STATIC_FILES:
                name, content_type = STATIC_FILES[path]
                self._send_bytes(HTTPStatus.OK, static_file(name), content_type, send_body=send_body)
                return
            reader = self.server.reader
            if path == "/api/jobs":
                body: Any = reader.jobs()
            elif match := _TASK.match(path):
                body = reader.task(match.group(1), int(match.group(2)))
            elif match := _JOB.match(path):
                body = reader.job(match.group(1))
            else:
                self._send(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path}"}, send_body=send_body)
                return
        except JobNotFound as exc:
            self._send(HTTPStatus.NOT_FOUND, {"error": str(exc)}, send_body=send_body)
            return
        except LambdaMRError as exc:  # storage unreachable, say: the page shows it and keeps polling
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)}, send_body=send_body)
            return
        self._send(HTTPStatus.OK, body, send_body=send_body)

    def _host_allowed(self) -> bool:
        if self.server.allowed_hosts is None:
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in self.server.allowed_hosts

    def _send(self, status: HTTPStatus, body: Any, *, send_body: bool = True) -> None:
        data = json.dumps(body, default=str, allow_nan=False).encode()
        self._send_bytes(status, data, "application/json", send_body=send_body)

    def _send_bytes(self, status: HTTPStatus, data: bytes, content_type: str, *, send_body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if send_body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        log.debug("lambdamr dashboard: " + format, *args)


class DashboardHTTPServer(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` that knows its reader and which ``Host`` headers to accept."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], reader: DashboardReader) -> None:
        super().__init__(address, DashboardHandler)
        self.reader = reader
        # Bound to loopback, only a loopback name may be asked for; bound elsewhere by choice,
        # the names the machine is reached by are not known here.
        loopback = address[0] in ("127.0.0.1", "localhost", "::1")
        self.allowed_hosts: frozenset[str] | None = frozenset(LOOPBACK_NAMES) if loopback else None


class Dashboard:
    """A running dashboard: ``url``, ``close()``; shows itself inline in a notebook."""

    def __init__(self, reader: DashboardReader, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        try:
            self._server = DashboardHTTPServer((host, port), reader)
        except OSError as exc:
            raise LambdaMRError(
                f"the dashboard cannot listen on {host}:{port}: {exc.strerror or exc}; pass another port "
                "(port=0 picks a free one)"
            ) from None
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="lambdamr-dashboard", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        shown = "127.0.0.1" if self.host in ("", "0.0.0.0") else f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}/"

    def serve_forever(self) -> None:
        """Block until interrupted (the command line)."""
        self._thread.join()

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _repr_html_(self) -> str:
        return (
            f'<p>lambdamr dashboard: <a href="{self.url}" target="_blank">{self.url}</a></p>'
            f'<iframe src="{self.url}" width="100%" height="640" style="border:1px solid #ccc"></iframe>'
        )

    def __repr__(self) -> str:
        return f"<lambdamr Dashboard {self.url}>"
