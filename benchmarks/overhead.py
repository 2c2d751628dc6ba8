"""Per-task overhead of the local backend, side by side with the executors a user would pick instead.

    PYTHONPATH=. python benchmarks/overhead.py                  # 2 workers, 3 rounds
    PYTHONPATH=. python benchmarks/overhead.py --tasks 5000 --rounds 5 --out /tmp/overhead

In ONE run, interleaved rounds (the executors take turns, in a rotating order, so that a
change in the machine's load reaches all of them alike), with the same worker count each:

* empty tasks: ``list(ex.map(identity, range(N)))`` — milliseconds per task, the driver's
  CPU per task (this process, every thread) and the workers' CPU per task (read from
  ``/proc/PID/stat`` of each worker before and after, so their start-up is not counted);
* submits: ``[ex.submit(identity, i) for i in range(N)]``, all awaited — milliseconds and
  the driver's CPU per call (a burst of calls made one by one, as a loop over work items does);
* CPU-bound tiles: 16 Mandelbrot bands, wall time against the ideal (the same tiles run
  one after the other in this process, divided by the worker count);
* driver memory per task in flight: a fresh driver process submits M (50,000) empty
  tasks at once, keeps the futures, waits for all; its peak RSS above what it had before
  the first submit, per task.

Compared: lambdamr's local backend, ``concurrent.futures.ProcessPoolExecutor``, loky's
``ProcessPoolExecutor`` (when installed), ray and dask (only when installed). Medians over
the rounds; ratios are lambdamr's figure over each peer's. The load average is printed
before and after. Nothing is written but ``--out`` (a folder: ``overhead.json``); temp
folders are deleted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def identity(x: Any) -> Any:
    return x


def mandelbrot_tile(band: tuple[int, int], size: int = 640, max_iter: int = 300) -> int:
    """Escape-time Mandelbrot on band ``index`` of ``tiles`` of a size x size image; returns a checksum."""
    index, tiles = band  # one argument: every contender maps a one-argument function
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


def cpu_seconds_of(pids: list[int]) -> float:
    """User + system CPU seconds the processes ``pids`` used so far (Linux ``/proc``)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / _CLK_TCK


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---- the executors ----------------------------------------------------------------------
class Contender:
    """One executor kept warm across rounds: how to map, and which processes are its workers."""

    name = ""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        raise NotImplementedError

    def submit_all(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """One submit per item, then every result: a burst of single calls."""
        raise NotImplementedError

    def worker_pids(self) -> list[int]:
        return []

    def close(self) -> None:
        pass


class Lambdamr(Contender):
    name = "lambdamr"

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        from lambdamr import LambdaExecutor

        self.folder = tempfile.mkdtemp(prefix="lambdamr-overhead-")
        self.ex = LambdaExecutor(workers=workers, storage=self.folder, progress=False)

    def map(self, fn, items):
        return list(self.ex.map(fn, items))

    def submit_all(self, fn, items):
        return [f.result() for f in [self.ex.submit(fn, i) for i in items]]

    def worker_pids(self):
        return self.ex.backend.worker_pids()

    def close(self):
        self.ex.shutdown()
        shutil.rmtree(self.folder, ignore_errors=True)


class StdlibPool(Contender):
    name = "ProcessPool"
    factory: Callable[..., Any] = ProcessPoolExecutor

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.pool = type(self).factory(workers)

    def map(self, fn, items):
        return list(self.pool.map(fn, items))

    def submit_all(self, fn, items):
        return [f.result() for f in [self.pool.submit(fn, i) for i in items]]

    def worker_pids(self):
        return list(self.pool._processes)

    def close(self):
        self.pool.shutdown()


class Loky(StdlibPool):
    name = "loky"

    def __init__(self, workers: int) -> None:
        import loky

        self.workers = workers
        self.pool = loky.ProcessPoolExecutor(workers)


class Ray(Contender):
    name = "ray"

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        import ray

        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        self.ray = ray
        self.remote = {}

    def map(self, fn, items):
        remote = self.remote.get(fn) or self.remote.setdefault(fn, self.ray.remote(fn))
        return self.ray.get([remote.remote(i) for i in items])

    submit_all = map  # one remote call per item either way

    def close(self):
        self.ray.shutdown()


class Dask(Contender):
    name = "dask"

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        from dask.distributed import Client, LocalCluster

        self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        self.client = Client(self.cluster)

    def map(self, fn, items):
        return self.client.gather(self.client.map(fn, items, pure=False))

    def submit_all(self, fn, items):
        return self.client.gather([self.client.submit(fn, i, pure=False) for i in items])

    def worker_pids(self):
        return [info["pid"] for info in self.client.scheduler_info()["workers"].values() if "pid" in info]

    def close(self):
        self.client.close()
        self.cluster.close()


def available() -> list[type[Contender]]:
    """lambdamr, ProcessPoolExecutor, and whichever of loky, ray and dask are installed."""
    import importlib.util

    kinds: list[type[Contender]] = [Lambdamr, StdlibPool]
    for module, kind in (("loky", Loky), ("ray", Ray), ("distributed", Dask)):
        if importlib.util.find_spec(module) is not None:
            kinds.append(kind)
    return kinds


# ---- one measurement --------------------------------------------------------------------
def measure_empty(contender: Contender, n: int) -> dict[str, float]:
    pids = contender.worker_pids()
    workers_before = cpu_seconds_of(pids)
    driver_before = own_cpu_seconds()
    started = time.perf_counter()
    results = contender.map(identity, range(n))
    wall = time.perf_counter() - started
    driver = own_cpu_seconds() - driver_before
    workers = cpu_seconds_of(pids) - workers_before
    assert results == list(range(n)), f"{contender.name} returned wrong results"
    return {
        "ms_per_task": wall / n * 1000,
        "driver_us_per_task": driver / n * 1e6,
        "worker_us_per_task": workers / n * 1e6 if pids else float("nan"),
    }


def measure_submits(contender: Contender, n: int) -> dict[str, float]:
    driver_before = own_cpu_seconds()
    started = time.perf_counter()
    results = contender.submit_all(identity, range(n))
    wall = time.perf_counter() - started
    driver = own_cpu_seconds() - driver_before
    assert results == list(range(n)), f"{contender.name} returned wrong results"
    return {"submit_ms_per_call": wall / n * 1000, "submit_driver_us_per_call": driver / n * 1e6}


def measure_tiles(contender: Contender, tiles: int) -> dict[str, float]:
    sequential_started = time.perf_counter()
    bands = [(i, tiles) for i in range(tiles)]
    expected = [mandelbrot_tile(band) for band in bands]
    sequential = time.perf_counter() - sequential_started
    started = time.perf_counter()
    results = contender.map(mandelbrot_tile, bands)
    wall = time.perf_counter() - started
    assert results == expected, f"{contender.name} computed other tiles"
    ideal = sequential / min(contender.workers, tiles)
    return {"tiles_s": wall, "tiles_vs_ideal": wall / ideal}


def memory_child(kind: str, workers: int, count: int) -> dict[str, float]:
    """In a fresh process: submit ``count`` empty tasks at once and measure the peak RSS."""
    contender = {k.name: k for k in available()}[kind](workers)
    try:
        contender.map(identity, range(workers * 8))  # workers started and warm
        before = _rss_kb()
        if isinstance(contender, Ray):
            remote = contender.ray.remote(identity)
            futures = [remote.remote(i) for i in range(count)]
            assert contender.ray.get(futures) == list(range(count))
        elif isinstance(contender, Dask):
            futures = [contender.client.submit(identity, i, pure=False) for i in range(count)]
            assert contender.client.gather(futures) == list(range(count))
        else:
            executor = contender.ex if isinstance(contender, Lambdamr) else contender.pool
            futures = [executor.submit(identity, i) for i in range(count)]
            assert [f.result() for f in futures] == list(range(count))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {
            "peak_rss_mb": peak / 1024,
            "kb_per_task_in_flight": max(0, peak - before) / count,
        }
    finally:
        contender.close()


def _rss_kb() -> int:
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def measure_memory(kind: str, workers: int, count: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--memory-child", kind, "--workers", str(workers), "--memory-tasks", str(count)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                                      os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- the run ------------------------------------------------------------------------------
ROWS = [
    ("empty task, ms/task", "ms_per_task", "{:.3f}"),
    ("driver CPU per task, us", "driver_us_per_task", "{:.0f}"),
    ("worker CPU per task, us", "worker_us_per_task", "{:.0f}"),
    ("submit burst, ms/call", "submit_ms_per_call", "{:.3f}"),
    ("driver CPU per submit, us", "submit_driver_us_per_call", "{:.0f}"),
    ("driver KB per task in flight", "kb_per_task_in_flight", "{:.2f}"),
    ("CPU-bound tiles, x ideal", "tiles_vs_ideal", "{:.2f}"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tasks", type=int, default=2000, help="empty tasks per round, mapped and then submitted one by one (default 2000)"
    )
    parser.add_argument("--tiles", type=int, default=16, help="CPU-bound tasks per round (default 16)")
    parser.add_argument(
        "--memory-tasks", type=int, default=50_000, help="tasks in flight for the memory figure (default 50000; 0: skip)"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes of every executor (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are printed (default 3)")
    parser.add_argument("--out", help="a folder to write overhead.json into (default: none, print only)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.workers, args.memory_tasks)))
        return 0

    kinds = available()
    load_before = os.getloadavg()
    print(f"{args.workers} workers each; {args.tasks} empty tasks, {args.tiles} tiles, "
          f"{args.memory_tasks} tasks in flight; {args.rounds} interleaved rounds of: {', '.join(k.name for k in kinds)}")
    contenders = [kind(args.workers) for kind in kinds]
    runs: dict[str, list[dict[str, float]]] = {c.name: [] for c in contenders}
    try:
        for contender in contenders:  # warm: workers started, functions loaded
            contender.map(identity, range(args.workers * 16))
            contender.map(mandelbrot_tile, [(i, args.tiles) for i in range(min(args.tiles, args.workers))])
        for round_number in range(args.rounds):
            shift = round_number % len(contenders)
            for contender in contenders[shift:] + contenders[:shift]:
                figures = measure_empty(contender, args.tasks)
                figures.update(measure_submits(contender, args.tasks))
                figures.update(measure_tiles(contender, args.tiles))
                if args.memory_tasks:
                    figures.update(measure_memory(contender.name, args.workers, args.memory_tasks))
                runs[contender.name].append(figures)
                print(f"  round {round_number + 1} {contender.name}: "
                      + ", ".join(f"{k} {v:.3g}" for k, v in figures.items()), flush=True)
    finally:
        for contender in contenders:
            contender.close()
    load_after = os.getloadavg()

    medians = {name: {key: statistics.median(r[key] for r in rows) for key in rows[0]} for name, rows in runs.items()}
    names = list(medians)
    peers = [n for n in names if n != "lambdamr"]
    print()
    print(f"{'median of ' + str(args.rounds) + ' rounds':<30}" + "".join(f"{n:>13}" for n in names)
          + "".join(f"{'ratio ' + p:>18}" for p in peers))
    for label, key, fmt in ROWS:
        if key not in medians["lambdamr"]:
            continue
        ours = medians["lambdamr"][key]
        cells = "".join(f"{fmt.format(medians[n][key]):>13}" for n in names)
        ratios = "".join(f"{ours / medians[p][key] if medians[p][key] else float('nan'):>18.2f}" for p in peers)
        print(f"{label:<30}{cells}{ratios}")
    print(f"\nload average (1/5/15 min) before {_load(load_before)}, after {_load(load_after)}; {os.cpu_count()} cores")
    missing = sorted({"ray", "dask"} - set(names))
    if missing:
        print(f"not installed, not compared: {', '.join(missing)}")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        with open(Path(args.out) / "overhead.json", "w") as fh:
            json.dump({"args": vars(args), "runs": runs, "medians": medians, "load_before": load_before,
                       "load_after": load_after, "cpus": os.cpu_count()}, fh, indent=2)
    return 0


def _load(values: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    sys.exit(main())
