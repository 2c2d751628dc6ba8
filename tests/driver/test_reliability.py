"""Faults survived: user-requested retries, stragglers with backups, Ctrl-C, tampering."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lambdamr import IntegrityError


@pytest.fixture(scope="module")
def executor(shared_local_executor):
    """One executor per storage for this module's tests (tests/conftest.py)."""
    return shared_local_executor


def flaky(marker_dir, value, failures):
    """Raise ConnectionError the first ``failures`` times it runs for ``value``."""
    marker = Path(marker_dir) / f"runs-{value}"
    runs = int(marker.read_text()) if marker.exists() else 0
    marker.write_text(str(runs + 1))
    if runs < failures:
        raise ConnectionError(f"transient failure {runs + 1} for {value}")
    return value


def straggle_once(marker_dir, value):
    """Item 0 is slow on its first attempt only, as a container on a busy host would be."""
    marker = Path(marker_dir) / f"started-{value}"
    first = not marker.exists()
    marker.touch()
    if value == 0 and first:
        time.sleep(20)
    else:
        time.sleep(0.2)
    return value


def test_user_exceptions_are_not_retried_by_default(executor, tmp_path):
    error = executor.submit(flaky, str(tmp_path), 1, 1).exception(timeout=30)
    assert isinstance(error, ConnectionError)
    assert executor.last_job.retries == 0


def test_retry_on_retries_the_named_user_exceptions(executor, tmp_path):
    ex = executor.with_options(retries=3, retry_on=(ConnectionError,))
    assert list(ex.map(flaky, [str(tmp_path)] * 3, range(3), [2] * 3)) == [0, 1, 2]
    job = executor.last_job
    assert job.retries == 6
    assert [t.attempt for t in job.tasks] == [3, 3, 3]


def test_retry_on_gives_up_after_the_retries(executor, tmp_path):
    ex = executor.with_options(retries=1, retry_on=(ConnectionError,))
    error = ex.submit(flaky, str(tmp_path), 7, 5).exception(timeout=30)
    assert isinstance(error, ConnectionError) and "failure 2" in str(error)


def test_retry_on_other_exception_types_are_not_retried(executor, tmp_path):
    ex = executor.with_options(retries=3, retry_on=(KeyError,))
    assert isinstance(ex.submit(flaky, str(tmp_path), 1, 1).exception(timeout=30), ConnectionError)
    assert executor.last_job.retries == 0


def test_straggler_gets_a_backup_and_the_first_result_wins(make_executor, tmp_path):
    ex = make_executor(workers=2, speculate=True)
    started = time.time()
    results = list(ex.map(straggle_once, [str(tmp_path)] * 8, range(8), timeout=60))
    assert results == list(range(8))
    assert time.time() - started < 15  # the 20 s straggler did not set the wall time
    job = ex.last_job
    # The straggler got a backup, and so may a task queued behind it in the same worker.
    assert 1 <= job.backups <= 2 and 1 <= job.backups_won <= job.backups
    assert job.tasks[0].backup_attempts == {2}
    assert job.summary().backups == job.backups


def test_without_speculation_no_backup_runs(make_executor, tmp_path):
    ex = make_executor(workers=2)
    future = ex.submit(straggle_once, str(tmp_path), 1)
    assert future.result(timeout=30) == 1 and ex.last_job.backups == 0


def test_tampered_function_object_is_refused(make_executor):
    executor = make_executor()  # its own: the tampered function stays in the session
    list(executor.map(abs, [-1]))  # stage abs once
    [info] = list(executor.storage.list(executor.session_prefix + "/fn/"))
    blob = bytearray(executor.storage.get(info.key))
    blob[-3] ^= 0xFF
    executor.storage.put(info.key, bytes(blob))
    # A fresh executor session would re-upload; the same one reuses the (now tampered) key.
    # The warm workers cached the function, so make them fetch it again with a new worker.
    for worker in executor.backend._pool:
        os.kill(worker.process.pid, signal.SIGKILL)
    time.sleep(0.5)
    error = executor.submit(abs, -2).exception(timeout=30)
    assert isinstance(error, IntegrityError)
    assert "signature does not match" in str(error)


def test_object_signed_with_another_key_is_refused(executor):
    from lambdamr.signing import Context, Signer

    context = Context("shared", session="s", key="s/shared/x")
    foreign = Signer(b"k" * 32)
    with pytest.raises(IntegrityError, match="another key"):
        executor.signer.verify(foreign.sign(b"payload", context), context, what="test object")
    with pytest.raises(IntegrityError, match="no lambdamr signature"):
        executor.signer.verify(b"plain pickle bytes", context, what="test object")
    assert "hidden" in repr(executor.signer)


DRIVER = textwrap.dedent(
    """
    import os, sys, time
    from lambdamr import LambdaExecutor

    def slow(pids_dir):
        with open(os.path.join(pids_dir, f"pid-{os.getpid()}"), "w"):
            pass
        time.sleep(60)

    with LambdaExecutor(storage=sys.argv[1], workers=2, progress=False) as ex:
        print(ex.session_prefix, flush=True)
        for _ in ex.map(slow, [sys.argv[2]] * 10):
            pass
    """
)


def test_ctrl_c_stops_workers_and_removes_temp_objects_promptly(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    driver = subprocess.Popen(
        [sys.executable, str(script), str(store), str(pids_dir)], stdout=subprocess.PIPE, text=True, env=env
    )
    session_prefix = driver.stdout.readline().strip()
    deadline = time.time() + 30
    while len(list(pids_dir.iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.1)
    worker_pids = [int(p.name.split("-")[1]) for p in pids_dir.iterdir()]
    assert len(worker_pids) == 2
    interrupted = time.time()
    driver.send_signal(signal.SIGINT)
    driver.wait(timeout=20)
    assert time.time() - interrupted < 10  # did not wait for the 60 s tasks
    for pid in worker_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    leftovers = list((store / session_prefix).rglob("*")) if (store / session_prefix).exists() else []
    assert leftovers == []
    assert session_prefix.startswith("lambdamr/")


ATTACH_DRIVER = textwrap.dedent(
    """
    import os, sys, time
    from lambdamr import LambdaExecutor

    def work(i):
        if i >= 6 and not os.environ.get("RERUN_FAST"):
            time.sleep(60)  # still running when the driver dies
        return i * 10

    ex = LambdaExecutor(storage=sys.argv[1], workers=2, progress=False, durable=True)
    results = ex.map(work, range(10))
    print(results.job.job_id, flush=True)
    for value in results:
        print(value, flush=True)
    """
)


def test_attach_collects_a_job_whose_driver_died(tmp_path, monkeypatch):
    from lambdamr import LambdaExecutor

    script = tmp_path / "driver.py"
    script.write_text(ATTACH_DRIVER)
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    driver = subprocess.Popen([sys.executable, str(script), str(store)], stdout=subprocess.PIPE, text=True, env=env)
    job_id = driver.stdout.readline().strip()
    assert [driver.stdout.readline().strip() for _ in range(6)] == [str(i * 10) for i in range(6)]
    driver.kill()  # the driver dies with tasks 6..9 unfinished
    driver.wait()

    monkeypatch.setenv("RERUN_FAST", "1")  # the new workers run the re-runs quickly
    with LambdaExecutor(storage=str(store), workers=2, progress=False) as ex:
        job = ex.attach(job_id)
        assert sum(f.done() for f in job.futures) >= 6  # stored results settled at once
        assert [f.result(timeout=60) for f in job.futures] == [i * 10 for i in range(10)]
        rerun = [t for t in job.tasks if t.attempt > 1000]
        assert {t.task_id for t in rerun} == set(range(6, 10))
        from lambdamr.driver.jobstore import find_job

        deadline = time.time() + 10
        while find_job(ex.storage, "lambdamr", job_id)["state"] == "running" and time.time() < deadline:
            time.sleep(0.1)
        assert find_job(ex.storage, "lambdamr", job_id)["state"] == "done"
    # The adopted job's objects went with this executor's shutdown.
    session, number = job_id.rsplit("-", 1)
    assert list(ex.storage.list(f"lambdamr/{session}/{number}/")) == []


def test_attach_refuses_unknown_or_non_durable_jobs(executor):
    from lambdamr import ConfigurationError

    with pytest.raises(ConfigurationError, match="not a lambdamr job id"):
        executor.attach("yesterday")
    list(executor.map(abs, [1]))  # not durable on the local backend by default
    with pytest.raises(ConfigurationError, match="durable=True"):
        executor.attach(executor.last_job.job_id)
