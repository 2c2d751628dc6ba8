"""``objects()`` over HTTP(S) URLs: sizes from HEAD, ranged reads, servers without ranges, errors.

Everything is served by a server on 127.0.0.1 (tests/data/http_server.py); chunks are read
here, in the test process, as a task would read them.
"""

from __future__ import annotations

import logging
import random

import pytest

import lambdamr
from lambdamr.data import chunk as chunk_module
from lambdamr.data import http_source
from lambdamr.errors import (
    ConfigurationError,
    ObjectNotFound,
    StorageError,
    StoragePermissionError,
    StorageUnavailable,
)


def _text(seed: int, lines: int) -> bytes:
    rng = random.Random(seed)
    return "\n".join("".join(rng.choice("abc ") for _ in range(rng.choice([0, 1, 5, 30, 200]))) for _ in range(lines)).encode()


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    monkeypatch.setattr(http_source, "RETRY_BACKOFF_S", (0.0, 0.0))  # retried at once: the test counts them


# ---- what the driver learns: one HEAD, a ranged GET only when HEAD does not say -----------------
def test_a_server_with_ranges_is_probed_with_one_head(file_server):
    file_server.files["a.txt"] = b"x" * 1234
    found = http_source.probe(file_server.link("ranges", "a.txt"))
    assert (found.size, found.ranged) == (1234, True)
    assert [r[0] for r in file_server.asked()] == ["HEAD"]


@pytest.mark.parametrize(
    "behaviour, ranged, asked",
    [
        ("plain", False, [("HEAD", None), ("GET", "bytes=0-0")]),  # no Accept-Ranges: asked, answered 200
        ("nohead", True, [("HEAD", None), ("GET", "bytes=0-0")]),  # HEAD refused (presigned): 206 says it all
    ],
)
def test_when_head_does_not_say_a_one_byte_get_decides(file_server, behaviour, ranged, asked):
    file_server.files["a.txt"] = b"y" * 999
    found = http_source.probe(file_server.link(behaviour, "a.txt"))
    assert (found.size, found.ranged) == (999, ranged)
    assert [(method, header) for method, _, header in file_server.asked()] == asked


def test_an_empty_object_has_size_zero_and_no_chunk(file_server):
    file_server.files["empty.txt"] = b""
    file_server.files["a.txt"] = b"1\n2\n"
    assert http_source.probe(file_server.link("nohead", "empty.txt")).size == 0  # its 416 names the size
    chunks = lambdamr.objects([file_server.link("ranges", "empty.txt"), file_server.link("ranges", "a.txt")]).resolve()
    assert [(c.url.rsplit("/", 1)[-1], c.start, c.end) for c in chunks] == [("a.txt", 0, 4)]


# ---- reading: ranges, lines, servers without ranges -----------------------------------------------
@pytest.mark.parametrize("overshoot", [5, 64 * 1024])
def test_every_line_is_read_by_exactly_one_chunk_over_http(file_server, monkeypatch, overshoot):
    monkeypatch.setattr(chunk_module, "LINE_OVERSHOOT", overshoot)  # 5: lines longer than it need more GETs
    data = _text(7, 60)
    file_server.files["t.txt"] = data
    for chunk_bytes in (3, 7, 40, 301, len(data)):
        chunks = lambdamr.objects(file_server.link("ranges", "t.txt"), chunk_bytes=chunk_bytes).resolve()
        assert b"".join(c.read() for c in chunks) == data, chunk_bytes
    file_server.forget()
    chunks = lambdamr.objects(file_server.link("ranges", "t.txt"), chunks_per_object=4, lines=False).resolve()
    assert [len(c.read()) for c in chunks] == [len(c) for c in chunks] and len(chunks) == 4
    ranges = [header for method, _, header in file_server.asked("GET")]
    assert ranges == [f"bytes={c.start}-{c.end - 1}" for c in chunks]  # one ranged GET per chunk, nothing more


def test_a_server_without_ranges_is_one_chunk_read_whole_and_the_driver_says_so(file_server, caplog):
    data = _text(8, 40) + b"\n"
    file_server.files["t.txt"] = data
    url = file_server.link("plain", "t.txt")
    with caplog.at_level(logging.WARNING, logger="lambdamr"):
        chunks = lambdamr.objects(url, chunks_per_object=5).resolve()
    assert len(chunks) == 1 and (chunks[0].start, chunks[0].end) == (0, len(data))
    assert "serve(s) no byte ranges" in caplog.text and url in caplog.text
    assert "whole" in repr(chunks[0])
    file_server.forget()
    assert chunks[0].read() == data
    assert [(m, h) for m, _, h in file_server.asked()] == [("GET", None)]  # no Range header sent


def test_a_server_that_advertises_ranges_and_ignores_them_is_refused(file_server):
    file_server.files["t.txt"] = b"a\nb\nc\nd\n" * 10
    chunks = lambdamr.objects(file_server.link("liar", "t.txt"), chunks_per_object=2).resolve()
    assert len(chunks) == 2
    with pytest.raises(StorageError, match="ignored the Range header.*chunks_per_object=1"):
        chunks[1].read()


def test_an_object_that_changed_since_it_was_listed_is_refused(file_server):
    file_server.files["t.txt"] = b"0123456789" * 10
    first, second = lambdamr.objects(file_server.link("ranges", "t.txt"), chunks_per_object=2, lines=False).resolve()
    file_server.files["t.txt"] = b"0123456789" * 11
    with pytest.raises(StorageError, match="had 100 when objects\\(\\) listed it"):
        second.read()
    file_server.files["t.txt"] = b"0123"  # shrank below the range: the server answers 416
    with pytest.raises(StorageError, match="416"):
        second.read()


# ---- errors, through the table ------------------------------------------------------------------
def test_missing_forbidden_and_sizeless_objects_are_refused_when_listed(file_server):
    file_server.files["secret.txt"] = b"s"
    file_server.files["a.txt"] = b"a"
    with pytest.raises(ObjectNotFound, match="no such object \\(HTTP 404"):
        lambdamr.objects(file_server.link("ranges", "missing.txt")).resolve()
    with pytest.raises(StoragePermissionError, match="HTTP 403.*presigned"):
        lambdamr.objects(file_server.link("ranges", "secret.txt")).resolve()
    with pytest.raises(ConfigurationError, match="names no size \\(no Content-Length"):
        lambdamr.objects(file_server.link("nolength", "a.txt")).resolve()


def test_a_presigned_signature_stays_out_of_messages(file_server):
    url = file_server.link("ranges", "missing.txt", query="X-Amz-Signature=topsecret")
    with pytest.raises(ObjectNotFound) as caught:
        lambdamr.objects(url).resolve()
    assert "topsecret" not in str(caught.value) and "/ranges/missing.txt" in str(caught.value)


def test_a_server_failing_for_now_is_asked_three_times(file_server):
    file_server.files["a.txt"] = b"1\n2\n"
    file_server.failures = 2
    (chunk,) = lambdamr.objects(file_server.link("flaky", "a.txt")).resolve()  # HEAD: 503, 503, then 200
    assert [m for m, _, _ in file_server.asked()] == ["HEAD"] * 3
    file_server.forget()
    assert chunk.read() == b"1\n2\n"  # GET: 503, 503, then 206
    file_server.forget()
    file_server.failures = 3
    with pytest.raises(StorageUnavailable, match="HTTP 503.*retry later"):
        chunk.read()
    assert len(file_server.asked()) == 3


def test_a_server_that_is_not_there_is_unavailable():
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(StorageUnavailable, match="no answer from the server"):
        lambdamr.objects(f"http://127.0.0.1:{port}/a.txt").resolve()


def test_urls_are_checked_when_given():
    with pytest.raises(ConfigurationError, match="names no host"):
        lambdamr.objects("https:///a.txt")
    with pytest.raises(ConfigurationError, match="give s3://bucket/prefix, an http"):
        lambdamr.objects("ftp://host/a.txt").resolve()


def test_a_task_that_reads_no_url_does_not_import_urllib():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(lambdamr.__file__).resolve().parents[1]
    code = (
        "import sys, lambdamr.data.objects, lambdamr.shuffle.mapper\n"
        "print(sorted(m for m in ('urllib.request', 'http.client', 'lambdamr.data.object_listing') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # a cold start pays for them only when a chunk of a URL is read
