"""HMAC signatures on every pickled or trusted object, bound to where the object belongs.

Unpickling is code execution, and a stored record steers what the driver reports, so every
object one side writes for the other is signed, and every reader checks two things before it
unpickles (or believes) anything:

* the signature verifies with the deployment's key (or the user's local key), and
* the object's *context* — signed with it — is exactly the one the reader expected: its kind
  (function, arguments, shared object, result record, task manifest, job record, task logs),
  the key id, and the session, job, task, attempt and storage key it was written for.

So someone who can write to the folder or bucket but does not hold the key can neither make
the runtime or the driver run their code, nor move a validly signed object to another place:
task 0's result copied over task 3's, two tasks' argument blocks swapped, an earlier
session's function copied over this one's — each is refused with an ``IntegrityError`` that
names what did not match.

A signed blob (format ``LMS2``)::

    b"LMS2" | HMAC-SHA256(key, rest) | rest
    rest = uint32 context length | context (UTF-8 JSON) | payload

The key comes from ``LAMBDAMR_SIGNING_KEY`` (hex) when set, and is otherwise the user's local
key, made once in ``~/.config/lambdamr/signing-key`` (mode 0600) and handed to the local
workers, so that a later driver can verify a dead driver's results (``attach``). It is never
logged or printed; its *key id* (a fingerprint that reveals nothing of it) is, so that a
message can say which key signed what.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import struct
import threading
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any

from lambdamr.errors import IntegrityError

MAGIC = b"LMS2"
#: signature formats of earlier lambdamr versions, refused with a message saying so
OLD_MAGICS = {b"LMS1": "lambdamr 0.1 (signatures without context)"}
_MAC_SIZE = hashlib.sha256().digest_size
_CONTEXT_LEN = struct.Struct("<I")
_CONTEXT_START = len(MAGIC) + _MAC_SIZE + _CONTEXT_LEN.size
#: a context is a few hundred bytes; anything larger is not one of ours
_MAX_CONTEXT = 64 * 1024
#: payloads up to this size are signed with one join and a one-shot HMAC (faster than
#: hashing part by part); bigger ones are hashed in place so that they are copied only once
_ONE_SHOT_MAX = 64 * 1024
KEY_ENV = "LAMBDAMR_SIGNING_KEY"

#: what a signed object can be, by the name its context gives it
KINDS = {
    "function": "function",
    "arguments": "task arguments",
    "shared": "shared object",
    "result": "result record",
    "task-manifest": "task manifest",
    "job-record": "job record",
    "task-logs": "task logs",
    "task-value": "task's stored value",
}

#: one encoder, reused: ``json.dumps`` with options builds a new one per call (signing runs per task)
_encode_json = json.JSONEncoder(separators=(",", ":")).encode

_lock = threading.Lock()
_process_key: bytes | None = None


def process_key() -> bytes:
    """This process's key: ``LAMBDAMR_SIGNING_KEY`` if set, else the secret the environment
    names (a Lambda container's: ``runtime.key_source``), else the user's local key."""
    global _process_key
    with _lock:
        if _process_key is None:
            from lambdamr.runtime.key_source import key_from_environment

            raw = os.environ.get(KEY_ENV) or key_from_environment()
            _process_key = parse_key(raw) if raw else _local_key()
        return _process_key


def local_key_path() -> Path:
    """Where the user's local signing key lives."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "lambdamr" / "signing-key"


def _local_key() -> bytes:
    path = local_key_path()
    try:
        return parse_key(path.read_text())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = new_key_hex()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    try:
        # A hard link never replaces: two first-time drivers agree on the key that landed first.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return parse_key(path.read_text())


def parse_key(text: str) -> bytes:
    """Decode a hex key, refusing short or malformed ones."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise IntegrityError(f"{KEY_ENV} must be hex (64 hex digits); regenerate it with `lambdamr deploy`") from None
    if len(key) < 16:
        raise IntegrityError(f"{KEY_ENV} is too short ({len(key)} bytes); use at least 16 random bytes")
    return key


def new_key_hex() -> str:
    """A fresh random key, hex-encoded, for a new deployment."""
    return secrets.token_hex(32)


def key_id_of(key: bytes) -> str:
    """A fingerprint of ``key`` safe to show and store: 8 bytes of HMAC(key, "lambdamr key id"), hex."""
    return hmac.new(key, b"lambdamr key id", hashlib.sha256).hexdigest()[:16]


def content_hash(payload: bytes | memoryview) -> str:
    """The SHA-256 (hex) that names a content-addressed object (functions, shared objects)."""
    return hashlib.sha256(payload).hexdigest()


@dataclass(frozen=True)
class Context:
    """Where a signed object belongs. Every field is compared, ``None`` included: a field
    that does not apply to a kind (the job of a function, the attempt of arguments) is
    ``None`` on both sides."""

    kind: str
    session: str | None = None
    job: str | None = None
    task: int | None = None
    attempt: int | None = None
    key: str | None = None  # the storage key it is stored under (None: travels inline)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown signed object kind {self.kind!r}")

    @classmethod
    def of(
        cls, kind: str, session: str | None = None, job: str | None = None, task: int | None = None,
        attempt: int | None = None, key: str | None = None,
    ) -> Context:
        """The context of these fields made without the frozen dataclass's ``__init__`` (six
        guarded assignments and the check of ``kind``): for the contexts this package builds
        itself, one or two per task (``protocol.arguments_context``, ``result_context``)."""
        assert kind in KINDS, kind
        context = object.__new__(cls)
        context.__dict__.update(kind=kind, session=session, job=job, task=task, attempt=attempt, key=key)
        return context

    def fields(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "session": self.session,
            "job": self.job,
            "task": self.task,
            "attempt": self.attempt,
            "key": self.key,
        }

    def encode(self, key_id: str) -> bytes:
        """The context as signed: the JSON of ``fields()`` plus ``key_id``, in that order.

        Byte for byte what ``json`` writes (compact separators, ASCII), but built directly:
        every task signs and checks one or two contexts, and the generic encoder took
        several times longer than the HMAC itself.
        """
        return (
            f'{{"kind":{_json_scalar(self.kind)},"session":{_json_scalar(self.session)},'
            f'"job":{_json_scalar(self.job)},"task":{_json_scalar(self.task)},'
            f'"attempt":{_json_scalar(self.attempt)},"key":{_json_scalar(self.key)},'
            f'"key_id":{_json_scalar(key_id)}}}'
        ).encode()


def _json_scalar(value: Any) -> str:
    """``value`` as ``json`` writes it (the fields of a context are str, int or None)."""
    if value is None:
        return "null"
    kind = type(value)
    if kind is str:
        return encode_basestring_ascii(value)
    if kind is int:
        return int.__repr__(value)
    return _encode_json(value)  # anything else (a bool, a float): the generic encoder


def read_context(blob: bytes | memoryview) -> dict[str, Any] | None:
    """The context a blob claims, unverified (None if it has none) — for messages and listings."""
    view = memoryview(blob)
    if bytes(view[: len(MAGIC)]) != MAGIC or len(view) < _CONTEXT_START:
        return None
    (length,) = _CONTEXT_LEN.unpack_from(view, len(MAGIC) + _MAC_SIZE)
    if length > _MAX_CONTEXT or _CONTEXT_START + length > len(view):
        return None
    try:
        claimed = json.loads(bytes(view[_CONTEXT_START : _CONTEXT_START + length]))
    except ValueError:
        return None
    return claimed if isinstance(claimed, dict) else None


def _describe_mismatch(found: dict[str, Any], expected: dict[str, Any]) -> str:
    wrong = [
        f"its {name} is {found.get(name)!r}, expected {expected[name]!r}"
        for name in expected
        if found.get(name) != expected[name]
    ]
    return "; ".join(wrong)


#: jobs whose contexts' shared start a signer keeps encoded
_HEADS_KEPT = 1024


#: messages up to this size are MACed holding the GIL (``HmacKey.mac``): CPython's hashlib
#: releases it while hashing 2,048 bytes or more
_GIL_KEPT_MAX = 2047


class HmacKey:
    """An HMAC-SHA256 key with its pads hashed once. ``mac(data)`` is ``hmac.digest(key, data,
    "sha256")`` byte for byte, but a small message keeps the GIL: the one-shot ``hmac.digest``
    releases it on every call, and a thread that gives the GIL away while another one computes
    waits up to the interpreter's switch interval (5 ms) to get it back — in a driver whose
    scheduler signs each task's arguments while its dispatcher runs, thousands of times the
    microsecond the MAC itself takes. Its repr never shows the key."""

    __slots__ = ("_key", "_ready")

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._ready = hmac.new(key, digestmod=hashlib.sha256)

    def mac(self, data: bytes | memoryview) -> bytes:
        if len(data) > _GIL_KEPT_MAX:  # long enough that hashing without the GIL pays
            return hmac.digest(self._key, data, "sha256")
        mac = self._ready.copy()
        mac.update(data)
        return mac.digest()

    def hasher(self) -> hmac.HMAC:
        """A fresh HMAC of this key, to feed part by part."""
        return self._ready.copy()

    def __repr__(self) -> str:
        return "<HmacKey>"


class Signer:
    """Signs and verifies blobs with one key. Its repr never shows the key."""

    __slots__ = ("_hmac", "key_id", "_key_id_json", "_heads")

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise IntegrityError("a signing key needs at least 16 bytes")
        self._hmac = HmacKey(key)
        self.key_id = key_id_of(key)
        self._key_id_json = _json_scalar(self.key_id)
        #: (kind, session, job) -> the start of its contexts' encoding, the same for a job's tasks
        self._heads: dict[tuple[Any, ...], str] = {}

    def _encode(self, context: Context) -> bytes:
        """``context.encode(self.key_id)``, byte for byte, with the part a job's contexts share
        encoded once per job: every task signs its arguments and its result, and checks both."""
        kind, session, job = context.kind, context.session, context.job
        head = self._heads.get((kind, session, job))
        if head is None:
            if len(self._heads) >= _HEADS_KEPT:
                self._heads.clear()
            head = self._heads[(kind, session, job)] = (
                f'{{"kind":{_json_scalar(kind)},"session":{_json_scalar(session)},"job":{_json_scalar(job)},"task":'
            )
        return (
            f'{head}{_json_scalar(context.task)},"attempt":{_json_scalar(context.attempt)},'
            f'"key":{_json_scalar(context.key)},"key_id":{self._key_id_json}}}'
        ).encode()

    def _mac(self, rest: bytes | memoryview) -> bytes:
        return self._hmac.mac(rest)

    def sign(self, payload: bytes | memoryview, context: Context) -> bytes:
        """``payload`` with its context and the signature of both in front."""
        head = self._encode(context)
        length = _CONTEXT_LEN.pack(len(head))
        if len(payload) <= _ONE_SHOT_MAX:  # small (a task's arguments): one join, a one-shot HMAC
            rest = b"".join((length, head, payload))
            return b"".join((MAGIC, self._mac(rest), rest))
        mac = self._hmac.hasher()  # big: hashed in place, copied once
        mac.update(length)
        mac.update(head)
        mac.update(payload)
        return b"".join((MAGIC, mac.digest(), length, head, payload))

    def signed_size(self, payload_size: int, context: Context) -> int:
        """How many bytes ``sign`` makes of a payload of ``payload_size`` bytes (without signing)."""
        return _CONTEXT_START + len(self._encode(context)) + payload_size

    def verify(self, blob: bytes | memoryview, expected: Context, *, what: str) -> memoryview:
        """The payload of a signed blob, once its signature and its context check out.

        Raises:
            IntegrityError: unsigned, signed with another key, modified, or signed for another
                place than ``expected`` (moved or copied in storage); the message names what.
        """
        view = memoryview(blob)
        # The common case first: the context is byte for byte the one this signer would have
        # written for ``expected`` (one encoding, one field order), so nothing needs parsing.
        head = self._encode(expected)
        end = _CONTEXT_START + len(head)
        start = bytes(view[:end])  # magic, MAC, context: a few hundred bytes
        if (
            len(start) == end
            and start.startswith(MAGIC)
            and start[len(MAGIC) + _MAC_SIZE : _CONTEXT_START] == _CONTEXT_LEN.pack(len(head))
            and start.endswith(head)
            and hmac.compare_digest(start[len(MAGIC) : len(MAGIC) + _MAC_SIZE], self._mac(view[len(MAGIC) + _MAC_SIZE :]))
        ):
            return view[end:]
        magic = bytes(view[: len(MAGIC)])
        if magic != MAGIC:
            if magic in OLD_MAGICS:
                raise IntegrityError(
                    f"refusing to load the {what}: it was signed by {OLD_MAGICS[magic]}, whose signatures "
                    "are not bound to where the object belongs. Run the job again with this lambdamr version "
                    "(and redeploy the runtime with `lambdamr deploy`)"
                )
            raise IntegrityError(
                f"refusing to load the {what}: it carries no lambdamr signature (written by another "
                "tool or an older lambdamr?)"
            )
        claimed = read_context(view)
        if claimed is None:
            raise IntegrityError(f"refusing to load the {what}: its signed context is missing or corrupt")
        if claimed.get("key_id") != self.key_id:
            raise IntegrityError(
                f"refusing to load the {what}: it claims key id {str(claimed.get('key_id'))[:32]!r}, but this "
                f"driver or runtime holds key id {self.key_id!r}. It was written by a driver with another "
                f"key (check {KEY_ENV}, or redeploy with `lambdamr deploy`), or forged"
            )
        mac = bytes(view[len(MAGIC) : len(MAGIC) + _MAC_SIZE])
        if not hmac.compare_digest(mac, self._mac(view[len(MAGIC) + _MAC_SIZE :])):
            raise IntegrityError(
                f"refusing to load the {what}: its signature does not match this deployment's key "
                f"(key id {self.key_id}). It was modified in storage, or written by a driver with another key "
                f"(check {KEY_ENV}, or redeploy with `lambdamr deploy`)"
            )
        wanted = expected.fields()
        if any(claimed.get(name) != value for name, value in wanted.items()):
            found = KINDS.get(str(claimed.get("kind")), "object")
            raise IntegrityError(
                f"refusing to load the {what}: it is validly signed, but for another place — "
                f"{_describe_mismatch(claimed, wanted)}. A {found} was moved or copied in storage "
                "(tampering, or a bug); it is not used"
            )
        (length,) = _CONTEXT_LEN.unpack_from(view, len(MAGIC) + _MAC_SIZE)
        return view[_CONTEXT_START + length :]

    def __repr__(self) -> str:
        return f"Signer(<key hidden>, key id {self.key_id})"


def check_content_key(payload: bytes | memoryview, key: str, *, what: str) -> None:
    """Refuse a content-addressed object whose payload does not hash to the name in its key."""
    name = key.rsplit("/", 1)[-1]
    if content_hash(payload) != name:
        raise IntegrityError(
            f"refusing to load the {what}: its content does not hash to the name of its key {key!r} "
            "(content-addressed objects are named by the SHA-256 of their bytes); it was replaced in storage"
        )
