"""A local worker: one fresh Python process that runs the runtime handler, like a warm
Lambda container. Started by ``LocalBackend`` as ``python -m lambdamr.backends.local_worker FD``.

It talks to the driver over one socket (``FD``) with ``multiprocessing.connection`` framing.
Once its imports are done the worker sends ``{"ready": true}``: until then nothing it was
sent has started, so a worker killed while starting costs its tasks no attempt. The driver
sends a small JSON header (request id, memory limit, deadline), a newline and the event
payload exactly as Lambda would receive it, in one frame; the worker answers with one JSON
frame holding the handler's response or, like Lambda's ``FunctionError``, the handler's error.

Memory is watched like Lambda does: a thread samples the resident set size and, when it
passes the task's limit, reports ``Runtime.OutOfMemory`` and ends the process.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

OUT_OF_MEMORY = "Runtime.OutOfMemory"
READY = {"ready": True}
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MEMORY_SAMPLE_S = 0.02


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
    without a word when the driver process is gone (no orphans left computing)."""

    def __init__(self, conn: Connection, send_lock: threading.Lock) -> None:
        super().__init__(name="lambdamr-memory-watch", daemon=True)
        self.conn = conn
        self.send_lock = send_lock
        self.limit_bytes = 0
        self.request_id = ""

    def run(self) -> None:
        parent = os.getppid()
        while True:
            time.sleep(MEMORY_SAMPLE_S)
            if os.getppid() != parent:  # the driver died: no one will read the result
                os._exit(0)
            limit = self.limit_bytes
            if limit and _rss_bytes() > limit:
                from lambdamr.runtime.capture import current_output, log_tail

                error = {
                    "errorType": OUT_OF_MEMORY,
                    "errorMessage": f"the task used more than its {limit // (1024 * 1024)} MB of memory",
                    "logs": log_tail(current_output()),
                }
                with self.send_lock:
                    try:
                        self.conn.send_bytes(json.dumps({"rid": self.request_id, "error": error}).encode())
                    finally:
                        os._exit(137)


def serve(conn: Connection) -> None:
    """Answer invocations until the driver closes the connection."""
    from lambdamr.runtime.handler import handler

    send_lock = threading.Lock()
    watch = _MemoryWatch(conn, send_lock)
    watch.start()
    with send_lock:
        conn.send_bytes(json.dumps(READY).encode())
    while True:
        try:
            frame = conn.recv_bytes()
            head, _, payload = frame.partition(b"\n")
            meta = json.loads(head)
            event = json.loads(payload)
        except (EOFError, OSError):
            return
        request_id = meta["rid"]
        watch.request_id = request_id
        watch.limit_bytes = int(meta["memory_mb"]) * 1024 * 1024 if meta.get("enforce_memory") else 0
        context = LocalContext(request_id, int(meta["memory_mb"]), float(meta["deadline"]))
        reply: dict[str, Any] = {"rid": request_id}
        try:
            reply["response"] = handler(event, context)
        except Exception as exc:
            reply["error"] = {
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_exc().splitlines(),
            }
        watch.limit_bytes = 0
        data = json.dumps(reply).encode()
        with send_lock:
            conn.send_bytes(data)


def main() -> None:
    """Entry point: serve on the socket whose descriptor is the first argument.

    When the driver is gone (killed, even by SIGKILL) the socket breaks: the worker exits
    at once and quietly, since nobody is left to read a result or a traceback.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    conn = Connection(int(sys.argv[1]))
    try:
        serve(conn)
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


if __name__ == "__main__":
    main()
