"""Big values: lambdamr's local backend against ProcessPoolExecutor, loky (and ray, dask).

    python -m benchmarks.data --out /tmp/bench            # ~2 minutes
    python -m benchmarks.data --out /tmp/bench --quick    # smaller, a smoke test

Two measures, each in MB/s of values moved between the driver and the workers:

* ``in+out``: one task takes a 100 MB float64 array and returns a 100 MB array (``a + 1``):
  200 MB cross, one way and back;
* ``results``: 64 tasks each return a 10 MB array (640 MB towards the driver).

Every method runs with the same worker count (2), warmed up first. Rounds are interleaved
(lambdamr, ProcessPoolExecutor, loky, ..., then again), each figure is the median of the
rounds, and the load average is printed at the start and at the end: on a shared machine
read the ratios, not the absolute figures. Every result is checked.

lambdamr's storage goes in a temporary folder under ``--out`` (or ``--storage``, e.g. a
folder in /dev/shm) and is removed afterwards; the figures go to ``--out/data.json``. Big
buffers go to the session's folder in /dev/shm (``buffer_folder``, the default); with
``--ab`` a second lambdamr, ``lambdamr (store)``, keeps them in the store
(``buffer_folder="off"``, as before the scratch folder existed), in the same rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from lambdamr import LambdaExecutor
from lambdamr.cli.help import HelpFormatter

MB = 1024 * 1024


def add_one(array: np.ndarray) -> np.ndarray:
    """The in+out task: an array in, an array of the same size out."""
    return array + 1.0


def block(index: int, nbytes: int) -> np.ndarray:
    """The results task: an array of ``nbytes`` filled with its index."""
    return np.full(nbytes // 8, float(index))


def in_out(executor: Executor, array: np.ndarray) -> int:
    """Moves one array in and one out; returns the bytes moved."""
    (out,) = list(executor.map(add_one, [array]))
    assert out.shape == array.shape and out[0] == array[0] + 1.0 and out[-1] == array[-1] + 1.0
    return array.nbytes + out.nbytes


def results(executor: Executor, tasks: int, nbytes: int) -> int:
    """Collects ``tasks`` arrays of ``nbytes``; returns the bytes moved."""
    moved = 0
    for index, out in enumerate(executor.map(block, range(tasks), [nbytes] * tasks)):
        assert out[0] == index and out[-1] == index
        moved += out.nbytes
    return moved


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def executors(workers: int, storage: str, *, ab: bool = False) -> dict[str, Callable[[], Executor]]:
    """Each method by name: a function that starts its executor."""
    made: dict[str, Callable[[], Executor]] = {
        "lambdamr": lambda: LambdaExecutor(workers=workers, storage=storage, progress=False, memory_mb=4096),
    }
    if ab:
        made["lambdamr (store)"] = lambda: LambdaExecutor(
            workers=workers, storage=storage, progress=False, memory_mb=4096, buffer_folder="off"
        )
    made["ProcessPoolExecutor"] = lambda: ProcessPoolExecutor(workers)
    try:
        from loky import get_reusable_executor

        made["loky"] = lambda: get_reusable_executor(max_workers=workers)
    except ImportError:
        pass
    try:
        import ray  # noqa: F401
        from ray.util.multiprocessing import Pool  # noqa: F401

        made["ray"] = lambda: _RayExecutor(workers)
    except ImportError:
        pass
    try:
        from distributed import Client, LocalCluster  # noqa: F401

        made["dask"] = lambda: _DaskExecutor(workers)
    except ImportError:
        pass
    return made


class _RayExecutor(Executor):
    """``map`` on ray tasks (only when ray is installed)."""

    def __init__(self, workers: int) -> None:
        import ray

        ray.init(num_cpus=workers, include_dashboard=False, ignore_reinit_error=True)
        self._ray = ray

    def map(self, fn: Callable[..., Any], *iterables: Any, **_: Any) -> Any:
        remote = self._ray.remote(fn)
        return iter(self._ray.get([remote.remote(*args) for args in zip(*iterables)]))

    def shutdown(self, wait: bool = True, **_: Any) -> None:
        self._ray.shutdown()


class _DaskExecutor(Executor):
    """``map`` on a local dask cluster (only when dask.distributed is installed)."""

    def __init__(self, workers: int) -> None:
        from distributed import Client, LocalCluster

        self._client = Client(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True))

    def map(self, fn: Callable[..., Any], *iterables: Any, **_: Any) -> Any:
        return iter(self._client.gather(self._client.map(fn, *iterables, pure=False)))

    def shutdown(self, wait: bool = True, **_: Any) -> None:
        self._client.close()


def measure(args: argparse.Namespace, storage: str) -> dict[str, Any]:
    array = np.random.default_rng(0).random(args.array_mb * MB // 8)
    cases: dict[str, Callable[[Executor], int]] = {
        "in+out": lambda ex: in_out(ex, array),
        "results": lambda ex: results(ex, args.tasks, args.result_mb * MB),
    }
    starts = executors(args.workers, storage, ab=args.ab)
    running = {name: start() for name, start in starts.items()}
    times: dict[str, dict[str, list[float]]] = {case: {name: [] for name in running} for case in cases}
    moved: dict[str, int] = {}
    try:
        for executor in running.values():  # warm up: workers started, imports done
            list(executor.map(block, range(args.workers * 2), [MB] * (args.workers * 2)))
        for round_number in range(args.rounds):
            for case, run in cases.items():
                for name, executor in running.items():
                    started = time.perf_counter()
                    moved[case] = run(executor)
                    times[case][name].append(time.perf_counter() - started)
            print(f"round {round_number + 1} of {args.rounds} done, load {load()}", flush=True)
    finally:
        for executor in running.values():
            executor.shutdown(wait=True)
    figures: dict[str, Any] = {}
    for case in cases:
        figures[case] = {
            name: {"median_s": statistics.median(t), "MB_per_s": moved[case] / MB / statistics.median(t), "runs_s": t}
            for name, t in times[case].items()
        }
    return figures


def report(figures: dict[str, Any]) -> str:
    names = list(next(iter(figures.values())))
    ab = "lambdamr (store)" in names
    lines = [
        "| measure | " + " | ".join(f"{n} MB/s" for n in names) + " | lambdamr / ProcessPoolExecutor |"
        + (" lambdamr (store) / PPE |" if ab else ""),
        "|---|" + "---:|" * (len(names) + 1 + ab),
    ]
    for case, by_name in figures.items():
        ppe = by_name["ProcessPoolExecutor"]["MB_per_s"]
        cells = " | ".join(f"{by_name[n]['MB_per_s']:,.0f}" for n in names)
        ratios = f"{by_name['lambdamr']['MB_per_s'] / ppe:.2f}x |"
        if ab:
            ratios += f" {by_name['lambdamr (store)']['MB_per_s'] / ppe:.2f}x |"
        lines.append(f"| {case} | {cells} | {ratios}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.data", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--out", required=True, help="folder for data.json and lambdamr's temporary storage")
    parser.add_argument("--storage", default=None, help="a folder for lambdamr's storage instead (removed afterwards)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of every method")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; figures are medians")
    parser.add_argument("--array-mb", type=int, default=100, help="size of the in+out array")
    parser.add_argument("--tasks", type=int, default=64, help="tasks of the results case")
    parser.add_argument("--result-mb", type=int, default=10, help="size of each result of the results case")
    parser.add_argument("--ab", action="store_true", help="also lambdamr with its big buffers in the store")
    parser.add_argument("--quick", action="store_true", help="20 MB, 16 x 2 MB, 2 rounds")
    args = parser.parse_args(argv)
    if args.quick:
        args.array_mb, args.tasks, args.result_mb, args.rounds = 20, 16, 2, 2
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="lambdamr-data-", dir=args.storage or out)
    started_load = load()
    python = sys.version.split()[0]
    print(f"{os.cpu_count()} CPUs, {args.workers} workers, Python {python}, storage {scratch}, load {started_load}")
    try:
        figures = measure(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ended_load = load()
    print(f"load average at the start {started_load}, at the end {ended_load}; medians of {args.rounds} rounds")
    print(f"in+out: {args.array_mb} MB in and {args.array_mb} MB out; results: {args.tasks} x {args.result_mb} MB")
    print(report(figures))
    record = {"args": vars(args), "load_start": started_load, "load_end": ended_load, "figures": figures}
    (out / "data.json").write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
