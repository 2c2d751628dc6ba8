"""``LambdaFuture``'s condition (``futures.FutureCondition``): threading.Condition's behaviour
for everything a future, ``wait`` and ``as_completed`` do with it, at a fraction of its memory."""

from __future__ import annotations

import concurrent.futures
import gc
import threading
import tracemalloc
from collections.abc import Callable

import pytest

from lambdamr.futures import FutureCondition, LambdaFuture
from tests.gates import until


class Owner:
    job_id = "job"


def new_future() -> LambdaFuture:
    return LambdaFuture(Owner(), 0)  # type: ignore[arg-type]


def waiting(future: LambdaFuture) -> int:
    with future._condition:
        return len(future._condition._waiters)


def traced_per_object(make: Callable[[], object], count: int = 2_000) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = [make() for _ in range(count)]
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(held) == count
    return grown / count


def test_a_lambda_future_has_every_attribute_of_a_stdlib_future() -> None:
    stdlib, ours = concurrent.futures.Future(), new_future()
    assert set(vars(stdlib)) <= set(vars(ours))  # LambdaFuture sets Future.__init__'s attributes itself
    assert isinstance(ours._condition, threading.Condition)
    assert {name: getattr(ours, name) for name in vars(stdlib) if name != "_condition"} == {
        name: value for name, value in vars(stdlib).items() if name != "_condition"
    }


def test_a_pending_future_costs_far_less_than_a_stdlib_one() -> None:
    stdlib = traced_per_object(concurrent.futures.Future)
    ours = traced_per_object(new_future)
    # The stdlib's: ~1.6 KB, 1.1 KB of it its Condition's deque and bound lock methods.
    assert ours < stdlib - 800, (ours, stdlib)


def test_waiters_are_woken_by_the_result_and_the_deque_goes_with_the_last() -> None:
    future = new_future()
    started = threading.Barrier(5)
    results: list[object] = []

    def waiter() -> None:
        started.wait()
        results.append(future.result(timeout=30))

    threads = [threading.Thread(target=waiter) for _ in range(4)]
    for thread in threads:
        thread.start()
    started.wait()
    until(lambda: waiting(future) == 4, what="4 threads waiting on the future")
    future.set_result("done")
    for thread in threads:
        thread.join(30)
    assert results == ["done"] * 4
    assert future._condition._waiters == ()  # the last waiter out let go of its deque


def test_a_wait_that_times_out_leaves_no_waiter_behind() -> None:
    future = new_future()
    with pytest.raises(concurrent.futures.TimeoutError):
        future.result(timeout=0.01)
    assert future._condition._waiters == ()
    future.set_result(3)
    assert future.result(timeout=0) == 3


def test_wait_and_as_completed_see_a_future_set_from_another_thread() -> None:
    futures = [new_future() for _ in range(3)]
    setter = threading.Thread(target=lambda: [f.set_result(i) for i, f in enumerate(futures)])
    setter.start()
    done, not_done = concurrent.futures.wait(futures, timeout=30)
    setter.join(30)
    assert len(done) == 3 and not not_done
    assert sorted(f.result() for f in concurrent.futures.as_completed(futures, timeout=30)) == [0, 1, 2]


def test_the_condition_is_reentrant_and_refuses_use_without_its_lock() -> None:
    condition = FutureCondition()
    with pytest.raises(RuntimeError, match="un-acquired"):
        condition.notify()
    with pytest.raises(RuntimeError, match="un-acquired"):
        condition.wait(0)
    with condition, condition:  # an RLock: a future's cancel() takes it twice
        assert condition._is_owned()
        condition.notify_all()  # nobody waits: nothing to wake
        assert condition.wait(0) is False
    assert not condition._is_owned()
    assert condition.acquire(blocking=False) and condition._is_owned()
    condition.release()


def test_cancel_and_callbacks_behave_as_for_a_stdlib_future() -> None:
    future = new_future()
    seen: list[bool] = []
    future.add_done_callback(lambda f: seen.append(f.cancelled()))
    assert future.cancel() and future.cancelled() and seen == [True]
    with pytest.raises(concurrent.futures.CancelledError):
        future.result(timeout=0)
    assert "cancelled" in repr(future)
