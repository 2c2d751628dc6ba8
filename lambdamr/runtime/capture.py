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

When the last capture ends, the original streams come back and the handler is removed —
except in a process that only runs tasks (a local worker, a Lambda container:
``keep_installed()``), where both stay and pass writes between tasks straight through, so
that a task pays for its own buffer only.
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
from collections.abc import Iterable
from typing import Any, TextIO

HEAD_CHARS = 16 * 1024
TAIL_CHARS = 48 * 1024
LOG_FORMAT = "[%(levelname)s] %(name)s: %(message)s"
TAIL_LINES = 20


class CapturedText:
    """A thread-safe text buffer that keeps its first ``head`` and last ``tail`` characters."""

    # one per task: slots make it cheaper to build (most tasks print nothing into it)
    __slots__ = ("tee", "dropped", "_head_max", "_tail_max", "_head", "_head_len", "_tail", "_tail_len", "_lock")

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
        if not self._head and not self._tail:  # nothing written (most tasks)
            return ""
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

    def writelines(self, lines: Iterable[str]) -> None:  # type: ignore[override]
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

    def __getattr__(self, name: str) -> Any:
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
_routers: tuple[_Router, _Router] | None = None  # reused while the real streams stay the same
_handler = _RecordCapture()
_handler.setFormatter(logging.Formatter(LOG_FORMAT))
_keep_installed = False


def _route() -> CapturedText | None:
    captured = _by_thread.get(threading.get_ident())
    return captured if captured is not None else _adopter


def _install() -> None:
    global _saved, _routers
    if _saved is not None:  # still installed: a process that keeps its capture between tasks
        if sys.stdout is not _routers[0] or sys.stderr is not _routers[1]:  # type: ignore[index]
            _restore_streams()  # the last task put its own stream there
            _install()
        return
    _saved = (sys.stdout, sys.stderr)
    if _routers is None or (_routers[0].real, _routers[1].real) != _saved:
        _routers = (_Router(sys.stdout), _Router(sys.stderr))
    sys.stdout, sys.stderr = _routers
    logging.getLogger().addHandler(_handler)


def _restore_streams() -> None:
    global _saved
    if _saved is not None:
        for stream in (sys.stdout, sys.stderr):
            if not isinstance(stream, _Router):  # the task put its own stream there
                try:
                    stream.flush()
                except Exception:  # it may be closed already
                    pass
        sys.stdout, sys.stderr = _saved
        _saved = None


def _uninstall() -> None:
    if _keep_installed:  # a runtime process: the next task captures again at no cost
        if sys.stdout is not _routers[0] or sys.stderr is not _routers[1]:  # type: ignore[index]
            _restore_streams()  # the task put its own stream there: the real ones come back
            _install()
        return
    logging.getLogger().removeHandler(_handler)
    _restore_streams()


def keep_installed() -> None:
    """Leave the capture machinery in place between tasks (a process that only runs tasks:
    a local worker, a Lambda container), so a task pays for none of it but its own buffer.
    Between tasks, writes go straight through to the real streams."""
    global _keep_installed
    _keep_installed = True


def on_lambda() -> bool:
    """Whether this process is an AWS Lambda execution environment."""
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def capture_enabled() -> bool:
    """Capture is on unless ``LAMBDAMR_LOG_CAPTURE=0`` is set in the runtime's environment."""
    return os.environ.get("LAMBDAMR_LOG_CAPTURE", "1").strip().lower() not in ("0", "false", "no", "off")


# Read once: a Lambda container's or a worker's environment does not change between tasks.
_ENABLED = capture_enabled()
_TEE = on_lambda()
if _TEE:
    keep_installed()


class capture_task_output:  # noqa: N801 - used like a function: ``with capture_task_output():``
    """Capture stdout, stderr and logging records of the task run by the calling thread.

    Args:
        head / tail: characters kept from the start and from the end of the output.
        tee: also write to the real streams; ``None`` means "on AWS Lambda" (CloudWatch).
    """

    __slots__ = ("captured", "_ident", "_active")

    def __init__(self, *, head: int = HEAD_CHARS, tail: int = TAIL_CHARS, tee: bool | None = None) -> None:
        self.captured = CapturedText(head, tail, _TEE if tee is None else tee)
        self._ident = 0
        self._active = False

    def __enter__(self) -> CapturedText:
        global _adopter
        if not _ENABLED:
            return self.captured
        self._ident = threading.get_ident()
        with _lock:
            if not _by_thread:
                _install()
            _by_thread[self._ident] = self.captured
            if self._ident == threading.main_thread().ident:
                _adopter = self.captured  # the process is the task's: so are its threads' writes
        self._active = True
        return self.captured

    def __exit__(self, *exc_info: object) -> None:
        global _adopter
        if not self._active:
            return
        self._active = False
        with _lock:
            _by_thread.pop(self._ident, None)
            if _adopter is self.captured:
                _adopter = None
            if not _by_thread:
                _uninstall()


def current_output() -> str | None:
    """What the task running on the main thread has printed so far (None when no task runs).

    For a watchdog thread that must report on a task about to be stopped (out of memory)."""
    adopter = _adopter
    return adopter.text() if adopter is not None else None


def log_tail(text: str | None, lines: int = TAIL_LINES, chars: int = 4000) -> str:
    """The last ``lines`` lines (at most ``chars`` characters) of a task's log."""
    if not text:
        return ""
    tail = "\n".join(text.rstrip("\n").splitlines()[-lines:])
    return tail[-chars:]
