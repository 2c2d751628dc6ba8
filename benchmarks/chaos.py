"""A job under injected faults must return every result exactly once.

    python benchmarks/chaos.py [--tasks 2000] [--path local|aws|both]

``local``: the local backend with 1% of tasks killing their worker process on their first
attempt (SIGKILL, like a container dying), 2% of events delivered twice, and 2% of the
driver's storage requests failing with 503 SlowDown (results are forced through storage with
``durable=True`` so that the failures hit the result path).

``aws``: the AWS backend's real boto3 invokes against the loopback Lambda stand-in
(``lambdamr.testing.lambda_service``: the deployed handler under awslambdaric) with S3 on a
moto server enforcing IAM: throttled invokes, lost invocations, duplicate deliveries and
killed environments injected by the stand-in.

For each run it prints the faults injected, retries, results lost and duplicated (both must
be 0) and the wall time against the same job without faults.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lambdamr import LambdaExecutor  # noqa: E402
from lambdamr.backends.local import LocalBackend  # noqa: E402
from lambdamr.faults import DuplicatingBackend, FlakyStorage  # noqa: E402
from lambdamr.storage.local import LocalStorage  # noqa: E402

KILL_EVERY = 100  # 1% of tasks kill their worker on the first attempt


def chaotic_task(i: int, marker_dir: str | None) -> int:
    """Returns i*i; when ``marker_dir`` is set, every KILL_EVERY-th task kills its worker once."""
    if marker_dir and i % KILL_EVERY == 7:
        marker = os.path.join(marker_dir, f"killed-{i}")
        if not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
    return i * i


def check(results: list[int], n: int) -> tuple[int, int]:
    """(lost, duplicated) results against the expected squares."""
    expected = [i * i for i in range(n)]
    lost = sum(1 for got, want in zip(results, expected) if got != want) + max(0, n - len(results))
    duplicated = max(0, len(results) - n)
    return lost, duplicated


def run_local(n: int, workers: int) -> None:
    base = Path(tempfile.mkdtemp(prefix="lambdamr-chaos-"))
    rows = []
    for faults in (False, True):
        markers = base / ("markers" if faults else "none")
        markers.mkdir(exist_ok=True)
        store = LocalStorage(base / "store")
        backend = LocalBackend(workers=workers)
        if faults:
            store = FlakyStorage(store, failure_rate=0.02, seed=1)
            backend = DuplicatingBackend(backend, rate=0.02, seed=2)
        # reply_inline_max=0: every result goes through storage, where the 503s are injected.
        with LambdaExecutor(backend=backend, storage=store, durable=True, reply_inline_max=0, progress=False) as ex:
            started = time.perf_counter()
            results = list(ex.map(chaotic_task, range(n), [str(markers) if faults else None] * n))
            wall = time.perf_counter() - started
            summary = ex.last_job.summary()
            lost, duplicated = check(results, n)
            injected = {
                "killed workers": len(list(markers.iterdir())),
                "duplicate deliveries": getattr(backend, "injected", 0),
                "storage 503s": getattr(store, "injected", 0),
            }
            rows.append((faults, wall, summary, lost, duplicated, injected))
    report("local backend, local folder", n, rows)


def report(title: str, n: int, rows: list) -> None:
    clean_wall = rows[0][1]
    print(f"\n== {title}: {n} tasks")
    for faults, wall, summary, lost, duplicated, injected in rows:
        label = "with faults" if faults else "no faults  "
        faults_text = ", ".join(f"{v} {k}" for k, v in injected.items()) if faults else "none"
        print(
            f"{label}: wall {wall:6.2f} s ({wall / clean_wall:4.2f}x)  retries {summary.retries:4d}  "
            f"duplicates seen {summary.duplicates:3d}  lost {lost}  duplicated {duplicated}  | injected: {faults_text}"
        )
        assert lost == 0 and duplicated == 0, "a result was lost or duplicated"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--path", choices=["local", "aws", "both"], default="both")
    args = parser.parse_args()
    if args.path in ("local", "both"):
        run_local(args.tasks, args.workers)
    if args.path in ("aws", "both"):
        from chaos_aws import run_aws  # noqa: E402 - sibling module, needs moto

        run_aws(args.tasks)


if __name__ == "__main__":
    main()
