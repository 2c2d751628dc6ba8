"""A local worker: one fresh Python process that runs the runtime, like a warm Lambda
container. Started by ``LocalBackend`` as ``python -m lambdamr.backends.local_worker FD PREFIX``.

It talks to the driver over one socket (``FD``) in the frames of ``local_wire``. Once its
imports are done the worker sends READY: until then nothing it was sent has started, so a
worker killed while starting costs its tasks no attempt. It keeps the jobs it was sent (their
constant fields, their store) and the tasks queued for it, runs each through
``runtime.handler.run_task`` — the same runtime, records and signatures as on Lambda — and
sends the completions back a few at a time in one signed frame; like Lambda's
``FunctionError``, a failure of the runtime itself is reported as the task's error.

Memory is watched like Lambda does: a thread samples the resident set size and, when it
passes the task's limit, reports ``Runtime.OutOfMemory`` and ends the process.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from types import ModuleType

from lambdamr.backends import local_wire as wire
from lambdamr.errors import ProtocolError
from lambdamr.protocol import TaskEvent

#: ``lambdamr.runtime.handler``, imported by ``serve`` (the driver imports this module for
#: its constants and never runs a task: it does not load the runtime)
handler: ModuleType

OUT_OF_MEMORY = "Runtime.OutOfMemory"
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MEMORY_SAMPLE_S = 0.02
#: completions of short tasks wait at most this long (or until the worker is about to run
#: out of queued tasks) to go back together in one frame
HOLD_MAX_S = 0.001
HOLD_MAX_BYTES = 1024 * 1024
#: send what is held once this few tasks are left queued (the driver refills meanwhile);
#: the local backend passes half its prefetch
LOW_WATER_ENV = "LAMBDAMR_LOCAL_LOW_WATER"
LOW_WATER = int(os.environ.get(LOW_WATER_ENV, "1"))
#: the local backend's ``enforce_memory``, passed in the environment
ENFORCE_MEMORY_ENV = "LAMBDAMR_LOCAL_ENFORCE_MEMORY"
_ENFORCE_MEMORY = os.environ.get(ENFORCE_MEMORY_ENV, "1") != "0"


class LocalContext:
    """The attributes of AWS Lambda's context object that user code commonly reads."""

    function_name = "lambdamr-local"
    function_version = "$LATEST"
    log_group_name = "local"
    log_stream_name = "local"

    def __init__(self, request_id: str, memory_mb: int, deadline: float) -> None:
        self.aws_request_id = request_id
        self.memory_limit_in_mb = str(memory_mb)
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{self.function_name}"
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the task's timeout."""
        return max(0, int((self._deadline - time.time()) * 1000))


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE_SIZE
    except OSError:  # not Linux: fall back to the peak, which only ever grows
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


class _MemoryWatch(threading.Thread):
    """Ends the process, after telling the driver, when RSS passes the current limit, and
    without a word when the driver process is gone (no orphans left computing). On the way it
    sends completions held longer than ``HOLD_MAX_S`` while a task runs (so a result never
    waits behind a long task that came after it)."""

    def __init__(self, sock: socket.socket, send_lock: threading.Lock, done: _Completions) -> None:
        super().__init__(name="lambdamr-memory-watch", daemon=True)
        self.sock = sock
        self.send_lock = send_lock
        self.done = done
        self.limit_bytes = 0
        self.request_number = 0

    def run(self) -> None:
        parent = os.getppid()
        while True:
            time.sleep(MEMORY_SAMPLE_S)
            if os.getppid() != parent:  # the driver died: no one will read the result
                os._exit(0)
            self.done.send_if_held(HOLD_MAX_S)
            limit = self.limit_bytes
            if limit and _rss_bytes() > limit:
                from lambdamr.runtime.capture import current_output, log_tail

                error = {
                    "errorType": OUT_OF_MEMORY,
                    "errorMessage": f"the task used more than its {limit // (1024 * 1024)} MB of memory",
                    "logs": log_tail(current_output()),
                }
                try:  # the tasks before this one did finish: their results first (unless stuck)
                    self.done.send(lock_timeout_s=MEMORY_SAMPLE_S)
                finally:
                    with self.send_lock:
                        try:
                            wire.send_parts(self.sock, wire.encode_fatal(self.request_number, error))
                        finally:
                            os._exit(137)


class _Completions:
    """Completions waiting to go back to the driver in one signed frame.

    Short tasks are reported in batches; a task that ran for ``HOLD_MAX_S`` or longer, a
    batch that waited that long, or a worker about to run out of queued tasks sends at once,
    so the driver refills the worker before it idles; while a task runs, the memory watch
    sends what waited longer (``send_if_held``), so a result never waits on another task.
    Both threads use it: ``_lock`` guards what is held.
    """

    def __init__(self, sock: socket.socket, send_lock: threading.Lock, key: bytes) -> None:
        self.sock = sock
        self.send_lock = send_lock
        self.key = key
        self.parts: list[bytes | memoryview] = []
        self.count = 0
        self.size = 0
        self.since = 0.0
        self._lock = threading.Lock()

    def add(self, parts: list[bytes | memoryview]) -> None:
        with self._lock:
            if not self.count:
                self.since = time.monotonic()
            self.parts += parts
            self.count += 1
            self.size += sum(len(p) for p in parts)

    def due(self, queued: int, ran_s: float) -> bool:
        """Whether to send now, with ``queued`` tasks still to run and the last one having run ``ran_s``.

        Once as the queue comes down to ``LOW_WATER`` (the driver refills it meanwhile), then
        again when it is empty: not after each of the last few tasks.
        """
        return (
            queued == LOW_WATER
            or not queued
            or ran_s >= HOLD_MAX_S
            or time.monotonic() - self.since >= HOLD_MAX_S
            or self.size >= HOLD_MAX_BYTES
            or self.count >= wire.MAX_PER_FRAME
        )

    def send(self, lock_timeout_s: float = -1) -> None:
        """Send what is held; with ``lock_timeout_s``, give up when the other thread holds it
        that long (the memory watch must not wait on a task's thread to do its own job)."""
        if not self._lock.acquire(timeout=lock_timeout_s):
            return
        try:
            if not self.count:
                return
            data = wire.encode_done(self.key, self.count, self.parts)
            self.parts, self.count, self.size = [], 0, 0
            with self.send_lock:  # in order with the frames of the other thread
                wire.send_parts(self.sock, data)
        finally:
            self._lock.release()

    def send_if_held(self, longer_than_s: float) -> None:
        """Send what has waited longer than ``longer_than_s`` (from the memory watch's thread)."""
        if self.count and time.monotonic() - self.since > longer_than_s:
            self.send(lock_timeout_s=0)  # held by the task's thread: it is sending them itself


def _run_one(
    number: int, slot: int, event: TaskEvent, jobs: wire.WorkerJobs, id_prefix: str, watch: _MemoryWatch
) -> list[bytes | memoryview]:
    """Run one task through the runtime; the parts of its completion entry."""
    now = time.time()
    if event.expired(now):
        late = handler.expired_response(event, now)["late_s"]
        return wire.done_entry(number, slot, event, wire.EXPIRED, late_s=late)
    watch.request_number = number
    watch.limit_bytes = event.memory_mb * 1024 * 1024 if _ENFORCE_MEMORY else 0
    context = LocalContext(f"{id_prefix}-{number}", event.memory_mb, now + event.timeout_s)
    try:
        run = handler.run_task(event, jobs.store(slot), context, _raw_size)
    except BaseException as exc:  # noqa: BLE001 - like Lambda, the process answers and stays warm
        error = {
            "errorType": type(exc).__name__,
            "errorMessage": str(exc),
            "stackTrace": traceback.format_exc().splitlines(),
        }
        return wire.done_entry(number, slot, event, wire.FAILED, payload=json.dumps(error).encode())
    finally:
        watch.limit_bytes = 0
    flags = (wire.FLAG_STORED if run.stored else 0) | (wire.FLAG_OK if run.ok else 0)
    ran_s = time.time() - now
    if run.inline:
        return wire.done_entry(number, slot, event, wire.RECORD, flags, run.record, ran_s=ran_s)
    return wire.done_entry(number, slot, event, wire.STORED, flags, ran_s=ran_s)


def _raw_size(size: int) -> int:
    return size  # the local wire carries records as they are


def serve(sock: socket.socket, id_prefix: str) -> None:
    """Answer invocations until the driver closes the connection."""
    global handler
    from lambdamr.runtime import handler  # the imports a task needs, before READY
    from lambdamr.runtime.capture import keep_installed
    from lambdamr.signing import process_key

    keep_installed()
    send_lock = threading.Lock()
    done = _Completions(sock, send_lock, process_key())
    watch = _MemoryWatch(sock, send_lock, done)
    watch.start()
    reader = wire.FrameReader(sock)
    jobs = wire.WorkerJobs()
    queued: collections.deque[tuple[int, int, TaskEvent]] = collections.deque()

    def take(body: memoryview) -> None:
        kind = bytes(body[:1])
        if kind == wire.JOB:
            jobs.add(body)
        elif kind == wire.TASKS:
            queued.extend(wire.decode_tasks(body, jobs))
        else:
            raise ProtocolError(f"unknown local wire frame {kind!r}")

    with send_lock:
        wire.send_parts(sock, wire.frame([wire.READY]))
    while True:
        try:
            if not queued:
                done.send()
            while not queued:  # a JOB frame comes alone, or just ahead of its tasks
                take(reader.read())
            # What arrived meanwhile is looked for only once few tasks are left (a poll of the
            # socket per task would cost more than the frames it finds).
            while reader.has_frame() if len(queued) > LOW_WATER else reader.buffered():
                take(reader.read())
        except EOFError:
            return
        number, slot, event = queued.popleft()
        started = time.monotonic()
        done.add(_run_one(number, slot, event, jobs, id_prefix, watch))
        if done.due(len(queued), time.monotonic() - started):
            done.send()


def main() -> None:
    """Entry point: serve on the socket whose descriptor is the first argument.

    When the driver is gone (killed, even by SIGKILL) the socket breaks: the worker exits
    at once and quietly, since nobody is left to read a result or a traceback.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    sock = socket.socket(fileno=int(sys.argv[1]))
    sock.setblocking(True)
    id_prefix = sys.argv[2] if len(sys.argv) > 2 else "local"
    try:
        serve(sock, id_prefix)
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


if __name__ == "__main__":
    main()
