"""Turning a result record back into values and exceptions in the driver.

A user exception comes back as itself — same type, same arguments — with the remote
traceback re-attached through tblib, so the traceback a user sees ends in the line of their
function that raised. An exception that cannot cross (it does not pickle, or its class does
not exist in the driver) arrives as a ``RemoteError`` carrying its type name, text and
formatted remote traceback.

``open_record`` is the one way the driver reads a record: it checks the signature and that
the record was signed for exactly the task and attempt being settled (and their key), then
that its header agrees, before anything is unpickled. A record moved or copied from another
task, attempt, job or session is refused with ``IntegrityError``.
"""

from __future__ import annotations

import copy
import pickle
from dataclasses import dataclass
from typing import Any, NamedTuple

from lambdamr import serialize
from lambdamr.errors import IntegrityError, RemoteError, SerializationError
from lambdamr.protocol import CallOutcome, call_outcomes, decode_result, result_context
from lambdamr.runtime.capture import log_tail
from lambdamr.runtime.tracebacks import traceback_from_dict
from lambdamr.signing import Signer

#: what a record's ``timings`` mean when they leave a member out (the runtime lists ``cold``
#: and ``init_ms`` on a cold start only)
TIMING_DEFAULTS: dict[str, Any] = {"cold": False, "init_ms": None}


class CallResult(NamedTuple):
    """One call's outcome: ``value`` when ``ok``, else ``exception`` (a tuple: one per call)."""

    ok: bool
    value: Any = None
    exception: BaseException | None = None


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A decoded result record: the header (timings, runtime facts) and each call's result."""

    header: dict[str, Any]
    calls: list[CallResult]

    @property
    def timings(self) -> dict[str, Any]:
        """The runtime's timings, with the members it leaves out at their defaults."""
        return {**TIMING_DEFAULTS, **self.header.get("timings", {})}

    @property
    def runtime(self) -> dict[str, Any]:
        runtime: dict[str, Any] = self.header.get("runtime", {})
        return runtime


def _where(header: dict[str, Any]) -> dict[str, Any]:
    return {
        "job_id": header.get("job_id"),
        "task_id": header.get("task_id"),
        "attempt": header.get("attempt"),
        "request_id": header.get("runtime", {}).get("request_id") or None,
    }


def rebuild_exception(outcome: CallOutcome, frame: bytes | memoryview, header: dict[str, Any]) -> BaseException:
    """The exception a call raised, as close to the original as can cross the wire."""
    where = _where(header)
    if outcome.exception_pickled and len(frame):
        exc: BaseException
        try:
            exc, tb_dict = pickle.loads(frame)
        except BaseException:  # noqa: BLE001 - even SystemExit from a __reduce__: fall back to the text
            pass
        else:
            if tb_dict:
                try:
                    exc = exc.with_traceback(traceback_from_dict(tb_dict))  # at the failing line and columns
                except Exception:  # a traceback we cannot rebuild is not worth losing the error
                    pass
            if hasattr(exc, "add_note"):
                exc.add_note(
                    f"(raised remotely in task {where['task_id']} of lambdamr job {where['job_id']}, "
                    f"attempt {where['attempt']})"
                )
                if tail := log_tail(header.get("logs")):
                    exc.add_note(f"--- last log lines of the task ---\n{tail}")
            return exc
    return RemoteError(
        f"{outcome.error_type}: {outcome.error_message} (the exception could not be sent back as itself)",
        remote_type=outcome.error_type,
        remote_traceback=outcome.traceback,
        logs=log_tail(header.get("logs")) or None,
        **where,
    )


def _rebuild(header: dict[str, Any], frames: list[memoryview], expected_calls: int) -> TaskRecord:
    task_error = header.get("task_error")
    if task_error:
        # Every call fails the same way, but each future gets its own exception object: one
        # shared object would collect every caller's traceback frames and notes.
        outcome = CallOutcome(**task_error)
        return TaskRecord(header, [
            CallResult(ok=False, exception=rebuild_exception(outcome, frames[0] if frames else b"", header))
            for _ in range(expected_calls)
        ])
    outcomes = call_outcomes(header)
    if len(outcomes) != expected_calls:
        raise SerializationError(
            f"result of task {header.get('task_id')} holds {len(outcomes)} calls, expected {expected_calls}"
        )
    calls = []
    for outcome, frame in zip(outcomes, frames):
        if outcome.ok:
            try:
                calls.append(CallResult(True, serialize.loads(frame, what="task's return value")))
            except SerializationError as exc:
                calls.append(CallResult(ok=False, exception=exc))
            except BaseException as exc:  # noqa: BLE001 - a __reduce__ calling sys.exit must not stop the driver
                error = SerializationError(
                    f"cannot unpickle the task's return value: unpickling it raised {type(exc).__name__}: {exc}"
                )
                error.__cause__ = exc
                calls.append(CallResult(ok=False, exception=error))
        else:
            calls.append(CallResult(ok=False, exception=rebuild_exception(outcome, frame, header)))
    return TaskRecord(header, calls)


def open_record(
    signer: Signer | None, data: bytes | memoryview, *, job_id: str, task_id: int, attempt: int, key: str,
    expected_calls: int,
) -> TaskRecord:
    """Verify a result record for the attempt it must settle, then decode it.

    ``signer`` None: ``data`` is an unsigned record its transport already authenticated as
    this attempt's (the local wire); its header is still checked.

    Raises:
        IntegrityError: unsigned, modified, or signed for another task, attempt or key.
        ProtocolError / SerializationError: a record that cannot be read.
    """
    if signer is None:
        payload = memoryview(data)
    else:
        payload = signer.verify(data, result_context(job_id, task_id, attempt, key), what=_what(job_id, task_id, attempt))
    header, frames = decode_result(payload)
    found = (header.get("job_id"), header.get("task_id"), header.get("attempt"))
    if found != (job_id, task_id, attempt):
        # The signed context matched, so only a writer holding the key can get here.
        raise IntegrityError(
            f"refusing the {_what(job_id, task_id, attempt)}: its header names job {found[0]!r} "
            f"task {found[1]!r} attempt {found[2]!r}"
        )
    return _rebuild(header, frames, expected_calls)


def _what(job_id: str, task_id: int, attempt: int) -> str:
    return f"result of task {task_id} (attempt {attempt}) of job {job_id}"


def own_copy(exc: BaseException) -> BaseException:
    """A copy of ``exc`` for another future (same type, arguments, attributes, cause, notes,
    traceback), so that raising one never changes what the other shows; ``exc`` itself when
    it cannot be copied."""
    try:
        duplicate = copy.copy(exc)
    except BaseException:  # noqa: BLE001 - an exception whose __reduce__ fails is shared instead
        return exc
    if type(duplicate) is not type(exc):
        return exc
    duplicate.__cause__ = exc.__cause__
    duplicate.__context__ = exc.__context__
    duplicate.__suppress_context__ = exc.__suppress_context__
    duplicate.__traceback__ = exc.__traceback__
    notes = getattr(exc, "__notes__", None)
    if notes is not None:
        setattr(duplicate, "__notes__", list(notes))  # noqa: B010 - no __notes__ attribute on python3.10
    return duplicate
