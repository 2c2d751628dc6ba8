"""The driver's memory while a long map streams: flat in the number of tasks.

    PYTHONPATH=. python benchmarks/memory.py                      # 10,000 and 50,000 x 1 MB, 1,000,000-item generator
    PYTHONPATH=. python benchmarks/memory.py --results 2000 --generator 100000 --out /tmp/memory

Two cases, each in a fresh driver process (so that its peak RSS is its own):

* ``results``: N tasks each returning 1 MB (1,000,000 bytes, small enough to come back in
  the local worker's response), consumed one at a time and dropped. Before results were
  released, the driver kept every one of them (50,000 tasks = 50 GB).
* ``generator``: ``map`` over a 1,000,000-item generator of small calls (``chunksize``
  1,000), summed as they come. Before ``map`` streamed, it read the whole input first.

A third, ``--in-flight N`` (3,000 by default; 0 skips it): N ``submit`` calls wait in the driver
behind calls that hold every slot of the backend until a gate file appears, and what they leave
allocated (``tracemalloc``) is divided by N, beside what N bare ``concurrent.futures.Future``
objects take, with the number of jobs the submits made (they join one job while it runs:
docs/futures.md, "A submit's job"); then the gate opens, and what the same submits leave
allocated once settled, their futures still held (each future, its value, its task's record;
a history record being written at that moment counts too).

For the first two: the peak of Python allocations (``tracemalloc``) and of the driver's resident set
(``ru_maxrss``), what is still allocated once the loop ended (``traced end``: the job and
everything else the driver kept), the wall time, the calls per second, and how many task
records the finished job keeps (``kept``: a bounded sample, ``lambdamr.driver.task_ledger``).
The traced peak moves with how many 1 MB results wait in the window at the worst moment
(up to ``buffersize``, 32 by default): compare the ends for growth. The local backend runs the tasks
(``--workers`` processes); each case's temp folder is deleted afterwards. With two or more
task counts the growth between the smallest and the largest is printed per 10,000 tasks:
"flat" means close to zero. Nothing is written but ``--out`` (a folder: ``memory.json``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from typing import Any

RESULT_BYTES = 1_000_000


def one_megabyte(i: int) -> bytes:
    return bytes(RESULT_BYTES)


def increment(i: int) -> int:
    return i + 1


def run_case(case: str, count: int, workers: int, chunksize: int) -> dict[str, Any]:
    """Run one case in this process and measure it (the child side)."""
    from lambdamr import LambdaExecutor

    folder = tempfile.mkdtemp(prefix="lambdamr-memory-")
    try:
        with LambdaExecutor(storage=folder, workers=workers, progress=False) as ex:
            list(ex.map(increment, range(workers * 4)))  # start the workers before measuring
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            tracemalloc.start()
            started = time.perf_counter()
            if case == "results":
                received = 0
                for value in ex.map(one_megabyte, range(count)):
                    received += len(value)  # consumed, then dropped when the loop moves on
                assert received == count * RESULT_BYTES
            else:
                total = sum(ex.map(increment, (i for i in range(count)), chunksize=chunksize))
                assert total == count * (count + 1) // 2
            wall = time.perf_counter() - started
            gc.collect()
            traced_end, traced_peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            summary = ex.last_job.summary()
            records_kept = len(ex.last_job.tasks)
        return {
            "case": case,
            "calls": count,
            "tasks": summary.tasks,
            "records_kept": records_kept,
            "chunksize": chunksize if case == "generator" else 1,
            "workers": workers,
            "wall_s": round(wall, 1),
            "calls_per_s": round(count / wall),
            "traced_peak_mb": round(traced_peak / 1e6, 1),
            "traced_end_mb": round(traced_end / 1e6, 2),
            "rss_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "rss_before_mb": round(rss_before, 1),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def wait_for_gate(path: str) -> str:
    while not os.path.exists(path):
        time.sleep(0.01)
    return path


def _traced_per_object(make: Any, count: int) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = [make(i) for i in range(count)]
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del held
    return grown / count


def run_in_flight(count: int, workers: int) -> dict[str, Any]:
    """Traced bytes per ``submit`` waiting in the driver, and per bare stdlib future (the child side)."""
    import concurrent.futures

    from lambdamr import LambdaExecutor

    folder = tempfile.mkdtemp(prefix="lambdamr-memory-")
    gate = os.path.join(folder, "gate")
    try:
        with LambdaExecutor(storage=os.path.join(folder, "store"), workers=workers, progress=False) as ex:
            list(ex.map(increment, range(workers * 4)))  # workers started, code paths warm
            blockers = [ex.submit(wait_for_gate, gate) for _ in range(ex.backend.capacity)]
            stdlib = _traced_per_object(lambda i: concurrent.futures.Future(), count)
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                futures = [ex.submit(increment, i) for i in range(count)]
                gc.collect()
                per_submit = (tracemalloc.get_traced_memory()[0] - before) / count
                jobs = len({job.job_id for job in ex.jobs}) - 2  # the warm-up map's and the blockers' jobs aside
                open(gate, "w").close()
                assert [f.result() for f in futures] == [i + 1 for i in range(count)]
                assert all(f.result() == gate for f in blockers) and futures[-1].job.wait(60)
                gc.collect()
                per_settled = (tracemalloc.get_traced_memory()[0] - before) / count
            finally:
                tracemalloc.stop()
        return {"case": "in-flight", "calls": count, "bytes_per_submit": round(per_submit),
                "bytes_per_settled_submit": round(per_settled), "bytes_per_stdlib_future": round(stdlib), "jobs": jobs}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_in_child(case: str, count: int, workers: int, chunksize: int) -> dict[str, Any]:
    """Run one case in a fresh interpreter and return its figures."""
    command = [sys.executable, __file__, "--child", case, str(count), "--workers", str(workers), "--chunksize", str(chunksize)]
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, nargs="*", default=[10_000, 50_000], metavar="N",
                        help="task counts of the 1 MB case (default: 10000 50000)")
    parser.add_argument("--generator", type=int, default=1_000_000, metavar="N", help="items of the generator case")
    parser.add_argument("--chunksize", type=int, default=1000, help="calls per task in the generator case")
    parser.add_argument("--in-flight", type=int, default=3_000, metavar="N", help="submits in flight (0: skip)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", help="a folder to write memory.json into")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, count = args.child
        if case == "in-flight":
            print(json.dumps(run_in_flight(int(count), args.workers)))
        else:
            print(json.dumps(run_case(case, int(count), args.workers, args.chunksize)))
        return 0

    load_before = os.getloadavg()
    rows = [run_in_child("results", n, args.workers, 1) for n in args.results]
    if args.generator:
        rows.append(run_in_child("generator", args.generator, args.workers, args.chunksize))
    in_flight = run_in_child("in-flight", args.in_flight, args.workers, 1) if args.in_flight else None
    load_after = os.getloadavg()
    print(f"{'case':<10} {'calls':>9} {'tasks':>7} {'kept':>6} {'wall s':>7} {'calls/s':>8} "
          f"{'traced peak MB':>15} {'traced end MB':>14} {'RSS peak MB':>12}")
    if in_flight is not None:
        print(f"in flight: {in_flight['calls']:,} submits waiting in the driver, {in_flight['bytes_per_submit']:,} B traced "
              f"per submit against {in_flight['bytes_per_stdlib_future']:,} B per bare stdlib Future; "
              f"{in_flight['jobs']} job(s); once settled (futures kept), {in_flight['bytes_per_settled_submit']:,} B per submit")
    for row in rows:
        print(
            f"{row['case']:<10} {row['calls']:>9,} {row['tasks']:>7,} {row['records_kept']:>6,} {row['wall_s']:>7} "
            f"{row['calls_per_s']:>8,} {row['traced_peak_mb']:>15} {row['traced_end_mb']:>14} {row['rss_peak_mb']:>12}"
        )
    sized = sorted((r for r in rows if r["case"] == "results"), key=lambda r: r["calls"])
    if len(sized) >= 2 and sized[-1]["calls"] > sized[0]["calls"]:
        first, last = sized[0], sized[-1]
        per = 10_000 / (last["calls"] - first["calls"])
        print(f"growth from {first['calls']:,} to {last['calls']:,} tasks, per 10,000 tasks: traced "
              f"{(last['traced_peak_mb'] - first['traced_peak_mb']) * per:+.1f} MB (peak), "
              f"{(last['traced_end_mb'] - first['traced_end_mb']) * per:+.2f} MB (kept at the end), RSS "
              f"{(last['rss_peak_mb'] - first['rss_peak_mb']) * per:+.1f} MB")
    print(f"load average (1/5/15 min) before {_load(load_before)}, after {_load(load_after)}; {os.cpu_count()} cores")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "memory.json"), "w") as fh:
            figures = {"rows": rows, "in_flight": in_flight, "load_before": load_before, "load_after": load_after}
            json.dump({**figures, "cpus": os.cpu_count()}, fh, indent=2)
    return 0


def _load(values: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    sys.exit(main())
