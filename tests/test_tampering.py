"""Attacks on storage by someone who can write to the folder or bucket but holds no key.

Each test reproduces an attack of the red-team pass (issue 11) and asserts the defined
behaviour: a moved, copied, edited or stale object is refused before anything is unpickled
or believed. A refused *result* is never settled: its task runs again under a new
write-once key (and fails with ``IntegrityError`` once its retries are spent). Refused
*inputs* (function, arguments, shared objects) fail the task with ``IntegrityError``, as a
re-run would read the same object. Never a wrong value.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from lambdamr import IntegrityError, LambdaExecutor
from lambdamr.backends.base import Backend, Invocation, OutcomeCallback
from lambdamr.cli import main as cli_main
from lambdamr.protocol import TaskEvent, function_context, result_context
from lambdamr.runtime.handler import handler
from lambdamr.signing import Context, Signer, check_content_key, content_hash, process_key, read_context

WAIT_S = 30.0


def _wait_for_file(path: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)


def _copy_atomically(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.write_bytes(src.read_bytes())
    os.replace(tmp, dst)


def identity_copying_results(i: int, results_dir: str) -> int:
    """Task 3 copies task 0's stored result over tasks 3, 4 and 5 (attempt 1) before their
    runtimes write theirs; tasks 4 and 5 wait until the copy is in place."""
    results = Path(results_dir)
    if i == 3:
        _wait_for_file(results / "000000.1")
        for victim in (3, 4, 5):
            if not (results / f"{victim:06d}.1").exists():
                _copy_atomically(results / "000000.1", results / f"{victim:06d}.1")
    elif i in (4, 5):
        _wait_for_file(results / f"{i:06d}.1")
    return i


def test_a_result_copied_over_other_tasks_is_refused_and_those_tasks_run_again(tmp_path, caplog):
    store = tmp_path / "store"
    with LambdaExecutor(storage=str(store), workers=2, progress=False, durable=True, reply_inline_max=0) as ex:
        results_dir = store / ex.session_prefix / "0001" / "results"
        values = list(ex.map(identity_copying_results, range(6), [str(results_dir)] * 6, timeout=60))
        job = ex.last_job
    assert values == [0, 1, 2, 3, 4, 5]  # before context-bound signatures: [0, 1, 2, 0, 0, 0]
    assert [t.attempt for t in job.tasks] == [1, 1, 1, 2, 2, 2]
    assert job.retries == 3
    refusals = [r.getMessage() for r in caplog.records if "refusing" in r.getMessage()]
    assert len(refusals) == 3 and all("its task is 0, expected" in m for m in refusals)


def identity_always_copying(i: int, results_dir: str) -> int:
    """Task 1 finds task 0's record planted over each of its attempts."""
    results = Path(results_dir)
    if i == 1:
        _wait_for_file(results / "000000.1")
        for attempt in (1, 2):
            _copy_atomically(results / "000000.1", results / f"000001.{attempt}")
    return i


def test_a_task_whose_every_result_is_forged_fails_with_integrity_error(tmp_path):
    store = tmp_path / "store"
    with LambdaExecutor(
        storage=str(store), workers=1, progress=False, durable=True, reply_inline_max=0, retries=1
    ) as ex:
        results_dir = store / ex.session_prefix / "0001" / "results"
        futures = ex.map(identity_always_copying, range(2), [str(results_dir)] * 2).job.futures
        assert futures[0].result(timeout=60) == 0
        error = futures[1].exception(timeout=60)
    assert isinstance(error, IntegrityError) and "expected 1" in str(error)


def times_ten(i: int) -> int:
    return i * 10


def _run_kept_durable_job(store: Path, fn: Any = times_ten, n: int = 6) -> tuple[str, str]:
    """Run a durable job to the end and keep its objects; (job id, session prefix)."""
    with LambdaExecutor(storage=str(store), workers=2, progress=False, durable=True, keep_temp=True) as ex:
        assert list(ex.map(fn, range(n))) == [fn(i) for i in range(n)]
        return ex.last_job.job_id, ex.session_prefix


def test_attach_refuses_a_result_copied_over_other_tasks_and_runs_them_again(tmp_path):
    store = tmp_path / "store"
    job_id, session_prefix = _run_kept_durable_job(store)
    results = store / session_prefix / "0001" / "results"
    for victim in (3, 4, 5):
        _copy_atomically(results / "000000.1", results / f"{victim:06d}.1")
    with LambdaExecutor(storage=str(store), workers=2, progress=False) as ex:
        job = ex.attach(job_id)
        values = [f.result(timeout=60) for f in job.futures]
    assert values == [0, 10, 20, 30, 40, 50]  # before: [0, 10, 20, 0, 0, 0]
    assert {t.task_id for t in job.tasks if t.attempt > 1000} == {3, 4, 5}


def _manifest(store: Path, session_prefix: str) -> Path:
    return store / session_prefix / "0001" / "tasks"


def test_attach_refuses_an_edited_function_key_in_the_task_manifest(tmp_path):
    store = tmp_path / "store"
    job_id, session_prefix = _run_kept_durable_job(store)
    for record in (store / session_prefix / "0001" / "results").iterdir():
        record.unlink()  # so that attach would re-run every task with the manifest's function
    path = _manifest(store, session_prefix)
    blob = path.read_bytes()
    context_end = 40 + int.from_bytes(blob[36:40], "little")
    manifest = json.loads(blob[context_end:])
    other = next(p for p in (store / session_prefix / "fn").iterdir())
    manifest["function_key"] = f"{session_prefix}/fn/{'0' * 63}{other.name[-1]}"
    path.write_bytes(blob[:context_end] + json.dumps(manifest).encode())  # the old signature kept
    with LambdaExecutor(storage=str(store), workers=2, progress=False) as ex:
        with pytest.raises(IntegrityError, match="signature does not match"):
            ex.attach(job_id)
        path.write_bytes(json.dumps(manifest).encode())  # what an attacker without the key can write
        with pytest.raises(IntegrityError, match="no lambdamr signature"):
            ex.attach(job_id)


def test_attach_refuses_the_task_manifest_of_another_job(tmp_path):
    store = tmp_path / "store"
    with LambdaExecutor(storage=str(store), workers=2, progress=False, durable=True, keep_temp=True) as ex:
        list(ex.map(times_ten, range(3)))
        list(ex.map(abs, range(3)))
        first, session_prefix = ex.jobs[0].job_id, ex.session_prefix
    _copy_atomically(store / session_prefix / "0002" / "tasks", store / session_prefix / "0001" / "tasks")
    with LambdaExecutor(storage=str(store), workers=2, progress=False) as ex:
        with pytest.raises(IntegrityError, match=r"its job is '.*-0002', expected '.*-0001'"):
            ex.attach(first)


def echo(i: int, args_file: str) -> int:
    """Task 0 swaps the argument blocks of tasks 4 and 5 (equal length) before they run."""
    if i == 0:
        path = Path(args_file)
        data = path.read_bytes()
        size = len(data) // 6
        blocks = [data[k * size : (k + 1) * size] for k in range(6)]
        blocks[4], blocks[5] = blocks[5], blocks[4]
        tmp = path.with_name(".args.tmp")
        tmp.write_bytes(b"".join(blocks))
        os.replace(tmp, path)
    return i


def test_swapped_argument_blocks_are_refused(tmp_path):
    store = tmp_path / "store"
    with LambdaExecutor(storage=str(store), workers=1, progress=False, inline_args_max=0) as ex:
        args_file = store / ex.session_prefix / "0001" / "args"
        futures = ex.map(echo, range(6), [str(args_file)] * 6).job.futures
        assert [f.result(timeout=60) for f in futures[:4]] == [0, 1, 2, 3]
        errors = [f.exception(timeout=60) for f in futures[4:]]  # before: results 5 and 4
    assert all(isinstance(e, IntegrityError) for e in errors)
    assert "its task is 5, expected 4" in str(errors[0]) and "its task is 4, expected 5" in str(errors[1])


def which_session(_: int) -> str:
    return "earlier"


def this_session(_: int) -> str:
    return "this"


def test_a_signed_function_of_an_earlier_session_copied_over_this_ones_is_refused(tmp_path):
    store = tmp_path / "store"
    with LambdaExecutor(storage=str(store), workers=2, progress=False, keep_temp=True) as earlier:
        assert list(earlier.map(which_session, [0])) == ["earlier"]
        [old] = list((store / earlier.session_prefix / "fn").iterdir())
    with LambdaExecutor(storage=str(store), workers=2, progress=False) as ex:
        key = ex.session.stager.stage_function(this_session)  # staged, not yet run anywhere
        _copy_atomically(old, store / key)  # the attacker, between staging and the first run
        error = ex.submit(this_session, 0).exception(timeout=60)  # before: "earlier" ran
    assert isinstance(error, IntegrityError)
    assert f"its session is '{earlier.session_id}', expected '{ex.session_id}'" in str(error)


def total(handle: Any) -> int:
    return sum(handle.value)


def test_a_shared_object_of_an_earlier_session_copied_over_this_ones_is_refused(tmp_path):
    store = tmp_path / "store"
    with LambdaExecutor(storage=str(store), workers=2, progress=False, keep_temp=True) as earlier:
        old_handle = earlier.share([100, 200])
        assert earlier.submit(total, old_handle).result(timeout=60) == 300
    with LambdaExecutor(storage=str(store), workers=2, progress=False) as ex:
        handle = ex.share([1, 2])
        _copy_atomically(store / old_handle.key, store / handle.key)
        error = ex.submit(total, handle).exception(timeout=60)
    assert isinstance(error, IntegrityError) and "its session is" in str(error)


# ---- the signature format itself ---------------------------------------------------------
def test_every_field_of_the_context_is_checked_and_named():
    signer = Signer(b"s" * 32)
    signed = result_context("sess-0001", 3, 1, "p/sess/0001/results/000003.1")
    blob = signer.sign(b"payload", signed)
    assert bytes(signer.verify(blob, signed, what="record")) == b"payload"
    for change, named in [
        ({"task": 4}, "its task is 3, expected 4"),
        ({"attempt": 2}, "its attempt is 1, expected 2"),
        ({"job": "sess-0002"}, "its job is 'sess-0001', expected 'sess-0002'"),
        ({"key": "elsewhere"}, "its key is"),
        ({"kind": "arguments"}, "its kind is 'result', expected 'arguments'"),
    ]:
        with pytest.raises(IntegrityError, match=named):
            signer.verify(blob, dataclasses.replace(signed, **change), what="record")


def test_the_context_cannot_be_edited_without_the_key():
    signer = Signer(b"s" * 32)
    blob = signer.sign(b"payload", Context("arguments", session="s", job="s-1", task=0))
    forged = blob.replace(b'"task":0', b'"task":1')
    assert forged != blob
    with pytest.raises(IntegrityError, match="signature does not match"):
        signer.verify(forged, Context("arguments", session="s", job="s-1", task=1), what="arguments")


def test_objects_of_the_old_format_are_refused_with_a_clear_message():
    with pytest.raises(IntegrityError, match="signatures are not bound.*Run the job again"):
        Signer(b"s" * 32).verify(b"LMS1" + b"\0" * 40, Context("function", session="s", key="k"), what="function")


def test_another_keys_id_is_named_and_the_key_never_is():
    key = bytes(range(32))
    mine, theirs = Signer(b"m" * 32), Signer(key)
    context = Context("function", session="s", key="k")
    with pytest.raises(IntegrityError) as raised:
        mine.verify(theirs.sign(b"x", context), context, what="function")
    assert theirs.key_id in str(raised.value) and mine.key_id in str(raised.value)
    assert key.hex() not in str(raised.value) and key.hex() not in repr(theirs)
    assert read_context(theirs.sign(b"x", context))["key_id"] == theirs.key_id


def test_a_content_addressed_object_must_hash_to_its_name():
    payload = b"pickled function"
    check_content_key(payload, f"p/s/fn/{content_hash(payload)}", what="function")
    with pytest.raises(IntegrityError, match="does not hash to the name"):
        check_content_key(b"other bytes", f"p/s/fn/{content_hash(payload)}", what="function")


def test_the_runtime_rehashes_the_function_it_loads(tmp_path):
    """Defence in depth: even a function signed for the right context (only a key holder can
    make one) is refused when its bytes do not hash to its key."""
    from lambdamr import serialize
    from lambdamr.protocol import arguments_context, encode_inline_args
    from lambdamr.storage.local import LocalStorage

    storage = LocalStorage(tmp_path)
    signer = Signer(process_key())
    key = f"p/sess/fn/{content_hash(serialize.dumps(abs))}"
    storage.put(key, signer.sign(serialize.dumps(times_ten), function_context("sess", key)))
    event = TaskEvent(
        job_id="sess-0001", task_id=0, attempt=1, storage=storage.spec(), function_key=key,
        result_key="p/sess/0001/results/000000.1", timeout_s=30, memory_mb=128,
        args_inline=encode_inline_args(signer.sign(serialize.dumps([((-3,), {})]), arguments_context("sess-0001", 0, None))),
    )
    handler(event.to_dict())
    record = storage.get(event.result_key)
    from lambdamr.driver.results import open_record

    opened = open_record(signer, record, job_id="sess-0001", task_id=0, attempt=1, key=event.result_key, expected_calls=1)
    assert isinstance(opened.calls[0].exception, IntegrityError)
    assert "does not hash to the name" in str(opened.calls[0].exception)


# ---- stale events ------------------------------------------------------------------------
def count_runs(marker_dir: str, value: int) -> int:
    with open(Path(marker_dir) / f"ran-{value}-{os.getpid()}-{time.monotonic_ns()}", "w"):
        pass
    return value


class LateFirstDelivery(Backend):
    """Delivers every first attempt as Lambda would an asynchronous event hours late: past the
    deadline the driver gave it."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name
        self.reports_outcomes = inner.reports_outcomes
        self.max_payload_bytes = inner.max_payload_bytes
        self.max_response_bytes = inner.max_response_bytes

    @classmethod
    def from_config(cls, config: Any, storage: Any) -> Backend:
        raise TypeError("wrap a backend")

    @property
    def capacity(self) -> int:
        return self.inner.capacity

    def start(self, on_outcome: OutcomeCallback) -> None:
        self.inner.start(on_outcome)

    def invoke(self, invocations: Sequence[Invocation]) -> None:
        late = [
            Invocation.of(dataclasses.replace(inv.event, deadline=time.time() - 3600)) if inv.event.attempt == 1 else inv
            for inv in invocations
        ]
        self.inner.invoke(late)

    def shutdown(self, wait: bool = True) -> None:
        self.inner.shutdown(wait)


def test_an_event_past_its_deadline_runs_nothing_and_its_attempt_counts_as_lost(tmp_path):
    from lambdamr.backends.local import LocalBackend

    markers = tmp_path / "markers"
    markers.mkdir()
    backend = LateFirstDelivery(LocalBackend(workers=2))
    with LambdaExecutor(backend, storage=str(tmp_path / "store"), progress=False) as ex:
        assert list(ex.map(count_runs, [str(markers)] * 3, range(3))) == [0, 1, 2]
        job = ex.last_job
    assert sorted(p.name.split("-")[1] for p in markers.iterdir()) == ["0", "1", "2"]  # each ran once
    assert [t.attempt for t in job.tasks] == [2, 2, 2] and job.retries == 3


def test_the_handler_answers_expired_without_loading_anything(tmp_path):
    event = TaskEvent(
        job_id="sess-0001", task_id=0, attempt=1, storage={"kind": "local", "root": str(tmp_path)},
        function_key="p/sess/fn/missing", result_key="p/sess/0001/results/000000.1", timeout_s=30,
        memory_mb=128, args_inline="", deadline=time.time() - 10,
    )
    response = handler(event.to_dict())
    assert response["expired"] is True and response["ok"] is False and response["result_key"] is None
    assert response["late_s"] >= 10
    assert list(tmp_path.iterdir()) == []  # nothing read, nothing written


def test_async_events_carry_a_deadline_and_synchronous_ones_none(tmp_path):
    from lambdamr.backends.inline import InlineBackend
    from lambdamr.config import ExecutorConfig
    from lambdamr.driver.job import Job
    from lambdamr.driver.scheduler import Scheduler, event_deadline
    from lambdamr.storage.local import LocalStorage

    job = Job("s-0001", "p/s/0001", "p/s/fn/x", memory_mb=128, timeout_s=60, backend="inline")
    task = job.new_task(1)
    task.dispatched_at = 1000.0
    fire_and_forget = LateFirstDelivery(InlineBackend())
    fire_and_forget.reports_outcomes = False
    config = ExecutorConfig.resolve(backend="inline")
    for backend, expected in [(InlineBackend(), None), (fire_and_forget, 1000.0 + 60 + 60 + 10)]:
        scheduler = Scheduler(backend, LocalStorage(tmp_path), config, Signer(b"k" * 32))
        assert scheduler._event(task).deadline == expected == (
            None if backend.reports_outcomes else event_deadline(job, 1000.0)
        )


# ---- lambdamr logs -----------------------------------------------------------------------
def prints_escapes(i: int) -> int:
    print(f"task {i} says \x1b[2J\x1b]0;owned\x07 and \x9b31m done\ttabbed")
    return i


def test_logs_show_only_verified_records_and_never_control_sequences(tmp_path, capsys, caplog):
    store = tmp_path / "store"
    ex = LambdaExecutor(storage=str(store), workers=2, progress=False, reply_inline_max=0, durable=True)
    try:
        assert list(ex.map(prints_escapes, range(3))) == [0, 1, 2]
        job_id, session_prefix = ex.last_job.job_id, ex.session_prefix
        results = store / session_prefix / "0001" / "results"
        _copy_atomically(results / "000000.1", results / "000002.1")  # task 0's output shown as task 2's?
        (store / session_prefix / "0009").mkdir()
        (store / session_prefix / "0009" / "job.json").write_text(
            json.dumps({"job_id": f"{ex.session_id}-0009", "state": "done\x1b[31m", "prefix": "x", "function": "forged"})
        )
        deadline = time.monotonic() + WAIT_S
        while b"done" not in (store / session_prefix / "0001" / "job.json").read_bytes() and time.monotonic() < deadline:
            time.sleep(0.02)
        capsys.readouterr()
        options = ["--storage", str(store)]
        assert cli_main(["jobs", *options]) == 0
        listing = capsys.readouterr().out
        assert job_id in listing and "forged" not in listing  # the unsigned manifest is not shown
        assert cli_main(["logs", job_id, *options]) == 0
        out = capsys.readouterr().out
    finally:
        ex.shutdown()
    assert "=== task 0 " in out and "=== task 1 " in out and "=== task 2 " not in out
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out
    assert "task 0 says \\x1b[2J\\x1b]0;owned\\x07 and \\x9b31m done\ttabbed" in out
    assert any("its task is 0, expected 2" in r.getMessage() for r in caplog.records)


# ---- map_reduce: what a reducer or the driver unpickles is checked by its signed digest --------
def _emit_words(item: str):
    for word in item.split():
        yield word, 1


def _count_words(key: Any, values: list[int]) -> int:
    return sum(values)


def test_another_mappers_intermediate_object_moved_over_this_ones_is_refused(tmp_path):
    """Intermediate objects are not signed themselves: each segment's digest travels in the
    mapper's signed result record and the reducer's signed arguments."""
    from lambdamr.shuffle.mapper import MapTask
    from lambdamr.shuffle.plan import MapPlan, ReducePlan, ShuffleLayout
    from lambdamr.shuffle.reducer import ReduceTask, SegmentRef
    from lambdamr.storage import open_storage

    spec = {"kind": "local", "root": str(tmp_path / "store")}
    layout = ShuffleLayout("sess/shuffle/run")
    mapper = MapTask(MapPlan(_emit_words, 1, spec, layout))
    first, second = mapper(0, 0, ["a b a"]), mapper(1, 0, ["a c c c"])
    store = open_storage(spec)
    store.put(layout.key(first.name), store.get(layout.key(second.name)))  # a valid object, moved
    segment = first.segments[0]
    ref = SegmentRef(first.name, segment[0], segment[1], segment[2], segment[3], segment[4])
    with pytest.raises(IntegrityError, match="changed or replaced"):
        ReduceTask(ReducePlan(_count_words, spec, layout, budget_bytes=10**8))(0, 0, [ref])


def test_map_reduce_output_objects_swapped_in_storage_are_refused_by_read_output(tmp_path):
    out = tmp_path / "out"
    with LambdaExecutor(storage=str(tmp_path / "store"), workers=2, progress=False) as ex:
        result = ex.map_reduce(_emit_words, ["a b", "c d", "e f a"], _count_words, reducers=2, output=str(out))
    first, second = (out / Path(key).name for key in result.output_keys)
    assert sorted(result.read_output()) == [("a", 2), ("b", 1), ("c", 1), ("d", 1), ("e", 1), ("f", 1)]
    data = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(data)
    with pytest.raises(IntegrityError, match="changed or replaced"):
        list(result.read_output())


def test_printable_escapes_c0_del_and_c1_but_keeps_newlines_and_tabs():
    from lambdamr.cli.observe import printable

    assert printable("a\x1b[31mb\rc\x00d\x7fe\x85f\x9bg\nh\ti é") == "a\\x1b[31mb\\x0dc\\x00d\\x7fe\\x85f\\x9bg\nh\ti é"
