"""Driver and runtime overhead of the local backend, side by side with ProcessPoolExecutor.

Runs in one process, same worker count for both:
  * N empty tasks (throughput: tasks per second),
  * 16 CPU-bound tasks (Mandelbrot tiles; wall time),
and prints ratios plus the storage requests per task counted by the storage layer.

    python benchmarks/overhead.py [--tasks 2000] [--workers N] [--storage s3 --endpoint URL]

Targets (issue 2): CPU-bound wall time within 1.15x of ProcessPoolExecutor; empty-task
throughput at least half of ProcessPoolExecutor's; at most 2 storage requests per task plus
one list per poll.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lambdamr import LambdaExecutor  # noqa: E402
from lambdamr.cli.help import HelpFormatter


def empty(x):
    return x


def mandelbrot_tile(index: int, tiles: int = 16, size: int = 640, max_iter: int = 300) -> int:
    """Escape-time Mandelbrot on one horizontal band of a size x size image; returns a checksum."""
    rows = size // tiles
    y = np.linspace(-1.5, 1.5, size)[index * rows : (index + 1) * rows]
    x = np.linspace(-2.0, 1.0, size)
    c = x[None, :] + 1j * y[:, None]
    z = np.zeros_like(c)
    counts = np.zeros(c.shape, dtype=np.int32)
    for _ in range(max_iter):
        mask = np.abs(z) <= 2.0
        z[mask] = z[mask] * z[mask] + c[mask]
        counts[mask] += 1
    return int(counts.sum())


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000, help="empty tasks (default 2000)")
    parser.add_argument("--tiles", type=int, default=16, help="CPU-bound tasks (default 16)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="worker processes (default: CPU count)")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs (default 3)")
    parser.add_argument("--storage", default=None, help="storage URL (default: a temporary folder)")
    parser.add_argument("--endpoint", default=None, help="S3 endpoint URL for --storage s3://... (default: AWS's)")
    args = parser.parse_args()

    storage = args.storage or tempfile.mkdtemp(prefix="lambdamr-bench-")
    if not args.storage:  # ours: removed at exit, also when a timeout's SIGTERM ends the run
        atexit.register(shutil.rmtree, storage, True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    n, tiles, workers = args.tasks, args.tiles, args.workers
    print(f"{n} empty tasks and {tiles} Mandelbrot tiles, {workers} workers, storage {storage}")

    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(empty, range(workers * 4)))  # warm the workers up
        pool_empty = min(timed(lambda: list(pool.map(empty, range(n))))[0] for _ in range(args.repeat))
        pool_cpu = min(timed(lambda: list(pool.map(mandelbrot_tile, range(tiles))))[0] for _ in range(args.repeat))

    with LambdaExecutor(workers=workers, storage=storage, endpoint_url=args.endpoint, progress=False) as ex:
        list(ex.map(empty, range(workers * 4)))  # warm
        before = ex.storage.stats.snapshot()
        runs = [timed(lambda: list(ex.map(empty, range(n)))) for _ in range(args.repeat)]
        lmr_empty = min(t for t, _ in runs)
        summaries = [job.summary() for job in ex.jobs[1:]]
        lmr_cpu = min(timed(lambda: list(ex.map(mandelbrot_tile, range(tiles))))[0] for _ in range(args.repeat))
        after = ex.storage.stats.snapshot()

    assert runs[0][1] == list(range(n))
    requests = {k: sum(s.storage_requests.get(k, 0) for s in summaries) for k in ("puts", "gets", "lists", "deletes")}
    per_task = {k: v / (n * args.repeat) for k, v in requests.items()}
    print()
    print(f"{'':28}{'ProcessPool':>14}{'lambdamr':>14}{'ratio':>10}   target")
    throughput_ratio = (n / lmr_empty) / (n / pool_empty)
    print(f"{'empty tasks / s':28}{n / pool_empty:14.0f}{n / lmr_empty:14.0f}{throughput_ratio:10.2f}   >= 0.50")
    print(f"{'CPU-bound wall time (s)':28}{pool_cpu:14.3f}{lmr_cpu:14.3f}{lmr_cpu / pool_cpu:10.2f}   <= 1.15")
    print()
    print("storage requests per empty task (driver + runtime): " + ", ".join(f"{k} {v:.3f}" for k, v in per_task.items()))
    driver_side = {k: after[k] - before[k] for k in ("puts", "gets", "lists", "deletes")}
    print(f"driver-side storage requests for the whole run: {driver_side}")


if __name__ == "__main__":
    main()
