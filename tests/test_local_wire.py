"""The local wire: frames survive the socket whole, completions are signed once per frame and
each stays bound to the task and attempt it answers."""

from __future__ import annotations

import socket
import threading

import pytest

from lambdamr.backends import local_wire as wire
from lambdamr.backends.base import Invocation
from lambdamr.backends.local import LocalBackend, _Running
from lambdamr.errors import IntegrityError, ProtocolError
from lambdamr.protocol import ArgsRange, TaskEvent, check_extra_env

KEY = bytes(range(32))


def event(task_id: int = 3, attempt: int = 2, **fields) -> TaskEvent:
    base = dict(
        job_id="20261201-000000-abcdef-0007", task_id=task_id, attempt=attempt,
        storage={"kind": "local", "root": "/nowhere"}, function_key="p/s/fn/abc",
        result_key=f"p/s/0007/results/{task_id:06d}.{attempt}", timeout_s=30.0, memory_mb=512,
        args_raw=b"\x00pickled\xffcalls", reply_inline_max=1 << 20, store_result=False,
        options={"initializer": "p/s/fn/init"},
    )
    base.update(fields)
    return TaskEvent(**base)


def body_of(parts) -> memoryview:
    """A frame's body: its parts after the length."""
    return memoryview(b"".join(bytes(p) for p in parts[1:]))


def sent_tasks(parts) -> list[tuple[int, int, TaskEvent]]:
    """A JOB frame and a TASKS frame sent over a socket pair, decoded as a worker does."""
    a, b = socket.socketpair()
    with a, b:
        wire.send_parts(a, parts)
        reader = wire.FrameReader(b)
        jobs = wire.WorkerJobs()
        jobs.add(reader.read())
        return list(wire.decode_tasks(reader.read(), jobs))


def test_tasks_cross_with_their_job_fields_sent_once():
    inline = event()
    ranged = event(task_id=4, args_raw=None, args_range=ArgsRange("p/s/0007/args", 100, 50), deadline=1.5e9)
    parts = wire.encode_job(9, inline) + wire.encode_tasks([(1, 9, inline, inline.args_raw), (2, 9, ranged, None)])
    decoded = sent_tasks(parts)
    assert [(number, slot) for number, slot, _ in decoded] == [(1, 9), (2, 9)]
    assert decoded[0][2] == inline
    assert decoded[1][2] == ranged


def test_a_worker_refuses_a_task_of_a_job_it_was_not_sent_or_forgot():
    jobs = wire.WorkerJobs()
    for slot in range(1, wire.JOB_SLOTS_PER_WORKER + 2):
        jobs.add(body_of(wire.encode_job(slot, event())))
    with pytest.raises(ProtocolError, match="job slot 1, which this worker was never sent"):
        jobs[1]  # the oldest is forgotten first, as the dispatcher forgets it
    assert jobs[2].job_id == event().job_id


@pytest.mark.parametrize("size", [10, 200_000])  # one joined HMAC, and one over the parts
def test_completions_are_signed_once_and_refused_when_changed(size):
    record = bytes(size) + b"end"
    entries = wire.done_entry(1, 9, event(), wire.RECORD, wire.FLAG_OK, record) + wire.done_entry(
        2, 9, event(task_id=4), wire.STORED, wire.FLAG_STORED
    )
    body = bytes(body_of(wire.encode_done(KEY, 2, entries)))
    first, second = wire.decode_done(KEY, memoryview(body))
    assert (first.number, first.task_id, first.attempt, first.kind, bytes(first.payload)) == (1, 3, 2, wire.RECORD, record)
    assert (second.number, second.task_id, second.kind, second.flags) == (2, 4, wire.STORED, wire.FLAG_STORED)

    changed = bytearray(body)
    changed[-1] ^= 1  # one bit of the record
    with pytest.raises(IntegrityError, match="signature does not match"):
        wire.decode_done(KEY, memoryview(bytes(changed)))
    with pytest.raises(IntegrityError, match="signature does not match"):
        wire.decode_done(bytes(32), memoryview(body))  # signed with another key


def test_the_reader_reassembles_frames_split_and_joined_by_the_socket():
    small = wire.frame([b"R"])
    large = wire.frame([b"D", bytes(300_000)])
    data = b"".join(bytes(p) for p in small + large + small)
    a, b = socket.socketpair()
    with a, b:
        def write() -> None:
            for start in range(0, len(data), 7001):  # odd pieces: headers and bodies cut anywhere
                a.sendall(data[start : start + 7001])

        writer = threading.Thread(target=write)
        writer.start()
        reader = wire.FrameReader(b)
        got = [bytes(reader.read()) for _ in range(3)]
        writer.join()
        a.close()
        with pytest.raises(EOFError):
            reader.read()
    assert got == [b"R", b"D" + bytes(300_000), b"R"]


def test_frames_read_stay_intact_while_the_reader_reuses_its_receive_buffer():
    """The reader receives into one buffer for its whole life: a frame it handed out earlier
    must not change when later frames arrive."""
    bodies = [b"D" + bytes([n % 256]) * (n * 37 % 900 + 1) for n in range(300)]
    a, b = socket.socketpair()
    with a, b:
        reader = wire.FrameReader(b)
        got = []
        for start in range(0, len(bodies), 50):  # several recvs, each bringing many frames
            a.sendall(b"".join(bytes(p) for body in bodies[start : start + 50] for p in wire.frame([body])))
            got += [reader.read() for _ in range(50)]
    assert [bytes(view) for view in got] == bodies


def test_the_dispatcher_refuses_a_completion_for_another_task_or_attempt():
    backend = LocalBackend(workers=1)
    running = _Running(Invocation.of(event()), number=5, slot=9)
    record = memoryview(b"a record")
    ok = backend._outcome(running, wire.Done(5, 9, 3, 2, wire.RECORD, wire.FLAG_OK, 0.0, record), now=0.0)
    assert ok.record is record and ok.error is None
    for slot, task_id, attempt in [(9, 4, 2), (9, 3, 1), (8, 3, 2)]:
        moved = backend._outcome(running, wire.Done(5, slot, task_id, attempt, wire.RECORD, 0, 0.0, record), now=0.0)
        assert moved.record is None and isinstance(moved.error.__cause__, IntegrityError)
        assert f"slot {slot} task {task_id} attempt {attempt}," in str(moved.error)
        assert moved.error.retryable  # the attempt runs again, like a lost one


def test_extra_env_crosses_once_per_job():
    first = event(extra_env=check_extra_env({"MODE": "fast"}))
    assert wire.job_key(first) != wire.job_key(event())  # another job slot for other variables
    [(_, _, decoded)] = sent_tasks(wire.encode_job(4, first) + wire.encode_tasks([(1, 4, first, first.args_raw)]))
    assert decoded.extra_env == {"MODE": "fast"}
