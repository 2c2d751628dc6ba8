"""The local wire: binary frames between the local backend's dispatcher and its workers.

Only the transport differs from AWS Lambda's: a worker runs the very same task events
through the same runtime (``runtime.handler.run_task``) and returns the same result records.
What changes is how they cross one socket pair:

* no JSON around pickled bytes and no base64: arguments and records travel as raw bytes;
* what is the same for every task of a job (storage spec, function key, limits, options) is
  sent once per job and worker (a ``JOB`` frame naming a *slot*), each task then names its
  slot, task, attempt, result key and arguments (a ``TASKS`` frame holds several);
* a worker reports several completions in one ``DONE`` frame, signed once: the HMAC covers
  every entry's (job slot, task, attempt, kind, result record), so each record stays bound to
  the task and attempt it was produced for, and the dispatcher checks that binding against the
  invocation it settles. Records the worker *stores* are signed on their own as everywhere
  (``signing.LMS2``): storage is shared, the socket pair is not.

Framing: ``uint64 length | body``; the body's first byte is its type. ::

    JOB    b"J" | uint32 slot | JSON of the job's constant event fields
    TASKS  b"T" | uint16 count | count x (TASK struct | result key | arguments)
    READY  b"R"                                  (worker: its imports are done)
    DONE   b"D" | HMAC-SHA256 | b"LMW1" | uint16 count | count x (DONE struct | payload)
    FATAL  b"F" | JSON {"rid", "error"}          (worker: out of memory, about to exit)

The HMAC of a ``DONE`` frame is taken over the rest of the body after the MAC, which starts
with ``b"LMW1"``, with the key both sides already hold (``LAMBDAMR_SIGNING_KEY`` in the worker's
environment), so a frame cannot pass for an ``LMS2`` object or the other way round.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import math
import mmap
import select
import socket
import struct
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from lambdamr.errors import IntegrityError, ProtocolError
from lambdamr.protocol import PROTOCOL_VERSION, ArgsRange, ExtraEnv, TaskEvent, check_extra_env
from lambdamr.signing import HmacKey

JOB, TASKS, READY, DONE, FATAL = b"J", b"T", b"R", b"D", b"F"
#: job slots a worker remembers (and the dispatcher, for each worker, in the same order):
#: the oldest is forgotten first; a task of a forgotten job makes the dispatcher send it again
JOB_SLOTS_PER_WORKER = 64

#: completion kinds in a DONE entry
RECORD = 1  # a result record follows (it may also have been stored)
STORED = 2  # stored only (too large for the answer): the dispatcher fetches it
EXPIRED = 3  # arrived past its deadline: nothing ran
FAILED = 4  # the runtime itself failed: a JSON error follows (Lambda's FunctionError)
FLAG_STORED = 1
FLAG_OK = 2

_LENGTH = struct.Struct("<Q")
_JOB_HEAD = struct.Struct("<cI")
_COUNT = struct.Struct("<H")
# request number, job slot, task, attempt, deadline (NaN: none), result key length, args kind
_TASK = struct.Struct("<IIIIdHB")
_ARGS_INLINE, _ARGS_RANGE = 0, 1
_U32 = struct.Struct("<I")
_RANGE = struct.Struct("<QQH")  # start, length, key length
# request number, job slot, task, attempt, kind, flags, late seconds, seconds it ran, payload length
_DONE = struct.Struct("<IIIIBBddQ")
_MAC_DOMAIN = b"LMW1"
_MAC_SIZE = hashlib.sha256().digest_size
MAX_PER_FRAME = 0xFFFF
_READ_CHUNK = 256 * 1024
_JOIN_MAX = 64 * 1024
_MAP_MIN = 256 * 1024  # frames from this size are read into an anonymous mapping


# ---- framing ----------------------------------------------------------------------------
def frame(body_parts: Sequence[bytes | memoryview]) -> list[bytes | memoryview]:
    """The parts of one frame (its length, then the body's parts), ready for ``send_parts``."""
    return [_LENGTH.pack(sum(map(len, body_parts))), *body_parts]


def send_parts(sock: socket.socket, parts: list[bytes | memoryview]) -> None:
    """Write every part, in order: joined when small (one copy is cheaper than a gather
    list), else without joining them (``sendmsg`` gathers them)."""
    if sum(map(len, parts)) <= _JOIN_MAX:
        sock.sendall(b"".join(parts))
        return
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    while views:
        sent = sock.sendmsg(views[:512])  # IOV_MAX is 1024 on Linux
        while sent:
            first = views[0]
            if sent >= len(first):
                sent -= len(first)
                views.pop(0)
            else:
                views[0] = first[sent:]
                sent = 0


class FrameReader:
    """Reads whole frames from a socket, buffering what one ``recv`` brought beyond them."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray()
        self._pos = 0
        # One receive buffer for the life of the reader: ``recv(n)`` allocates n bytes per
        # call, which at 256 KB is a fresh mapping (mmap, mremap, munmap and a page fault) for
        # every frame of a few hundred bytes.
        self._chunk = bytearray(_READ_CHUNK)
        self._chunk_view = memoryview(self._chunk)
        self._poller = select.poll()  # "has more arrived?" without a failing recv (an exception) each time
        self._poller.register(sock, select.POLLIN)

    def _available(self) -> int:
        return len(self._buf) - self._pos

    def _recv(self) -> None:
        """One ``recv`` into the buffer (blocking until something arrives)."""
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        n = self.sock.recv_into(self._chunk)
        if not n:
            raise EOFError("the other end closed the local wire")
        self._buf += self._chunk_view[:n]

    def has_frame(self) -> bool:
        """Whether a whole frame is in the buffer already (no system call)."""
        if self._available() < _LENGTH.size:
            return False
        (length,) = _LENGTH.unpack_from(self._buf, self._pos)
        return bool(self._available() >= _LENGTH.size + length)

    def buffered(self) -> bool:
        """Whether a whole frame is buffered, after reading what has arrived (never blocks).

        Raises:
            EOFError: the other end closed the socket.
        """
        while not self.has_frame():
            if not self._poller.poll(0):
                return False
            self._recv()  # readable: this recv does not block
        return True

    def read(self) -> memoryview:
        """The next frame's body, blocking until it has arrived whole.

        Raises:
            EOFError: the other end closed the socket.
        """
        while self._available() < _LENGTH.size:
            self._recv()
        (length,) = _LENGTH.unpack_from(self._buf, self._pos)
        start = self._pos + _LENGTH.size
        have = len(self._buf) - start
        if have >= length:
            with memoryview(self._buf) as buffered:  # released at once: the buffer grows later
                body = bytes(buffered[start : start + length])
            self._pos = start + length
            return memoryview(body)
        # A large frame: read the rest straight into its own buffer (no second copy). A mapping
        # of its own, not the heap: a driver receiving many 1 MB results would otherwise leave
        # its heap holed around the small records it keeps (RSS growing with every task),
        # while a mapping goes back to the system as soon as the record is decoded and dropped.
        body_buf = mmap.mmap(-1, length) if length >= _MAP_MIN else bytearray(length)
        body_buf[:have] = self._buf[start:]
        self._buf.clear()
        self._pos = 0
        view = memoryview(body_buf)
        got = have
        while got < length:
            n = self.sock.recv_into(view[got:], length - got)
            if not n:
                raise EOFError("the other end closed the local wire in the middle of a frame")
            got += n
        return view


# ---- driver -> worker -------------------------------------------------------------------
def job_fields(event: TaskEvent) -> dict[str, Any]:
    """The fields of ``event`` that are the same for every task of its job."""
    return {
        "lambdamr": PROTOCOL_VERSION,
        "job_id": event.job_id,
        "storage": event.storage,
        "function_key": event.function_key,
        "timeout_s": event.timeout_s,
        "memory_mb": event.memory_mb,
        "store_result": event.store_result,
        "reply_inline_max": event.reply_inline_max,
        "options": event.options,
        "extra_env": event.extra_env.as_dict(),
    }


def job_key(event: TaskEvent, options: tuple[Any, ...] | None = None) -> tuple[Any, ...]:
    """What two events of one job slot must share (cheap to build for every task);
    ``options``: ``event.options`` as ``options_key`` gives them, when the caller has it."""
    if options is None:
        options = options_key(event.options)
    return (
        event.job_id, id(event.storage), event.function_key, event.timeout_s, event.memory_mb,
        event.store_result, event.reply_inline_max, options, event.extra_env,
    )


def options_key(options: dict[str, Any]) -> tuple[Any, ...]:
    """An event's options as part of a ``job_key``."""
    return tuple(sorted(options.items())) if options else ()


def encode_job(slot: int, event: TaskEvent) -> list[bytes | memoryview]:
    """A JOB frame: ``event``'s job-constant fields under ``slot``."""
    return frame([_JOB_HEAD.pack(JOB, slot), json.dumps(job_fields(event), separators=(",", ":")).encode()])


def encode_tasks(entries: Sequence[tuple[int, int, TaskEvent, bytes | None]]) -> list[bytes | memoryview]:
    """A TASKS frame of ``(request number, job slot, event, raw inline arguments)`` entries."""
    parts: list[bytes | memoryview] = [TASKS, _COUNT.pack(len(entries))]
    for number, slot, event, args in entries:
        key = event.result_key.encode()
        deadline = math.nan if event.deadline is None else event.deadline
        if args is not None:
            parts += [_TASK.pack(number, slot, event.task_id, event.attempt, deadline, len(key), _ARGS_INLINE),
                      key, _U32.pack(len(args)), args]
        else:
            rng = event.args_range
            if rng is None:
                raise ProtocolError(f"task {event.task_id} of job {event.job_id} carries no arguments")
            range_key = rng.key.encode()
            parts += [_TASK.pack(number, slot, event.task_id, event.attempt, deadline, len(key), _ARGS_RANGE),
                      key, _RANGE.pack(rng.start, rng.length, len(range_key)), range_key]
    return frame(parts)


@dataclass(frozen=True, slots=True)
class WorkerJob:
    """A job as a worker knows it: the fields its tasks share."""

    job_id: str
    storage: dict[str, Any]
    function_key: str
    timeout_s: float
    memory_mb: int
    store_result: bool
    reply_inline_max: int
    options: dict[str, Any]
    extra_env: ExtraEnv

    def event_fields(self) -> dict[str, Any]:
        """Every field of a ``TaskEvent`` of this job, its tasks' own ones as placeholders
        (built through ``TaskEvent`` once, so its defaults and checks apply)."""
        return dict(vars(TaskEvent(
            job_id=self.job_id, task_id=0, attempt=0, storage=self.storage, function_key=self.function_key,
            result_key="", timeout_s=self.timeout_s, memory_mb=self.memory_mb, store_result=self.store_result,
            reply_inline_max=self.reply_inline_max, options=self.options, extra_env=self.extra_env,
        )))

    @classmethod
    def decode(cls, body: memoryview) -> tuple[int, WorkerJob]:
        _, slot = _JOB_HEAD.unpack_from(body)
        data = json.loads(bytes(body[_JOB_HEAD.size :]))
        if data.get("lambdamr") != PROTOCOL_VERSION:
            raise ProtocolError(f"job frame of protocol version {data.get('lambdamr')!r}, the worker speaks {PROTOCOL_VERSION}")
        return slot, cls(
            job_id=str(data["job_id"]), storage=dict(data["storage"]), function_key=str(data["function_key"]),
            timeout_s=float(data["timeout_s"]), memory_mb=int(data["memory_mb"]),
            store_result=bool(data["store_result"]), reply_inline_max=int(data["reply_inline_max"]),
            options=dict(data.get("options") or {}),
            extra_env=check_extra_env(data.get("extra_env"), "the job frame's extra_env"),
        )


class WorkerJobs:
    """The jobs a worker remembers, by slot; the oldest is forgotten first (as the dispatcher does)."""

    def __init__(self) -> None:
        self._jobs: OrderedDict[int, WorkerJob] = OrderedDict()
        self._stores: dict[int, Any] = {}
        self._event_fields: dict[int, dict[str, Any]] = {}

    def add(self, body: memoryview) -> None:
        slot, job = WorkerJob.decode(body)
        self._jobs[slot] = job
        self._event_fields[slot] = job.event_fields()
        while len(self._jobs) > JOB_SLOTS_PER_WORKER:
            forgotten, _ = self._jobs.popitem(last=False)
            self._stores.pop(forgotten, None)
            self._event_fields.pop(forgotten, None)

    def event(self, slot: int, task_fields: dict[str, Any]) -> TaskEvent:
        """The ``TaskEvent`` of one task of the job in ``slot``: the job's fields, then the task's.

        Made without ``TaskEvent.__init__`` (a frozen dataclass of 15 fields costs more than
        the rest of decoding a task): the job's fields went through it once, in ``add``, and
        the task's own are plain numbers, strings and bytes decoded from the frame.
        """
        shared = self._event_fields.get(slot)
        if shared is None:
            raise _unknown_slot(slot)
        event: TaskEvent = object.__new__(TaskEvent)
        fields = event.__dict__
        fields.update(shared)
        fields.update(task_fields)
        return event

    def store(self, slot: int) -> Any:
        """The store the job in ``slot`` names, looked up once per job (not per task)."""
        store = self._stores.get(slot)
        if store is None:
            from lambdamr.storage import open_cached

            store = self._stores[slot] = open_cached(self[slot].storage)
        return store

    def __getitem__(self, slot: int) -> WorkerJob:
        try:
            return self._jobs[slot]
        except KeyError:
            raise _unknown_slot(slot) from None


def _unknown_slot(slot: int) -> ProtocolError:
    return ProtocolError(f"a task names job slot {slot}, which this worker was never sent")


def decode_tasks(body: memoryview, jobs: WorkerJobs) -> Iterator[tuple[int, int, TaskEvent]]:
    """The ``(request number, job slot, event)`` of each task in a TASKS frame."""
    (count,) = _COUNT.unpack_from(body, 1)
    pos = 1 + _COUNT.size
    for _ in range(count):
        number, slot, task_id, attempt, deadline, key_len, kind = _TASK.unpack_from(body, pos)
        pos += _TASK.size
        result_key = str(body[pos : pos + key_len], "utf-8")
        pos += key_len
        args_raw: bytes | None = None
        args_range: ArgsRange | None = None
        if kind == _ARGS_INLINE:
            (length,) = _U32.unpack_from(body, pos)
            pos += _U32.size
            args_raw = bytes(body[pos : pos + length])
            pos += length
        else:
            start, length, range_key_len = _RANGE.unpack_from(body, pos)
            pos += _RANGE.size
            args_range = ArgsRange(str(body[pos : pos + range_key_len], "utf-8"), start, length)
            pos += range_key_len
        event = jobs.event(slot, {
            "task_id": task_id, "attempt": attempt, "result_key": result_key, "args_raw": args_raw,
            "args_range": args_range, "deadline": None if math.isnan(deadline) else deadline,
        })
        yield number, slot, event


# ---- worker -> driver -------------------------------------------------------------------
class Done(NamedTuple):
    """One completion in a DONE frame."""

    number: int  # the request number the dispatcher gave the task
    slot: int
    task_id: int
    attempt: int
    kind: int
    flags: int
    late_s: float  # EXPIRED: how late it arrived
    payload: memoryview  # the record (RECORD), the JSON error (FAILED), else empty
    ran_s: float = 0.0  # how long the worker took to run it (the dispatcher's queue depth follows it)


def done_entry(number: int, slot: int, event: TaskEvent, kind: int, flags: int = 0,
               payload: bytes | memoryview = b"", late_s: float = 0.0, ran_s: float = 0.0) -> list[bytes | memoryview]:
    """The parts of one completion entry."""
    head = _DONE.pack(number, slot, event.task_id, event.attempt, kind, flags, late_s, ran_s, len(payload))
    return [head, payload] if len(payload) else [head]


@functools.lru_cache(maxsize=8)
def _hmac_key(key: bytes) -> HmacKey:
    """The session key with its HMAC pads hashed once (a worker and a driver use one each)."""
    return HmacKey(key)


def encode_done(key: bytes, count: int, entry_parts: list[bytes | memoryview]) -> list[bytes | memoryview]:
    """A DONE frame of ``count`` entries, signed once."""
    rest = [_MAC_DOMAIN, _COUNT.pack(count), *entry_parts]
    if sum(len(p) for p in rest) <= _JOIN_MAX:  # small: one join and a one-shot HMAC beat hashing part by part
        signed = b"".join(rest)
        return frame([DONE, _hmac_key(key).mac(signed), signed])
    mac = _hmac_key(key).hasher()
    for part in rest:
        mac.update(part)
    return frame([DONE, mac.digest(), *rest])


def decode_done(key: bytes, body: memoryview) -> list[Done]:
    """The entries of a DONE frame, once its signature checks out.

    Raises:
        IntegrityError: the frame was not signed with ``key`` (or was changed on the way).
    """
    start = 1 + _MAC_SIZE
    signed = body[start:]
    if signed[: len(_MAC_DOMAIN)] != _MAC_DOMAIN or not hmac.compare_digest(_hmac_key(key).mac(signed), body[1:start]):
        raise IntegrityError(
            "refusing a local worker's completions: their signature does not match this driver's key "
            "(the worker was started with another key, or the frame was changed on the way)"
        )
    pos = start + len(_MAC_DOMAIN)
    (count,) = _COUNT.unpack_from(body, pos)
    pos += _COUNT.size
    entries = []
    for _ in range(count):
        number, slot, task_id, attempt, kind, flags, late_s, ran_s, length = _DONE.unpack_from(body, pos)
        pos += _DONE.size
        entries.append(Done(number, slot, task_id, attempt, kind, flags, late_s, body[pos : pos + length], ran_s))
        pos += length
    if pos != len(body):
        raise ProtocolError(f"a local worker's completion frame is {len(body)} bytes, its entries {pos}")
    return entries


def encode_fatal(number: int, error: dict[str, Any]) -> list[bytes | memoryview]:
    """A FATAL frame: the worker is about to exit because of ``error`` while running ``number``."""
    return frame([FATAL, json.dumps({"rid": number, "error": error}).encode()])


def decode_json(body: memoryview) -> Any:
    """The JSON after a frame's type byte (FATAL) or an entry's payload (FAILED)."""
    return json.loads(bytes(body[1:]))
