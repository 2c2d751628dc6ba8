"""Shuffle throughput of ``map_reduce``, next to raw storage bandwidth and multiprocessing.

    python -m benchmarks.shuffle --out DIR                 # local folder and moto's S3 server, ~2 minutes
    python -m benchmarks.shuffle --out DIR --quick         # small sizes, for a smoke test

It writes only under ``--out`` (its temporary folder, removed afterwards, and
``shuffle.json`` with every run), and prints the four shuffle-path / raw ratios last.

Workloads (the local backend, ``--workers`` worker processes):

* ``shuffle``: mappers emit ready-made blocks of bytes (one per reducer), reducers only
  count them — the shuffle and nothing else;
* ``sort``: 100-byte records read from storage, range-partitioned in numpy blocks, sorted
  by the reducers, written to an output prefix (examples/sort.py);
* ``sort-pairs``: the same with one (key, value) pair per record: the shuffle itself sorts;
* ``wordcount``: a text corpus in storage, counted per chunk and summed per word
  (examples/wordcount.py) — compute-bound, little is shuffled.

For each, on the local folder store and on moto's S3 server (smaller: moto serves ~200
requests/s), it prints the bytes shuffled per second end to end; the *shuffle-path*
throughput, i.e. shuffled bytes over the time the tasks spent encoding, writing, reading
and decoding intermediate data (task-seconds / workers); the raw bandwidth of a plain PUT
then GET of the same bytes in the same number of objects by the same workers, measured
the same way in the same run (each raw reducer holds its slices until the last arrives, as a
reducer holds its partition; the mean of two rounds); the same job done with
``multiprocessing``; and the storage requests (M PUTs, at most M x R ranged GETs). Each
workload runs once unmeasured first (``--no-warm-up`` skips it), so that neither the job nor
the baseline measured after it gets the workers' fresh memory alone.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import dataclasses
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

import lambdamr
from examples import sort, wordcount
from lambdamr import LambdaExecutor
from lambdamr.cli.help import HelpFormatter
from lambdamr.data.objects import Chunk
from lambdamr.storage import open_cached, open_storage

MB = 2**20
#: rounds of the raw baseline per measurement (their mean is the baseline)
RAW_ROUNDS = 2


@dataclass
class Row:
    workload: str
    storage: str
    data_mb: float
    shuffled_mb: float
    wall_s: float
    shuffle_path_s: float
    raw_s: float
    raw_whole_s: float
    mp_wall_s: float
    mappers: int
    reducers: int
    puts: int
    gets: int
    #: CPU seconds of the driver and its worker processes (user + system; 0 where /proc is missing)
    cpu_s: float = 0.0
    mp_cpu_s: float = 0.0

    @property
    def ratio(self) -> float:
        return (self.shuffled_mb / self.shuffle_path_s) / (self.shuffled_mb / self.raw_s) if self.raw_s else 0.0


# ---- the raw baseline: the shuffle's own requests, with bytes that need no encoding -------------------------
# M tasks PUT one object each (the mappers' PUTs), then R tasks each make one ranged GET of
# their slice of every object, as many at a time as reducers make (the reducers' GETs): the same bytes,
# the same requests and the same concurrency as the shuffle, through the same Storage API.
# The plain whole-object GET (M GETs) is measured too, for comparison.
def raw_put(spec: dict, key: str, size: int) -> float:
    data = np.random.default_rng(len(key)).bytes(size)
    started = time.perf_counter()
    open_cached(spec).put(key, data)
    return time.perf_counter() - started


def raw_get(spec: dict, key: str, size: int) -> float:
    started = time.perf_counter()
    data = open_cached(spec).get(key)
    elapsed = time.perf_counter() - started
    assert len(data) == size
    return elapsed


def raw_get_ranges(spec: dict, keys: list[str], start: int, end: int) -> float:
    from concurrent.futures import ThreadPoolExecutor

    from lambdamr.shuffle.reducer import FETCH_THREADS

    store = open_cached(spec)
    started = time.perf_counter()
    # A reducer holds every slice of its partition at once (reduce_fn gets all the values of a
    # key together), so the baseline holds them too until the last arrives: bytes dropped as soon
    # as they are read let the allocator hand the same, already mapped, memory to the next GET,
    # which on this VM is up to 10x faster than the fresh memory a reducer has to fill.
    with ThreadPoolExecutor(min(FETCH_THREADS, store.concurrent_requests, len(keys))) as pool:
        held = list(pool.map(lambda key: store.get(key, start, end), keys))
    elapsed = time.perf_counter() - started
    assert [len(data) for data in held] == [end - start] * len(keys)
    return elapsed


def raw_put_get(ex: LambdaExecutor, objects: int, ranges: int, nbytes: int, workers: int) -> tuple[float, float]:
    """Task-seconds / workers of (M PUTs + M x R ranged GETs, M PUTs + M whole GETs), each the
    mean of ``RAW_ROUNDS`` rounds. The first round writes into memory the job just freed (as the
    job's PUTs wrote into memory the previous run freed), the second into what the first freed;
    a best of the rounds would measure the storage at its best against a shuffle measured once."""
    spec = ex.storage.spec()
    keys = [f"{ex.session_prefix}/raw/{i:05d}" for i in range(objects)]
    part = max(1, nbytes // objects // ranges)
    size = part * ranges
    ranged_rounds: list[float] = []
    whole_rounds: list[float] = []
    for _ in range(RAW_ROUNDS):
        puts = sum(ex.map(raw_put, [spec] * objects, keys, [size] * objects))
        starts, ends = [r * part for r in range(ranges)], [(r + 1) * part for r in range(ranges)]
        ranged = sum(ex.map(raw_get_ranges, [spec] * ranges, [keys] * ranges, starts, ends))
        whole = sum(ex.map(raw_get, [spec] * objects, keys, [size] * objects))
        ex.storage.delete_prefix(f"{ex.session_prefix}/raw/")
        ranged_rounds.append((puts + ranged) / workers)
        whole_rounds.append((puts + whole) / workers)
    return statistics.mean(ranged_rounds), statistics.mean(whole_rounds)


def cpu_seconds(marker: str) -> float:
    """CPU seconds (user + system) of this process and of its children whose command line
    contains ``marker`` (the local backend's workers, or the multiprocessing pool's): a
    figure that other processes on the machine change much less than wall time. Linux only
    (``/proc``); 0 elsewhere."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = time.process_time()
    me = str(os.getpid())
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            if fields[1] != me:
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if marker.encode() not in fh.read():
                    continue
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, IndexError, ValueError):  # a process that just ended
            continue
    return total


def shuffle_path_seconds(stats: Any, workers: int) -> float:
    """Task-seconds spent on intermediate data: encode + PUT in mappers, GET + decode + group
    (and any merge) in reducers — not in map_fn, reduce_fn or input/output I/O."""
    t = stats.task_seconds
    return (t.get("map.encode", 0) + t.get("map.put", 0) + t.get("reduce.read", 0) + t.get("reduce.merge", 0)) / workers


# ---- workloads ----------------------------------------------------------------------------------------------
def emit_blocks(mapper: int, reducers: int, block_bytes: int) -> list[tuple[int, bytes]]:
    """Pure shuffle map: one ready-made block per reducer (random bytes, made once per process)."""
    block = np.random.default_rng(block_bytes).integers(0, 256, block_bytes, dtype=np.uint8).tobytes()
    return [(r, block) for r in range(reducers)]


def count_bytes(key: int, blocks: list[bytes]) -> int:
    return sum(len(b) for b in blocks)


def _mp_shuffle(pool: Any, mappers: int, reducers: int, block_bytes: int) -> None:
    maps = pool.starmap(emit_blocks, [(m, reducers, block_bytes) for m in range(mappers)])
    groups = collections.defaultdict(list)
    for pairs in maps:
        for r, block in pairs:
            groups[r].append(block)
    pool.starmap(count_bytes, list(groups.items()))


def _mp_sort_map(chunk: Chunk, reducers: int) -> list[tuple[int, bytes]]:
    return list(sort.split_into_blocks(chunk, reducers))


def _mp_sort(pool: Any, chunks: list[Chunk], reducers: int) -> None:
    maps = pool.starmap(_mp_sort_map, [(c, reducers) for c in chunks])
    groups = collections.defaultdict(list)
    for pairs in maps:
        for r, block in pairs:
            groups[r].append(block)
    pool.starmap(sort.sort_blocks, list(groups.items()))


def _mp_pairs_map(chunk: Chunk, bounds: list[bytes]) -> list[list[tuple[bytes, bytes]]]:
    buckets: list[list[tuple[bytes, bytes]]] = [[] for _ in range(len(bounds) + 1)]
    for key, value in sort.record_pairs(chunk):
        buckets[bisect.bisect_right(bounds, key)].append((key, value))
    return buckets


def _mp_pairs_reduce(pairs: list[tuple[bytes, bytes]]) -> bytes:
    pairs.sort(key=lambda pair: pair[0])
    return b"".join(key + value for key, value in pairs)


def _mp_sort_pairs(pool: Any, chunks: list[Chunk], reducers: int) -> None:
    groups: list[list[tuple[bytes, bytes]]] = [[] for _ in range(reducers)]
    for buckets in pool.starmap(_mp_pairs_map, [(c, sort.range_bounds(reducers)) for c in chunks]):
        for r, bucket in enumerate(buckets):
            groups[r].extend(bucket)
    pool.map(_mp_pairs_reduce, groups)


def _mp_wordcount(pool: Any, chunks: list[Chunk]) -> collections.Counter:
    total: collections.Counter = collections.Counter()
    for counts in pool.map(wordcount.count_chunk, chunks):
        total.update(counts)
    return total


def run_workload(name: str, ex: LambdaExecutor, kind: str, folder: str, size_mb: float, workers: int, pool: Any) -> Row:
    reducers = 8 if kind == "folder" else 4
    chunk = 16 * MB if kind == "folder" else 2 * MB
    store = ex.storage
    endpoint = ex.config.endpoint_url  # the multiprocessing baseline reads the same storage
    if kind == "s3":
        location = f"s3://{store.bucket}/bench-{name}/"
    if name == "shuffle":
        mappers = 8 if kind == "folder" else 4
        block = int(size_mb * MB / mappers / reducers)
        started = time.perf_counter()
        result = ex.map_reduce(
            functools.partial(emit_blocks, reducers=reducers, block_bytes=block),
            range(mappers),
            count_bytes,
            reducers=reducers,
            partition=sort.reducer_number,
        )
        wall = time.perf_counter() - started
        assert sum(result.values()) == mappers * reducers * block
        started = time.perf_counter()
        _mp_shuffle(pool, mappers, reducers, block)
        mp_wall = time.perf_counter() - started
    elif name in ("sort", "sort-pairs"):
        local = os.path.join(folder, f"sort-input-{size_mb:g}")
        if not os.path.isdir(local):
            sort.write_input(open_storage({"kind": "local", "root": local}), "", size_mb, files=4)
        if kind == "s3":
            for path in sorted(Path(local).iterdir()):
                store.put(f"bench-{name}/{path.name}", path.read_bytes())
        else:
            location = local
        output = f"s3://{store.bucket}/bench-{name}-out" if kind == "s3" else tempfile.mkdtemp(dir=folder)
        pairs = name == "sort-pairs"
        started = time.perf_counter()
        result = sort.sort_job(ex, location, output, reducers=reducers, chunk_bytes=chunk, pairs=pairs)
        wall = time.perf_counter() - started
        chunks = lambdamr.objects(location, record_bytes=sort.RECORD, chunk_bytes=chunk).resolve(endpoint_url=endpoint)
        started = time.perf_counter()
        (_mp_sort_pairs if pairs else _mp_sort)(pool, chunks, reducers)
        mp_wall = time.perf_counter() - started
        if kind == "s3":  # a repeat may write there again
            store.delete_prefix(f"bench-{name}-out/")
        else:
            shutil.rmtree(output)
    else:
        local = wordcount.generate_corpus(os.path.join(folder, f"corpus-{size_mb:g}"), size_mb, files=4)
        if kind == "s3":
            location = wordcount.upload_corpus(ex, local, "bench-wordcount")
        else:
            location = local
        cpu_before = cpu_seconds("lambdamr.backends.local_worker")
        started = time.perf_counter()
        result = wordcount.wordcount(ex, location, reducers=reducers, chunk_bytes=chunk)
        wall = time.perf_counter() - started
        cpu = cpu_seconds("lambdamr.backends.local_worker") - cpu_before
        cpu_before = cpu_seconds("multiprocessing")
        started = time.perf_counter()
        reference = _mp_wordcount(pool, lambdamr.objects(location, chunk_bytes=chunk).resolve(endpoint_url=endpoint))
        mp_wall = time.perf_counter() - started
        mp_cpu = cpu_seconds("multiprocessing") - cpu_before
        assert dict(result) == dict(reference), "wordcount differs from the multiprocessing count"
    if name != "wordcount":
        cpu = mp_cpu = 0.0
    stats = result.stats
    raw_s, raw_whole_s = raw_put_get(ex, stats.mappers, stats.reducers, stats.bytes_shuffled, workers)
    return Row(
        name,
        "local folder" if kind == "folder" else "S3 (moto server)",
        size_mb,
        stats.bytes_shuffled / MB,
        wall,
        shuffle_path_seconds(stats, workers),
        raw_s,
        raw_whole_s,
        mp_wall,
        stats.mappers,
        stats.reducers,
        stats.intermediate_puts,
        stats.ranged_gets,
        cpu,
        mp_cpu,
    )


# ---- report ---------------------------------------------------------------------------------------------------
HEADER = (
    "| workload | storage | data MB | shuffled MB | lambdamr wall s | shuffled MB/s (end to end) "
    "| shuffle-path MB/s | raw PUT+GET MB/s | shuffle-path / raw | raw, whole-object GETs MB/s "
    "| multiprocessing wall s | M | R "
    "| PUTs (= M) | ranged GETs (<= M x R) |"
)


def markdown(rows: list[Row]) -> str:
    lines = [HEADER, "|" + "---|" * (HEADER.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r.workload} | {r.storage} | {r.data_mb:g} | {r.shuffled_mb:.1f} | {r.wall_s:.2f} "
            f"| {r.shuffled_mb / r.wall_s:.0f} | {r.shuffled_mb / max(r.shuffle_path_s, 1e-9):.0f} "
            f"| {r.shuffled_mb / max(r.raw_s, 1e-9):.0f} | {r.ratio:.0%} "
            f"| {r.shuffled_mb / max(r.raw_whole_s, 1e-9):.0f} | {r.mp_wall_s:.2f} "
            f"| {r.mappers} | {r.reducers} | {r.puts} | {r.gets} (<= {r.mappers * r.reducers}) |"
        )
    return "\n".join(lines)


def median_row(runs: list[Row]) -> Row:
    """Each timing of ``runs`` (of one workload) by its median; the ratio of the medians."""
    if len(runs) == 1:
        return runs[0]
    first = runs[0]
    timings = ("wall_s", "shuffle_path_s", "raw_s", "raw_whole_s", "mp_wall_s", "cpu_s", "mp_cpu_s")
    return dataclasses.replace(first, **{name: statistics.median(getattr(r, name) for r in runs) for name in timings})


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shuffle", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "--out", required=True, help="folder for shuffle.json and the temporary data, removed afterwards (required: no default)"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the local backend")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument("--no-s3", action="store_true", help="skip the moto S3 server runs")
    parser.add_argument("--s3-only", action="store_true", help="skip the local folder runs")
    parser.add_argument("--repeat", type=int, default=1, help="run each measurement N times, report medians")
    parser.add_argument("--workloads", default="shuffle,sort,sort-pairs,wordcount", help="the workloads to run, comma-separated")
    parser.add_argument(
        "--no-warm-up", dest="warm_up", action="store_false", help="skip the unmeasured first run of each workload"
    )
    parser.add_argument(
        "--wordcount-mb",
        type=float,
        default=None,
        help="corpus size of the word count on the local folder (default 64; issue 14 measures 200)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = {
        "folder": {"shuffle": 256, "sort": 128, "sort-pairs": 16, "wordcount": 64},
        "s3": {"shuffle": 16, "sort": 8, "sort-pairs": 2, "wordcount": 4},
    }
    if args.quick:
        sizes = {
            "folder": {"shuffle": 16, "sort": 8, "sort-pairs": 2, "wordcount": 4},
            "s3": {"shuffle": 4, "sort": 2, "sort-pairs": 1, "wordcount": 1},
        }
    if args.wordcount_mb is not None:
        sizes["folder"]["wordcount"] = args.wordcount_mb
    rows: list[Row] = []
    # moto's fake credentials, set before the multiprocessing pool starts so that it sees them
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="lambdamr-bench-", dir=out) as folder,
        get_context("spawn").Pool(args.workers) as pool,
    ):
        kinds = ["folder"] if args.no_s3 else ["s3"] if args.s3_only else ["folder", "s3"]
        for kind in kinds:
            options: dict[str, Any] = {"storage": os.path.join(folder, "store")}
            server = None
            if kind == "s3":
                server, options = _moto(folder)
            try:
                with LambdaExecutor(workers=args.workers, progress=False, memory_mb=2048, **options) as ex:
                    list(ex.map(len, ["warm up"] * args.workers))  # start the workers before the clock
                    for name in args.workloads.split(","):
                        if args.warm_up:
                            # The first job of a run grows the workers' heaps and the page cache
                            # from fresh memory (up to 10x slower on this VM), and the raw
                            # baseline, measured right after it, would inherit that memory warm:
                            # one unmeasured run puts both sides in the same state.
                            run_workload(name, ex, kind, folder, sizes[kind][name], args.workers, pool)
                        runs = []
                        for _ in range(args.repeat):
                            runs.append(run_workload(name, ex, kind, folder, sizes[kind][name], args.workers, pool))
                            print(markdown(runs[-1:]).splitlines()[-1], flush=True)
                        rows.append(median_row(runs))
            finally:
                if server is not None:
                    server.stop()
    print()
    medians = f", medians of {args.repeat} runs" if args.repeat > 1 else ""
    load_end = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, {args.workers} workers, Python {sys.version.split()[0]}{medians}")
    loads = "load average (1, 5, 15 min) at the start {:.2f} {:.2f} {:.2f}, at the end {:.2f} {:.2f} {:.2f}"
    print(loads.format(*load_start, *load_end))
    print(markdown(rows))
    for r in rows:
        if r.workload == "wordcount" and r.cpu_s and r.mp_cpu_s:
            print(
                f"wordcount {r.data_mb:g} MB, {r.storage}: wall {r.wall_s:.2f} s against multiprocessing's "
                f"{r.mp_wall_s:.2f} s ({r.mp_wall_s / r.wall_s:.2f}x); CPU of all processes {r.cpu_s:.2f} s against "
                f"{r.mp_cpu_s:.2f} s ({r.mp_cpu_s / r.cpu_s:.2f}x)"
            )
    for kind in sorted({r.storage for r in rows}):
        ratios = ", ".join(f"{r.workload} {r.ratio:.0%}" for r in rows if r.storage == kind)
        print(f"shuffle-path / raw PUT+GET, {kind}: {ratios}")
    record = {"load_start": load_start, "load_end": load_end, "args": vars(args), "rows": [dataclasses.asdict(r) for r in rows]}
    (out / "shuffle.json").write_text(json.dumps(record, indent=1))
    return 0


def _moto(folder: str) -> tuple[Any, dict[str, Any]]:
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="lambdamr-bench")
    return server, {"storage": "s3://lambdamr-bench/runs", "endpoint_url": endpoint, "region": "us-east-1"}


if __name__ == "__main__":
    sys.exit(main())
