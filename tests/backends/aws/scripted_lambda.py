"""A scripted Invoke endpoint on 127.0.0.1 (plain HTTP or TLS with a throwaway certificate),
for testing the driver's invoke clients against real sockets: each POST is answered by the
next step of a script — a status with headers and a body, or no answer at all."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

#: a script step that accepts the request and never answers it
HANG = "hang"


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


ACCEPTED = Answer(202, headers={"x-amzn-RequestId": "req-accepted"})


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A new key and a self-signed certificate for 127.0.0.1 (PEM files in ``folder``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lambdamr test endpoint")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "endpoint-cert.pem", folder / "endpoint-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class ScriptedLambda:
    """The server; ``requests`` records (path, headers) of every POST received."""

    def __init__(self, *script: Answer | str, certificate: tuple[Path, Path] | None = None) -> None:
        self.script = list(script)
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.received = threading.Semaphore(0)  # released once per request read
        self._release = threading.Event()  # ends every HANG step
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer._lock:
                    outer.requests.append((self.path, dict(self.headers)))
                    step = outer.script.pop(0) if outer.script else ACCEPTED
                outer.received.release()
                if step == HANG:
                    outer._release.wait()
                    self.close_connection = True
                    return
                assert isinstance(step, Answer)
                self.send_response(step.status)
                for name, value in step.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(step.body)))
                self.end_headers()
                self.wfile.write(step.body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.scheme = "http"
        if certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(certificate[0]), str(certificate[1]))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> ScriptedLambda:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def scripted_lambda(*script: Answer | str, certificate: tuple[Path, Path] | None = None) -> Iterator[ScriptedLambda]:
    server = ScriptedLambda(*script, certificate=certificate).start()
    try:
        yield server
    finally:
        server.stop()
