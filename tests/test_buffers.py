"""Big values out of band: numpy buffers as objects of their own, checked by digest."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from lambdamr import IntegrityError, LambdaExecutor, serialize
from lambdamr.data import buffers, digest
from lambdamr.data.buffers import BufferSink
from lambdamr.storage.local import LocalStorage
from lambdamr.storage.s3 import S3Storage
from lambdamr.storage.transfer import MULTIPART_THRESHOLD, PART_BYTES

MB = 1024 * 1024


def stored_buffers(store, prefix="job/values"):
    return [info.key for info in store.list(prefix + "/")]


def test_arrays_round_trip_out_of_band(store):
    sink = BufferSink(store, "job/values")
    big = np.random.default_rng(1).random(300_000)  # 2.4 MB: out of band
    fortran = np.asfortranarray(np.arange(400_000, dtype=np.int32).reshape(800, 500))  # 1.6 MB
    small = np.arange(10)  # in band
    value = {"big": big, "fortran": fortran, "small": small, "text": "kept"}
    frame = serialize.dumps(value, sink=sink)
    assert buffers.is_buffered(frame)
    assert len(frame) < 4096  # the pickle holds only the buffers' places
    assert len(stored_buffers(store)) == 2
    back = serialize.loads(frame)
    assert back["text"] == "kept"
    for name in ("big", "fortran", "small"):
        np.testing.assert_array_equal(back[name], value[name])
        assert back[name].dtype == value[name].dtype
    assert back["fortran"].flags.f_contiguous
    back["big"][0] = -1.0  # writable, and the reader's own memory
    assert big[0] != -1.0
    assert serialize.loads(frame)["big"][0] == big[0]  # the stored buffer did not change


def test_a_read_only_array_comes_back_read_only(tmp_path):
    store = LocalStorage(tmp_path)
    frozen = np.frombuffer(bytes(2 * MB), dtype=np.uint8)
    back = serialize.loads(serialize.dumps(frozen, sink=BufferSink(store, "v")))
    assert not back.flags.writeable
    np.testing.assert_array_equal(back, frozen)


def test_values_without_big_buffers_stay_plain_pickles(tmp_path):
    store = LocalStorage(tmp_path)
    sink = BufferSink(store, "v")
    value = {"numbers": list(range(1000)), "blob": b"x" * (3 * MB), "array": np.arange(100)}
    frame = serialize.dumps(value, sink=sink)
    assert not buffers.is_buffered(frame)
    assert frame == serialize.dumps(value)  # the same bytes as without a sink
    back = serialize.loads(frame)
    assert back["blob"] == value["blob"] and back["numbers"] == value["numbers"]
    assert list(store.list("")) == []


def test_the_same_buffer_is_stored_once(tmp_path):
    store = LocalStorage(tmp_path)
    array = np.ones(MB)
    frame = serialize.dumps([array, array.copy()], sink=BufferSink(store, "v"))
    assert len(stored_buffers(store, "v")) == 1  # content-addressed
    first, second = serialize.loads(frame)
    np.testing.assert_array_equal(first, second)


def test_a_tampered_buffer_is_refused(store):
    array = np.arange(MB // 4, dtype=np.float64)  # 2 MB
    frame = serialize.dumps(array, sink=BufferSink(store, "job/values"))
    (key,) = stored_buffers(store)
    data = bytearray(store.get(key))
    data[12345] ^= 0xFF
    store.put(key, bytes(data))
    with pytest.raises(IntegrityError, match="does not match the digest"):
        serialize.loads(frame)


def test_a_buffer_swapped_for_another_or_truncated_is_refused(tmp_path):
    store = LocalStorage(tmp_path)
    sink = BufferSink(store, "v")
    first = serialize.dumps(np.zeros(MB // 4), sink=sink)
    serialize.dumps(np.ones(MB // 4), sink=sink)
    other_key = next(k for k in stored_buffers(store, "v") if k not in first.decode("latin-1"))
    manifest, _ = buffers.split(first)
    key = manifest["buffers"][0][0]
    store.put(key, store.get(other_key))  # a validly written buffer, moved
    with pytest.raises(IntegrityError):
        serialize.loads(first)
    store.put(key, store.get(other_key)[: MB])  # half of it
    with pytest.raises(IntegrityError, match="has 1048576 bytes"):
        serialize.loads(first)


def test_a_buffer_written_by_another_user_is_read_not_mapped(tmp_path, monkeypatch):
    """A file someone else may write is copied into private memory, never mapped (a map
    would show their later writes after the check)."""
    store = LocalStorage(tmp_path)
    frame = serialize.dumps(np.arange(MB // 2), sink=BufferSink(store, "v"))
    (key,) = stored_buffers(store, "v")
    os.chmod(tmp_path / key, 0o620)  # group-writable
    mapped = []
    monkeypatch.setattr("mmap.mmap", lambda *a, **k: mapped.append(a) or pytest.fail("mapped"))
    back = serialize.loads(frame)
    np.testing.assert_array_equal(back, np.arange(MB // 2))
    assert back.flags.writeable and not mapped


def test_digests_name_their_algorithm_and_refuse_strangers():
    found = digest.digest_of(b"abc")
    assert found.startswith(digest.PREFERRED + ":") and len(found) == 3 + digest.DIGEST_HEX
    digest.check(b"abc", found, what="x")
    sha = "s2:" + __import__("hashlib").sha256(b"abc").hexdigest()[:32]
    digest.check(b"abc", sha, what="x")  # a SHA-256 writer is still understood
    with pytest.raises(IntegrityError):
        digest.check(b"abd", sha, what="x")
    with pytest.raises(IntegrityError, match="not a lambdamr digest"):
        digest.check(b"abc", "md5:" + "0" * 32, what="x")


def test_s3_big_buffers_go_in_parts(moto_endpoint, s3_bucket):
    store = S3Storage(s3_bucket, endpoint_url=moto_endpoint, region="us-east-1")
    array = np.random.default_rng(2).integers(0, 255, MULTIPART_THRESHOLD + 3 * MB, dtype=np.uint8)
    before = store.stats.snapshot()
    frame = serialize.dumps(array, sink=BufferSink(store, "job/values"))
    parts = -(-array.nbytes // PART_BYTES)
    assert store.stats.snapshot()["puts"] - before["puts"] == parts  # a multipart upload
    before = store.stats.snapshot()
    back = buffers.loads(frame, what="value")  # the module's own store: count on a fresh one
    np.testing.assert_array_equal(back, array)
    reader = buffers._store_of(store.spec())
    assert reader.stats.snapshot()["gets"] >= parts  # parallel ranged GETs
    assert back.flags.writeable


def test_the_executor_moves_big_arrays_out_of_band_both_ways(tmp_path):
    array = np.random.default_rng(3).random(MB // 2)  # 4 MB
    with LambdaExecutor(workers=1, storage=str(tmp_path / "store"), progress=False, buffer_folder="off") as ex:
        (back,) = ex.map(np.negative, [array])
        np.testing.assert_array_equal(back, -array)
        job = ex.last_job
        values = [info for info in ex.storage.list(f"{job.prefix}/values/")]
        assert {info.size for info in values} == {array.nbytes}
        assert len(values) == 2  # the argument and the result, one object each


def test_a_shared_array_tampered_in_storage_fails_the_task(tmp_path):
    array = np.arange(MB // 2, dtype=np.float64)
    with LambdaExecutor(workers=1, storage=str(tmp_path / "store"), progress=False, retries=0, buffer_folder="off") as ex:
        handle = ex.share(array)
        (key,) = [info.key for info in ex.storage.list(f"{ex.session_prefix}/values/")]
        data = bytearray(ex.storage.get(key))
        data[-1] ^= 1
        ex.storage.put(key, bytes(data))
        with pytest.raises(IntegrityError, match="does not match the digest"):
            ex.submit(_shared_sum, handle).result()


def _shared_sum(handle):
    return float(handle.value.sum())


def test_plain_pickles_of_other_objects_load_as_before():
    value = {"a": [1, 2, 3], "b": (b"x", 2.5)}
    assert serialize.loads(pickle.dumps(value, protocol=5)) == value


# ---- the session's scratch folder in RAM (local backend, jobs that are not durable) ----------
def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())


def _negate_and_look(array, session_folder):
    """The task: its result, and the files of the session's scratch folder while it runs."""
    return -array, _files(session_folder)


def _job_ended(job) -> threading.Event:
    ended = threading.Event()  # after the session's own done-callback, which releases the arguments
    job.add_done_callback(lambda _: ended.set())
    return ended


def test_big_arrays_cross_through_the_scratch_folder_and_are_released(tmp_path, scratch_base):
    array = np.random.default_rng(4).random(MB // 2)  # 4 MB
    with LambdaExecutor(workers=1, storage=str(tmp_path / "store"), progress=False, buffer_folder=str(scratch_base)) as ex:
        folder = ex.session.scratch.root
        assert folder.parent.parent == scratch_base
        future = ex.submit(_negate_and_look, array, str(folder))
        job = ex.last_job
        ended = _job_ended(job)
        back, seen = future.result()
        np.testing.assert_array_equal(back, -array)
        job_folder = job.prefix
        assert [name.rsplit("/", 1)[0] for name in seen] == [f"{job_folder}/values"]  # the argument
        assert back.flags.writeable
        assert ended.wait(30)
        assert _files(folder) == []  # the result released once read, the argument once the job ended
        assert list(ex.storage.list(f"{job_folder}/values/")) == []  # nothing went to the store
        assert list(ex.storage.list(f"{job_folder}/returned/")) == []
        back += 1  # still mapped, still its own
        np.testing.assert_array_equal(back, 1 - array)
    assert not folder.exists() and os.listdir(folder.parent) == []  # the session's folder, lock and all


def test_a_long_map_of_big_results_holds_none_once_read(tmp_path, scratch_base):
    with LambdaExecutor(workers=2, storage=str(tmp_path / "store"), progress=False, buffer_folder=str(scratch_base)) as ex:
        folder = ex.session.scratch.root
        for index, block in enumerate(ex.map(np.full, [MB // 4] * 12, range(12))):
            assert block[0] == index and block.nbytes == 2 * MB
        assert _files(folder) == []  # every result's buffers released as it was read
        stored = [info.key for info in ex.storage.list(f"{ex.session_prefix}/")]
        assert not [key for key in stored if "/returned/" in key or "/values/" in key]  # none went to the store


def test_a_shared_array_tampered_in_the_scratch_folder_fails_the_task(tmp_path, scratch_base):
    array = np.arange(MB // 2, dtype=np.float64)
    with LambdaExecutor(
        workers=1, storage=str(tmp_path / "store"), progress=False, retries=0, buffer_folder=str(scratch_base)
    ) as ex:
        handle = ex.share(array)
        assert list(ex.storage.list(f"{ex.session_prefix}/values/")) == []  # its buffer is in RAM
        (name,) = _files(ex.session.scratch.root)
        path = ex.session.scratch.root / name
        data = bytearray(path.read_bytes())
        data[-1] ^= 1
        path.write_bytes(bytes(data))
        with pytest.raises(IntegrityError, match="does not match the digest"):
            ex.submit(_shared_sum, handle).result()


@pytest.mark.parametrize("setting", ["durable", "missing folder"])
def test_durable_jobs_and_a_missing_folder_keep_big_buffers_in_the_store(tmp_path, scratch_base, setting):
    options = {"durable": True, "buffer_folder": str(scratch_base)}
    if setting == "missing folder":
        options = {"buffer_folder": str(scratch_base / "missing")}
    array = np.random.default_rng(5).random(MB // 2)
    with LambdaExecutor(workers=1, storage=str(tmp_path / "store"), progress=False, **options) as ex:
        assert ex.session.scratch is None
        (back,) = ex.map(np.negative, [array])
        np.testing.assert_array_equal(back, -array)
        assert len(list(ex.storage.list(f"{ex.last_job.prefix}/values/"))) == 2  # argument and result
    assert _files(scratch_base) == []


def test_a_crashed_drivers_buffers_are_swept_by_the_next_session(tmp_path, scratch_base):
    """A driver that dies leaves its folder; its workers (maybe still alive) hold no lock: they
    are exec'd and the lock's descriptor is not inherited. The next session removes it."""
    code = (
        "import os, sys, numpy as np; from lambdamr import LambdaExecutor; "
        "ex = LambdaExecutor(workers=1, storage=sys.argv[1], progress=False, buffer_folder=sys.argv[2]); "
        "ex.submit(np.sum, np.ones(2**19)).result(); ex.share(np.ones(2**19)); "
        "print(ex.session.scratch.root, flush=True); os._exit(9)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    driver = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "store"), str(scratch_base)], env=env, stdout=subprocess.PIPE, text=True
    )
    dead = Path(driver.stdout.readline().strip())
    assert driver.wait(timeout=120) == 9
    driver.stdout.close()
    assert len(_files(dead)) == 1  # the shared array's buffer, left by the crash
    with LambdaExecutor(workers=1, storage=str(tmp_path / "store"), progress=False, buffer_folder=str(scratch_base)) as ex:
        assert not dead.exists()
        assert sorted(os.listdir(dead.parent)) == sorted([ex.session.scratch.root.name, ex.session.scratch.root.name + ".lock"])
