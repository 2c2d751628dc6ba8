"""The scheduler thread survives what a callback or a backend throws at it, and when it dies
all the same, nothing waits forever (issue 13)."""

from __future__ import annotations

import threading

import pytest

from lambdamr import BackendError, LambdaExecutor
from lambdamr.backends.inline import InlineBackend


def double(x):
    return 2 * x


def block(path):
    import os
    import time

    while not os.path.exists(path):
        time.sleep(0.005)
    return "released"


@pytest.fixture
def inline(tmp_path):
    executors = []

    def make(backend=None):
        ex = LambdaExecutor(backend or "inline", storage=str(tmp_path / "store"), workers=2, progress=False)
        executors.append(ex)
        return ex

    yield make
    for ex in executors:
        ex.terminate_workers()


def double_once_open(gate, x):
    """``double`` once the test created ``gate``: the test attaches its callback first."""
    import os
    import time

    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.005)
    return 2 * x


def test_a_done_callback_raising_system_exit_stops_nothing(inline, tmp_path):
    ex = inline()
    gate = tmp_path / "gate"
    first = ex.submit(double_once_open, str(gate), 1)
    # Attached while the call is surely pending, so it runs on the scheduler's thread (on a
    # finished future add_done_callback would run it here, in the test).
    first.add_done_callback(lambda _: (_ for _ in ()).throw(SystemExit(2)))
    gate.touch()
    assert first.result(timeout=30) == 2
    assert list(ex.map(double, range(5), chunksize=2)) == [0, 2, 4, 6, 8]


class FlakyInvoke(InlineBackend):
    """Its first invoke raises what no backend should (a plain RuntimeError)."""

    def __init__(self) -> None:
        super().__init__(workers=2)
        self.failed = False

    def invoke(self, invocations):
        if not self.failed:
            self.failed = True
            raise RuntimeError("the backend's own bug")
        super().invoke(invocations)


def test_a_backend_raising_fails_its_tasks_only(inline):
    ex = inline(FlakyInvoke())
    with pytest.raises(BackendError, match="failed to invoke: RuntimeError: the backend's own bug"):
        ex.submit(double, 1).result(timeout=30)
    assert ex.submit(double, 4).result(timeout=30) == 8


def test_a_dead_scheduler_fails_every_future_and_refuses_work(inline, tmp_path):
    ex = inline()
    release = tmp_path / "release"
    running = ex.submit(block, str(release))  # blocked until the end of the test
    while not running.running():  # a thread has it: the scheduler now waits for a message
        threading.Event().wait(0.005)
    scheduler = ex.session.scheduler
    armed = threading.Event()
    original = scheduler._dispatch

    def dispatch_or_die():
        if armed.is_set():
            raise KeyboardInterrupt  # what no handler in the loop is for
        original()

    scheduler._dispatch = dispatch_or_die
    armed.set()
    queued = ex.submit(double, 1)  # the scheduler meets the fault dispatching it
    try:
        for future in (running, queued):
            with pytest.raises(BackendError, match="scheduler thread stopped on an unexpected error"):
                future.result(timeout=30)
        with pytest.raises(BackendError, match="cannot run tasks any more"):
            ex.submit(double, 1)
    finally:
        release.write_text("go")
    ex.shutdown(wait=True)  # returns: nothing is left to wait for
