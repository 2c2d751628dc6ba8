"""One execution environment: a process started the way Lambda starts one.

The process is the interpreter in isolated mode with no ``site`` (``python -I -S``), running
the runtime folder's bootstrap, which puts only the unpacked function package (the task root,
Lambda's ``/var/task``), the unpacked layers (``<opt>/python``) and the runtime folder on
``sys.path`` and hands over to ``awslambdaric``. Its environment holds Lambda's variables and
the execution role's credentials, and nothing of the driver's. It talks to its own loopback
Runtime API, runs one invocation at a time, and is reused while it lives (warm).

Lambda's limits are enforced from outside, as the service does: an invocation past the
function's timeout kills the environment ("Task timed out after N seconds"); resident memory
above the function's memory size kills it too (``Runtime.OutOfMemory``); an environment whose
process exits is gone, and the next invocation starts a new one (cold).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from lambdamr.testing.lambda_service.runtime_api import RuntimeApi, RuntimeInvocation

#: Lambda gives the INIT phase of an on-demand environment 10 seconds
INIT_TIMEOUT_S = 10.0
_POLL_S = 0.02


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    session_token: str | None = None


@dataclass(frozen=True)
class FunctionSetup:
    """What an environment is started from: one version of one function, ready to run."""

    function_name: str
    version: str
    function_arn: str
    handler: str
    runtime: str  # "python3.12"
    memory_mb: int
    timeout_s: float
    region: str
    variables: dict[str, str]
    task_root: Path
    opt_root: Path
    runtime_root: Path
    credentials: Credentials
    endpoint_url: str | None = None  # AWS_ENDPOINT_URL: the SDK in the runtime talks to loopback

    def environment_variables(self, runtime_api: str, log_stream: str) -> dict[str, str]:
        """The process environment Lambda documents for a managed Python runtime."""
        env = {
            **self.variables,
            "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": self.version,
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
            "AWS_LAMBDA_RUNTIME_API": runtime_api,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{self.runtime}",
            "LAMBDA_TASK_ROOT": str(self.task_root),
            "LAMBDA_RUNTIME_DIR": str(self.runtime_root),
            "_HANDLER": self.handler,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": self.credentials.access_key,
            "AWS_SECRET_ACCESS_KEY": self.credentials.secret_key,
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "LD_LIBRARY_PATH": f"{self.task_root}:{self.task_root}/lib:{self.opt_root}/lib",
        }
        if self.credentials.session_token:
            env["AWS_SESSION_TOKEN"] = self.credentials.session_token
        if self.endpoint_url:
            env["AWS_ENDPOINT_URL"] = self.endpoint_url
        return env


@dataclass
class InvocationResult:
    """How one invocation ended, in the terms of the Invoke API and the function's log."""

    request_id: str
    payload: bytes  # the function's response, or Lambda's error document
    function_error: bool
    status: str  # "success", "error", "timeout"
    error_type: str | None
    log_lines: list[str] = field(default_factory=list)
    duration_ms: float = 0.0
    init_ms: float | None = None  # set on the invocation that started the environment
    max_memory_mb: int = 0


class ExecutionEnvironment:
    """A live execution environment of one function version."""

    def __init__(self, setup: FunctionSetup) -> None:
        self.setup = setup
        self._wake_read, self._wake_write = os.pipe()  # the Runtime API's answer wakes the watcher
        os.set_blocking(self._wake_read, False)
        self.api = RuntimeApi(on_answer=self._wake)
        self._output = bytearray()  # what the process printed and nobody has claimed yet
        self._lines: list[str] = []
        self._peak_rss = 0
        self._init_ms: float | None = None
        self.invocations = 0
        self.log_stream = f"{time.strftime('%Y/%m/%d')}/[{setup.version}]{uuid.uuid4().hex}"
        started = time.monotonic()
        self.process = subprocess.Popen(
            [_interpreter(), "-I", "-S", str(setup.runtime_root / "bootstrap.py"), str(setup.opt_root)],
            cwd=setup.task_root,
            env=setup.environment_variables(self.api.address, self.log_stream),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C of the driver does not reach it
        )
        assert self.process.stdout is not None
        self._fd = self.process.stdout.fileno()
        os.set_blocking(self._fd, False)
        self._started = started

    def _wake(self) -> None:
        os.write(self._wake_write, b"!")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def invoke(self, payload: bytes, *, request_id: str | None = None, hang: bool = False) -> InvocationResult:
        """Run one invocation (starting the runtime first when cold); ``hang`` makes the
        function never answer, so the timeout kills the environment (fault injection)."""
        request_id = request_id or str(uuid.uuid4())
        cold = self.invocations == 0
        self.invocations += 1
        if cold:
            failure = self._wait_init(request_id)
            if failure is not None:
                return failure
        began = time.monotonic()
        deadline = began + self.setup.timeout_s
        invocation = RuntimeInvocation(
            request_id=request_id,
            payload=payload,
            deadline_ms=int((time.time() + self.setup.timeout_s) * 1000),
            function_arn=self.setup.function_arn,
        )
        self._lines = []
        if not hang:
            self.api.hand(invocation)
        while not invocation.answered.is_set():
            self._drain(wait=_POLL_S)
            if self._over_memory():
                return self._killed(invocation, began, "Runtime.OutOfMemory", "signal: killed")
            if not self.alive:
                return self._killed(invocation, began, "Runtime.ExitError", f"exit status {self.process.returncode}")
            if time.monotonic() >= deadline:
                return self._timed_out(invocation, began)
        if self._over_memory():  # Lambda kills at the limit: past it, no answer counts
            return self._killed(invocation, began, "Runtime.OutOfMemory", "signal: killed")
        self._drain(wait=0)  # whatever it printed before it answered is in the pipe by now
        duration = (time.monotonic() - began) * 1000
        if invocation.error_type is None:
            return self._result(invocation, invocation.response or b"", False, "success", None, duration, cold)
        return self._result(invocation, invocation.error_body or b"", True, "error", invocation.error_type, duration, cold)

    def close(self) -> None:
        """Stop, and release the pipes."""
        self.stop()
        if self.process.stdout is not None:
            self.process.stdout.close()
        for fd in (self._wake_read, self._wake_write):
            try:
                os.close(fd)
            except OSError:
                pass

    def stop(self) -> None:
        """End the process (and its Runtime API)."""
        if self.alive:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
        self.api.stop()

    # ---- phases -------------------------------------------------------------------------
    def _wait_init(self, request_id: str) -> InvocationResult | None:
        deadline = self._started + INIT_TIMEOUT_S
        while not self.api.ready.is_set():
            self._drain(wait=_POLL_S)
            if self.api.init_failed.is_set() or not self.alive or time.monotonic() >= deadline:
                break
        self._init_ms = (time.monotonic() - self._started) * 1000
        if self.api.ready.is_set():
            return None
        self._drain(wait=0.2 if self.alive else 0)
        error = self.api.init_error
        if error is not None:
            body, error_type = error.body, error.error_type
        elif self.alive:
            error_type = "Sandbox.Timedout"  # an INIT past 10 s: Lambda stops the environment
            body = _error_doc(request_id, f"Init timed out after {INIT_TIMEOUT_S:.2f} seconds", error_type)
        else:
            error_type = "Runtime.ExitError"
            body = _error_doc(request_id, f"Runtime exited with error: exit status {self.process.returncode}", error_type)
        self.stop()
        invocation = RuntimeInvocation(request_id, b"", 0, self.setup.function_arn)
        return self._result(invocation, body, True, "error", error_type, 0.0, True)

    def _timed_out(self, invocation: RuntimeInvocation, began: float) -> InvocationResult:
        self.stop()
        self._drain(wait=0)
        message = f"Task timed out after {self.setup.timeout_s:.2f} seconds"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        self._lines.append(f"{stamp}.000Z {invocation.request_id} {message}")
        body = _error_doc(invocation.request_id, message, "Sandbox.Timedout")
        return self._result(invocation, body, True, "timeout", "Sandbox.Timedout", (time.monotonic() - began) * 1000, False)

    def _killed(self, invocation: RuntimeInvocation, began: float, error_type: str, how: str) -> InvocationResult:
        self.stop()
        self._drain(wait=0)
        body = _error_doc(invocation.request_id, f"Runtime exited with error: {how}", error_type)
        return self._result(invocation, body, True, "error", error_type, (time.monotonic() - began) * 1000, False)

    def _result(
        self,
        invocation: RuntimeInvocation,
        payload: bytes,
        function_error: bool,
        status: str,
        error_type: str | None,
        duration_ms: float,
        cold: bool,
    ) -> InvocationResult:
        used = max(1, self._peak_rss // 2**20)
        if error_type == "Runtime.OutOfMemory":
            used = self.setup.memory_mb
        return InvocationResult(
            request_id=invocation.request_id,
            payload=payload,
            function_error=function_error,
            status=status,
            error_type=error_type,
            log_lines=list(self._lines),
            duration_ms=duration_ms,
            init_ms=self._init_ms if cold else None,
            max_memory_mb=int(used),
        )

    # ---- watching the process -----------------------------------------------------------
    def _drain(self, wait: float) -> None:
        """Read what the process printed (waiting up to ``wait`` for something) into lines."""
        if self.process.stdout is None or self.process.stdout.closed:
            return
        try:
            ready, _, _ = select.select([self._fd, self._wake_read], [], [], wait)
            while ready:
                if self._wake_read in ready:
                    os.read(self._wake_read, 4096)
                if self._fd in ready:
                    chunk = os.read(self._fd, 65536)
                    if not chunk:
                        break
                    self._output += chunk
                ready, _, _ = select.select([self._fd], [], [], 0)
        except (BlockingIOError, OSError, ValueError):
            pass
        *complete, rest = bytes(self._output).split(b"\n")
        self._output = bytearray(rest)
        self._lines += [line.decode("utf-8", "replace").replace("\r", "\n") for line in complete]

    def _over_memory(self) -> bool:
        """Whether the environment's resident memory ever passed the memory size: its
        high-water mark (``VmHWM``), so a peak between two polls is not missed."""
        try:
            with open(f"/proc/{self.process.pid}/status") as status:
                line = next(line for line in status if line.startswith("VmHWM:"))
            peak = int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError, StopIteration):
            return False
        self._peak_rss = max(self._peak_rss, peak)
        return peak > self.setup.memory_mb * 2**20


def _error_doc(request_id: str, message: str, error_type: str) -> bytes:
    import json

    return json.dumps({"errorType": error_type, "errorMessage": f"RequestId: {request_id} Error: {message}"}).encode()


def _interpreter() -> str:
    """The base interpreter (not the driver's venv launcher): Lambda's ``/var/lang/bin/python3``."""
    return getattr(sys, "_base_executable", None) or sys.executable
