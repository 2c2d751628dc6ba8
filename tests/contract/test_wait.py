"""wait() and as_completed() over the executor's futures (CPython's WaitTests, AsCompletedTests).

Tasks that must stay unfinished wait for a release file the test writes, rather than for a
fixed sleep, so nothing here depends on timing but the timeouts under test.
"""

from __future__ import annotations

import concurrent.futures
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, as_completed, wait

import pytest

from . import tasks


@pytest.fixture
def release(flag_dir):
    """A path the blocked tasks wait for; written at teardown so none outlives the test."""
    path = flag_dir / "release"
    yield str(path)
    path.write_text("go")


def test_20369(executor):
    # a future given twice is reported once
    future = executor.submit(tasks.mul, 1, 2)
    done, not_done = wait([future, future], return_when=ALL_COMPLETED, timeout=30)
    assert done == {future} and not_done == set()


def test_first_completed(executor, release):
    quick = executor.submit(tasks.mul, 21, 2)
    blocked = executor.submit(tasks.wait_for_file, release)
    done, not_done = wait([quick, blocked], return_when=FIRST_COMPLETED, timeout=30)
    assert done == {quick} and not_done == {blocked}


def test_first_completed_some_already_completed(executor, release):
    finished = executor.submit(tasks.mul, 2, 2)
    finished.result(timeout=30)
    blocked = executor.submit(tasks.wait_for_file, release)
    done, not_done = wait([finished, blocked], return_when=FIRST_COMPLETED, timeout=30)
    assert done == {finished} and not_done == {blocked}


def test_first_exception(executor, release):
    ok = executor.submit(tasks.mul, 2, 21)
    failing = executor.submit(tasks.sleep_and_raise, 0.2)
    blocked = executor.submit(tasks.wait_for_file, release)
    done, not_done = wait([ok, failing, blocked], return_when=FIRST_EXCEPTION, timeout=30)
    assert failing in done and blocked in not_done
    assert isinstance(failing.exception(), RuntimeError)


def test_first_exception_one_already_failed(executor, release):
    failed = executor.submit(tasks.raise_value_error)
    assert isinstance(failed.exception(timeout=30), ValueError)
    blocked = executor.submit(tasks.wait_for_file, release)
    done, not_done = wait([failed, blocked], return_when=FIRST_EXCEPTION, timeout=30)
    assert done == {failed} and not_done == {blocked}


def test_all_completed(executor):
    futures = [executor.submit(tasks.mul, i, i) for i in range(4)] + [executor.submit(tasks.raise_value_error)]
    done, not_done = wait(futures, return_when=ALL_COMPLETED, timeout=30)
    assert done == set(futures) and not_done == set()


def test_timeout(executor, release):
    finished = executor.submit(tasks.mul, 6, 7)
    finished.result(timeout=30)
    blocked = executor.submit(tasks.wait_for_file, release)
    done, not_done = wait([finished, blocked], timeout=0.5, return_when=ALL_COMPLETED)
    assert done == {finished} and not_done == {blocked}


def test_as_completed_no_timeout(executor):
    futures = {executor.submit(tasks.mul, i, 2) for i in range(5)}
    assert set(as_completed(futures, timeout=30)) == futures


def test_as_completed_future_times_out(executor, release):
    finished = executor.submit(tasks.mul, 1, 1)
    finished.result(timeout=30)
    blocked = executor.submit(tasks.wait_for_file, release)
    yielded = []
    with pytest.raises(concurrent.futures.TimeoutError, match=r"1 \(of 2\) futures unfinished"):
        for future in as_completed([finished, blocked], timeout=0.3):
            yielded.append(future)
    assert yielded == [finished]


def test_as_completed_zero_timeout(executor, release):
    finished = executor.submit(tasks.mul, 1, 1)
    finished.result(timeout=30)
    blocked = executor.submit(tasks.wait_for_file, release)
    yielded = []
    with pytest.raises(concurrent.futures.TimeoutError):
        for future in as_completed([finished, blocked], timeout=0):
            yielded.append(future)
    assert yielded == [finished]


def test_as_completed_duplicate_futures(executor):
    future = executor.submit(tasks.mul, 3, 3)
    assert list(as_completed([future, future], timeout=30)) == [future]

