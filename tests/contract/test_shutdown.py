"""shutdown(), the context manager, garbage collection and interpreter exit (CPython's
ExecutorShutdownTest and its per-executor variants).

Submitted calls finish unless ``cancel_futures``: after ``shutdown(wait=False)``, after the
executor is garbage collected, and at interpreter exit; only calls no worker has yet are
cancelled. Worker processes are gone once the executor is released.
"""

from __future__ import annotations

import concurrent.futures
import gc
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from . import tasks

REPO_DIR = str(Path(__file__).resolve().parents[2])


def worker_processes(ex) -> list:
    """The executor's worker processes (none for the inline backend's threads)."""
    if isinstance(ex, concurrent.futures.ProcessPoolExecutor):
        return list(ex._processes.values())
    if ex.backend.name == "local":
        return [worker.process for worker in ex.backend._pool]
    return []


def wait_until_gone(processes, timeout: float = 30) -> None:
    for process in processes:
        if hasattr(process, "join"):  # multiprocessing.Process
            process.join(timeout)
            assert not process.is_alive()
        else:  # subprocess.Popen
            process.wait(timeout=timeout)


def test_shutdown_waits_for_every_call_then_refuses_work(new_executor):
    # CPython's test_hang_issue12364 and test_run_after_shutdown; shutting down twice is fine.
    ex = new_executor()
    futures = [ex.submit(tasks.sleep_and_return, 0.02, i) for i in range(20)]
    ex.shutdown(wait=False)
    ex.shutdown(wait=True)  # the stdlib's returns at once after a shutdown(wait=False)
    assert [f.result(timeout=30) for f in futures] == list(range(20))
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        ex.submit(pow, 2, 5)


def test_cancel_futures(new_executor):
    # CPython's own check: with few workers, most queued calls are cancelled, none is lost.
    ex = new_executor(workers=5)
    futures = [ex.submit(tasks.sleep_and_return, 0.1) for _ in range(50)]
    ex.shutdown(cancel_futures=True)
    cancelled = [f for f in futures if f.cancelled()]
    assert len(cancelled) > 20
    assert all(f.result(timeout=0) is None for f in futures if not f.cancelled())


def test_cancel_succeeds_only_before_a_worker_has_the_call(new_executor, flag_dir):
    ex = new_executor(workers=1)
    started, release = flag_dir / "started", flag_dir / "release"
    running = ex.submit(tasks.touch_then_wait, str(started), str(release), "ran")
    tasks.wait_for_file(str(started))
    queued = [ex.submit(tasks.mul, i, 1) for i in range(6)]
    assert running.running() and not running.cancel()
    cancelled = [f.cancel() for f in queued]
    # A worker holds at most a couple ahead (ProcessPoolExecutor: workers + 1 in its call queue)
    assert sum(cancelled) >= 4
    for future, was_cancelled in zip(queued, cancelled):
        assert future.cancelled() == was_cancelled
        assert was_cancelled or future.running() or future.done()
    release.write_text("go")
    assert running.result(timeout=30) == "ran"
    for future, was_cancelled in zip(queued, cancelled):
        if not was_cancelled:
            assert future.result(timeout=30) is not None


def test_shutdown_no_wait_lets_submitted_calls_finish(new_executor, flag_dir):
    # CPython's test_shutdown_no_wait: it neither waits for nor kills what was submitted.
    ex = new_executor()
    started, release = flag_dir / "started", flag_dir / "release"
    future = ex.submit(tasks.touch_then_wait, str(started), str(release), "finished")
    tasks.wait_for_file(str(started))
    results = ex.map(abs, range(-5, 5))
    processes = worker_processes(ex)
    ex.shutdown(wait=False)
    assert not future.done()
    release.write_text("go")
    assert future.result(timeout=30) == "finished"
    assert list(results) == [abs(i) for i in range(-5, 5)]
    wait_until_gone(processes)


def test_context_manager_shutdown(new_executor):
    ex = new_executor()
    with ex:
        assert list(ex.map(abs, (-1, -2))) == [1, 2]
        processes = worker_processes(ex)
    wait_until_gone(processes, timeout=0.5 if processes and not hasattr(processes[0], "join") else 30)
    with pytest.raises(RuntimeError):
        ex.submit(abs, 1)


def test_del_shutdown(kind, storage_of_kind):
    # An executor garbage collected releases its workers once its calls are done.
    from .conftest import build

    ex = build(kind, storage_of_kind)
    results = ex.map(abs, range(-5, 5))
    processes = worker_processes(ex)
    del ex
    gc.collect()
    assert list(results) == [abs(i) for i in range(-5, 5)]
    wait_until_gone(processes)


def test_shutdown_from_a_done_callback_does_not_deadlock(new_executor, kind, flag_dir):
    ex = new_executor()
    called = []

    def shut_down(future):
        try:
            ex.shutdown(wait=True)
        except RuntimeError as exc:  # the stdlib's: its manager thread cannot join itself
            called.append(exc)
        else:
            called.append(None)

    future = ex.submit(tasks.mul, 3, 4)
    future.add_done_callback(shut_down)
    assert future.result(timeout=30) == 12
    ex.shutdown(wait=True)  # returns: nothing waits for itself
    assert len(called) == 1
    if kind.remote:
        assert called == [None]


# ---- interpreter exit ------------------------------------------------------------------------
PRELUDE = """
import json, os, sys, time, atexit
spec = json.loads(sys.argv[1])
sys.path[:0] = [spec["repo"]]
from tests.contract import tasks
if spec["backend"]:
    from tests.targets import Target, build_executor
    def new_executor():
        return build_executor(Target(spec["backend"], spec["storage_kind"]), spec["storage"], workers=1)
    ex = new_executor()
    print("session", ex.session_prefix, flush=True)
else:
    from concurrent.futures import ProcessPoolExecutor
    ex = ProcessPoolExecutor(1)  # the script has no other threads: fork is safe
"""


def run_driver(kind, storage: dict, body: str, *args: str) -> subprocess.CompletedProcess:
    spec = {"backend": kind.backend, "storage_kind": kind.storage, "storage": storage, "repo": REPO_DIR}
    script = PRELUDE + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script, json.dumps(spec), *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": REPO_DIR},
    )


def assert_session_deleted(kind, storage: dict, output: str) -> None:
    if kind.storage != "folder":
        return
    session = next(line.split()[1] for line in output.splitlines() if line.startswith("session"))
    assert not (Path(storage["storage"]) / session).exists()


def test_interpreter_exit(kind, storage_of_kind, flag_dir):
    # One driver, three behaviours at exit (one interpreter start, not three):
    # - a call submitted to an executor never shut down finishes before the interpreter exits;
    # - after shutdown(wait=False, cancel_futures=True) the running call finishes, queued ones
    #   are cancelled;
    # - an atexit function that submits is refused.
    started, first, second = flag_dir / "started", flag_dir / "first", flag_dir / "second"
    done = run_driver(kind, storage_of_kind, """
        left_open = ex
        left_open.submit(tasks.write_after, 0.3, sys.argv[4], "apple")
        if spec["backend"]:
            other = new_executor()
        else:
            other = ProcessPoolExecutor(1)
        running = other.submit(tasks.touch_sleep_write, sys.argv[2], 0.3, sys.argv[3])
        tasks.wait_for_file(sys.argv[2])
        queued = [other.submit(tasks.sleep_and_return, 2) for _ in range(4)]
        other.shutdown(wait=False, cancel_futures=True)
        print("cancelled", sum(f.cancelled() for f in queued), flush=True)

        def run_last():
            try:
                left_open.submit(tasks.mul, 1, 2)
            except RuntimeError as exc:
                print("refused:", exc, flush=True)
        atexit.register(run_last)
    """, str(started), str(second), str(first))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert first.read_text() == "apple"
    assert second.read_text() == "done"
    cancelled = int(next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("cancelled")))
    if kind.remote:  # the stdlib's manager thread cancels them a moment later
        assert cancelled >= 2
    # (the stdlib's process pool says "after shutdown": its manager thread shut it down first)
    expected = "after interpreter shutdown" if kind.remote else "after"
    assert f"refused: cannot schedule new futures {expected}" in done.stdout
    assert_session_deleted(kind, storage_of_kind, done.stdout)


def test_ctrl_c_at_exit_does_not_wait_for_running_calls(kind, storage_of_kind, flag_dir):
    # Ctrl-C keeps its meaning for an executor left open: the exit does not wait for running
    # calls (the stdlib's does), workers stop, temp objects go. The inline backend's calls run
    # on threads of the driver, which nothing can stop: its exit waits for them. Lambda offers
    # no way to stop an invocation: on aws the call runs on in its container (10 s here), but
    # the driver does not wait for it.
    if not kind.remote:
        return  # the stdlib waits for its calls here: nothing of ours to check
    started = flag_dir / "started"
    seconds = "10" if kind.backend == "aws" else "1.5"
    done = run_driver(kind, storage_of_kind, """
        ex.submit(tasks.touch_sleep_write, sys.argv[2], float(sys.argv[3]), sys.argv[2] + ".out")
        tasks.wait_for_file(sys.argv[2])
        raise KeyboardInterrupt
    """, str(started), seconds)
    assert done.returncode != 0 and "KeyboardInterrupt" in done.stderr
    assert Path(str(started) + ".out").exists() == (kind.backend == "inline")
    assert_session_deleted(kind, storage_of_kind, done.stdout)


def test_terminate_workers_does_not_wait(new_executor, kind, flag_dir):
    # Python 3.14's ProcessPoolExecutor.terminate_workers(); Ctrl-C in a with block does the same.
    # One worker, held by the running call: the queued calls cannot run meanwhile (with a free
    # worker they could finish before terminate_workers, and there would be nothing to cancel).
    # (not generated for the inline backend, nor for the stdlib's pool before Python 3.14: conftest.py)
    ex = new_executor(workers=1)
    from lambdamr import BackendError

    started = flag_dir / "started"
    running = ex.submit(tasks.touch_then_wait, str(started), str(flag_dir / "never"))
    tasks.wait_for_file(str(started))
    queued = [ex.submit(tasks.mul, i, 2) for i in range(8)]
    processes = worker_processes(ex)
    ex.terminate_workers()
    with pytest.raises(BackendError, match="shut down before this task finished"):
        running.result(timeout=0)
    assert sum(f.cancelled() for f in queued) >= 4
    assert all(f.done() for f in queued)
    wait_until_gone(processes, timeout=10)
    (flag_dir / "never").write_text("go")  # on aws the invocation runs on: let it end now
