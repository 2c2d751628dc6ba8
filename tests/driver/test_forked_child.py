"""A process forked from the driver inherits a copy of the executor, without its threads.

``multiprocessing`` forks by default on Linux and runs ``threading``'s exit hooks when the
child ends, so a ``ProcessPoolExecutor`` or a ``multiprocessing.Pool`` made next to a
``LambdaExecutor`` used to release the copy: wait 30 s for a record writer the child has not,
then delete the session's temp objects under the driver's feet. The copy is not the child's.
"""

from __future__ import annotations

import multiprocessing
import os

from tests.gates import WAIT_S, touch, wait_for


def square(x):
    return x * x


def _stay_until(gate: str, started: str) -> None:
    touch(started)
    wait_for(gate)


def _session_keys(ex) -> set[str]:
    return {info.key for info in ex.storage.list(ex.session_prefix + "/")}


def test_a_forked_child_leaves_the_drivers_session_alone_when_it_exits(make_executor):
    ex = make_executor(workers=1)
    assert ex.submit(square, 3).result(timeout=WAIT_S) == 9  # the function staged, a worker warm
    before = _session_keys(ex)
    pids = ex.backend.worker_pids()
    assert before and pids

    child = multiprocessing.get_context("fork").Process(target=square, args=(2,))
    child.start()
    child.join(WAIT_S)
    assert child.exitcode == 0

    assert _session_keys(ex) >= before  # nothing of the session deleted by the child's exit
    assert ex.backend.worker_pids() == pids  # nor its workers stopped
    assert ex.submit(square, 4).result(timeout=WAIT_S) == 16  # the staged function still there


def test_workers_exit_at_shutdown_while_a_forked_child_holds_copies_of_their_sockets(make_executor, tmp_path):
    ex = make_executor(workers=2)
    assert sorted(ex.map(square, range(4))) == [0, 1, 4, 9]
    workers = list(ex.backend._pool)
    gate, started = str(tmp_path / "go"), str(tmp_path / "started")
    child = multiprocessing.get_context("fork").Process(target=_stay_until, args=(gate, started))
    child.start()
    try:
        wait_for(started)
        ex.shutdown()
        # Each worker saw the end of its socket and exited by itself: not killed after a wait
        # (closing the driver's end sends no EOF while the child still holds a copy of it).
        assert [w.process.returncode for w in workers] == [0, 0]
        assert not any(os.path.exists(f"/proc/{w.process.pid}") for w in workers)
    finally:
        touch(gate)
        child.join(WAIT_S)
    assert child.exitcode == 0
