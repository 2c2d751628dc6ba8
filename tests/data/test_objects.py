"""``lambdamr.objects``: storage objects split into line- or record-aligned byte ranges."""

from __future__ import annotations

import random

import pytest

import lambdamr
from lambdamr.data import chunk as chunk_module
from lambdamr.data.objects import Chunk, split_objects
from lambdamr.errors import ConfigurationError


def _text(seed: int, lines: int, long_every: int = 0) -> bytes:
    rng = random.Random(seed)
    out = []
    for i in range(lines):
        width = rng.choice([0, 1, 3, 10, 40]) if not (long_every and i % long_every == 0) else 300
        out.append("".join(rng.choice("abcdef ") for _ in range(width)))
    return ("\n".join(out)).encode()  # no newline at the very end


def _write_inputs(executor, tmp_path, files: dict[str, bytes]) -> str:
    """Store ``files`` where the executor's tasks can read them; return the location."""
    if executor.storage.kind == "s3":
        for name, data in files.items():
            executor.storage.put(f"corpus/{name}", data)
        return f"s3://{executor.storage.bucket}/corpus/"
    folder = tmp_path / "corpus"
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return str(folder)


# ---- planning ---------------------------------------------------------------------------------
def test_split_by_size_by_count_and_on_record_boundaries():
    assert split_objects([10, 0, 25], chunk_bytes=10, chunks=None) == [[(0, 10)], [], [(0, 8), (8, 17), (17, 25)]]
    by_count = split_objects([100, 300], chunk_bytes=None, chunks=8)
    assert [len(r) for r in by_count] == [2, 6]
    assert split_objects([5, 5, 5], chunk_bytes=None, chunks=2) == [[(0, 5)], [(0, 5)], [(0, 5)]]  # >= 1 per object
    records = split_objects([1000], chunk_bytes=250, chunks=None, align=100)
    assert records == [[(0, 200), (200, 400), (400, 600), (600, 800), (800, 1000)]]
    assert all(a % 100 == 0 for r in split_objects([1000], chunk_bytes=None, chunks=3, align=100) for a, _ in r)


def test_every_object_in_exactly_n_chunks_fewer_only_when_it_has_fewer_bytes_or_records():
    sizes = [1, 5, 6, 7, 100, 1001, 0]
    for n in (1, 2, 6, 7):
        ranges = split_objects(sizes, chunk_bytes=None, chunks=None, per_object=n)
        assert [len(r) for r in ranges] == [min(n, size) for size in sizes]
        assert all(r[0][0] == 0 and r[-1][1] == size for r, size in zip(ranges, sizes) if size)
        assert all(a[1] == b[0] for r in ranges for a, b in zip(r, r[1:]))  # contiguous
    records = split_objects([1050, 250], chunk_bytes=None, chunks=None, per_object=3, align=100)
    assert records == [[(0, 400), (400, 700), (700, 1050)], [(0, 100), (100, 200), (200, 250)]]


def test_options_are_checked():
    with pytest.raises(ConfigurationError, match="not both"):
        lambdamr.objects("/x", chunk_bytes=10, chunks=2)
    with pytest.raises(ConfigurationError, match="not both"):
        lambdamr.objects("/x", chunks=3, chunks_per_object=2)
    with pytest.raises(ConfigurationError, match="chunks_per_object=0"):
        lambdamr.objects("/x", chunks_per_object=0)
    with pytest.raises(ConfigurationError, match="or a list of them"):
        lambdamr.objects(["/x", 3])
    with pytest.raises(ConfigurationError, match="or a list of them"):
        lambdamr.objects([])
    with pytest.raises(ConfigurationError, match="chunk_bytes=0"):
        lambdamr.objects("/x", chunk_bytes=0)
    with pytest.raises(ConfigurationError, match="no such file or folder"):
        lambdamr.objects("/definitely/not/here").resolve()
    assert lambdamr.objects("/x", record_bytes=100).mode == "records"


# ---- line alignment -----------------------------------------------------------------------------
@pytest.mark.parametrize("overshoot", [4, 64 * 1024])
def test_every_line_is_read_by_exactly_one_chunk(tmp_path, monkeypatch, overshoot):
    monkeypatch.setattr(chunk_module, "LINE_OVERSHOOT", overshoot)  # 4: lines longer than it need more GETs
    data = _text(1, 120, long_every=37)
    (tmp_path / "t.txt").write_bytes(data)
    for chunk_bytes in (1, 2, 3, 7, 50, 299, 301, 1000, len(data)):
        chunks = lambdamr.objects(str(tmp_path / "t.txt"), chunk_bytes=chunk_bytes).resolve()
        pieces = [c.read() for c in chunks]
        assert b"".join(pieces) == data, chunk_bytes
        assert all(p == b"" or p.endswith(b"\n") for p in pieces[:-1])
        assert sum(len(c.lines()) for c in chunks) == len(data.decode().splitlines())


def test_a_chunk_inside_one_long_line_is_empty_and_a_trailing_newline_is_kept(tmp_path):
    (tmp_path / "t.txt").write_bytes(b"x" * 100 + b"\nlast\n")
    chunks = lambdamr.objects(str(tmp_path), chunk_bytes=30).resolve()
    assert [c.read() for c in chunks] == [b"x" * 100 + b"\n", b"", b"", b"last\n"]
    assert chunks[0].requests == 1


def test_chunks_per_object_keeps_every_line_in_exactly_one_chunk(tmp_path):
    files = {"a.txt": _text(5, 200, long_every=13), "b.txt": _text(6, 3), "c.txt": b"only one line, no newline"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    for n in (1, 2, 5, 17):
        chunks = lambdamr.objects(str(tmp_path), chunks_per_object=n).resolve()
        for name, data in files.items():
            mine = [c for c in chunks if c.key == name]
            assert len(mine) == min(n, len(data))
            assert b"".join(c.read() for c in mine) == data, (name, n)


def test_a_list_names_files_folders_and_urls_in_the_order_given(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.txt").write_bytes(b"x\n")
    (tmp_path / "d" / "y.txt").write_bytes(b"y\n")
    (tmp_path / "z.txt").write_bytes(b"z\n")
    chunks = lambdamr.objects([str(tmp_path / "z.txt"), f"file://{tmp_path / 'd'}"]).resolve()
    assert [c.read() for c in chunks] == [b"z\n", b"x\n", b"y\n"]
    assert [c.index for c in chunks] == [0, 1, 2]
    with pytest.raises(ConfigurationError, match="z.txt is named twice"):
        lambdamr.objects([str(tmp_path / "z.txt"), str(tmp_path)]).resolve()  # the folder holds z.txt too
    with pytest.raises(ConfigurationError, match="nothing.txt.*no such file or folder"):
        lambdamr.objects([str(tmp_path / "z.txt"), str(tmp_path / "nothing.txt")]).resolve()


def test_binary_records_are_never_cut(tmp_path):
    data = bytes(range(256)) * 40  # 10240 bytes = 102.4 records of 100 bytes
    (tmp_path / "r.bin").write_bytes(data[:10000])
    chunks = lambdamr.objects(str(tmp_path / "r.bin"), record_bytes=100, chunks=7).resolve()
    assert b"".join(c.read() for c in chunks) == data[:10000]
    assert all(len(c.read()) % 100 == 0 for c in chunks)


def test_chunks_survive_pickling_and_name_their_object(tmp_path):
    import pickle

    (tmp_path / "a.txt").write_bytes(b"one\ntwo\n")
    (chunk,) = lambdamr.objects(str(tmp_path)).resolve()
    again = pickle.loads(pickle.dumps(chunk))
    assert again == chunk and again.read() == b"one\ntwo\n"
    assert "a.txt [0:8) lines" in repr(chunk)


# ---- in storage, read by tasks --------------------------------------------------------------------
def count_lines(chunk: Chunk) -> int:
    return len(chunk.lines())


def test_tasks_read_their_ranges_from_either_storage(executor, tmp_path):
    files = {"a.txt": _text(2, 300), "b.txt": _text(3, 50), "c/d.txt": _text(4, 120), "empty.txt": b""}
    location = _write_inputs(executor, tmp_path, files)
    source = lambdamr.objects(location, chunks=9)
    chunks = source.resolve(region=executor.config.region, endpoint_url=executor.config.endpoint_url)
    assert len(chunks) == 9 and {c.key.rsplit("/", 1)[-1] for c in chunks} == {"a.txt", "b.txt", "d.txt"}
    counts = list(executor.map(count_lines, chunks))
    assert sum(counts) == sum(len(d.decode().splitlines()) for d in files.values())


def test_one_object_by_exact_name_and_a_prefix_without_slash(moto_endpoint, s3_bucket):
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    for key in ("corpus/a.txt", "corpus/a.txt.bak", "corpus/dir/x", "corpus/dir/", "corpus-old/y"):
        s3.put_object(Bucket=s3_bucket, Key=key, Body=b"" if key.endswith("/") else b"1\n2\n")
    location = f"s3://{s3_bucket}/corpus/"
    exact = lambdamr.objects(location + "a.txt", endpoint_url=moto_endpoint).resolve()
    assert [c.key for c in exact] == ["corpus/a.txt"]
    folder = lambdamr.objects(location + "dir", endpoint_url=moto_endpoint).resolve()
    assert [c.key for c in folder] == ["corpus/dir/x"]  # the folder marker is not an input
    everything = lambdamr.objects(location, endpoint_url=moto_endpoint).resolve()
    assert [c.key for c in everything] == ["corpus/a.txt", "corpus/a.txt.bak", "corpus/dir/x"]  # not corpus-old/
    without_slash = lambdamr.objects(location.rstrip("/"), endpoint_url=moto_endpoint).resolve()
    assert [c.key for c in without_slash] == [c.key for c in everything]
    with pytest.raises(ConfigurationError, match="no objects under"):
        lambdamr.objects(location + "nothing/", endpoint_url=moto_endpoint).resolve()


def test_a_list_of_keys_in_two_buckets_lists_each_key_once(moto_endpoint, s3_bucket, tmp_path):
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    other = s3_bucket + "-b"
    s3.create_bucket(Bucket=other)
    for bucket, key in ((s3_bucket, "in/a.txt"), (s3_bucket, "in/b.txt"), (s3_bucket, "in/c.txt"), (other, "k/d.txt")):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode() + b"\n")
    (tmp_path / "e.txt").write_bytes(b"local\n")
    source = lambdamr.objects(
        [f"s3://{other}/k/d.txt", f"s3://{s3_bucket}/in/c.txt", f"s3://{s3_bucket}/in/a.txt", str(tmp_path / "e.txt")],
        endpoint_url=moto_endpoint,
    )
    listing = source.listing()
    assert [o.url for o in listing.objects] == [
        f"s3://{other}/k/d.txt", f"s3://{s3_bucket}/in/c.txt", f"s3://{s3_bucket}/in/a.txt", str(tmp_path / "e.txt"),
    ]  # fmt: skip
    assert sorted(s.stats.snapshot()["lists"] for s in listing.stores) == [0, 1, 2]  # a LIST per key, a store per bucket
    assert listing.storage_reads() == [o.url for o in listing.objects]
    assert [c.read() for c in source.split(listing)] == [b"k/d.txt\n", b"in/c.txt\n", b"in/a.txt\n", b"local\n"]
    with pytest.raises(ConfigurationError, match="in/a.txt is named twice"):
        lambdamr.objects([f"s3://{s3_bucket}/in/", f"s3://{s3_bucket}/in/a.txt"], endpoint_url=moto_endpoint).resolve()
