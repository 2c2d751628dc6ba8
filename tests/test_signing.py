"""Signatures: a context is signed as the JSON its fields make, and a payload of any size
signs and verifies the same way."""

from __future__ import annotations

import json

import pytest

from lambdamr.errors import IntegrityError
from lambdamr.signing import Context, Signer

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
