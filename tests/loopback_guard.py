"""A pytest plugin that keeps the test process on 127.0.0.1: no test may reach a public host.

Registered from ``tests/conftest.py``. For the whole test process it

* sets ``AWS_ENDPOINT_URL=http://127.0.0.1:9`` (the discard port, closed here), so a boto3
  client nobody pointed anywhere connects to nothing instead of to AWS — botocore applies it
  to every service without a service-specific ``AWS_ENDPOINT_URL_<SERVICE>``;
* wraps ``socket.getaddrinfo``, ``socket.create_connection`` and ``socket.socket.connect`` /
  ``connect_ex`` / ``sendto`` so that a name lookup of, or a connection to, anything but a
  loopback address raises ``NonLoopbackConnectionError`` naming the host — *before* the real
  call, so not one packet leaves the machine;
* fails the test during which such an attempt was made, even when the code under test caught
  the error (botocore wraps it, the AWS backend explains a lost task without its logs...).

Inside moto's in-process ``mock_aws`` the variable is lifted: moto answers requests addressed
to AWS's own hosts before any socket is opened, and would not recognise the loopback port.

Worker subprocesses (the local backend's, the Lambda stand-in's runtimes) do not load this
plugin: they inherit ``AWS_ENDPOINT_URL`` (and the fake credentials) through the environment,
which keeps their unconfigured AWS clients on the closed loopback port, but a raw socket there
is not guarded.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

#: where an AWS client nobody configured goes: the discard port on loopback, closed here
UNCONFIGURED_AWS_ENDPOINT = "http://127.0.0.1:9"
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


class NonLoopbackConnectionError(ConnectionRefusedError):
    """A test tried to reach a host that is not loopback."""


_attempts: list[str] = []
_attempts_lock = threading.Lock()
_real_getaddrinfo = socket.getaddrinfo
_real_create_connection = socket.create_connection
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_sendto = socket.socket.sendto


def is_loopback(host: Any) -> bool:
    """Whether ``host`` (a name, an address, or None for "this machine") is loopback."""
    if host is None or host == "":
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    name = str(host).strip("[]").split("%", 1)[0].lower()
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _refuse(host: Any, port: Any, via: str) -> None:
    target = f"{host}:{port}" if port is not None else str(host)
    with _attempts_lock:
        _attempts.append(target)
    raise NonLoopbackConnectionError(
        f"the test suite may only reach 127.0.0.1, but {via} was asked for {target}; point the "
        "client at the local stand-in or moto server (endpoint_url=...)"
    )


def _check_address(sock: socket.socket, address: Any, via: str) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple) and address:
        if not is_loopback(address[0]):
            _refuse(address[0], address[1] if len(address) > 1 else None, via)


def _getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    if not is_loopback(host):
        _refuse(host, port, "a name lookup (getaddrinfo)")
    return _real_getaddrinfo(host, port, *args, **kwargs)


def _create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
    if not is_loopback(address[0]):
        _refuse(address[0], address[1], "socket.create_connection")
    return _real_create_connection(address, *args, **kwargs)


def _connect(self: socket.socket, address: Any) -> None:
    _check_address(self, address, "socket.connect")
    return _real_connect(self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(self, address, "socket.connect_ex")
    return _real_connect_ex(self, address)


def _sendto(self: socket.socket, data: Any, *args: Any) -> int:
    _check_address(self, args[-1] if args else None, "socket.sendto")
    return _real_sendto(self, data, *args)


_lifted: list[str | None] = []  # AWS_ENDPOINT_URL values set aside by active moto mocks


def _lift_endpoint_inside_moto_mocks() -> None:
    try:
        from moto.core.models import MockAWS
    except ImportError:
        return
    real_start, real_stop = MockAWS.start, MockAWS.stop

    def start(self: Any, *args: Any, **kwargs: Any) -> None:
        _lifted.append(os.environ.pop("AWS_ENDPOINT_URL", None))
        real_start(self, *args, **kwargs)

    def stop(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            real_stop(self, *args, **kwargs)
        finally:
            value = _lifted.pop() if _lifted else None
            if value is not None:
                os.environ["AWS_ENDPOINT_URL"] = value

    MockAWS.start = start  # type: ignore[method-assign]
    MockAWS.stop = stop  # type: ignore[method-assign]


def install() -> None:
    """Guard this process's sockets and park unconfigured AWS clients on a closed port."""
    os.environ["AWS_ENDPOINT_URL"] = UNCONFIGURED_AWS_ENDPOINT
    _lift_endpoint_inside_moto_mocks()
    socket.getaddrinfo = _getaddrinfo
    socket.create_connection = _create_connection  # type: ignore[assignment]
    socket.socket.connect = _connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]
    socket.socket.sendto = _sendto  # type: ignore[method-assign, assignment]


def take_attempts() -> list[str]:
    """The non-loopback targets tried since the last call (and forget them)."""
    with _attempts_lock:
        taken = list(_attempts)
        _attempts.clear()
    return taken


@contextmanager
def expected_refusals() -> Iterator[list[str]]:
    """For the guard's own tests: collect the refusals made in the block, which then do not
    fail the test."""
    earlier = take_attempts()
    refused: list[str] = []
    try:
        yield refused
    finally:
        refused.extend(take_attempts())
        with _attempts_lock:
            _attempts[:0] = earlier


def fail_if_attempted() -> None:
    """Fail the current test if it tried to reach a non-loopback host."""
    attempts = take_attempts()
    if attempts:
        pytest.fail(
            "this test tried to reach a host outside 127.0.0.1: " + ", ".join(dict.fromkeys(attempts)),
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _loopback_only() -> Iterator[None]:
    take_attempts()  # what an earlier test's background threads did is not this test's
    yield
    fail_if_attempted()


install()
