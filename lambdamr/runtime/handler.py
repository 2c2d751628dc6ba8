"""The generic runtime: the one handler that AWS Lambda and the local workers both call.

``handler(event, context)`` has the signature Lambda calls. For one task it:

0. refuses an event past its ``deadline`` (a late asynchronous delivery: the driver has
   re-run the task or given up by then), answering ``{"expired": true}`` and running nothing;
1. loads the pickled function from storage (cached by its content-addressed key, so a warm
   process fetches it once per job — or once ever, if the same function runs again), after
   checking its signature, its context (session and key) and its content hash;
2. reads the task's calls: inline in the event, or a byte range of the job's argument object,
   after checking they were signed for this job and task (and that argument object);
3. runs each call, catching the user's exceptions with their tracebacks (tblib);
4. writes one result record (``protocol.encode_result``) to storage, write-once per attempt,
   and returns a small JSON response (carrying the record itself when it is small enough and
   the invoker asked for it).

Steps 1-4 are ``run_task``, which both transports share: ``handler`` answers Lambda (and the
inline backend) in JSON, a record inline signed on its own and base64-encoded; the local
workers (``backends.local_worker``) call ``run_task`` directly and send the same records as
raw bytes over the local wire, signed a frame at a time (``backends.local_wire``).

It imports the protocol, storage, serialization and errors modules only — never the executor.
Errors of the runtime itself (storage unreachable, malformed event) propagate, so the
invoking service reports them as a function error and the driver retries the task.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import operator
import os
import pickle
import resource
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from json.encoder import encode_basestring_ascii
from types import TracebackType
from typing import Any, NamedTuple

import cloudpickle

from lambdamr import serialize
from lambdamr._version import __version__
from lambdamr.data.buffers import BUFFERS_OPTION, BufferSink, result_sink
from lambdamr.data.task_storage import bound_to
from lambdamr.errors import InitializerError, IntegrityError, SerializationError
from lambdamr.protocol import (
    CALL_OK,
    INITIALIZER_OPTION,
    PROTOCOL_VERSION,
    CallOutcome,
    TaskEvent,
    call_entry,
    encode_result,
    inline_size,
)
from lambdamr.runtime.capture import capture_task_output
from lambdamr.runtime.environment import extra_environment
from lambdamr.runtime.tracebacks import traceback_to_dict
from lambdamr.signing import Signer, check_content_key, process_key
from lambdamr.storage import Storage, open_cached

_FUNCTION_CACHE_SIZE = 32
_state_lock = threading.Lock()
_cold = True
_functions: OrderedDict[str, Any] = OrderedDict()
_initialized: set[str] = set()  # initializers that ran in this process, by key
_initializer_lock = threading.Lock()
_REQUEST_KINDS = ("puts", "gets", "lists", "deletes")
_CALL_OK_ENTRY = call_entry(CALL_OK)  # the header entry of a call that returned (most of them)
#: what every result header says of the runtime process, the same for each of its tasks
_RUNTIME_FACTS = {"python": "{}.{}".format(*sys.version_info[:2]), "lambdamr": __version__}



_signer_cache: tuple[bytes, Signer] | None = None


def _signer() -> Signer:
    """This process's signer, made once per key (its key id costs an HMAC to derive)."""
    global _signer_cache
    key = process_key()
    cached = _signer_cache
    if cached is None or cached[0] != key:
        cached = _signer_cache = (key, Signer(key))
    return cached[1]


def _load_function(store: Storage, task: TaskEvent) -> Any:
    key = task.function_key
    with _state_lock:
        fn = _functions.get(key)
        if fn is not None:
            _functions.move_to_end(key)
            return fn
    what = f"function {key}"
    payload = _signer().verify(store.get(key), task.function_context(), what=what)
    check_content_key(payload, key, what=what)
    fn = serialize.loads(payload, what="function")
    with _state_lock:
        _functions[key] = fn
        while len(_functions) > _FUNCTION_CACHE_SIZE:
            _functions.popitem(last=False)
    return fn


def _initialize(store: Storage, task: TaskEvent) -> None:
    """Run the executor's ``initializer(*initargs)`` once in this process (a warm container
    or worker runs each distinct initializer once), before the task's first call.

    Raises:
        InitializerError: it raised; it runs again before the next task here.
    """
    key = task.options.get(INITIALIZER_OPTION)
    if not key:
        return
    with _state_lock:
        if key in _initialized:
            return
    initializer, initargs = _load_function(store, replace(task, function_key=key))
    name = getattr(initializer, "__qualname__", None) or repr(initializer)
    with _initializer_lock:  # one thread of an in-process backend initializes, the others wait
        if key in _initialized:
            return
        try:
            initializer(*initargs)
        except BaseException as exc:  # noqa: BLE001 - whatever it raised, the tasks here cannot run
            raise InitializerError(
                f"the executor's initializer {name}() raised {type(exc).__name__}: {exc}; tasks run only "
                "after it succeeds (it is tried again before the next task on this worker)",
                job_id=task.job_id, task_id=task.task_id, attempt=task.attempt,
                remote_traceback="".join(traceback.format_exception(type(exc), exc, _user_traceback(exc))),
            ) from None
        _initialized.add(key)


def _load_calls(store: Storage, task: TaskEvent) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    if task.has_inline_args:
        data = task.inline_args_bytes()
        what = f"inline arguments of task {task.task_id}"
    elif task.args_range is not None:
        rng = task.args_range
        data = store.get(rng.key, rng.start, rng.start + rng.length)
        if len(data) != rng.length:
            raise SerializationError(
                f"argument range of task {task.task_id} is truncated ({len(data)} of {rng.length} bytes)"
            )
        what = f"arguments of task {task.task_id} in {rng.key}"
    else:
        raise SerializationError(f"task {task.task_id} carries no arguments")
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = serialize.loads(
        _signer().verify(data, task.arguments_context(), what=what), what="task arguments"
    )
    return calls


#: a task's ``peak_rss_mb`` is the process's high-water mark read at most this long before
#: the task ended (by the task before it, when that ended so recently)
PEAK_RSS_FRESH_S = 0.001
_peak_rss_read: tuple[float, float] = (-math.inf, 0.0)  # (monotonic time read, MB)


def _peak_rss_mb() -> float:
    """The process's peak resident set, in MB.

    ``ru_maxrss`` is a high-water mark: it never misses a peak, whenever it is read. Reading
    it is a system call, a tenth of an empty task's time in a local worker, so a task that
    ends within ``PEAK_RSS_FRESH_S`` of the last reading reports that reading: what a process
    can fault in within a millisecond (a few MB) is the most it can be behind, and the next
    reading has it.
    """
    global _peak_rss_read
    now = time.monotonic()
    read_at, peak = _peak_rss_read
    if now - read_at < PEAK_RSS_FRESH_S:
        return peak
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = round(rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024, 1)  # KiB on Linux, bytes on macOS
    _peak_rss_read = (now, peak)
    return peak


def _timings_json(started: float, loaded: float, finished: float, cold: bool) -> str:
    """The header's ``timings`` member as JSON, ``cold`` and ``init_ms`` only on a cold start.

    Written out (the time stamps are finite floats, which JSON writes as their ``repr``): the
    generic encoder took longer over these four numbers than over the rest of the header.
    """
    text = (
        f'"timings":{{"started":{float.__repr__(started)},"loaded":{float.__repr__(loaded)},'
        f'"finished":{float.__repr__(finished)},"peak_rss_mb":{float.__repr__(_peak_rss_mb())}'
    )
    if cold:  # the INIT phase, billed with a cold start
        text += f',"cold":true,"init_ms":{"null" if _INIT_MS is None else int(_INIT_MS)}'
    return text + "}"


_pid = os.getpid()


def _reset_pid() -> None:
    global _pid
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_pid)


def _process_id() -> int:
    """This process's id, read once per process (``os.getpid`` is a system call each time)."""
    return _pid


def _user_traceback(exc: BaseException) -> TracebackType | None:
    """The exception's traceback without the runtime's own calling frame."""
    tb = exc.__traceback__
    own = (_run_calls.__code__, _run_call.__code__, _initialize.__code__)
    while tb is not None and tb.tb_frame.f_code in own and tb.tb_next is not None:
        tb = tb.tb_next
    return tb


def encode_exception(exc: BaseException) -> tuple[CallOutcome, bytes]:
    """Header entry and frame for an exception: the exception itself when it survives a
    pickle round trip, its type, text and formatted traceback always."""
    tb = _user_traceback(exc)
    formatted = "".join(traceback.format_exception(type(exc), exc, tb))
    frame = b""
    pickled = False
    try:
        frame = cloudpickle.dumps((exc, traceback_to_dict(tb) if tb else None), protocol=5)  # with positions
        pickle.loads(frame)  # exceptions whose __init__ needs other arguments fail only here
        pickled = True
    except Exception:
        frame = b""
    outcome = CallOutcome(
        ok=False,
        error_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
        error_message=str(exc),
        traceback=formatted,
        exception_pickled=pickled,
    )
    return outcome, frame


def _run_call(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return fn(*args, **kwargs)


def _run_calls(
    fn: Any, calls: list[tuple[tuple[Any, ...], dict[str, Any]]], sink: BufferSink | None = None
) -> tuple[list[CallOutcome], list[bytes]]:
    outcomes: list[CallOutcome] = []
    frames: list[bytes] = []
    for args, kwargs in calls:
        try:
            value = _run_call(fn, args, kwargs)
        except BaseException as exc:  # noqa: BLE001 - SystemExit, KeyboardInterrupt... go back as themselves
            outcome, frame = encode_exception(exc)
        else:
            try:
                frame = serialize.dumps(value, what="task's return value", ship_local_modules=False, sink=sink)
                outcome = CALL_OK
            except SerializationError as exc:
                outcome, frame = encode_exception(exc)
            except BaseException as exc:  # noqa: BLE001 - a __reduce__ that calls sys.exit
                error = SerializationError(
                    f"cannot pickle the task's return value: pickling it raised {type(exc).__name__}: {exc}"
                )
                error.__cause__ = exc
                outcome, frame = encode_exception(error)
        value = None  # the pickled frame is all that is kept
        outcomes.append(outcome)
        frames.append(frame)
    return outcomes, frames


def expired_response(task: TaskEvent, now: float) -> dict[str, Any]:
    """The answer to an event that arrived after its deadline: nothing loaded, nothing run,
    nothing stored (the driver counts the attempt as lost)."""
    assert task.deadline is not None
    print(
        f"lambdamr: refusing task {task.task_id} of job {task.job_id} attempt {task.attempt}: it arrived "
        f"{now - task.deadline:.0f} s after its deadline",
        file=sys.stderr,
    )
    return {
        "lambdamr": PROTOCOL_VERSION,
        "job_id": task.job_id,
        "task_id": task.task_id,
        "attempt": task.attempt,
        "result_key": None,
        "ok": False,
        "expired": True,
        "late_s": round(now - task.deadline, 3),
    }


class TaskRun(NamedTuple):
    """What running one task produced, for the transport that answers the invoker."""

    record: bytes  # the result record, unsigned (``protocol.encode_result``)
    signed: bytes | None  # the record signed for its attempt, when it was written to storage
    stored: bool  # written to ``result_key`` (write-once)
    inline: bool  # small enough to go back in the answer, and the invoker asked for it
    ok: bool  # every call returned


def run_task(task: TaskEvent, store: Storage, context: Any, encoded_size: Callable[[int], int]) -> TaskRun:
    """Run one task and write its result record where the event says.

    The transport decides how a record crosses back: ``encoded_size(n)`` is what ``n`` bytes
    of record cost in its answer (base64 in Lambda's JSON response, nothing on the local
    wire), measured against the event's ``reply_inline_max``. A stored record is signed for
    its attempt here; one that only goes back inline is left to the transport to sign (the
    JSON response signs it alone, the local wire one frame of records at a time).
    """
    global _cold
    started = time.time()
    cold = _cold
    if cold:  # once per process: the lock only then
        with _state_lock:
            cold, _cold = _cold, False
    requests_before = store.stats.read(_REQUEST_KINDS)

    task_error: CallOutcome | None = None
    # prints and logging records -> header["logs"]; the job's extra_env and task_storage() hold
    # for the task and are undone after it (a warm process runs other jobs' tasks next)
    with capture_task_output() as captured, extra_environment(task.extra_env), bound_to(task, store, _signer()):
        try:
            fn = _load_function(store, task)
            _initialize(store, task)
            calls = _load_calls(store, task)
            loaded = time.time()
            # big buffers of the values (numpy arrays) go to storage as objects of their own; to the
            # driver's scratch folder in RAM when the event names one and the record is not stored
            scratch = None if task.store_result else task.options.get(BUFFERS_OPTION)
            outcomes, frames = _run_calls(fn, calls, result_sink(store, task.result_key, scratch))
        except (SerializationError, IntegrityError, InitializerError) as exc:
            # A function or arguments that cannot be loaded here (or an initializer that fails)
            # fail every call of the task the same way; retrying would not help, so it is
            # reported as the task's error.
            loaded = time.time()
            task_error, frame = encode_exception(exc)
            outcomes, frames = [], [frame]
        except Exception:
            raise  # the runtime's own failure (storage unreachable...): the invoker reports it
        except BaseException as exc:  # noqa: BLE001 - unpickling the function or arguments raised SystemExit...
            loaded = time.time()
            error = SerializationError(
                f"cannot unpickle the function or arguments of task {task.task_id}: unpickling raised "
                f"{type(exc).__name__}: {exc}"
            )
            error.__cause__ = exc
            task_error, frame = encode_exception(error)
            outcomes, frames = [], [frame]
    finished = time.time()

    record_size = sum(map(len, frames))
    # Leave room for the header, which is not written yet.
    inline = bool(task.reply_inline_max) and encoded_size(record_size) + 8192 <= task.reply_inline_max
    store_it = task.store_result or not inline
    requests_after = store.stats.read(_REQUEST_KINDS)
    # The header lists what differs from its defaults only (every reader takes a missing member
    # as its default): most tasks raise nothing, print nothing and make no storage request, and
    # encoding those members took a sixth of a short task's time in the runtime.
    header: dict[str, Any] = {
        "job_id": task.job_id,
        "task_id": task.task_id,
        "attempt": task.attempt,
        "calls": [_CALL_OK_ENTRY if outcome is CALL_OK else call_entry(outcome) for outcome in outcomes],
    }
    if task_error is not None:
        header["task_error"] = task_error.__dict__
    if store_it or requests_after != requests_before:
        requests = dict(zip(_REQUEST_KINDS, map(operator.sub, requests_after, requests_before)))
        requests["puts"] += int(store_it)
        header["requests"] = {kind: count for kind, count in requests.items() if count}
    logs = captured.text()
    if logs:
        header["logs"] = logs
    # "runtime": what the process says of itself, encoded once per process but its request id
    request_id = encode_basestring_ascii(getattr(context, "aws_request_id", "") or "")
    runtime_rest = _runtime_facts_json(
        getattr(context, "function_name", ""), int(getattr(context, "memory_limit_in_mb", 0) or task.memory_mb),
        _process_id(),
    )
    record = encode_result(
        header, frames,
        encoded_members=f'{_timings_json(started, loaded, finished, cold)},"runtime":{{"request_id":{request_id},{runtime_rest}',
    )
    inline = inline and encoded_size(len(record)) + 1024 <= task.reply_inline_max
    signed = None
    if store_it or not inline:
        # Write-once per attempt: a duplicate delivery of the same attempt finds the key taken
        # and leaves the first record alone.
        signed = _signer().sign(record, task.result_context())
        store.put(task.result_key, signed, if_absent=True)
    ok = task_error is None and all(o.ok for o in outcomes)
    return TaskRun(record=record, signed=signed, stored=signed is not None, inline=inline, ok=ok)


@functools.lru_cache(maxsize=16)
def _runtime_facts_json(function_name: str, memory_limit_mb: int, pid: int) -> str:
    """The rest of a header's ``runtime`` after its request id, as JSON (``...}``)."""
    facts = {"function_name": function_name, "memory_limit_mb": memory_limit_mb, **_RUNTIME_FACTS, "pid": pid}
    return json.dumps(facts, separators=(",", ":"))[1:]


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Run one lambdamr task. This is the AWS Lambda entry point (and the inline backend's)."""
    now = time.time()
    task = TaskEvent.from_dict(event)
    if task.expired(now):
        return expired_response(task, now)
    run = run_task(task, open_cached(task.storage), context, inline_size)  # warm invocations reuse its connections
    response: dict[str, Any] = {
        "lambdamr": PROTOCOL_VERSION,
        "job_id": task.job_id,
        "task_id": task.task_id,
        "attempt": task.attempt,
        "result_key": task.result_key if run.stored else None,
        "ok": run.ok,
    }
    if run.inline:
        signed = run.signed or _signer().sign(run.record, task.result_context())
        response["record"] = base64.b64encode(signed).decode("ascii")
    return response


def _process_age_ms() -> int | None:
    """Milliseconds since this process started (Linux ``/proc``, 10 ms ticks), else None."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        started_s = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time since boot
        return max(0, round((time.clock_gettime(time.CLOCK_BOOTTIME) - started_s) * 1000))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


# Lambda's INIT phase, billed on a cold start since August 2025: from the runtime process's
# start to this module (imported while Lambda initialises the function) being ready. A
# driver running tasks in-process (the inline backend) has no INIT phase of its own.
_INIT_MS = None if "lambdamr.executor" in sys.modules else _process_age_ms()
