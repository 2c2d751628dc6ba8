"""The future's own state machine (CPython's FutureTests), on ``LambdaFuture`` and, as the
control, on the stdlib's ``Future``: callbacks, cancel, result, exception, timeouts, repr."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import traceback
from concurrent.futures import CancelledError, Future, InvalidStateError

import pytest

import lambdamr
from lambdamr.driver.job import Job
from lambdamr.futures import LambdaFuture


def _lambda_future() -> Future:
    job = Job("20260101-000000-abcdef-0001", "p/20260101-000000-abcdef/0001", "fn", memory_mb=128, timeout_s=1,
              backend="inline")
    return job.new_task(1).futures[0]


@pytest.fixture(params=["LambdaFuture", "Future"])
def make_future(request):
    return _lambda_future if request.param == "LambdaFuture" else Future


def test_is_a_concurrent_futures_future():
    assert isinstance(_lambda_future(), (Future, LambdaFuture))


def test_timeout_error_is_the_stdlib_one():
    # On Python 3.10 concurrent.futures.TimeoutError is not the builtin TimeoutError.
    assert lambdamr.TimeoutError is concurrent.futures.TimeoutError
    assert lambdamr.CancelledError is concurrent.futures.CancelledError
    assert lambdamr.InvalidStateError is concurrent.futures.InvalidStateError


def test_done_callback_with_result(make_future):
    seen = []
    future = make_future()
    future.add_done_callback(lambda f: seen.append(f.result()))
    future.set_result(5)
    assert seen == [5]


def test_done_callback_with_exception(make_future):
    seen = []
    future = make_future()
    future.add_done_callback(lambda f: seen.append(f.exception().args))
    future.set_exception(Exception("test"))
    assert seen == [("test",)]


def test_done_callback_with_cancel(make_future):
    seen = []
    future = make_future()
    future.add_done_callback(lambda f: seen.append(f.cancelled()))
    assert future.cancel()
    assert seen == [True]


def test_done_callback_raises(make_future, caplog):
    raising, seen = [], []
    future = make_future()

    def bad(_):
        raising.append(True)
        raise Exception("doh!")

    future.add_done_callback(bad)
    future.add_done_callback(lambda f: seen.append(True))
    with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
        future.set_result(5)
    assert raising == [True] and seen == [True]
    assert "doh!" in caplog.text


def test_done_callback_already_done(make_future):
    for settle, check in [
        (lambda f: f.set_result(5), lambda f: f.result() == 5),
        (lambda f: f.set_exception(Exception("test")), lambda f: f.exception().args == ("test",)),
        (lambda f: f.cancel(), lambda f: f.cancelled()),
    ]:
        future = make_future()
        settle(future)
        seen: list[bool] = []
        future.add_done_callback(lambda f, seen=seen, check=check: seen.append(check(f)))
        assert seen == [True]


def test_states(make_future):
    future = make_future()
    assert not future.running() and not future.done() and not future.cancelled()
    assert future.set_running_or_notify_cancel()
    assert future.running() and not future.cancel()
    future.set_result(1)
    assert future.done() and not future.running() and not future.cancel()

    cancelled = make_future()
    assert cancelled.cancel() and cancelled.cancelled() and cancelled.done()
    assert cancelled.cancel()  # cancelling again is fine
    assert not cancelled.set_running_or_notify_cancel()


def test_repr_names_the_state(make_future):
    future = make_future()
    assert "pending" in repr(future)
    future.set_running_or_notify_cancel()
    assert "running" in repr(future)


def test_result_with_timeout(make_future):
    future = make_future()
    with pytest.raises(concurrent.futures.TimeoutError):
        future.result(timeout=0)
    with pytest.raises(concurrent.futures.TimeoutError):
        future.exception(timeout=0)


def test_result_with_success_from_another_thread(make_future):
    future = make_future()
    threading.Timer(0.05, future.set_result, (42,)).start()
    assert future.result(timeout=30) == 42


def test_result_with_cancel_from_another_thread(make_future):
    future = make_future()
    threading.Timer(0.05, future.cancel).start()
    with pytest.raises(CancelledError):
        future.result(timeout=30)
    with pytest.raises(CancelledError):
        future.exception(timeout=30)


def test_exception_with_success(make_future):
    future = make_future()
    threading.Timer(0.05, future.set_exception, (OSError("boom"),)).start()
    assert isinstance(future.exception(timeout=30), OSError)


def test_multiple_set_result_and_exception(make_future):
    future = make_future()
    future.set_result(1)
    with pytest.raises(InvalidStateError):
        future.set_result(2)
    with pytest.raises(InvalidStateError):
        future.set_exception(Exception())
    assert future.result() == 1


def test_traceback_does_not_grow_with_every_result_call():
    # The stdlib's grows by the raising frames each time; a LambdaFuture's stays as it arrived.
    future = _lambda_future()
    try:
        raise ValueError("once")
    except ValueError as exc:
        future.set_exception(exc)
    depths = []
    for _ in range(3):
        try:
            future.result()
        except ValueError as exc:
            depths.append(len(traceback.extract_tb(exc.__traceback__)))
    assert depths[0] == depths[1] == depths[2]
