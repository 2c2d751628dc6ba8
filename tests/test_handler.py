"""The runtime's ``run_task`` writes the record the driver reads: every header field, the
values, and a record bound to its attempt (its per-process parts encoded once are no less)."""

from __future__ import annotations

import os
import sys

import pytest

from lambdamr import serialize
from lambdamr._version import __version__
from lambdamr.driver.results import open_record
from lambdamr.protocol import TaskEvent, arguments_context, decode_result, function_context
from lambdamr.runtime.handler import run_task
from lambdamr.signing import Signer, content_hash, process_key
from lambdamr.storage import open_cached
from lambdamr.storage.local import LocalStorage

JOB = "20261201-000000-abcdef-0001"


def pairs(a, b=0):
    print("called with", a)
    return {"sum": a + b, "items": [a, b]}


class Context:
    aws_request_id = 'req-"7"'  # quoted in the JSON header as any string
    function_name = "lambdamr-local"
    memory_limit_in_mb = "512"


@pytest.fixture
def staged(tmp_path):
    store = open_cached(LocalStorage(str(tmp_path)).spec())
    signer = Signer(process_key())
    payload = serialize.dumps(pairs, what="function")
    key = f"p/20261201-000000-abcdef/fn/{content_hash(payload)}"
    store.put(key, signer.sign(payload, function_context("20261201-000000-abcdef", key)))

    def event(task_id: int, calls, attempt: int = 1) -> TaskEvent:
        args = signer.sign(serialize.dumps(calls), arguments_context(JOB, task_id, None))
        return TaskEvent(
            job_id=JOB, task_id=task_id, attempt=attempt, storage=store.spec(), function_key=key,
            result_key=f"p/20261201-000000-abcdef/0001/results/{task_id:06d}.{attempt}", timeout_s=30,
            memory_mb=512, args_raw=args, store_result=False, reply_inline_max=1 << 20,
        )

    return store, signer, event


def test_the_record_carries_every_header_field_and_the_values(staged):
    store, signer, event = staged
    task = event(4, [((1,), {"b": 2}), ((3,), {})], attempt=2)
    run = run_task(task, store, Context(), lambda n: n)
    assert run.ok and run.inline and not run.stored
    header, frames = decode_result(run.record)
    assert (header["job_id"], header["task_id"], header["attempt"]) == (JOB, 4, 2)
    assert header["calls"] == [{"ok": True}, {"ok": True}] and "task_error" not in header  # no error: not listed
    assert header["runtime"] == {
        "request_id": 'req-"7"', "function_name": "lambdamr-local", "memory_limit_mb": 512,
        "python": "{}.{}".format(*sys.version_info[:2]), "lambdamr": __version__, "pid": os.getpid(),
    }
    warm = {"started", "loaded", "finished", "peak_rss_mb"}
    assert set(header["timings"]) in (warm, warm | {"cold", "init_ms"})  # cold and init_ms on a cold start only
    assert header["timings"]["peak_rss_mb"] > 0
    assert header["timings"]["started"] <= header["timings"]["loaded"] <= header["timings"]["finished"]
    assert header["requests"] == {"gets": 1}  # the function, once; the kinds it made none of are not listed
    assert header["logs"] == "called with 1\ncalled with 3\n"
    record = open_record(None, run.record, job_id=JOB, task_id=4, attempt=2, key=task.result_key, expected_calls=2)
    assert [call.value for call in record.calls] == [{"sum": 3, "items": [1, 2]}, {"sum": 3, "items": [3, 0]}]
    # a second task of the warm process: the function is cached, nothing printed is carried over
    again = decode_result(run_task(event(5, [((0,), {})]), store, Context(), lambda n: n).record)[0]
    assert "requests" not in again and again["logs"] == "called with 0\n"
    assert "cold" not in again["timings"] and "init_ms" not in again["timings"]


def quiet(a):
    return a


def test_a_quiet_task_s_header_lists_no_default_member(staged, tmp_path):
    """No error, no output, no storage request: the header says only what the task did
    (the members left out read as their defaults in the driver)."""
    store, signer, event = staged
    payload = serialize.dumps(quiet, what="function")
    key = f"p/20261201-000000-abcdef/fn/{content_hash(payload)}"
    store.put(key, signer.sign(payload, function_context("20261201-000000-abcdef", key)))
    first = event(7, [((5,), {})])
    first = type(first)(**{**vars(first), "function_key": key})
    run_task(first, store, Context(), lambda n: n)  # loads the function: one get
    task = type(first)(**{**vars(first), "task_id": 8, "args_raw": signer.sign(
        serialize.dumps([((6,), {})]), arguments_context(JOB, 8, None))})
    run = run_task(task, store, Context(), lambda n: n)
    header, _ = decode_result(run.record)
    assert set(header) == {"job_id", "task_id", "attempt", "calls", "timings", "runtime", "lambdamr", "frames"}
    record = open_record(None, run.record, job_id=JOB, task_id=8, attempt=1, key=task.result_key, expected_calls=1)
    assert [call.value for call in record.calls] == [6] and record.timings["peak_rss_mb"] > 0
    stored = run_task(type(task)(**{**vars(task), "store_result": True}), store, Context(), lambda n: n)
    assert decode_result(stored.record)[0]["requests"] == {"puts": 1}  # its own record, written


def test_a_stored_record_is_signed_for_its_attempt(staged):
    store, signer, event = staged
    task = event(6, [((1,), {})])
    run = run_task(task, store, Context(), lambda n: n + (1 << 20))  # too big for the answer: stored
    assert run.stored and not run.inline
    record = open_record(signer, store.get(task.result_key), job_id=JOB, task_id=6, attempt=1,
                         key=task.result_key, expected_calls=1)
    assert record.calls[0].value == {"sum": 1, "items": [1, 0]}


def grow(megabytes):
    block = bytearray(megabytes * 1024 * 1024)  # zeroed: every page touched
    return len(block)


def test_a_task_that_raises_the_peak_reports_it(staged):
    """The peak RSS is read at most once a millisecond, but never loses a real peak: a task
    that allocates reports the high-water mark it reached."""
    store, signer, event = staged
    payload = serialize.dumps(grow, what="function")
    key = f"p/20261201-000000-abcdef/fn/{content_hash(payload)}"
    store.put(key, signer.sign(payload, function_context("20261201-000000-abcdef", key)))

    def task(task_id, megabytes):
        base = event(task_id, [((megabytes,), {})])
        return type(base)(**{**vars(base), "function_key": key})

    before = decode_result(run_task(task(20, 0), store, Context(), lambda n: n).record)[0]["timings"]["peak_rss_mb"]
    with open("/proc/self/statm") as statm:  # the process may have peaked higher before: grow past that
        rss_mb = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    megabytes = int(before - rss_mb) + 100
    grown = decode_result(run_task(task(21, megabytes), store, Context(), lambda n: n).record)[0]["timings"]["peak_rss_mb"]
    assert grown >= before + 50
