"""The local backend enforces Lambda's limits and survives its workers dying. (What the future
raises for each way a task breaks, on this backend as on the others, is the crash table of
tests/contract/test_deadlock.py.)"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from lambdamr import BackendError, LambdaExecutor, TaskTimeoutError, WorkerLostError
from lambdamr.backends import local_wire
from lambdamr.backends.local import LocalBackend
from lambdamr.protocol import TaskEvent
from tests.gates import WAIT_S, touch, wait_for


def sleep_for(seconds):
    time.sleep(seconds)
    return seconds


def allocate(mb):
    print(f"allocating {mb} MB")
    block = np.ones(mb * 1024 * 1024 // 8)  # touched, so it is resident
    time.sleep(0.2)
    return float(block.sum())


def die_on_first_attempt(marker_dir, value):
    """Kill the worker process the first time it runs (a container dying mid-task)."""
    marker = os.path.join(marker_dir, f"ran-{value}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return value


def always_die(_):
    os.kill(os.getpid(), signal.SIGKILL)


def worker_pid(_):
    return os.getpid()


def test_timeout_kills_only_the_late_task(executor):
    slow = executor.with_options(timeout_s=1).submit(sleep_for, 10)
    fast = [executor.submit(sleep_for, 0.01) for _ in range(6)]
    assert [f.result(timeout=30) for f in fast] == [0.01] * 6
    assert isinstance(slow.exception(timeout=30), TaskTimeoutError)


def test_task_within_its_memory_succeeds(executor):
    assert executor.with_options(memory_mb=1024).submit(allocate, 100).result(timeout=60) > 0


def test_killed_worker_is_replaced_and_its_task_retried(executor, tmp_path):
    results = list(executor.map(die_on_first_attempt, [str(tmp_path)] * 4, range(4)))
    assert results == [0, 1, 2, 3]
    job = executor.last_job
    assert job.retries == 4
    assert executor.backend.workers_lost == 4
    assert job.summary().retries == 4


def test_worker_lost_after_all_retries(make_executor):
    ex = make_executor(retries=1)
    error = ex.submit(always_die, None).exception(timeout=60)
    assert isinstance(error, WorkerLostError)
    assert "signal 9" in str(error) and "attempt 2" in str(error)


def test_workers_are_reused_warm(executor):
    pids = set(executor.map(worker_pid, range(40)))
    assert len(pids) <= 2
    summary = executor.last_job.summary()
    assert summary.cold_starts <= 2


def test_workers_do_not_inherit_the_drivers_modules(executor):
    # A fresh interpreter, like a Lambda container: the driver's test module is not imported.
    assert executor.submit(lambda: "tests.backends.test_local" in __import__("sys").modules).result(timeout=30) is False


@pytest.mark.parametrize("wait", [True, False])
def test_shutdown_leaves_no_worker_process(make_executor, wait):
    ex = make_executor()
    pids = set(ex.map(worker_pid, range(8)))
    processes = [w.process for w in ex.backend._pool]
    ex.shutdown(wait=wait)
    for process in processes:
        if wait:
            assert process.poll() is not None
        else:  # released on a background thread once its (finished) calls are done
            process.wait(timeout=30)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# ---- workers that die before they are ready ------------------------------------------------
class WorkersKilledWhileStarting(LocalBackend):
    """The first ``kills`` workers are frozen as soon as they are spawned (so they cannot get
    ready) and killed once a task has been handed to them: killed while starting."""

    def __init__(self, kills: int, **options) -> None:
        super().__init__(**options)
        self.kills = kills
        self.frozen: set[int] = set()

    def _spawn(self):
        worker = super()._spawn()
        if self.kills > 0:
            self.kills -= 1
            worker.process.send_signal(signal.SIGSTOP)
            self.frozen.add(worker.process.pid)
        return worker

    def _send(self, worker, invocations):
        sent = super()._send(worker, invocations)
        if sent and worker.process.pid in self.frozen:
            self.frozen.discard(worker.process.pid)
            worker.process.send_signal(signal.SIGKILL)
        return sent


def test_workers_killed_while_starting_cost_no_attempt(tmp_path):
    backend = WorkersKilledWhileStarting(kills=4, workers=1)
    with LambdaExecutor(backend=backend, storage=str(tmp_path), retries=0, progress=False) as ex:
        assert ex.submit(sleep_for, 0).result(timeout=60) == 0  # no retry left: any charge would fail it
        assert backend.workers_lost_starting == 4
        assert ex.last_job.summary().retries == 0


def test_workers_that_exit_while_starting_fail_the_task_with_the_cause(tmp_path, monkeypatch):
    with LambdaExecutor(storage=str(tmp_path), workers=1, progress=False) as ex:
        monkeypatch.setattr(sys, "executable", shutil.which("false"))  # every worker exits with code 1
        future = ex.submit(sleep_for, 0)
        with pytest.raises(BackendError, match=r"keep dying while they start: 3 exited by themselves \(last exit code 1\)"):
            future.result(timeout=60)


def test_worker_whose_driver_is_gone_exits_quietly():
    # The worker answers, but the driver's end of the socket is already closed (the driver
    # was killed): no BrokenPipeError traceback, just a clean exit.
    driver_end, worker_end = socket.socketpair()
    process = subprocess.Popen(
        [sys.executable, "-m", "lambdamr.backends.local_worker", str(worker_end.fileno())],
        pass_fds=(worker_end.fileno(),), stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))},
    )
    worker_end.close()
    event = TaskEvent(
        job_id="s-0001", task_id=0, attempt=1, storage={"kind": "nowhere"}, function_key="fn", result_key="r",
        timeout_s=60, memory_mb=128, args_raw=b"",
    )  # a storage the runtime refuses: a quick reply
    local_wire.send_parts(driver_end, local_wire.encode_job(1, event) + local_wire.encode_tasks([(1, 1, event, b"")]))
    driver_end.close()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr, stderr.decode()


def test_workers_killed_from_outside_as_fast_as_they_start_fail_the_task_in_the_end(tmp_path, monkeypatch):
    import lambdamr.backends.local as local_module

    monkeypatch.setattr(local_module, "STARTUP_STALL_S", 0.0)  # instead of a minute without a ready worker
    backend = WorkersKilledWhileStarting(kills=100, workers=1)
    with LambdaExecutor(backend=backend, storage=str(tmp_path), progress=False) as ex:
        stalled = r"keep dying while they start: none got ready in \d+ s; workers killed before they were ready: 1"
        with pytest.raises(BackendError, match=stalled):
            ex.submit(sleep_for, 0).result(timeout=60)


def test_short_tasks_cross_in_batches_and_none_waits_behind_a_long_one(make_executor, tmp_path):
    ex = make_executor(workers=1)
    assert list(ex.map(abs, range(-200, 0))) == list(range(200, 0, -1))
    backend = ex.backend
    assert backend._depth(backend._pool[0], time.time()) > backend.prefetch  # short: queued deeper
    # Both short tasks and the long one sit in the one worker's queue; the short ones' results
    # are held for a batch, and must still arrive while the long one runs: it waits for a gate
    # the test opens only once it has them (held behind it, the map's timeout would fail).
    open_gate, gate = touch(str(tmp_path / "open")), str(tmp_path / "go")
    results = ex.map(wait_for, [open_gate, open_gate, gate], [0, 1, 2], timeout=WAIT_S)
    assert [next(results), next(results)] == [0, 1]
    touch(gate)
    assert next(results) == 2


def test_a_records_outcome_built_without_init_equals_the_dataclasss_own() -> None:
    from lambdamr.backends.base import Invocation, InvocationOutcome

    event = TaskEvent(
        job_id="s-0001", task_id=3, attempt=2, storage={"kind": "nowhere"}, function_key="fn", result_key="r",
        timeout_s=60, memory_mb=128, args_raw=b"",
    )
    invocation = Invocation(event)
    fast = InvocationOutcome.of_record(invocation, b"LMR1...", 10.0, 11.5)
    assert fast == InvocationOutcome(invocation, record=b"LMR1...", started_at=10.0, ended_at=11.5)
    assert fast.response is None and fast.error is None
    with pytest.raises(AttributeError):  # frozen as the others
        fast.record = b""  # type: ignore[misc]
