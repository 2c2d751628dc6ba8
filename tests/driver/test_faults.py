"""Injected faults on the local backend: every result arrives exactly once."""

from __future__ import annotations

import os
import signal

import pytest

from lambdamr import LambdaExecutor, ResultLostError
from lambdamr.backends.local import LocalBackend
from lambdamr.storage.local import LocalStorage
from lambdamr.testing.faults import DuplicatingBackend, FlakyStorage


def square_or_die(i, marker_dir):
    if i % 10 == 3:
        marker = os.path.join(marker_dir, f"killed-{i}")
        if not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
    return i * i


def test_storage_503s_duplicates_and_killed_workers_lose_nothing(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    store = FlakyStorage(LocalStorage(tmp_path / "store"), failure_rate=0.1, seed=3)
    backend = DuplicatingBackend(LocalBackend(workers=2), rate=0.1, seed=4)
    with LambdaExecutor(backend=backend, storage=store, durable=True, reply_inline_max=0, progress=False) as ex:
        # Staging must not meet an injected failure: the faults are for the result path.
        store.failure_rate = 0.0
        results = ex.map(square_or_die, range(200), [str(markers)] * 200)
        store.failure_rate = 0.1
        assert list(results) == [i * i for i in range(200)]
        job = ex.last_job
    assert len(list(markers.iterdir())) == 20  # every tenth task killed its worker once
    assert job.retries >= 20 - backend.injected  # a duplicate may win the race for a killed task
    assert store.injected > 0 and backend.injected > 0
    assert job.duplicates >= 1


def test_flaky_listing_and_fetches_are_retried(tmp_path):
    store = FlakyStorage(LocalStorage(tmp_path / "store"), failure_rate=0.0, seed=5)
    with LambdaExecutor(storage=store, workers=2, durable=True, reply_inline_max=0, progress=False) as ex:
        futures = [ex.submit(pow, i, 2) for i in range(30)]
        store.failure_rate = 0.3
        assert [f.result(timeout=60) for f in futures] == [i * i for i in range(30)]
    assert store.injected > 0


class VanishingResults(FlakyStorage):
    """Deletes each first attempt's result object just before the driver reads it, as a
    cleanup by someone else (or a lifecycle rule) would between the runtime's write and the
    driver's read."""

    def __init__(self, inner):
        super().__init__(inner, failure_rate=0.0)
        self.vanished = 0

    def get(self, key, start=None, end=None):
        if "/results/" in key and key.endswith(".1"):
            self.inner.delete([key])
            self.vanished += 1
        return super().get(key, start, end)


def test_result_deleted_before_the_driver_reads_it_runs_the_task_again(tmp_path):
    store = VanishingResults(LocalStorage(tmp_path / "store"))
    with LambdaExecutor(storage=store, workers=2, durable=True, reply_inline_max=0, retries=1, progress=False) as ex:
        assert list(ex.map(pow, range(10), [2] * 10)) == [i * i for i in range(10)]
        assert ex.last_job.retries == 10 == store.vanished


def test_result_lost_for_good_says_so(tmp_path):
    store = VanishingResults(LocalStorage(tmp_path / "store"))
    with LambdaExecutor(storage=store, workers=1, durable=True, reply_inline_max=0, retries=0, progress=False) as ex:
        with pytest.raises(ResultLostError, match="was gone when the driver read it"):
            ex.submit(pow, 3, 2).result(timeout=60)


def load_chaos_benchmark():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "chaos.py"
    spec = importlib.util.spec_from_file_location("chaos_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_chaos_ledger_fails_a_run_that_settles_twice_wrong_or_never(tmp_path):
    import concurrent.futures

    chaos = load_chaos_benchmark()
    with chaos.SettlementLedger() as ledger, LambdaExecutor(storage=str(tmp_path), workers=1, progress=False) as ex:
        results = list(ex.map(pow, range(4), [2] * 4))
        job = ex.last_job
        assert ledger.settlement(job, [0, 1, 4, 9]).ok
        with pytest.raises(concurrent.futures.InvalidStateError):
            ledger.futures_of(job)[1].set_result(1)  # a duplicate that got through: refused, but counted
        settlement = ledger.settlement(job, [0, 1, 5, 9])
    assert results == [0, 1, 4, 9]
    assert (settlement.settled_once, settlement.settled_twice, settlement.wrong, settlement.missing) == (2, 1, 1, 0)
    assert not settlement.ok
    fresh = chaos.SettlementLedger()  # one that saw nothing: every call is missing
    assert fresh.settlement(job, [0, 1, 4, 9]).missing == 4
