"""The map_reduce examples at a tiny size: word count equals Counter, sort is verified."""

from __future__ import annotations

import collections

import pytest

from examples import sort, wordcount
from lambdamr.storage import open_storage, storage_from_url


def _locations(executor, tmp_path, name):
    """(store to write inputs to, key prefix, input location, output location)."""
    if executor.storage.kind == "s3":
        bucket = executor.storage.bucket
        return executor.storage, name, f"s3://{bucket}/{name}/input/", f"s3://{bucket}/{name}/output"
    store = open_storage({"kind": "local", "root": str(tmp_path / name)})
    return store, "", str(tmp_path / name / "input"), str(tmp_path / name / "output")


def test_generated_corpus_is_deterministic_and_line_structured(tmp_path):
    a = wordcount.generate_corpus(tmp_path / "a", 0.05, files=2, seed=3)
    b = wordcount.generate_corpus(tmp_path / "b", 0.05, files=2, seed=3)
    for name in ("part-000.txt", "part-001.txt"):
        data = (tmp_path / "a" / name).read_bytes()
        assert data == (tmp_path / "b" / name).read_bytes() and data.endswith(b"\n")
        assert 0.02 * 2**20 < len(data) <= 0.025 * 2**20 + 1
    assert wordcount.local_count(a) == wordcount.local_count(b)


def test_wordcount_equals_collections_counter(executor, tmp_path):
    folder = wordcount.generate_corpus(tmp_path / "corpus", 0.2, files=3)
    location = folder
    if executor.storage.kind == "s3":
        location = wordcount.upload_corpus(executor, folder, "corpus")
    counts = wordcount.wordcount(executor, location, reducers=3, chunk_bytes=20_000)
    reference = wordcount.local_count(location, endpoint_url=executor.config.endpoint_url)
    assert dict(counts) == dict(reference)
    assert sum(counts.values()) > 20_000
    assert counts.stats.mappers > 3  # files were split into several chunks
    assert counts.stats.intermediate_puts == counts.stats.mappers


@pytest.mark.parametrize("pairs", [False, True], ids=["blocks", "pairs"])
def test_sort_output_is_sorted_and_complete(executor, tmp_path, pairs):
    store, prefix, location, output = _locations(executor, tmp_path, "sort")
    keys = sort.write_input(store, f"{prefix}/input" if prefix else "input", 0.3, files=3, seed=7)
    expected = (0, 0)
    for key in keys:
        n, s = sort.checksum(store.get(key))
        expected = (expected[0] + n, expected[1] + s)
    result = sort.sort_job(executor, location, output, reducers=4, chunk_bytes=40_000, pairs=pairs)
    out_store, _ = storage_from_url(output, endpoint_url=executor.config.endpoint_url)
    parts = [out_store.get(key) for key in result.output_keys]
    assert len(parts) == 4
    sort.verify(parts, expected)
    # and the check would catch a lost record
    with pytest.raises(AssertionError, match="records out"):
        sort.verify([parts[0][: -sort.RECORD], *parts[1:]], expected)


def test_sort_with_duplicate_keys_and_a_spilling_reducer(executor, tmp_path):
    store, prefix, location, output = _locations(executor, tmp_path, "dups")
    records = bytearray(sort.make_records(3000, seed=1))
    for i in range(0, len(records), 7 * sort.RECORD):  # every 7th record gets the same key
        records[i : i + sort.KEY] = b"\x80" * sort.KEY
    store.put(f"{prefix}/input/x.bin" if prefix else "input/x.bin", bytes(records))
    result = executor.map_reduce(
        sort.record_pairs,
        sort.lambdamr.objects(location, record_bytes=sort.RECORD, chunks=4),
        sort.join_records,
        reducers=3,
        partition=sort.RangePartitioner(sort.range_bounds(3)),
        output=output,
        output_format="raw",
        reduce_budget_mb=0.01,
    )
    assert result.stats.spilled_reducers == 3
    out_store, _ = storage_from_url(output, endpoint_url=executor.config.endpoint_url)
    sort.verify([out_store.get(key) for key in result.output_keys], sort.checksum(bytes(records)))
    assert collections.Counter(len(out_store.get(k)) % sort.RECORD for k in result.output_keys) == {0: 3}
