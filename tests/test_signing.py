"""Signatures: a context is signed as the JSON its fields make, and a payload of any size
signs and verifies the same way."""

from __future__ import annotations

import json
import os

import pytest

from lambdamr.errors import IntegrityError
from lambdamr.signing import Context, Signer, read_context

KEY = bytes(range(32))


@pytest.mark.parametrize("context", [
    Context("function", session="20261201-000000-abcdef", key="p/s/fn/0a1b"),
    Context("arguments", session="s", job="s-0001", task=0, key=None),
    Context("result", session="s", job="s-0001", task=123456, attempt=1001, key="p/s/0001/results/123456.1001"),
    Context("shared", session='quote " back \\ slash', key="ünïcode/κλειδί/\u2028/\x00"),
    Context("task-manifest", session=None, job=None, task=None, attempt=None, key=None),
])
def test_a_context_is_encoded_as_json_writes_it(context):
    expected = json.dumps({**context.fields(), "key_id": "0123456789abcdef"}, separators=(",", ":")).encode()
    assert context.encode("0123456789abcdef") == expected
    assert json.loads(expected) == {**context.fields(), "key_id": "0123456789abcdef"}


@pytest.mark.parametrize("size", [0, 100, 64 * 1024, 64 * 1024 + 1, 1 << 20])  # one-shot and streamed HMAC
def test_a_payload_of_any_size_verifies_and_is_refused_once_changed(size):
    signer = Signer(KEY)
    context = Context("arguments", session="s", job="s-0001", task=7)
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    blob = signer.sign(payload, context)
    assert bytes(signer.verify(blob, context, what="arguments")) == payload
    changed = bytearray(blob)
    changed[-1 if size else 40] ^= 1
    with pytest.raises(IntegrityError):
        signer.verify(bytes(changed), context, what="arguments")
    with pytest.raises(IntegrityError, match="its task is 7, expected 8"):
        signer.verify(blob, Context("arguments", session="s", job="s-0001", task=8), what="arguments")


@pytest.mark.parametrize("fields", [
    {"kind": "arguments", "session": "s-1", "job": "s-1-0001", "task": 0},
    {"kind": "result", "session": "s\u00e9\"q", "job": "j\\1", "task": 123456, "attempt": 2, "key": "p/results/123456.2"},
    {"kind": "function", "session": "s", "key": "fn/abc"},
])
def test_a_signers_context_bytes_are_the_contexts_own_encoding_and_context_of_equals_the_checked_init(
    fields: dict,
) -> None:
    signer = Signer(b"k" * 32)
    checked = Context(**fields)
    fast = Context.of(**fields)
    assert fast == checked and hash(fast) == hash(checked)
    for _ in range(2):  # the second time from the signer's cached start of the job's contexts
        blob = signer.sign(b"payload", fast)
        assert checked.encode(signer.key_id) in blob
        assert read_context(blob) == {**checked.fields(), "key_id": signer.key_id}
        assert bytes(signer.verify(blob, checked, what="x")) == b"payload"
    other_task = Context.of(**{**fields, "task": 7})
    with pytest.raises(IntegrityError):
        signer.verify(signer.sign(b"payload", other_task), checked, what="x")


@pytest.mark.parametrize("size", [0, 1, 2047, 2048, 5000, 1 << 20])
def test_hmac_key_macs_as_the_one_shot_hmac_on_either_side_of_the_gil_threshold(size):
    import hashlib
    import hmac

    from lambdamr.signing import HmacKey

    key, data = os.urandom(32), os.urandom(size)
    ready = HmacKey(key)
    assert ready.mac(data) == ready.mac(memoryview(data)) == hmac.digest(key, data, "sha256")
    parts = ready.hasher()
    parts.update(data[: size // 2])
    parts.update(data[size // 2 :])
    assert parts.digest() == hmac.new(key, data, hashlib.sha256).digest()
    assert ready.mac(data) == hmac.digest(key, data, "sha256")  # the hasher's copy left the key's state alone
    assert key.hex() not in repr(ready)
