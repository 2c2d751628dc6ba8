"""The task event and result record formats shared by driver and runtime."""

from __future__ import annotations

import json

import pytest

from lambdamr.errors import ProtocolError
from lambdamr.protocol import (
    PROTOCOL_VERSION,
    ArgsRange,
    TaskEvent,
    decode_result,
    encode_inline_args,
    encode_result,
    inline_size,
)


def make_event(**changes) -> TaskEvent:
    fields = dict(
        job_id="j-1", task_id=3, attempt=1, storage={"kind": "local", "root": "/tmp/x"},
        function_key="p/fn/abc", result_key="p/j/results/000003.1", timeout_s=30.0, memory_mb=512,
        args_inline=encode_inline_args(b"\x80\x05N."),
    )
    fields.update(changes)
    return TaskEvent(**fields)


def test_event_survives_json_round_trip():
    event = make_event(args_inline=None, args_range=ArgsRange("p/j/args", 100, 42))
    again = TaskEvent.from_dict(json.loads(event.to_json()))
    assert again == event


def test_event_is_json_as_lambda_requires():
    data = json.loads(make_event().to_json())
    assert data["lambdamr"] == PROTOCOL_VERSION
    assert "args_range" not in data


def test_event_of_another_version_is_refused_with_a_fix():
    data = make_event().to_dict()
    data["lambdamr"] = PROTOCOL_VERSION + 1
    with pytest.raises(ProtocolError, match="lambdamr deploy"):
        TaskEvent.from_dict(data)


@pytest.mark.parametrize("bad", [None, [], "text", {"lambdamr": PROTOCOL_VERSION}])
def test_malformed_event_is_refused(bad):
    with pytest.raises(ProtocolError):
        TaskEvent.from_dict(bad)


def test_result_record_round_trip_without_copying_frames():
    record = encode_result({"task_id": 1, "calls": []}, [b"abc", b"", b"defg"])
    header, frames = decode_result(record)
    assert header["task_id"] == 1 and header["frames"] == [3, 0, 4]
    assert [bytes(f) for f in frames] == [b"abc", b"", b"defg"]
    assert isinstance(frames[0], memoryview)


def test_truncated_or_foreign_record_is_refused():
    record = encode_result({"x": 1}, [b"abcdef"])
    with pytest.raises(ProtocolError, match="truncated"):
        decode_result(record[:-2])
    with pytest.raises(ProtocolError, match="bad magic"):
        decode_result(b"PK\x03\x04" + record[4:])


def test_inline_size_matches_base64():
    for n in range(0, 20):
        assert inline_size(n) == len(encode_inline_args(b"x" * n))


def test_event_deadline_round_trips_and_says_when_it_expired():
    event = make_event(deadline=1_000.5)
    again = TaskEvent.from_dict(json.loads(event.to_json()))
    assert again.deadline == 1_000.5
    assert not again.expired(1_000.0) and again.expired(1_001.0)
    assert not make_event().expired(10**12)  # no deadline: never expires
    assert "deadline" not in make_event().to_dict()


@pytest.mark.parametrize("bad", ["soon", float("nan"), float("inf")])
def test_event_with_a_deadline_that_is_not_a_time_is_refused(bad):
    data = make_event().to_dict()
    data["deadline"] = bad
    with pytest.raises(ProtocolError, match="deadline|malformed"):
        TaskEvent.from_dict(data)


def test_event_contexts_name_job_task_attempt_and_keys():
    event = make_event(job_id="20261201-101010-abcdef-0002", args_inline=None, args_range=ArgsRange("p/a", 0, 9))
    assert event.session == "20261201-101010-abcdef"
    assert event.function_context().fields() == {
        "kind": "function", "session": event.session, "job": None, "task": None, "attempt": None, "key": "p/fn/abc"
    }
    assert event.arguments_context().key == "p/a" and event.arguments_context().task == 3
    assert make_event().arguments_context().key is None  # inline: bound to job and task only
    result = event.result_context()
    assert (result.kind, result.job, result.task, result.attempt, result.key) == (
        "result", event.job_id, 3, 1, "p/j/results/000003.1"
    )
