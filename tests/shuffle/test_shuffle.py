"""map_reduce end to end on the local backend, over a local folder and over S3 (moto, HTTP):
results equal a local reference, the request counts hold, failures are retried without
re-running the other phase, and every temp key is gone afterwards.

The tests share one executor per storage (``executor`` is ``shared_local_executor``): a map_reduce leaves
nothing behind but its result, and starting worker processes for each of some fifty tests
cost more than the tests. A test that interrupts its executor, keeps its intermediate
objects or counts its jobs builds its own with ``make_executor``."""

from __future__ import annotations

import collections
import functools
import os
import signal
import threading
import time

import numpy as np
import pytest

import lambdamr
from lambdamr.errors import ConfigurationError, SerializationError
from lambdamr.shuffle import RangePartitioner
from lambdamr.storage import storage_from_url

TEXT = [
    "the quick brown fox jumps over the lazy dog",
    "the dog barks and the fox runs",
    "",
    "a b c d e f g h i j k l m n o p",
    "zebra zebra zebra the end",
] * 4


@pytest.fixture(scope="module")
def executor(shared_local_executor):
    return shared_local_executor


def words(line):
    for word in line.split():
        yield word, 1


def total(key, values):
    return sum(values)


def reference(lines):
    return collections.Counter(w for line in lines for w in line.split())


def shuffle_keys(executor):
    return [info.key for info in executor.storage.list(executor.session_prefix + "/shuffle/")]


def fail_first_time(marker: str) -> bool:
    """True exactly once per marker path, across worker processes."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


# ---- results equal a local reference ----------------------------------------------------------
def test_word_count_equals_counter_and_makes_the_stated_requests(executor):
    result = executor.map_reduce(words, TEXT, total, reducers=3)
    assert result == reference(TEXT)
    stats = result.stats
    m, r = len(TEXT), 3
    assert (stats.mappers, stats.reducers) == (m, r)
    assert stats.intermediate_puts == m  # ONE object per mapper, not one per partition
    assert stats.ranged_gets == stats.nonempty_segments <= m * r
    assert stats.pairs == sum(len(line.split()) for line in TEXT)
    assert stats.requests["puts"] >= m and stats.bytes_shuffled > 0
    assert shuffle_keys(executor) == []
    assert "ranged GETs" in str(stats)


def test_combine_pre_reduces_in_mappers(executor):
    result = executor.map_reduce(words, TEXT, total, reducers=2, combine=total, mappers=3)
    assert result == reference(TEXT)
    # three mappers, each sends every distinct word of its lines once
    assert result.stats.mappers == 3
    assert result.stats.pairs < sum(len(line.split()) for line in TEXT)


def skewed(i):
    for j in range(200):
        yield ("hot" if j % 10 else f"cold{i}-{j}"), j


def test_skewed_keys(executor):
    result = executor.map_reduce(skewed, range(6), lambda k, vs: (len(vs), sum(vs)), reducers=4)
    expected: dict = collections.defaultdict(list)
    for i in range(6):
        for k, v in skewed(i):
            expected[k].append(v)
    assert result == {k: (len(vs), sum(vs)) for k, vs in expected.items()}
    assert result["hot"][0] == 6 * 180


def test_empty_partitions_cost_no_requests_and_more_reducers_than_keys(executor):
    result = executor.map_reduce(lambda i: [("a", i), ("b", i), ("c", 1)], range(5), total, reducers=16)
    assert result == {"a": 10, "b": 10, "c": 5}
    stats = result.stats
    assert stats.nonempty_segments <= 5 * 3  # at most 3 of 16 partitions hold data per mapper
    assert stats.ranged_gets == stats.nonempty_segments < stats.max_ranged_gets == 5 * 16


def test_one_reducer_sees_every_key_in_sorted_order(executor):
    result = executor.map_reduce(words, TEXT, total, reducers=1)
    assert result == reference(TEXT)
    assert list(result) == sorted(result)


def test_values_of_a_key_arrive_in_mapper_order(executor):
    result = executor.map_reduce(lambda i: [("k", i), ("k", -i)], range(8), lambda k, vs: vs, reducers=2)
    assert result == {"k": [v for i in range(8) for v in (i, -i)]}


def test_range_partitioner_gives_globally_sorted_keys(executor):
    keys = [f"{i:03d}" for i in range(100)]
    result = executor.map_reduce(
        lambda chunk: [(k, 1) for k in chunk],
        [keys[i::5] for i in range(5)],
        total,
        reducers=4,
        partition=RangePartitioner(["025", "050", "075"]),
    )
    assert list(result) == keys


def test_no_inputs_is_an_empty_result(executor):
    assert executor.map_reduce(words, [], total) == {}


# ---- failures ---------------------------------------------------------------------------------------
def test_a_mapper_that_fails_once_is_retried(executor, tmp_path):
    marker = str(tmp_path / "mapper-failed")

    def flaky_words(line):
        if line.startswith("zebra") and fail_first_time(marker):
            raise OSError("transient failure of the first attempt")
        return list(words(line))

    result = executor.map_reduce(flaky_words, TEXT, total, reducers=3)
    assert result == reference(TEXT)
    stats = result.stats
    assert stats.retries == 1 and stats.map_executions == len(TEXT) + 1
    assert stats.reduce_executions == 3
    assert stats.intermediate_puts == len(TEXT)
    assert shuffle_keys(executor) == []


def test_a_reducer_that_fails_once_is_retried_without_rerunning_mappers(executor, tmp_path):
    marker = str(tmp_path / "reducer-failed")

    def flaky_total(key, values):
        if key == "fox" and fail_first_time(marker):
            raise RuntimeError("transient failure of the first attempt")
        return sum(values)

    result = executor.map_reduce(words, TEXT, flaky_total, reducers=3)
    assert result == reference(TEXT)
    assert result.stats.map_executions == len(TEXT)  # mappers ran once
    assert result.stats.reduce_executions == 4 and result.stats.retries == 1
    assert shuffle_keys(executor) == []


def test_a_killed_mapper_is_rerun(executor, tmp_path):
    marker = str(tmp_path / "killed")

    def dying_words(line):
        if line.startswith("zebra") and fail_first_time(marker):
            os.kill(os.getpid(), signal.SIGKILL)
        return list(words(line))

    result = executor.map_reduce(dying_words, TEXT, total, reducers=2)
    assert result == reference(TEXT)
    assert shuffle_keys(executor) == []


def test_a_task_that_always_fails_raises_its_error_and_cleans_up(executor):
    def broken(key, values):
        raise KeyError(f"no such thing {key}")

    with pytest.raises(KeyError, match="no such thing") as info:
        executor.map_reduce(words, TEXT, broken, reducers=2, retries=1)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "in reduce_fn, for key" in notes and "attempt 2 of 2" in notes
    assert shuffle_keys(executor) == []


class Unpicklable:
    def __init__(self):
        self.lock = threading.Lock()

    def __hash__(self):
        return 1

    def __eq__(self, other):
        return isinstance(other, Unpicklable)

    def __repr__(self):
        return "<Unpicklable key>"


def test_unpicklable_key_is_a_clear_error_and_not_retried(make_executor):
    executor = make_executor()
    with pytest.raises(SerializationError, match=r"a key cannot be pickled: <Unpicklable key>") as info:
        executor.map_reduce(lambda i: [(Unpicklable(), i)], range(3), total, reducers=2)
    assert "map task" in str(info.value)
    assert executor.jobs and len(executor.jobs) == 1  # no retry job was started
    assert shuffle_keys(executor) == []


@pytest.mark.parametrize(
    "map_fn, message",
    [
        (lambda i: ["word"], r"map_fn yielded 'word' \(a str\) for item 0: it must yield \(key, value\) pairs"),
        (lambda i: [([1, 2], i)], r"unhashable key \[1, 2\] \(a list\) for item 0: .*tuple instead of a list"),
        (lambda i: None, r"map_fn returned None for item 0"),
        (lambda i: 5, r"map_fn returned 5 \(a int\) for item 0"),
    ],
)
def test_bad_map_output_names_the_item_and_what_to_do(executor, map_fn, message):
    with pytest.raises(SerializationError, match=message):
        executor.map_reduce(map_fn, [0], total, reducers=1)
    assert shuffle_keys(executor) == []


def test_partition_out_of_range_is_a_clear_error(executor):
    with pytest.raises(ConfigurationError, match=r"partition\('a', 2\) returned 7: it must return an int from 0 to 1"):
        executor.map_reduce(lambda i: [("a", 1)], [0], total, reducers=2, partition=lambda k, n: 7)


def gated_words(line, started, gate):
    """Marks that a mapper runs, then waits for a gate the test never opens (bounded, so a
    broken test cannot hang a worker): the job is certainly mid-map when Ctrl-C comes."""
    with open(started, "a"):
        pass
    deadline = time.monotonic() + 120
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    return list(words(line))


def test_ctrl_c_during_the_job_removes_every_temp_key(make_executor, tmp_path, monkeypatch):
    from lambdamr.driver import map_reduce

    # The blocked mappers never settle: cleanup waits this long for them, then deletes.
    monkeypatch.setattr(map_reduce, "CLEANUP_WAIT_S", 0.5)
    executor = make_executor()
    started, gate = str(tmp_path / "started"), str(tmp_path / "gate")
    main = threading.main_thread().ident
    stop = threading.Event()

    def interrupt_once_a_mapper_runs():
        while not stop.is_set():
            if os.path.exists(started):
                signal.pthread_kill(main, signal.SIGINT)
                return
            stop.wait(0.01)

    interrupter = threading.Thread(target=interrupt_once_a_mapper_runs, daemon=True)
    interrupter.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            executor.map_reduce(functools.partial(gated_words, started=started, gate=gate), TEXT[:8], total, reducers=2)
    finally:
        stop.set()
        interrupter.join()
    assert executor.jobs  # it had started
    assert shuffle_keys(executor) == []


def test_keep_intermediate_keeps_one_object_per_mapper(make_executor):
    executor = make_executor()
    result = executor.map_reduce(words, TEXT[:4], total, reducers=2, keep_intermediate=True)
    kept = shuffle_keys(executor)
    assert len(kept) == 4 and all("/m0000" in k for k in kept)
    assert len({k.split("/")[-2] for k in kept}) >= 2  # spread over hash prefixes
    assert result == reference(TEXT[:4])


# ---- memory-aware reducers and outputs -----------------------------------------------------------
def test_a_partition_over_budget_is_merged_from_tmp(executor):
    result = executor.map_reduce(skewed, range(6), lambda k, vs: sorted(vs), reducers=2, reduce_budget_mb=0.0001)
    expected: dict = collections.defaultdict(list)
    for i in range(6):
        for k, v in skewed(i):
            expected[k].append(v)
    assert result == {k: sorted(vs) for k, vs in expected.items()}
    assert result.stats.spilled_reducers == 2 and result.stats.spilled_bytes == result.stats.bytes_shuffled


def _output_location(executor, tmp_path, name):
    if executor.storage.kind == "s3":
        return f"s3://{executor.storage.bucket}/{name}"
    return str(tmp_path / name)


def test_output_prefix_gets_one_object_per_reducer(executor, tmp_path):
    out = _output_location(executor, tmp_path, "counts")
    result = executor.map_reduce(words, TEXT, total, reducers=3, output=out)
    assert dict(result) == {} and len(result.output_keys) == 3
    assert all(k.endswith(f"part-{i:05d}") for i, k in enumerate(result.output_keys))
    assert dict(result.read_output()) == reference(TEXT)
    with pytest.raises(ConfigurationError, match="already holds results"):
        executor.map_reduce(words, TEXT, total, reducers=3, output=out)


def test_a_failed_run_leaves_no_partial_output(executor, tmp_path):
    out = _output_location(executor, tmp_path, "failed")

    def fail_on_fox(key, values):
        if key == "fox":
            raise ValueError("no foxes")
        return sum(values)

    with pytest.raises(ValueError, match="no foxes"):
        executor.map_reduce(words, TEXT, fail_on_fox, reducers=3, output=out, retries=0)
    store, prefix = storage_from_url(out, endpoint_url=executor.config.endpoint_url)
    assert [info.key for info in store.list(prefix)] == []
    assert shuffle_keys(executor) == []


def test_text_output(executor, tmp_path):
    out = _output_location(executor, tmp_path, "text")
    result = executor.map_reduce(words, TEXT, total, reducers=2, output=out, output_format="text")
    store, _ = storage_from_url(out, endpoint_url=executor.config.endpoint_url)
    lines = [line for key in result.output_keys for line in store.get(key).decode().splitlines()]
    assert {w: int(n) for w, n in (line.split("\t") for line in lines)} == reference(TEXT)


def test_map_reduce_over_storage_objects(executor, tmp_path):
    from tests.data.test_objects import _write_inputs

    data = "\n".join(TEXT * 5).encode()
    location = _write_inputs(executor, tmp_path, {"a.txt": data, "b.txt": data[:333]})
    result = executor.map_reduce(
        lambda chunk: [(w, 1) for w in chunk.text().split()],
        lambdamr.objects(location, chunks=5),
        total,
        reducers=2,
        combine=total,
    )
    assert result == collections.Counter((data + b"\n" + data[:333]).decode().split())
    assert result.stats.input_gets == 5


# ---- the whole-result form -------------------------------------------------------------------------
def tile(i):
    return np.full((2, 3), i, dtype=np.int32)


def test_map_then_reduce_runs_the_reduction_remotely_over_every_result(executor):
    assert executor.map_then_reduce(lambda x: x * x, range(10), sum) == 285
    image = executor.map_then_reduce(tile, range(4), np.vstack)
    assert np.array_equal(image, np.vstack([tile(i) for i in range(4)]))
    assert shuffle_keys(executor) == []
    assert executor.with_options(memory_mb=256).map_then_reduce(len, ["ab", "c"], sum) == 3
