"""Capturing what a task prints and logs, inside the runtime.

``capture_task_output()`` wraps one task's execution::

    with capture_task_output() as captured:
        run the user's calls
    header["logs"] = captured.text()

While a capture is active:

* ``sys.stdout`` and ``sys.stderr`` are a ``_Router`` that sends each write to the capture of
  the thread that made it. A task running on the main thread owns its process (a Lambda
  container, a local worker), so writes from threads it started are its output too; a task on
  another thread (the inline backend, inside the driver) gets only its own thread's writes,
  and the driver's other threads keep printing to the terminal.
* a handler on the root logger formats every ``logging`` record that reaches it into the
  same buffer, in order with the prints — unless another handler on the record's path already
  writes it to the routed streams (it is then captured once, as text).
* the text is bounded: the first ``head`` and last ``tail`` characters are kept, and a line in
  between says how many were dropped.
* with ``tee`` (on by default on AWS Lambda) writes also reach the real stream, so CloudWatch
  still shows them.

When the last capture ends, the original streams come back and the handler is removed.
Output written straight to file descriptors 1 and 2 (C extensions, subprocesses) is not
captured: on Lambda it still reaches CloudWatch.
"""

from __future__ import annotations

import collections
import io
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

HEAD_CHARS = 16 * 1024
TAIL_CHARS = 48 * 1024
LOG_FORMAT = "[%(levelname)s] %(name)s: %(message)s"
TAIL_LINES = 20


class CapturedText:
    """A thread-safe text buffer that keeps its first ``head`` and last ``tail`` characters."""

    def __init__(self, head: int = HEAD_CHARS, tail: int = TAIL_CHARS, tee: bool = False) -> None:
        self.tee = tee
        self.dropped = 0
        self._head_max = head
        self._tail_max = tail
        self._head: list[str] = []
        self._head_len = 0
        self._tail: collections.deque[str] = collections.deque()
        self._tail_len = 0
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        """Append ``text``, dropping from the middle once past the bounds."""
        with self._lock:
            room = self._head_max - self._head_len
            if room > 0:
                part = text[:room]
                self._head.append(part)
                self._head_len += len(part)
                if len(text) <= room:
                    return
                text = text[room:]
            self._tail.append(text)
            self._tail_len += len(text)
            while self._tail_len > self._tail_max:
                excess = self._tail_len - self._tail_max
                first = self._tail[0]
                if len(first) <= excess:
                    self._tail.popleft()
                    cut = len(first)
                else:
                    self._tail[0] = first[excess:]
                    cut = excess
                self._tail_len -= cut
                self.dropped += cut

    def text(self) -> str:
        """Everything kept, with a marker where characters were dropped."""
        with self._lock:
            head = "".join(self._head)
            tail = "".join(self._tail)
            if not self.dropped:
                return head + tail
            return f"{head}\n... [{self.dropped} characters of output dropped] ...\n{tail}"


class _Router(io.TextIOBase):
    """Stands in for ``sys.stdout`` / ``sys.stderr``: each write goes to its thread's capture."""

    def __init__(self, real: TextIO) -> None:
        super().__init__()
        self.real = real

    def write(self, text: str) -> int:
        captured = _route()
        if captured is None:
            return self.real.write(text)
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        captured.write(text)
        if captured.tee:
            self.real.write(text)
        return len(text)

    def writelines(self, lines) -> None:  # type: ignore[override]
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.real.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False if _route() is not None else self.real.isatty()

    def fileno(self) -> int:
        return self.real.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.real, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.real, "errors", None)

    def __getattr__(self, name: str):
        return getattr(self.real, name)  # .buffer, .mode, .line_buffering...


class _RecordCapture(logging.Handler):
    """Root-logger handler that writes records into the emitting thread's capture."""

    def emit(self, record: logging.LogRecord) -> None:
        captured = _route()
        if captured is None or _streamed_elsewhere(record, self):
            return
        try:
            captured.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def _streamed_elsewhere(record: logging.LogRecord, own: logging.Handler) -> bool:
    """Whether another handler on the record's path writes it to a routed stream (and so
    it is captured as text already)."""
    logger: logging.Logger | None = logging.getLogger(record.name)
    while logger is not None:
        for handler in logger.handlers:
            if handler is not own and isinstance(handler, logging.StreamHandler):
                if isinstance(handler.stream, _Router) and record.levelno >= handler.level:
                    return True
        if not logger.propagate:
            break
        logger = logger.parent
    return False


# Process-wide state, changed under _lock only. _by_thread maps a thread id to its capture;
# _adopter is the capture that owns the process (its task runs on the main thread).
_lock = threading.Lock()
_by_thread: dict[int, CapturedText] = {}
_adopter: CapturedText | None = None
_saved: tuple[TextIO, TextIO] | None = None
_handler = _RecordCapture()
_handler.setFormatter(logging.Formatter(LOG_FORMAT))


def _route() -> CapturedText | None:
    captured = _by_thread.get(threading.get_ident())
    return captured if captured is not None else _adopter


def _install() -> None:
    global _saved
    _saved = (sys.stdout, sys.stderr)
    sys.stdout = _Router(sys.stdout)  # type: ignore[assignment]
    sys.stderr = _Router(sys.stderr)  # type: ignore[assignment]
    logging.getLogger().addHandler(_handler)


def _uninstall() -> None:
    global _saved
    logging.getLogger().removeHandler(_handler)
    if _saved is not None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a stream the task replaced and closed
                pass
        sys.stdout, sys.stderr = _saved
        _saved = None


def on_lambda() -> bool:
    """Whether this process is an AWS Lambda execution environment."""
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def capture_enabled() -> bool:
    """Capture is on unless ``LAMBDAMR_LOG_CAPTURE=0`` is set in the runtime's environment."""
    return os.environ.get("LAMBDAMR_LOG_CAPTURE", "1").strip().lower() not in ("0", "false", "no", "off")


@contextmanager
def capture_task_output(
    *, head: int = HEAD_CHARS, tail: int = TAIL_CHARS, tee: bool | None = None
) -> Iterator[CapturedText]:
    """Capture stdout, stderr and logging records of the task run by the calling thread.

    Args:
        head / tail: characters kept from the start and from the end of the output.
        tee: also write to the real streams; ``None`` means "on AWS Lambda" (CloudWatch).
    """
    global _adopter
    captured = CapturedText(head, tail, on_lambda() if tee is None else tee)
    if not capture_enabled():
        yield captured
        return
    ident = threading.get_ident()
    owns_process = threading.current_thread() is threading.main_thread()
    with _lock:
        if not _by_thread:
            _install()
        _by_thread[ident] = captured
        if owns_process:
            _adopter = captured
    try:
        yield captured
    finally:
        with _lock:
            _by_thread.pop(ident, None)
            if _adopter is captured:
                _adopter = None
            if not _by_thread:
                _uninstall()


def log_tail(text: str | None, lines: int = TAIL_LINES, chars: int = 4000) -> str:
    """The last ``lines`` lines (at most ``chars`` characters) of a task's log."""
    if not text:
        return ""
    tail = "\n".join(text.rstrip("\n").splitlines()[-lines:])
    return tail[-chars:]
