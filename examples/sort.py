"""Sort fixed-size 100-byte records (GraySort-style: 10-byte key, 90-byte value) with
``map_reduce``; the output is verified sorted and complete by checksum.

    python -m examples.sort                          # 100 MB of records, local backend
    python -m examples.sort --size-mb 500 --reducers 16
    python -m examples.sort --pairs                  # one (key, value) pair per record

Range partitioning makes the output globally sorted: reducer ``r`` gets the keys whose first
two bytes fall in its slice of 0..65535 (the keys are uniform, as gensort makes them), so the
reducers' output objects ``part-00000``, ``part-00001``... concatenated are in order.

Two ways to write the job:

* blocks (default): a mapper cuts its records into one numpy block per reducer and emits
  ``(reducer, block)``; a reducer sorts what it receives with numpy. The shuffle moves a
  few large values — this is the fast way to sort with lambdamr.
* ``--pairs``: a mapper emits one ``(key, value)`` pair per record and the shuffle itself
  sorts the keys (merging from /tmp when a partition is over its memory budget). Simpler to
  write, but it pays Python's cost per record.

Verification (like gensort's ``valsort``): every output object is sorted, each ends at or
below where the next begins, and the record count and the sum of the records' CRC32s equal
the input's.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

import lambdamr
from lambdamr.cli.help import HelpFormatter
from lambdamr.data.objects import Chunk
from lambdamr.shuffle import RangePartitioner
from lambdamr.storage import open_storage, storage_from_url

RECORD = 100
KEY = 10


def make_records(count: int, seed: int) -> bytes:
    """``count`` records: a random 10-byte key, then the record's number and filler (gensort-like)."""
    rng = np.random.default_rng(seed)
    records = np.empty((count, RECORD), dtype=np.uint8)
    records[:, :KEY] = rng.integers(0, 256, size=(count, KEY), dtype=np.uint8)
    numbers = np.char.zfill(np.arange(seed * 10**9, seed * 10**9 + count).astype(str), 32).astype("S32")
    records[:, KEY : KEY + 32] = np.frombuffer(numbers.tobytes(), dtype=np.uint8).reshape(count, 32)
    records[:, KEY + 32 :] = np.frombuffer(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuv"[: RECORD - KEY - 32], dtype=np.uint8
    )
    return records.tobytes()


def write_input(store: Any, key_prefix: str, size_mb: float, *, files: int = 4, seed: int = 0) -> list[str]:
    """Write ``size_mb`` MB of records as ``files`` objects; return their keys."""
    per_file = max(1, int(size_mb * 2**20 / RECORD / files))
    keys = []
    for i in range(files):
        key = f"{key_prefix}/input-{i:03d}.bin" if key_prefix else f"input-{i:03d}.bin"
        store.put(key, make_records(per_file, seed * 1000 + i))
        keys.append(key)
    return keys


def checksum(data: bytes | memoryview) -> tuple[int, int]:
    """(records, sum of each record's CRC32): independent of the order of the records."""
    view = memoryview(data)
    return len(view) // RECORD, sum(zlib.crc32(view[i : i + RECORD]) for i in range(0, len(view), RECORD))


def key_columns(records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 10-byte keys as two big-endian integers (bytes 0-7 and 8-9), for exact ordering."""
    keys = np.ascontiguousarray(records[:, :KEY])
    high = keys[:, :8].copy().view(">u8").ravel()
    low = keys[:, 8:].copy().view(">u2").ravel()
    return high, low


def reducer_of_records(records: np.ndarray, reducers: int) -> np.ndarray:
    """Each record's reducer: its key's first two bytes, scaled to the reducer count."""
    prefix = records[:, 0].astype(np.int64) << 8 | records[:, 1]
    return (prefix * reducers) >> 16


def range_bounds(reducers: int) -> list[bytes]:
    """The split keys of the same ranges, for ``RangePartitioner`` (the ``--pairs`` form)."""
    return [int(-(-r * 65536 // reducers)).to_bytes(2, "big") for r in range(1, reducers)]


# ---- the job, block form ------------------------------------------------------------------------------
def split_into_blocks(chunk: Chunk, reducers: int) -> Iterator[tuple[int, bytes]]:
    """Map: one block of records per reducer that gets any."""
    records = np.frombuffer(chunk.read(), dtype=np.uint8).reshape(-1, RECORD)
    target = reducer_of_records(records, reducers)
    order = np.argsort(target, kind="stable")
    bounds = np.searchsorted(target[order], np.arange(reducers + 1))
    for r in range(reducers):
        if bounds[r + 1] > bounds[r]:
            yield r, records[order[bounds[r] : bounds[r + 1]]].tobytes()


def reducer_number(key: int, reducers: int) -> int:
    """Partition: the key IS the reducer number."""
    return key


def sort_blocks(reducer: int, blocks: list[bytes]) -> bytes:
    """Reduce: every block of one reducer, sorted by key."""
    records = np.frombuffer(b"".join(blocks), dtype=np.uint8).reshape(-1, RECORD)
    high, low = key_columns(records)
    return records[np.lexsort((low, high))].tobytes()


# ---- the job, pair form -------------------------------------------------------------------------------
def record_pairs(chunk: Chunk) -> Iterator[tuple[bytes, bytes]]:
    """Map: (key, value) for every record."""
    data = chunk.read()
    for i in range(0, len(data), RECORD):
        yield data[i : i + KEY], data[i + KEY : i + RECORD]


def join_records(key: bytes, values: list[bytes]) -> bytes:
    """Reduce: the records of one key (several when keys repeat), in order."""
    return b"".join(key + value for value in values)


# ---- running and verifying --------------------------------------------------------------------------
def sort_job(executor: Any, location: str, output: str, *, reducers: int, chunk_bytes: int, pairs: bool = False) -> Any:
    """Sort every record under ``location`` into ``reducers`` objects under ``output``."""
    inputs = lambdamr.objects(location, record_bytes=RECORD, chunk_bytes=chunk_bytes)
    if pairs:
        return executor.map_reduce(
            record_pairs,
            inputs,
            join_records,
            reducers=reducers,
            partition=RangePartitioner(range_bounds(reducers)),
            output=output,
            output_format="raw",
        )
    return executor.map_reduce(
        functools.partial(split_into_blocks, reducers=reducers),
        inputs,
        sort_blocks,
        reducers=reducers,
        partition=reducer_number,
        output=output,
        output_format="raw",
    )


def verify(parts: Iterable[bytes], expected: tuple[int, int]) -> None:
    """Raise AssertionError unless ``parts`` (in order) are sorted and hold exactly the input."""
    count, crc_sum = 0, 0
    previous: tuple[int, int] | None = None
    for i, data in enumerate(parts):
        if not data:
            continue
        records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
        high, low = key_columns(records)
        in_order = (high[1:] > high[:-1]) | ((high[1:] == high[:-1]) & (low[1:] >= low[:-1]))
        assert in_order.all(), f"part {i} is not sorted at record {int(np.argmin(in_order)) + 1}"
        first = (int(high[0]), int(low[0]))
        assert previous is None or previous <= first, f"part {i} starts below the end of part {i - 1}"
        previous = (int(high[-1]), int(low[-1]))
        n, s = checksum(data)
        count, crc_sum = count + n, crc_sum + s
    assert count == expected[0], f"{count} records out, {expected[0]} in"
    assert crc_sum == expected[1], "the output's checksum differs from the input's: records were lost or changed"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m examples.sort", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--size-mb", type=float, default=100, help="size of the generated input")
    parser.add_argument("--reducers", type=int, default=8, help="reduce tasks (output parts)")
    parser.add_argument("--chunk-mb", type=float, default=16, help="mapper input size")
    parser.add_argument("--pairs", action="store_true", help="one (key, value) pair per record")
    parser.add_argument("--backend", choices=("local", "aws"), default="local", help="where the tasks run")
    parser.add_argument("--storage", default=None, help="s3://bucket/prefix or a folder (default: the backend's)")
    parser.add_argument("--memory", type=int, default=1024, help="task memory in MB (Lambda's size)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from lambdamr import LambdaExecutor

    with (
        LambdaExecutor(backend=args.backend, storage=args.storage, memory_mb=args.memory) as executor,
        tempfile.TemporaryDirectory(prefix="lambdamr-sort-") as scratch,
    ):
        store = executor.storage
        base = f"{executor.session_prefix}/sort-example"  # removed with the session
        if store.kind == "s3":
            location, output = f"s3://{store.bucket}/{base}/input/", f"s3://{store.bucket}/{base}/output"
        else:
            store = open_storage({"kind": "local", "root": scratch})
            base = ""
            location, output = os.path.join(scratch, "input"), os.path.join(scratch, "output")
        started = time.perf_counter()
        keys = write_input(store, f"{base}/input" if base else "input", args.size_mb)
        expected = (0, 0)
        for key in keys:
            n, s = checksum(store.get(key))
            expected = (expected[0] + n, expected[1] + s)
        print(f"input: {expected[0]:,} records ({expected[0] * RECORD / 2**20:.0f} MB) in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        result = sort_job(
            executor, location, output, reducers=args.reducers, chunk_bytes=int(args.chunk_mb * 2**20), pairs=args.pairs
        )
        elapsed = time.perf_counter() - started
        print(f"lambdamr map_reduce sort ({'pairs' if args.pairs else 'blocks'}): {elapsed:.2f} s")
        print(result.stats)
        out_store, _ = storage_from_url(output, endpoint_url=executor.config.endpoint_url)
        verify((out_store.get(key) for key in result.output_keys), expected)
        print(f"verified: {len(result.output_keys)} output objects, sorted, {expected[0]:,} records, checksum equal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
