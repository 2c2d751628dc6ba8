"""HMAC signatures on every pickled object: unpickling is code execution.

The driver signs what it stages (function, arguments, shared objects) and the runtime signs
the result records it writes; each side refuses to unpickle anything whose signature does
not verify with the deployment's key. Someone who can write to the bucket but does not hold
the key cannot make the runtime — or the driver — run their code.

A signed blob is ``b"LMS1" + HMAC-SHA256(key, payload) + payload``. The key comes from
``LAMBDAMR_SIGNING_KEY`` (hex) when set — the AWS deployment sets it in the function's
environment — and is otherwise the user's local key, made once in
``~/.config/lambdamr/signing-key`` (mode 0600) and handed to the local workers, so that a
later driver can verify a dead driver's results (``attach``). It is never logged or printed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from pathlib import Path

from .errors import IntegrityError

MAGIC = b"LMS1"
_MAC_SIZE = hashlib.sha256().digest_size
OVERHEAD = len(MAGIC) + _MAC_SIZE
KEY_ENV = "LAMBDAMR_SIGNING_KEY"

_lock = threading.Lock()
_process_key: bytes | None = None


def process_key() -> bytes:
    """This process's key: ``LAMBDAMR_SIGNING_KEY`` if set, else the secret the environment
    names (a Lambda container's: ``runtime.key_source``), else the user's local key."""
    global _process_key
    with _lock:
        if _process_key is None:
            from .runtime.key_source import key_from_environment

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


class Signer:
    """Signs and verifies blobs with one key. Its repr never shows the key."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise IntegrityError("a signing key needs at least 16 bytes")
        self._key = key

    def _mac(self, payload: bytes | memoryview) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def sign(self, payload: bytes) -> bytes:
        """``payload`` with its signature in front."""
        return b"".join((MAGIC, self._mac(payload), payload))

    def verify(self, blob: bytes | memoryview, *, what: str) -> memoryview:
        """The payload of a signed blob; ``IntegrityError`` if it was not signed with this key."""
        view = memoryview(blob)
        if bytes(view[: len(MAGIC)]) != MAGIC:
            raise IntegrityError(
                f"refusing to load the {what}: it carries no lambdamr signature (written by another "
                "tool or an older lambdamr?)"
            )
        mac = bytes(view[len(MAGIC) : OVERHEAD])
        payload = view[OVERHEAD:]
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise IntegrityError(
                f"refusing to load the {what}: its signature does not match this deployment's key. "
                "It was modified in storage, or written by a driver with another key (check "
                f"{KEY_ENV}, or redeploy with `lambdamr deploy`)"
            )
        return payload

    def __repr__(self) -> str:
        return "Signer(<key hidden>)"
