"""What the Lambda *runtime* says when something other than the user's code went wrong, as
lambdamr exceptions that say what to do.

A ``FunctionError`` answer means the function ran but the runtime failed (timeout, out of
memory, import failure, an exception escaping the handler) — ``function_error``; the same
classification reads a log tail (``classify_logs``), which is how a lost asynchronous
invocation is explained after its deadline.

What the Lambda *API* answers (throttling, a missing function, access denied, a certificate
the driver does not trust) is not decided here: that is the one botocore table,
``lambdamr.aws_errors``.

The user's own exceptions never come through here: the runtime catches them and writes them
into the result record.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from lambdamr.errors import (
    LambdaRuntimeError,
    RuntimeImportError,
    TaskError,
    TaskOutOfMemoryError,
    TaskTimeoutError,
    WorkerLostError,
)

if TYPE_CHECKING:
    from lambdamr.backends.base import Invocation


_MEMORY_RE = re.compile(r"Memory Size: (\d+) MB\s+Max Memory Used: (\d+) MB")
_TIMEOUT_RE = re.compile(r"Task timed out after ([\d.]+) seconds|Status: timeout")
_OOM_TYPES = ("Runtime.OutOfMemory",)


def _where(invocation: Invocation, request_id: str | None) -> dict[str, Any]:
    event = invocation.event
    return {"job_id": event.job_id, "task_id": event.task_id, "attempt": event.attempt, "request_id": request_id or None}


def classify(error_type: str, message: str, logs: str | None, invocation: Invocation, request_id: str | None) -> TaskError:
    """The lambdamr error for a failed run, from its error type, message and log tail."""
    event = invocation.event
    where = _where(invocation, request_id)
    text = f"{message}\n{logs or ''}"
    memory = _MEMORY_RE.search(logs or "")
    out_of_memory = (
        error_type in _OOM_TYPES
        or "Runtime.OutOfMemory" in text
        or (memory is not None and int(memory.group(2)) >= int(memory.group(1)))
    )
    if error_type == "Sandbox.Timedout" or _TIMEOUT_RE.search(text):
        return TaskTimeoutError(
            f"the task ran past its timeout of {event.timeout_s:g} s on AWS Lambda and was stopped; "
            "raise it with timeout_s=... (Lambda allows up to 900 s) or split the work into more tasks",
            **where,
            logs=logs,
        )
    if out_of_memory:
        return TaskOutOfMemoryError(
            f"the task went past its memory limit of {event.memory_mb} MB on AWS Lambda and was "
            "killed; give it more with memory_mb=... (up to 10,240 MB, which also buys CPU) or "
            "process the data in smaller pieces",
            **where,
            logs=logs,
        )
    if error_type == "Runtime.ImportModuleError" or "No module named" in message:
        return RuntimeImportError(
            f"the Lambda runtime cannot import what it needs ({message.strip()}); redeploy with "
            "`lambdamr deploy`, adding any missing package to the layer with --package NAME",
            **where,
            logs=logs,
        )
    if error_type == "ProtocolError":
        return RuntimeImportError(f"the deployed runtime refused the task: {message.strip()}", **where, logs=logs)
    if error_type.startswith("Runtime.") or "Runtime exited" in message:
        return WorkerLostError(
            f"the Lambda runtime process died ({error_type}: {message.strip()}); the task did not finish",
            **where,
            logs=logs,
        )
    return LambdaRuntimeError(
        f"the lambdamr runtime failed on AWS Lambda: {error_type or 'error'}: {message.strip()}",
        **where,
        logs=logs,
    )


def function_error(kind: str, body: bytes, logs: str | None, invocation: Invocation, request_id: str | None) -> TaskError:
    """The error for an Invoke answer that carries ``X-Amz-Function-Error``."""
    error_type, message = "", ""
    trace: list[Any] = []
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = {"errorMessage": body.decode("utf-8", "replace")[:2000]}
    if isinstance(data, dict):
        error_type = str(data.get("errorType", ""))
        message = str(data.get("errorMessage", ""))
        trace = data.get("stackTrace") or []
    else:
        message = str(data)[:2000]
    if not logs and trace:
        logs = "\n".join(str(line).rstrip() for line in trace[-10:])
    if not error_type and not message:
        message = f"function error {kind!r} with no details"
    return classify(error_type, message, logs, invocation, request_id)


def classify_logs(logs: str, invocation: Invocation, request_id: str | None) -> TaskError:
    """Explain, from its log lines, an asynchronous invocation that left no result."""
    match = re.search(r"\b(Runtime\.[A-Za-z]+|Sandbox\.Timedout)\b", logs)
    error_type = match.group(1) if match else ""
    if not error_type and not _TIMEOUT_RE.search(logs) and not _MEMORY_RE.search(logs):
        return WorkerLostError(
            "the invocation left no result and its logs say nothing of a timeout or memory limit; it was retried",
            **_where(invocation, request_id),
            logs=logs or None,
        )
    lines = [line for line in logs.splitlines() if "rror" in line]
    return classify(error_type, lines[-1] if lines else "", logs, invocation, request_id)
