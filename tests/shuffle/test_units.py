"""The shuffle's parts in-process: partitioners, the intermediate format, the merge, the
mapper and reducer tasks (run here, without a backend), the write-once layout."""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import subprocess
import sys
import threading
import zlib

import pytest

from lambdamr.errors import ConfigurationError, IntegrityError, SerializationError
from lambdamr.shuffle import RangePartitioner, stable_partition
from lambdamr.shuffle.format import encode_object, iter_pairs, read_index, write_frames
from lambdamr.shuffle.mapper import MapTask
from lambdamr.shuffle.merge import SpillMerger, fan_in
from lambdamr.shuffle.partition import canonical_bytes, stable_partitions
from lambdamr.shuffle.plan import MapPlan, MapReduceOptions, ReducePlan, ShuffleLayout, default_reducers
from lambdamr.shuffle.reducer import ReduceTask, SegmentRef
from lambdamr.storage import open_storage


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


# ---- partitioners --------------------------------------------------------------------------
def test_stable_partition_is_the_same_in_another_process_with_another_hash_seed():
    keys = ["the", "fox", "", "ünïcode", b"bytes", 7, -3, (1, "a"), None, 2.5, frozenset({"a", "b"})]
    here = [stable_partition(k, 13) for k in keys]
    code = f"from lambdamr.shuffle import stable_partition;print([stable_partition(k, 13) for k in {keys!r}])"
    for seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": os.getcwd()}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == str(here)


def test_equal_keys_of_different_types_go_to_one_reducer():
    # 1, 1.0 and True are one dict key, so they must meet in one reducer.
    assert canonical_bytes(1) == canonical_bytes(1.0) == canonical_bytes(True)
    assert len({stable_partition(k, 97) for k in (1, 1.0, True)}) == 1
    assert canonical_bytes(frozenset({"x", "y"})) == canonical_bytes(frozenset({"y", "x"}))
    assert canonical_bytes(Point(1, 2)) == canonical_bytes(Point(1, 2))


def test_stable_partition_spreads_keys():
    counts = [0] * 8
    for i in range(8000):
        counts[stable_partition(f"word{i}", 8)] += 1
    assert min(counts) > 800


def test_stable_partition_is_pinned_so_that_every_machine_and_version_agrees():
    # CRC-32 (zlib) of the canonical bytes: these values must never change between releases
    # or platforms, or mappers of one run on two machines would split a key between reducers.
    keys = ["the", "fox", "", "ünïcode", b"bytes", 7, -3, (1, "a"), None, 2.5]
    assert [stable_partition(k, 1000003) for k in keys] == [
        724667, 703819, 953980, 511373, 378579, 831915, 700406, 901932, 826107, 34001
    ]
    assert stable_partition("the", 1000003) == zlib.crc32(b"sthe") % 1000003


def test_stable_partitions_batches_str_keys_exactly_like_stable_partition():
    words = ["the", "fox", "", "ünïcode", "\ud800 lone surrogate", *(f"word{i}" for i in range(500))]
    for reducers in (1, 7, 8, 1000):
        assert stable_partitions(words, reducers) == [stable_partition(w, reducers) for w in words]
    assert stable_partitions(["a", 1], 8) is None  # not all str: the caller goes key by key
    assert stable_partitions([], 8) == []


def test_range_partitioner_sends_ranges_in_order():
    part = RangePartitioner([b"g", b"p"])
    assert [part(k, 3) for k in (b"a", b"g", b"h", b"p", b"z")] == [0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="reducers=3"):
        part(b"a", 4)
    with pytest.raises(ValueError, match="sorted"):
        RangePartitioner([2, 1])


def test_options_are_checked_with_messages_that_say_what_to_fix():
    with pytest.raises(ConfigurationError, match="reducers=0"):
        MapReduceOptions(reducers=0)
    with pytest.raises(ConfigurationError, match="output_format"):
        MapReduceOptions(output_format="csv")
    with pytest.raises(ConfigurationError, match="retries"):
        MapReduceOptions(retries=-1)
    assert default_reducers(100, 1000) == 10 and default_reducers(100, 4) == 4 and default_reducers(1, 8) == 1


# ---- the intermediate object -----------------------------------------------------------------
def test_object_holds_every_partition_and_an_index():
    parts = [[("a", 1), ("b", 2)], [], [(i, "x" * i) for i in range(3000)]]
    data, index = encode_object(parts, [True, True, True], where="test")
    assert read_index(data) == index
    assert index[1].length == 0 and index[1].pairs == 0
    for part, seg in zip(parts, index):
        assert list(iter_pairs(data[seg.offset : seg.offset + seg.length])) == part
    # the big partition was cut into several frames (a merge can decode it piecewise)
    assert index[2].length > 64 * 1024
    assert index[0].digest != index[2].digest


def test_large_values_travel_out_of_band_and_come_back_with_their_types():
    import numpy as np

    big = bytes(range(256)) * 400  # 100 KiB
    array = np.arange(50_000, dtype=np.int64)
    frozen = np.frombuffer(big, dtype=np.uint8)
    parts = [[("a", big), ("b", array), ("c", frozen), ("d", b"small"), ("e", [big])]]
    data, index = encode_object(parts, [True], where="test")
    # each large buffer is stored once, verbatim, after its frame's pickle
    assert data.count(big) == 3 and array.tobytes() in data
    assert index[0].length < 4 * len(big) + array.nbytes + 4096
    pairs = list(iter_pairs(data[: index[0].length]))
    assert [k for k, _ in pairs] == ["a", "b", "c", "d", "e"]
    (_, b), (_, a), (_, f), (_, s), (_, nested) = pairs
    assert type(b) is bytes and b == big and s == b"small" and nested == [big]
    assert (a == array).all() and a.flags.writeable  # a writable array stays writable
    assert (f == frozen).all() and not f.flags.writeable


def test_unpicklable_value_is_named():
    with pytest.raises(SerializationError, match=r"a value of key 'k' cannot be pickled: <unlocked _thread.lock"):
        encode_object([[("k", threading.Lock())]], [True], where="map task 0")


# ---- the merge ------------------------------------------------------------------------------
def _run_bytes(pairs):
    out = io.BytesIO()
    write_frames(out, pairs, where="test", batch=7)
    return out.getvalue()


def test_spill_merge_groups_sorted_runs_in_several_passes_keeping_run_order():
    runs = [sorted((k % 13, (r, k)) for k in range(r, 200, 3)) for r in range(9)]
    with SpillMerger(1, where="test") as merger:  # tiny budget: fan-in 2, several passes
        assert merger.fan_in == 2
        for run in runs:
            merger.add_run([_run_bytes(run)])
        groups = list(merger.groups())
        assert merger.passes > 2
        folder = merger.folder
    assert not os.path.exists(folder)
    expected: dict = {}
    for run in runs:
        for key, value in run:
            expected.setdefault(key, []).append(value)
    assert [k for k, _ in groups] == sorted(expected)
    assert dict(groups) == expected  # values of a key in run (mapper) order
    assert fan_in(10**12) == 512


def test_spill_run_with_a_wrong_digest_is_refused():
    with SpillMerger(1, where="test") as merger:
        with pytest.raises(IntegrityError, match="refusing to unpickle"):
            merger.add_run([_run_bytes([(1, 2)])], digest="b3:" + "0" * 32, what="segment x")


# ---- map and reduce tasks, run in this process ----------------------------------------------------
@pytest.fixture
def store_spec(tmp_path):
    return {"kind": "local", "root": str(tmp_path / "store")}


def _emit(item):
    for word in item.split():
        yield word, 1


def _count(key, values):
    return sum(values)


def _refs(out, reducer):
    seg = out.segments[reducer]
    return SegmentRef(out.name, seg[0], seg[1], seg[2], seg[3], seg[4])


def test_each_execution_writes_its_own_key_and_reducers_read_only_the_winner(store_spec):
    layout = ShuffleLayout("sess/shuffle/run")
    assert layout.new_name("m", 3, 0) != layout.new_name("m", 3, 0)  # write-once per execution
    task = MapTask(MapPlan(_emit, 1, store_spec, layout))
    winner = task(0, 0, ["a b a"])
    loser = task(0, 1, ["a a a a a c"])  # a late duplicate with other output
    assert winner.name != loser.name
    reduce = ReduceTask(ReducePlan(_count, store_spec, layout, budget_bytes=10**8))
    out = reduce(0, 0, [_refs(winner, 0)])
    assert dict(out.results) == {"a": 2, "b": 1}
    assert out.gets == 1


def test_a_replaced_intermediate_object_is_refused_not_unpickled(store_spec):
    layout = ShuffleLayout("sess/shuffle/run")
    out = MapTask(MapPlan(_emit, 1, store_spec, layout))(0, 0, ["x y"])
    store = open_storage(store_spec)
    forged, _ = encode_object([[("x", 999), ("y", 1)]], [True], where="forger")
    store.put(layout.key(out.name), forged)
    for budget in (10**8, 1):  # in memory, and merged from /tmp
        with pytest.raises(IntegrityError, match="changed or replaced"):
            ReduceTask(ReducePlan(_count, store_spec, layout, budget_bytes=budget))(0, 0, [_refs(out, 0)])


def _emit_block(item):
    yield item, bytes([item]) * 100_000


def _sizes(key, values):
    return [(type(v).__name__, len(v)) for v in values]


def test_large_values_are_checked_byte_for_byte_before_unpickling(store_spec):
    layout = ShuffleLayout("sess/shuffle/run")
    out = MapTask(MapPlan(_emit_block, 1, store_spec, layout))(0, 0, [7])
    plan = ReducePlan(_sizes, store_spec, layout, budget_bytes=10**8)
    assert ReduceTask(plan)(0, 0, [_refs(out, 0)]).results == [(7, [("bytes", 100_000)])]
    store = open_storage(store_spec)
    data = bytearray(store.get(layout.key(out.name)))
    data[out.segments[0][1] // 2] ^= 1  # one bit inside the value, not in the pickle
    store.put(layout.key(out.name), bytes(data))
    for budget in (10**8, 1):  # in memory, and merged from /tmp
        with pytest.raises(IntegrityError, match="changed or replaced"):
            ReduceTask(dataclasses.replace(plan, budget_bytes=budget))(0, 0, [_refs(out, 0)])


def test_mapper_output_is_partitioned_and_sorted(store_spec):
    layout = ShuffleLayout("sess/shuffle/run")
    out = MapTask(MapPlan(_emit, 4, store_spec, layout, combine=_count))(2, 0, ["b a c a", "d a"])
    assert out.pairs == 4 and all(s[3] for s in out.segments)
    data = open_storage(store_spec).get(layout.key(out.name))
    seen = {}
    for r, (offset, length, pairs, _, _) in enumerate(out.segments):
        part = list(iter_pairs(data[offset : offset + length]))
        assert part == sorted(part) and len(part) == pairs
        assert all(stable_partition(k, 4) == r for k, _ in part)
        seen.update(part)
    assert seen == {"a": 3, "b": 1, "c": 1, "d": 1}



def _counter_of_words(text):
    import collections

    return collections.Counter(text.split())


def _folded(store_spec, plan):
    out = MapTask(plan)(0, 0, ["b a c a", "d a", "a " * 300])  # 'a' overflows COMBINE_EVERY
    data = open_storage(store_spec).get(plan.layout.key(out.name))
    parts = [list(iter_pairs(data[o : o + n])) for o, n, _, _, _ in out.segments]
    return out, parts


def test_a_counter_from_map_fn_is_folded_into_combine_like_any_pairs(store_spec):
    layout = ShuffleLayout("sess/shuffle/run")
    out, parts = _folded(store_spec, MapPlan(_counter_of_words, 4, store_spec, layout, combine=_count))
    assert out.pairs == 4
    for r, part in enumerate(parts):
        assert all(stable_partition(k, 4) == r for k, _ in part)
    assert dict(p for part in parts for p in part) == {"a": 303, "b": 1, "c": 1, "d": 1}


def _raises(key, values):
    raise AssertionError("combine must not run: a single dict has nothing to combine")


def test_a_single_dict_from_map_fn_goes_straight_to_the_partitions(store_spec):
    # one item (one chunk per mapper): its dict's keys are distinct, so combine never runs
    # and every pair lands, sorted, in the partition stable_partition names
    layout = ShuffleLayout("sess/shuffle/run")
    text = " ".join(f"w{i % 97}" for i in range(2000))
    out = MapTask(MapPlan(_counter_of_words, 8, store_spec, layout, combine=_raises))(0, 0, [text])
    data = open_storage(store_spec).get(layout.key(out.name))
    parts = [list(iter_pairs(data[o : o + n])) for o, n, _, _, _ in out.segments]
    assert out.pairs == 97 and [len(p) for p in parts] == [s[2] for s in out.segments]
    for r, part in enumerate(parts):
        assert part == sorted(part) and all(stable_partition(k, 8) == r for k, _ in part)
    assert dict(p for part in parts for p in part) == collections.Counter(text.split())


def test_a_dict_after_pairs_is_folded_with_them(store_spec):
    # the last item's dict meets keys an earlier item emitted as pairs: combined, not routed twice
    layout = ShuffleLayout("sess/shuffle/run")

    def emit(item):
        return [("a", 1), ("b", 2)] if item == "pairs" else {"a": 10, "c": 5}

    out = MapTask(MapPlan(emit, 4, store_spec, layout, combine=_count))(0, 0, ["pairs", "dict"])
    data = open_storage(store_spec).get(layout.key(out.name))
    pairs = [p for o, n, _, _, _ in out.segments for p in iter_pairs(data[o : o + n])]
    assert out.pairs == 3 and sorted(pairs) == [("a", 11), ("b", 2), ("c", 5)]


def test_a_counter_goes_through_a_custom_partition_checked(store_spec):
    layout = ShuffleLayout("sess/shuffle/run")
    plan = MapPlan(_counter_of_words, 4, store_spec, layout, partition=lambda k, n: 7, combine=_count)
    with pytest.raises(ConfigurationError, match="it must return an int from 0 to 3"):
        MapTask(plan)(0, 0, ["a b"])


def test_a_counter_with_a_key_the_partitioner_cannot_encode_names_the_item(store_spec):
    layout = ShuffleLayout("sess/shuffle/run")
    plan = MapPlan(lambda text: {threading.Lock(): 1}, 4, store_spec, layout, combine=_count)
    with pytest.raises(SerializationError, match="key from item 'x', in map task 0"):
        MapTask(plan)(0, 0, ["x"])

# ---- frames pickled without a memo ----------------------------------------------------------------
def test_pairs_sharing_one_object_keep_the_memo_and_stay_small():
    import pickle

    shared = list(range(100_000))
    pairs = [(i, shared) for i in range(200)]
    data, index = encode_object([pairs], [True], where="test")
    # without the memo each pair would carry its own copy (200 x); with it, a few per frame
    assert index[0].length < 20 * len(pickle.dumps(shared, protocol=5))
    back = list(iter_pairs(memoryview(data)[: index[0].length]))
    assert [k for k, _ in back] == list(range(200)) and all(v == shared for _, v in back)


def test_a_cyclic_value_falls_back_to_the_memo():
    cyclic: list = [1]
    cyclic.append(cyclic)
    data, index = encode_object([[("k", cyclic), ("j", 2)]], [False], where="test")
    (key, value), second = iter_pairs(memoryview(data)[: index[0].length])
    assert key == "k" and value[0] == 1 and value[1] is value and second == ("j", 2)


def test_small_pairs_round_trip_in_fast_frames():
    pairs = [(f"w{i:05d}", i) for i in range(20_000)] + [(b"k" * 10, b"v" * 90)] * 3
    data, index = encode_object([pairs], [False], where="test")
    assert list(iter_pairs(memoryview(data)[: index[0].length])) == pairs
