"""A job under injected faults must settle every result exactly once, and right.

    python benchmarks/chaos.py [--tasks 2000] [--path local|aws|both]

``local``: the local backend with 1% of tasks killing their worker process on their first
attempt (SIGKILL, like a container dying), a killer thread that SIGKILLs a random worker
process twice a second (busy, idle or still starting), 2% of events delivered twice, and 2%
of the driver's storage requests failing with 503 SlowDown (results are forced through
storage with ``durable=True`` so that the failures hit the result path).

``aws``: the AWS backend's real boto3 invokes against the loopback Lambda stand-in
(``lambdamr.testing.lambda_service``: the deployed handler under awslambdaric) with S3 on a
moto server enforcing IAM: throttled invokes, lost invocations, duplicate deliveries and
killed environments injected by the stand-in.

What is counted is what the job settled, not what ``list(ex.map(...))`` returned (which has
n items by construction): a ``SettlementLedger`` counts every ``set_result`` and
``set_exception`` of every future while the job runs. Each call must be settled exactly
once with its right value; deliveries that arrive after a task settled are counted by the
scheduler as duplicates seen and ignored. The run fails (exit status 1) when a result is
wrong, missing or settled twice.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lambdamr import LambdaExecutor  # noqa: E402
from lambdamr.backends.local import LocalBackend  # noqa: E402
from lambdamr.driver.job import Job  # noqa: E402
from lambdamr.futures import LambdaFuture  # noqa: E402
from lambdamr.storage.local import LocalStorage  # noqa: E402
from lambdamr.testing.faults import DuplicatingBackend, FlakyStorage  # noqa: E402

KILL_EVERY = 100  # 1% of tasks kill their worker on the first attempt
KILLS_PER_S = 2.0  # random worker processes SIGKILLed from outside, per second


def chaotic_task(i: int, marker_dir: str | None) -> int:
    """Returns i*i; when ``marker_dir`` is set, every KILL_EVERY-th task kills its worker once."""
    if marker_dir and i % KILL_EVERY == 7:
        marker = os.path.join(marker_dir, f"killed-{i}")
        if not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
    return i * i


@dataclass
class Settlement:
    """What one job settled, call by call."""

    expected: int
    settled_once: int = 0  # right value, settled exactly once
    settled_twice: int = 0  # settled more than once (a duplicate that got through)
    wrong: int = 0  # settled once, with another value or an exception
    missing: int = 0  # never settled
    duplicates_ignored: int = 0  # deliveries seen after their task had settled (scheduler's count)
    failures: list[str] = field(default_factory=list)  # the first few problems, for the report

    @property
    def ok(self) -> bool:
        return self.settled_once == self.expected and not (self.settled_twice or self.wrong or self.missing)


class SettlementLedger:
    """Counts every ``set_result`` / ``set_exception`` of every ``LambdaFuture`` while active.

    Instrumentation only: it wraps the two methods at class level, counts, and calls them;
    a second settle still reaches ``concurrent.futures`` (which refuses it) and is counted.
    """

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        # A job lets go of a future once its caller consumed it: the ledger keeps each one it
        # counted, to check every call of the run (``futures_of``).
        self.settled: dict[int, LambdaFuture] = {}
        self._lock = threading.Lock()
        self._saved: dict[str, Callable[..., Any]] = {}

    def __enter__(self) -> SettlementLedger:
        for name in ("set_result", "set_exception"):
            original = getattr(LambdaFuture, name)
            self._saved[name] = original
            setattr(LambdaFuture, name, self._counting(original))
        return self

    def __exit__(self, *exc: object) -> None:
        for name, original in self._saved.items():
            setattr(LambdaFuture, name, original)

    def _counting(self, original: Callable[..., Any]) -> Callable[..., Any]:
        ledger = self

        def settle(future: LambdaFuture, value: Any) -> None:
            with ledger._lock:
                ledger.counts[id(future)] += 1
                ledger.settled[id(future)] = future
            original(future, value)

        return settle

    def futures_of(self, job: Job) -> list[LambdaFuture]:
        """Every call's future of ``job``: those it still lists and those seen settling."""
        found = {id(f): f for f in job.futures}
        with self._lock:
            found.update({key: f for key, f in self.settled.items() if f.job is job})
        return sorted(found.values(), key=lambda f: (f.task_id, f.index))

    def settlement(self, job: Job, expected: Sequence[Any]) -> Settlement:
        """Check every call of ``job`` against ``expected`` (its right results, in order)."""
        futures = self.futures_of(job)
        result = Settlement(expected=len(expected), duplicates_ignored=job.duplicates)
        if len(futures) != len(expected):
            result.missing = abs(len(expected) - len(futures))
            result.failures.append(f"{len(futures)} calls in the job, {len(expected)} expected")
        for index, (future, want) in enumerate(zip(futures, expected)):
            count = self.counts[id(future)]
            if count == 0 or not future.done() or future.cancelled():
                result.missing += 1
                problem = f"call {index}: never settled"
            elif count > 1:
                result.settled_twice += 1
                problem = f"call {index}: settled {count} times"
            elif future.exception() is not None:
                result.wrong += 1
                problem = f"call {index}: {type(future.exception()).__name__}: {future.exception()}"
            elif future.result() != want:
                result.wrong += 1
                problem = f"call {index}: {future.result()!r} instead of {want!r}"
            else:
                result.settled_once += 1
                continue
            if len(result.failures) < 5:
                result.failures.append(problem)
        return result


@dataclass
class ChaosRun:
    """One run of the job, with or without faults."""

    faults: bool
    wall_s: float
    summary: Any  # JobSummary
    settlement: Settlement
    injected: dict[str, int]


class WorkerKiller(threading.Thread):
    """SIGKILLs a random worker process of a local backend ``rate`` times per second."""

    def __init__(self, backend: LocalBackend, rate: float, seed: int = 11) -> None:
        super().__init__(name="chaos-worker-killer", daemon=True)
        self.backend = backend
        self.interval = 1.0 / rate
        self.random = random.Random(seed)
        self.kills = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval * (0.5 + self.random.random())):
            pids = self.backend.worker_pids()
            if not pids:
                continue
            try:
                os.kill(self.random.choice(pids), signal.SIGKILL)
                self.kills += 1
            except ProcessLookupError:  # it died or was replaced meanwhile
                pass

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def run_local(n: int, workers: int, kills_per_s: float = KILLS_PER_S) -> list[ChaosRun]:
    """The job without faults, then with them; both must settle every call exactly once."""
    base = Path(tempfile.mkdtemp(prefix="lambdamr-chaos-"))
    runs = []
    try:
        for faults in (False, True):
            markers = base / ("markers" if faults else "none")
            markers.mkdir(exist_ok=True)
            store: Any = LocalStorage(base / "store")
            local = LocalBackend(workers=workers)
            backend: Any = local
            if faults:
                store = FlakyStorage(store, failure_rate=0.02, seed=1)
                backend = DuplicatingBackend(local, rate=0.02, seed=2)
            killer = WorkerKiller(local, kills_per_s) if faults and kills_per_s > 0 else None
            # reply_inline_max=0: every result goes through storage, where the 503s are injected.
            with SettlementLedger() as ledger, LambdaExecutor(
                backend=backend, storage=store, durable=True, reply_inline_max=0, progress=False
            ) as ex:
                started = time.perf_counter()
                # buffersize=n: every task is launched at once (the default window would launch
                # only what the iterator, dropped here, makes room for).
                job = ex.map(chaotic_task, range(n), [str(markers) if faults else None] * n, buffersize=n).job
                assert job is not None
                if killer is not None:
                    killer.start()
                try:
                    job.wait()  # not the iterator: it would cancel the rest at the first error
                finally:
                    if killer is not None:
                        killer.stop()
                wall = time.perf_counter() - started
                settlement = ledger.settlement(job, [i * i for i in range(n)])
                injected = {
                    "tasks killing their worker": len(list(markers.iterdir())),
                    "workers killed from outside": killer.kills if killer else 0,
                    "of them while starting": local.workers_lost_starting if faults else 0,
                    "duplicate deliveries": getattr(backend, "injected", 0),
                    "storage 503s": getattr(store, "injected", 0),
                }
                runs.append(ChaosRun(faults, wall, job.summary(), settlement, injected))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return runs


def report(title: str, n: int, rows: Sequence[ChaosRun]) -> bool:
    """Print the runs; return whether every call of every run was settled once and right."""
    runs = list(rows)
    clean_wall = runs[0].wall_s
    print(f"\n== {title}: {n} tasks")
    ok = True
    for run in runs:
        s = run.settlement
        label = "with faults" if run.faults else "no faults  "
        faults_text = ", ".join(f"{v} {k}" for k, v in run.injected.items()) if run.faults else "none"
        print(
            f"{label}: wall {run.wall_s:6.2f} s ({run.wall_s / clean_wall:4.2f}x)  retries {run.summary.retries:4d}  "
            f"settled once {s.settled_once}/{s.expected}  twice {s.settled_twice}  wrong {s.wrong}  "
            f"missing {s.missing}  duplicate deliveries ignored {s.duplicates_ignored}  | injected: {faults_text}"
        )
        for problem in s.failures:
            print(f"    {problem}")
        ok = ok and s.ok
    print("PASS: every call settled exactly once, with its right value" if ok else "FAIL: see the counts above")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--path", choices=["local", "aws", "both"], default="both")
    parser.add_argument("--kills-per-s", type=float, default=KILLS_PER_S, help="local: workers killed from outside")
    args = parser.parse_args()
    # A timeout's SIGTERM ends the run through SystemExit, so that the temp folders go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ok = True
    if args.path in ("local", "both"):
        runs = run_local(args.tasks, args.workers, args.kills_per_s)
        ok = report(f"local backend, local folder, {args.kills_per_s:g} kills/s", args.tasks, runs) and ok
    if args.path in ("aws", "both"):
        from chaos_aws import run_aws  # noqa: E402 - sibling module, needs moto

        ok = run_aws(args.tasks) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
