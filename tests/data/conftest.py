"""Fixtures of the data tests: an HTTP server on 127.0.0.1 for ``objects()``' URL inputs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.data.http_server import FileServer, serve_files


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    """A server of its own for one test (tests/data/http_server.py: its behaviours)."""
    with serve_files() as server:
        yield server
