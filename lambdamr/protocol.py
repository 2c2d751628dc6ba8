"""The versioned task and result format shared by the driver and the runtime.

A *task event* is the JSON document a backend hands to the runtime handler — exactly what
AWS Lambda passes as ``event``. It names the function object in storage, carries the call's
arguments inline (base64 of a pickle) or as a byte range of a job's packed argument object,
and says where and how to report the result.

A *result record* is the bytes the runtime writes to storage (and may echo in its response)::

    b"LMR1" | uint32 header length | header (UTF-8 JSON) | frame 0 | frame 1 | ...

The header holds everything the driver needs without unpickling anything (status of every
call, error type and text, timings); the frames hold the pickled values or exceptions, one per
call, so one value that cannot be unpickled does not hide the others. The runtime leaves out
the members at their defaults (``task_error`` None, ``logs`` empty, zero ``requests``, ``cold``
false, ``init_ms`` None): a reader takes a missing member as its default.

The format carries ``PROTOCOL_VERSION``; a runtime refuses an event of another version.
Version 2 added the event's ``deadline`` and signatures bound to their context: the
``*_context`` functions below say, for each kind of signed object, where it belongs — the
writer signs that context and the reader (runtime or driver) demands it back
(``lambdamr.signing``).

An event carries ``deadline``, the epoch second after which it must not start: Lambda can
deliver an asynchronous event hours late, after the driver re-ran the task or gave up. The
runtime answers such an event ``{"expired": true}`` without loading or running anything.

An event may carry ``extra_env``, the job's environment variables (``ExtraEnv``: names and
values checked by ``check_extra_env``), which the runtime sets around the task and restores
after it. Their values may be secrets: an ``ExtraEnv`` never shows them in its repr.
"""

from __future__ import annotations

import base64
import json
import json.scanner
import math
import re
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from lambdamr.errors import ConfigurationError, ProtocolError
from lambdamr.signing import Context

PROTOCOL_VERSION = 2
#: ``TaskEvent.options`` key: the stored ``(initializer, initargs)`` the runtime runs once per process
INITIALIZER_OPTION = "initializer"
RESULT_MAGIC = b"LMR1"
_HEADER_LEN = struct.Struct("<I")


def session_of(job_id: str) -> str:
    """The executor session a job belongs to (job ids are ``{session}-{number}``)."""
    return job_id.rpartition("-")[0] or job_id


def function_context(session: str, key: str) -> Context:
    """A pickled function: one per session, under its content-addressed key."""
    return Context("function", session=session, key=key)


def arguments_context(job_id: str, task_id: int, key: str | None) -> Context:
    """One task's pickled calls: inline in the event (``key`` None) or a byte range of the
    job's argument object ``key``; the same for every attempt."""
    return Context.of("arguments", session=session_of(job_id), job=job_id, task=task_id, key=key)


def result_context(job_id: str, task_id: int, attempt: int, key: str) -> Context:
    """The result record of one attempt, under its write-once key (also when it comes back
    inline in the response)."""
    return Context.of("result", session=session_of(job_id), job=job_id, task=task_id, attempt=attempt, key=key)


#: what ``extra_env`` may not set, and why: the runtime's own settings and what the platform
#: reserves. ``LAMBDAMR_*``: the signing key, its secret, the grants the runtime reads;
#: ``AWS_*``: the execution role's credentials, the region, the Lambda runtime API;
#: ``LAMBDA_*``, ``_HANDLER``, ``_X_AMZN_TRACE_ID``: reserved by AWS Lambda.
RESERVED_ENV_PREFIXES = ("LAMBDAMR_", "AWS_", "LAMBDA_")
RESERVED_ENV_NAMES = frozenset({"_HANDLER", "_X_AMZN_TRACE_ID"})
#: bytes the variables may take in the JSON event: far below Lambda's payload limits, and
#: kept free in every event (``driver.staging.EVENT_OVERHEAD``), so that they never decide
#: whether a task's arguments fit its event
EXTRA_ENV_MAX_BYTES = 32 * 1024
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ExtraEnv(Mapping[str, str]):
    """Environment variables for the remote side of a job: an immutable mapping whose repr
    names the variables and hides their values (they may be secrets)."""

    __slots__ = ("_items", "_hash")

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items: dict[str, str] = dict(items or {})
        self._hash: int | None = None  # the local dispatcher hashes a task's job fields per task

    def __getitem__(self, name: str) -> str:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(tuple(sorted(self._items.items())))
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._items) == dict(other)

    def merged(self, other: Mapping[str, str]) -> ExtraEnv:
        """These variables with ``other``'s added (``other`` wins on a name both set)."""
        return ExtraEnv({**self._items, **other})

    def as_dict(self) -> dict[str, str]:
        """A plain dict (for the JSON event)."""
        return dict(self._items)

    def __repr__(self) -> str:
        return "ExtraEnv(" + ", ".join(f"{name}=<hidden>" for name in self._items) + ")"

    def __reduce__(self) -> tuple[Any, ...]:
        return (ExtraEnv, (self._items,))


NO_EXTRA_ENV = ExtraEnv()


def check_extra_env(value: Any, label: str = "extra_env") -> ExtraEnv:
    """``extra_env`` as the runtime will set it: a mapping of str to str, refused when a
    name is malformed or one the runtime or the platform relies on (``RESERVED_ENV_*``).

    Raises:
        ConfigurationError: naming the variable (never its value) and what to do.
    """
    if value is None:
        return NO_EXTRA_ENV
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{label}: give a dict of environment variable names to values, e.g. {{'MODE': 'fast'}}")
    for name, text in value.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise ConfigurationError(
                f"{label}: {name!r} is not an environment variable name (letters, digits and _, not starting with a digit)"
            )
        if not isinstance(text, str):
            raise ConfigurationError(
                f"{label}: the value of {name} is a {type(text).__name__}; give a string (str(...) it yourself)"
            )
        if "\x00" in text:
            raise ConfigurationError(f"{label}: the value of {name} contains a NUL character, which no environment holds")
        if name.upper().startswith(RESERVED_ENV_PREFIXES) or name.upper() in RESERVED_ENV_NAMES:
            raise ConfigurationError(
                f"{label}: {name} is reserved: LAMBDAMR_* configure the runtime itself (its signing key, its "
                "grants), AWS_* hold the execution role's credentials and region, and AWS Lambda reserves "
                "LAMBDA_*, _HANDLER and _X_AMZN_TRACE_ID. Pick another name for your own setting"
            )
    size = len(json.dumps(dict(value), separators=(",", ":")))  # as the event carries them
    if size > EXTRA_ENV_MAX_BYTES:
        raise ConfigurationError(
            f"{label}: {size} bytes of names and values in the event, more than the {EXTRA_ENV_MAX_BYTES} it keeps for them; "
            "put bulky settings in an object (ex.share(...)) and pass its handle"
        )
    return value if isinstance(value, ExtraEnv) else ExtraEnv(value)


@dataclass(frozen=True)
class ArgsRange:
    """A byte range of a job's packed argument object holding one task's pickled calls."""

    key: str
    start: int
    length: int


@dataclass(frozen=True)
class TaskEvent:
    """One invocation of the runtime: which function, which calls, where to put the result."""

    job_id: str
    task_id: int
    attempt: int
    storage: dict[str, Any]
    function_key: str
    result_key: str
    timeout_s: float
    memory_mb: int
    args_inline: str | None = None  # base64 of the pickled list of (args, kwargs)
    #: the same pickled calls as raw bytes, on a transport that carries bytes (the local
    #: wire); ``to_dict`` sends them base64-encoded
    args_raw: bytes | None = field(default=None, repr=False)
    args_range: ArgsRange | None = None
    store_result: bool = True  # write the result record to storage
    reply_inline_max: int = 0  # also return the record in the response when this small
    options: dict[str, Any] = field(default_factory=dict)  # extensions (logs, signing...)
    deadline: float | None = None  # epoch seconds after which the runtime must not start it
    #: the job's environment variables, set around the task (their repr hides the values)
    extra_env: ExtraEnv = NO_EXTRA_ENV

    @classmethod
    def assemble(cls, **values: Any) -> TaskEvent:
        """The event of these field ``values`` (the others at their defaults), made without the
        frozen dataclass's ``__init__``, whose sixteen guarded assignments cost more than the
        rest of dispatching a short task: the driver builds one per attempt, from values it
        holds already checked (``from_dict`` is the checking way in)."""
        assert values.keys() <= _EVENT_FIELDS, f"not TaskEvent fields: {sorted(values.keys() - _EVENT_FIELDS)}"
        event = object.__new__(cls)
        state = event.__dict__
        state.update(_EVENT_DEFAULTS)
        state["options"] = {}
        state.update(values)
        return event

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able event, as a backend sends it."""
        # Written out rather than dataclasses.asdict: this runs once per invocation.
        data: dict[str, Any] = {
            "lambdamr": PROTOCOL_VERSION,
            "job_id": self.job_id,
            "task_id": self.task_id,
            "attempt": self.attempt,
            "storage": self.storage,
            "function_key": self.function_key,
            "result_key": self.result_key,
            "timeout_s": self.timeout_s,
            "memory_mb": self.memory_mb,
            "store_result": self.store_result,
            "reply_inline_max": self.reply_inline_max,
            "options": self.options,
        }
        if self.args_inline is not None:
            data["args_inline"] = self.args_inline
        elif self.args_raw is not None:
            data["args_inline"] = encode_inline_args(self.args_raw)
        if self.args_range is not None:
            data["args_range"] = asdict(self.args_range)
        if self.deadline is not None:
            data["deadline"] = self.deadline
        if self.extra_env:
            data["extra_env"] = self.extra_env.as_dict()
        return data

    def to_json(self) -> bytes:
        """The event serialised as the UTF-8 JSON payload of an invoke request."""
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskEvent:
        """Parse and validate an event received by the runtime."""
        if not isinstance(data, dict):
            raise ProtocolError(f"a lambdamr task event is a JSON object, got {type(data).__name__}")
        version = data.get("lambdamr")
        if version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"task event has protocol version {version!r}, this runtime speaks "
                f"{PROTOCOL_VERSION}: deploy the runtime of the same lambdamr version as the "
                "driver (`lambdamr deploy`)"
            )
        try:
            rng = data.get("args_range")
            return cls(
                job_id=str(data["job_id"]),
                task_id=int(data["task_id"]),
                attempt=int(data["attempt"]),
                storage=dict(data["storage"]),
                function_key=str(data["function_key"]),
                result_key=str(data["result_key"]),
                timeout_s=float(data["timeout_s"]),
                memory_mb=int(data["memory_mb"]),
                args_inline=data.get("args_inline"),
                args_range=ArgsRange(**rng) if rng else None,
                store_result=bool(data.get("store_result", True)),
                reply_inline_max=int(data.get("reply_inline_max", 0)),
                options=dict(data.get("options") or {}),
                deadline=_deadline(data.get("deadline")),
                extra_env=check_extra_env(data.get("extra_env"), "the event's extra_env"),
            )
        except ConfigurationError as exc:
            raise ProtocolError(f"malformed lambdamr task event: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed lambdamr task event: {exc!r}") from exc

    @property
    def session(self) -> str:
        """The executor session of the event's job."""
        return session_of(self.job_id)

    def function_context(self) -> Context:
        """What the function object the event names must have been signed for."""
        return function_context(self.session, self.function_key)

    def arguments_context(self) -> Context:
        """What the event's arguments (inline, or its range) must have been signed for."""
        key = self.args_range.key if self.args_range is not None else None
        return arguments_context(self.job_id, self.task_id, key)

    def result_context(self) -> Context:
        """What the runtime signs the attempt's result record for."""
        return result_context(self.job_id, self.task_id, self.attempt, self.result_key)

    def expired(self, now: float) -> bool:
        """Whether the event arrived after its deadline (then it must not run)."""
        return self.deadline is not None and now > self.deadline

    @property
    def has_inline_args(self) -> bool:
        """Whether the calls travel in the event (rather than as a range of stored arguments)."""
        return self.args_raw is not None or self.args_inline is not None

    def inline_args_bytes(self) -> bytes:
        """The inline arguments' bytes (the caller checked ``has_inline_args``)."""
        if self.args_raw is not None:
            return self.args_raw
        assert self.args_inline is not None
        return base64.b64decode(self.args_inline)


_EVENT_FIELDS = frozenset(f.name for f in fields(TaskEvent))
_EVENT_DEFAULTS = {f.name: f.default for f in fields(TaskEvent) if f.default is not MISSING}


def _deadline(value: Any) -> float | None:
    if value is None:
        return None
    deadline = float(value)
    if not math.isfinite(deadline):
        raise ValueError(f"deadline {value!r} is not a finite number of epoch seconds")
    return deadline


def encode_inline_args(data: bytes) -> str:
    """Encode pickled arguments for the JSON event."""
    return base64.b64encode(data).decode("ascii")


def inline_size(data_len: int) -> int:
    """Bytes that ``data_len`` bytes of arguments take once base64-encoded in the event."""
    return 4 * ((data_len + 2) // 3)


@dataclass(frozen=True)
class CallOutcome:
    """What the header says of one call of a task: success, or the error's type and text."""

    ok: bool
    error_type: str = ""
    error_message: str = ""
    traceback: str = ""
    exception_pickled: bool = False  # frame holds the pickled exception itself


#: a call that returned: the header lists only what differs from ``CallOutcome``'s defaults
CALL_OK = CallOutcome(ok=True)
_CALL_OK_ENTRY = {"ok": True}
def _header_encoder() -> Callable[[Any], str]:
    """One JSON encoder for result headers, made once: ``JSONEncoder.encode`` builds a new C
    encoder on every call, which cost more than encoding a short task's header itself."""
    if c_make_encoder is None:  # a Python without the C accelerator
        return json.JSONEncoder(separators=(",", ":"), default=str).encode
    # markers None: no check for cycles (a header is built by the runtime, never cyclic)
    encode = c_make_encoder(None, str, encode_basestring_ascii, None, ":", ",", False, False, True)
    return lambda header: "".join(encode(header, 0))


_encode_header = _header_encoder()
_scan_json = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # typeshed types it as its own class


def _decode_header(text: str) -> Any:
    """A header's JSON: scanned straight (what ``json.loads`` does after its checks for
    whitespace around the value, which a header has none of); anything else through ``json.loads``."""
    try:
        value, end = _scan_json(text, 0)
    except (StopIteration, ValueError):
        end = -1
    return value if end == len(text) else json.loads(text)


def call_entry(outcome: CallOutcome) -> dict[str, Any]:
    """A call's entry in a result header (a call that returned is just ``{"ok": true}``)."""
    if outcome == CALL_OK:
        return _CALL_OK_ENTRY
    return dict(outcome.__dict__)


def encode_result(header: dict[str, Any], frames: list[bytes], *, encoded_members: str = "") -> bytes:
    """Assemble a result record from its JSON header and its frames; ``encoded_members`` are
    more members of the header, already JSON (``"name":value,...``: what is the same for
    every task of a process need not be encoded again for each)."""
    header = dict(header, lambdamr=PROTOCOL_VERSION, frames=[len(f) for f in frames])
    text = _encode_header(header)
    head = (f"{text[:-1]},{encoded_members}}}" if encoded_members else text).encode()
    return b"".join([RESULT_MAGIC, _HEADER_LEN.pack(len(head)), head, *frames])


def decode_result(data: bytes | memoryview) -> tuple[dict[str, Any], list[memoryview]]:
    """Split a result record into its header and frames (no copy of the frames)."""
    view = memoryview(data)
    if bytes(view[:4]) != RESULT_MAGIC:
        raise ProtocolError("not a lambdamr result record (bad magic): was it written by another tool?")
    (head_len,) = _HEADER_LEN.unpack_from(view, 4)
    start = 4 + _HEADER_LEN.size
    try:
        header = _decode_header(str(view[start : start + head_len], "utf-8"))
    except ValueError as exc:
        raise ProtocolError(f"corrupt result header: {exc}") from exc
    if header.get("lambdamr") != PROTOCOL_VERSION:
        raise ProtocolError(
            f"result written by protocol version {header.get('lambdamr')!r}, driver speaks "
            f"{PROTOCOL_VERSION}: redeploy the runtime with this lambdamr version"
        )
    frames = []
    pos = start + head_len
    for size in header.get("frames", []):
        frames.append(view[pos : pos + size])
        pos += size
    if pos != len(view):
        raise ProtocolError(f"result record truncated or padded: {len(view)} bytes, expected {pos}")
    return header, frames


def call_outcomes(header: dict[str, Any]) -> list[CallOutcome]:
    """The per-call outcomes listed in a result header."""
    return [CALL_OK if c == _CALL_OK_ENTRY else CallOutcome(**c) for c in header.get("calls", [])]
