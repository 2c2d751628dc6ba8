"""HTTP(S) inputs of ``objects()``: their size and range support, and ranged reads, with urllib.

    driver   probe(url)          HEAD: Content-Length and Accept-Ranges (a ranged GET of one
                                 byte when HEAD says nothing or is refused: a presigned URL is
                                 signed for GET only)
    task     read_range(...)     GET with ``Range: bytes=a-b``, answered 206 with that range;
                                 a server without ranges: one GET of the whole object

A server that does not support ranges gets one chunk for the whole object (the driver warns);
one that advertised ranges and then answers a ranged GET with the whole object (200) is
refused rather than read once per chunk. The answers of the server (404, 403, 5xx...) become
lambdamr errors through the one table (``aws_errors``, API ``"http"``); messages show a URL
without its query string, where a presigned URL keeps its signature.

Only the standard library: it runs in every task and adds nothing to the layer.
"""

from __future__ import annotations

import http.client
import random
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from lambdamr.aws_errors import translate
from lambdamr.errors import ConfigurationError, LambdaMRError, StorageError

#: seconds a connection or a read may stall before the request counts as failed
TIMEOUT_S = 60.0
#: waits before the 2nd and 3rd attempt of a request the server failed for now (429, 5xx, reset)
RETRY_BACKOFF_S = (0.2, 1.0)
#: ``Content-Range: bytes 0-0/1234`` (or ``bytes */1234`` in a 416)
_CONTENT_RANGE = re.compile(r"^bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)$")
#: HEAD answers after which the driver asks again with a one-byte ranged GET
_HEAD_REFUSED = frozenset({403, 405, 501})


def is_http_url(location: str) -> bool:
    """Whether ``location`` is an ``http://`` or ``https://`` URL."""
    return location.startswith(("http://", "https://"))


def display_url(url: str) -> str:
    """``url`` without its query string and fragment: a presigned URL's signature stays out of
    messages and logs."""
    return url.split("?", 1)[0].split("#", 1)[0]


@dataclass(frozen=True)
class HttpObject:
    """What the driver learned about one URL: its size, and whether byte ranges can be read."""

    url: str
    size: int
    ranged: bool


def probe(url: str) -> HttpObject:
    """The size and range support of ``url``: one HEAD, plus a one-byte ranged GET when the
    HEAD does not say (no ``Accept-Ranges``) or is refused.

    Raises:
        ConfigurationError: the server names no size (no ``Content-Length``).
        ObjectNotFound / StoragePermissionError / StorageUnavailable / StorageError: what the
            server answered (through the error table).
    """
    shown = display_url(url)
    try:
        with _send(url, "HEAD", f"objects(): HEAD {shown}", tolerate=_HEAD_REFUSED) as head:
            length = head.headers.get("Content-Length")
            accepts = (head.headers.get("Accept-Ranges") or "").strip().lower()
            if length is not None and length.isdigit() and accepts in ("bytes", "none"):
                return HttpObject(url, int(length), accepts == "bytes")
    except _Refused:
        pass  # a presigned GET URL refuses HEAD; a server may not implement it
    try:
        with _send(url, "GET", f"objects(): GET {shown}", headers={"Range": "bytes=0-0"}, tolerate={416}) as answer:
            status, headers = answer.status, answer.headers
    except _Refused as refused:  # 416: nothing to range over, an empty object
        status, headers = refused.error.code, refused.error.headers
    if status in (206, 416):
        total = _content_range(headers.get("Content-Range"))[2]
        if total is not None:
            return HttpObject(url, total, status == 206)
    length = headers.get("Content-Length")
    if status == 200 and length is not None and length.isdigit():
        return HttpObject(url, int(length), False)  # its body is never read: the connection is closed
    raise ConfigurationError(
        f"objects(): {shown} names no size (no Content-Length in its answer to HEAD or GET): lambdamr "
        "splits inputs by size before any task runs; serve it with a Content-Length, or copy it to S3"
    )


def read_range(url: str, start: int, end: int, *, size: int, ranged: bool) -> bytes:
    """Bytes ``[start, end)`` of the object at ``url``, which had ``size`` bytes when listed.

    Raises:
        StorageError: the server ignored the range (answered 200 with the whole object) or the
            object changed size since it was listed; what the server answered otherwise.
    """
    end = min(end, size)
    if start >= end:
        return b""
    shown = display_url(url)
    if not ranged:  # one chunk: the whole object
        body = _get(url, f"reading {shown}", size=size)
        _check_size(shown, len(body), size)
        return body[start:end]
    body = _get(url, f"reading bytes {start}-{end - 1} of {shown}", size=size, byte_range=(start, end - 1))
    if len(body) != end - start:
        raise StorageError(
            f"reading bytes {start}-{end - 1} of {shown}: the server sent {len(body):,} bytes for a range "
            f"of {end - start:,}; the object changed since objects() listed it: list it again"
        )
    return body


class _Refused(Exception):
    """A tolerated error status: the caller asks another way."""

    def __init__(self, error: urllib.error.HTTPError) -> None:
        super().__init__(error.code)
        self.error = error


#: what a request may raise besides an error status: a refused or reset connection, a timeout
#: (OSError, URLError among them), a malformed or cut answer (http.client.HTTPException)
_CONNECTION_ERRORS = (OSError, http.client.HTTPException)


def _send(url: str, method: str, what: str, *, headers: dict[str, str] | None = None, tolerate: Any = ()) -> Any:
    """The open response to one request; retried while the server fails for now (429, 5xx, a
    reset), with backoff, at most three times.

    Raises:
        _Refused: the server answered a status in ``tolerate``.
    """
    request = urllib.request.Request(url, method=method, headers={"Accept-Encoding": "identity", **(headers or {})})
    for delay in (*RETRY_BACKOFF_S, None):
        try:
            return urllib.request.urlopen(request, timeout=TIMEOUT_S)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in tolerate:
                raise _Refused(exc) from exc
            error = translate(exc, "http", what, endpoint=display_url(url))
        except _CONNECTION_ERRORS as exc:
            error = translate(exc, "http", what, endpoint=display_url(url))
        if delay is None or not _retryable(error):
            raise error from error.__cause__
        time.sleep(delay * (0.5 + random.random()))
    raise AssertionError("unreachable")


def _get(url: str, what: str, *, size: int, byte_range: tuple[int, int] | None = None) -> bytes:
    """The body of a GET: of ``byte_range`` (first and last byte), answered 206 with that range,
    or of the whole object (None), answered 200. A connection cut mid-body is asked again."""
    headers = {} if byte_range is None else {"Range": f"bytes={byte_range[0]}-{byte_range[1]}"}
    whole = byte_range is None or byte_range == (0, size - 1)  # a 200 is the same bytes then
    for delay in (*RETRY_BACKOFF_S, None):
        with _send(url, "GET", what, headers=headers) as answer:
            if answer.status == 206 and byte_range is not None:
                first, _, total = _content_range(answer.headers.get("Content-Range"))
                if first != byte_range[0]:
                    raise StorageError(f"{what}: the server sent another range ({answer.headers.get('Content-Range')})")
                if total is not None:
                    _check_size(display_url(url), total, size)
            elif answer.status == 200 and not whole:
                raise StorageError(
                    f"{what}: the server ignored the Range header and answered 200 with the whole object, "
                    "although it advertised byte ranges; read it as one chunk (objects(..., "
                    "chunks_per_object=1)), or serve it from a server that honours ranges"
                )
            elif answer.status != 200:
                raise StorageError(f"{what}: the server answered {answer.status} {answer.reason}")
            try:
                return bytes(answer.read())
            except _CONNECTION_ERRORS as exc:  # cut mid-body (IncompleteRead), a reset, a timeout
                error = translate(exc, "http", what, endpoint=display_url(url))
                if delay is None or not _retryable(error):
                    raise error from exc
        time.sleep(delay * (0.5 + random.random()))
    raise AssertionError("unreachable")


def _retryable(error: LambdaMRError) -> bool:
    return bool(getattr(error, "retryable", False))


def _check_size(shown: str, now: int, listed: int) -> None:
    if now != listed:
        raise StorageError(
            f"{shown} has {now:,} bytes, but had {listed:,} when objects() listed it: the object changed; list it again"
        )


def _content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """(first, last, total) of a Content-Range header; None where it says ``*`` or is absent."""
    match = _CONTENT_RANGE.match((value or "").strip())
    if not match:
        return None, None, None
    first, last, total = match.groups()
    return (
        int(first) if first else None,
        int(last) if last else None,
        int(total) if total and total != "*" else None,
    )


__all__ = ["HttpObject", "display_url", "is_http_url", "probe", "read_range"]
