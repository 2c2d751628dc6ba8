"""The loopback guard (tests/loopback_guard.py) refuses every host outside 127.0.0.1 before
a packet is sent, names the host, fails the test that tried, and parks unconfigured AWS
clients on a closed loopback port."""

from __future__ import annotations

import os
import socket

import boto3
import pytest

from tests.loopback_guard import (
    UNCONFIGURED_AWS_ENDPOINT,
    NonLoopbackConnectionError,
    expected_refusals,
    fail_if_attempted,
    is_loopback,
)

TEST_NET = "192.0.2.1"  # RFC 5737 TEST-NET-1: documentation only, never routed


def _connect_started(address: tuple[str, int]) -> bool:
    """Try a non-blocking connect; whether the kernel started one (the socket got a local
    port, as any real connect does, even one still in progress or refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        try:
            sock.connect(address)
        except NonLoopbackConnectionError:
            raise
        except OSError:  # in progress, or refused
            pass
        return sock.getsockname()[1] != 0


def test_a_connect_to_a_public_address_is_refused_before_the_kernel_sees_it():
    assert _connect_started(("127.0.0.1", 9))  # the control: a real connect binds a local port
    with expected_refusals() as refused:
        with pytest.raises(NonLoopbackConnectionError, match=f"{TEST_NET}:80"):
            _connect_started((TEST_NET, 80))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setblocking(False)
            with pytest.raises(NonLoopbackConnectionError):
                sock.connect((TEST_NET, 80))
            assert sock.getsockname() == ("0.0.0.0", 0)  # never bound: no connection was started
    assert refused == [f"{TEST_NET}:80", f"{TEST_NET}:80"]


@pytest.mark.parametrize(
    "attempt",
    [
        lambda: socket.create_connection(("lambda.us-east-1.amazonaws.com", 443), timeout=1),
        lambda: socket.getaddrinfo("logs.us-east-1.amazonaws.com", 443),
        lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).connect_ex((TEST_NET, 443)),
        lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", (TEST_NET, 53)),
    ],
    ids=["create_connection", "getaddrinfo", "connect_ex", "sendto"],
)
def test_every_way_out_is_guarded(attempt):
    with expected_refusals() as refused, pytest.raises(NonLoopbackConnectionError, match="only reach 127.0.0.1"):
        attempt()
    assert len(refused) == 1


def test_a_caught_refusal_still_fails_the_test():
    with expected_refusals():
        try:
            socket.getaddrinfo("s3.amazonaws.com", 443)
        except OSError:
            pass  # what botocore, or a broad except in the code under test, would do
        with pytest.raises(pytest.fail.Exception, match="s3.amazonaws.com:443"):
            fail_if_attempted()


def test_loopback_is_allowed(tmp_path):
    server = socket.create_server(("127.0.0.1", 0))
    with server, socket.create_connection(server.getsockname(), timeout=5):
        pass
    assert socket.getaddrinfo("localhost", 80)
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.5.5.5", "::1", "[::1]", "localhost", None))
    assert not any(is_loopback(h) for h in (TEST_NET, "10.0.0.1", "amazonaws.com", "0.0.0.0"))
    with socket.socket(socket.AF_UNIX) as unix:  # local IPC is not network traffic
        unix.bind(str(tmp_path / "s"))


def test_an_aws_client_nobody_configured_cannot_reach_aws():
    assert os.environ["AWS_ENDPOINT_URL"] == UNCONFIGURED_AWS_ENDPOINT
    for service in ("lambda", "logs", "s3", "sts", "iam"):
        assert boto3.client(service, region_name="us-east-1").meta.endpoint_url == UNCONFIGURED_AWS_ENDPOINT


def test_moto_mocks_answer_aws_hosts_in_process_with_the_variable_lifted():
    from moto import mock_aws

    with mock_aws():
        assert "AWS_ENDPOINT_URL" not in os.environ
        s3 = boto3.client("s3", region_name="us-east-1")
        assert s3.meta.endpoint_url == "https://s3.amazonaws.com"
        s3.create_bucket(Bucket="answered-in-process")  # moto answers; no socket is opened
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["answered-in-process"]
    assert os.environ["AWS_ENDPOINT_URL"] == UNCONFIGURED_AWS_ENDPOINT


def _aws_endpoint_seen_here() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL")


def test_worker_processes_inherit_the_parked_endpoint(tmp_path):
    from lambdamr import LambdaExecutor

    with LambdaExecutor(storage=str(tmp_path / "store"), workers=1, progress=False) as executor:
        assert executor.submit(_aws_endpoint_seen_here).result(timeout=60) == UNCONFIGURED_AWS_ENDPOINT
