"""A small HTTP server on 127.0.0.1 for ``objects()``' HTTP(S) inputs, in the behaviours real
servers have: byte ranges served (206), not served (the stdlib's own ``http.server``: 200),
advertised but ignored, HEAD refused (a presigned GET URL), no Content-Length, errors.

The first path segment picks the behaviour, the rest names a file: ``/ranges/a.txt``.
Every request is recorded (method, path, Range header) so tests count what was asked.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

#: behaviour -> what the server does
BEHAVIOURS = {
    "ranges": "Accept-Ranges: bytes; a ranged GET is answered 206 with Content-Range",
    "plain": "no Accept-Ranges; Range is ignored, every GET is 200 with the whole file",
    "liar": "HEAD says Accept-Ranges: bytes, but a ranged GET is answered 200 with the whole file",
    "nohead": "HEAD is refused with 403 (a URL presigned for GET); ranged GETs work",
    "nolength": "no Content-Length anywhere (the body ends when the connection closes)",
    "flaky": "503 for the first `failures` requests of each file, then like ranges",
}
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class FileServer:
    """The files it serves (path -> bytes), what it was asked, and its base URL."""

    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    failures: int = 0  # for "flaky": errors before a file is served
    url: str = ""
    _failed: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def link(self, behaviour: str, name: str, query: str = "") -> str:
        """The URL of ``name`` served with ``behaviour``."""
        assert behaviour in BEHAVIOURS, behaviour
        return f"{self.url}/{behaviour}/{name}" + (f"?{query}" if query else "")

    def asked(self, method: str | None = None) -> list[tuple[str, str, str | None]]:
        """The requests received (of one method), in order."""
        with self._lock:
            return [r for r in self.requests if method is None or r[0] == method]

    def forget(self) -> None:
        with self._lock:
            self.requests.clear()
            self._failed.clear()


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:
            self._answer(head=True)

        def do_GET(self) -> None:
            self._answer(head=False)

        def _answer(self, *, head: bool) -> None:
            path = urlsplit(self.path).path
            behaviour, _, name = path.lstrip("/").partition("/")
            asked = self.headers.get("Range")
            with server._lock:
                server.requests.append((self.command, path, asked))
            data = server.files.get(name)
            if behaviour not in BEHAVIOURS or data is None:
                return self._status(404, "Not Found")
            if name.startswith("secret"):
                return self._status(403, "Forbidden")
            if behaviour == "flaky":
                with server._lock:
                    failed = server._failed.get(name, 0)
                    server._failed[name] = failed + 1
                if failed < server.failures:
                    return self._status(503, "Service Unavailable")
            if behaviour == "nohead" and head:
                return self._status(403, "Forbidden")
            if behaviour == "nolength":
                self.protocol_version = "HTTP/1.0"
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                if not head:
                    self.wfile.write(data)
                self.close_connection = True
                return None
            ranged = behaviour in ("ranges", "nohead", "flaky")
            match = _RANGE.match(asked or "") if ranged and not head else None
            if match:
                first = int(match.group(1))
                last = min(int(match.group(2)) if match.group(2) else len(data) - 1, len(data) - 1)
                if first >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                body = data[first : last + 1]
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
            else:
                body = data
                self.send_response(200)
            if behaviour in ("ranges", "liar", "flaky"):
                self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)
            return None

        def _status(self, code: int, reason: str) -> None:
            body = reason.encode()
            self.send_response(code, reason)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    return Handler


@contextmanager
def serve_files() -> Iterator[FileServer]:
    """A ``FileServer`` on 127.0.0.1 (a free port), stopped after."""
    server = FileServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    httpd.daemon_threads = True
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="test-http-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
