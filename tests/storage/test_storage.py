"""One behaviour suite for every store: a local folder and S3 (moto's server, real HTTP)."""

from __future__ import annotations

import errno
import os
import stat
import threading

import pytest

import lambdamr.storage.local as local_storage
from lambdamr import (
    ConfigurationError,
    LambdaExecutor,
    ObjectNotFound,
    StorageFullError,
    StoragePermissionError,
    StorageReadOnlyError,
)
from lambdamr.storage import open_cached, open_storage, storage_from_url
from lambdamr.storage.local import LocalStorage
from lambdamr.storage.s3 import DELETE_BATCH_LIMIT, S3Storage


def test_put_get_round_trip(store):
    assert store.put("a/b/c.bin", b"hello")
    assert store.get("a/b/c.bin") == b"hello"
    assert store.stats.puts == 1 and store.stats.gets == 1
    assert store.stats.bytes_written == 5 and store.stats.bytes_read == 5


def test_ranged_get(store):
    store.put("k", bytes(range(100)))
    assert store.get("k", 10, 20) == bytes(range(10, 20))
    assert store.get("k", 95) == bytes(range(95, 100))
    assert store.get("k", 0, 0) == b""


def test_put_parts_and_open_range_are_one_request_each(store):
    assert store.put_parts("p", [b"ab", memoryview(b"cdef"), b""], if_absent=True)
    assert store.put_parts("p", [b"x"], if_absent=True) is False
    assert store.get("p") == b"abcdef"
    before = store.stats.gets
    with store.open_range("p", 1, 5) as stream:
        assert stream.read(2) == b"bc"
        buffer = bytearray(4)
        assert stream.readinto(buffer) == 2 and bytes(buffer[:2]) == b"de"
        assert stream.read(10) == b""
    assert store.stats.gets == before + 1
    with pytest.raises(ObjectNotFound):
        store.open_range("nope", 0, 1)


def test_missing_key_raises_object_not_found(store):
    with pytest.raises(ObjectNotFound, match="nope"):
        store.get("nope")


def test_put_replaces_and_if_absent_refuses(store):
    store.put("k", b"one")
    store.put("k", b"two")
    assert store.get("k") == b"two"
    assert store.put("k", b"three", if_absent=True) is False
    assert store.get("k") == b"two"
    assert store.put("fresh", b"x", if_absent=True) is True


def test_concurrent_if_absent_writers_have_exactly_one_winner(store):
    wins = []

    def write(i):
        wins.append(store.put("race", f"writer {i}".encode(), if_absent=True))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1
    assert store.get("race").startswith(b"writer ")


def test_list_prefix_in_key_order_with_sizes(store):
    for key in ["p/b", "p/a", "p/sub/c", "q/x", "pp"]:
        store.put(key, b"12345")
    assert [(i.key, i.size) for i in store.list("p/")] == [("p/a", 5), ("p/b", 5), ("p/sub/c", 5)]
    assert [i.key for i in store.list("p")] == ["p/a", "p/b", "p/sub/c", "pp"]
    assert list(store.list("none/")) == []


def test_delete_and_delete_prefix(store):
    for i in range(5):
        store.put(f"job/{i}", b"x")
    store.put("other", b"y")
    store.delete(["job/0", "job/missing"])
    assert [i.key for i in store.list("job/")] == ["job/1", "job/2", "job/3", "job/4"]
    assert store.delete_prefix("job/") == 4
    assert list(store.list("job/")) == []
    assert store.get("other") == b"y"


def test_delete_prefix_refuses_the_empty_prefix(store):
    with pytest.raises(ValueError, match="empty prefix"):
        store.delete_prefix("")


def test_spec_rebuilds_an_equivalent_store(store):
    store.put("x", b"1")
    again = open_storage(store.spec())
    assert again.get("x") == b"1"
    assert "secret" not in str(store.spec()).lower()


def test_local_store_is_private_to_the_user(tmp_path):
    store = LocalStorage(tmp_path / "private")
    store.put("dir/file", b"data")
    assert stat.S_IMODE(os.stat(tmp_path / "private" / "dir" / "file").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "private" / "dir").st_mode) == 0o700


def test_local_store_refuses_keys_escaping_the_root(tmp_path):
    store = LocalStorage(tmp_path)
    with pytest.raises(Exception, match="invalid storage key"):
        store.put("../escape", b"x")


def test_s3_delete_batches_respect_the_1000_key_limit(moto_endpoint, s3_bucket):
    store = S3Storage(s3_bucket, endpoint_url=moto_endpoint, region="us-east-1")
    keys = [f"many/{i:05d}" for i in range(DELETE_BATCH_LIMIT + 5)]
    requests = store.delete(keys)  # missing keys are fine; what counts is the batching
    assert requests == 2


def test_s3_missing_bucket_says_how_to_fix_it(moto_endpoint):
    store = S3Storage("no-such-bucket-here", endpoint_url=moto_endpoint, region="us-east-1")
    with pytest.raises(ConfigurationError, match="bucket does not exist.*lambdamr deploy"):
        store.put("k", b"x")


def test_storage_url_parsing(tmp_path):
    store, prefix = storage_from_url(str(tmp_path / "folder"))
    assert isinstance(store, LocalStorage) and prefix == ""
    store, prefix = storage_from_url(f"file://{tmp_path}/f2")
    assert isinstance(store, LocalStorage)
    with pytest.raises(ConfigurationError, match="no bucket"):
        storage_from_url("s3:///prefix")
    with pytest.raises(ConfigurationError, match="unsupported storage URL"):
        storage_from_url("gs://bucket/x")
    with pytest.raises(ConfigurationError, match="unknown storage kind"):
        open_storage({"kind": "ftp"})


def test_list_start_after_skips_keys_up_to_it(store):
    for i in range(5):
        store.put(f"r/{i:06d}.1", b"x")
    keys = [info.key for info in store.list("r/", start_after="r/000002")]
    assert keys == ["r/000002.1", "r/000003.1", "r/000004.1"]
    assert [info.key for info in store.list("r/", start_after="r/000002.1")] == ["r/000003.1", "r/000004.1"]


def test_every_folder_the_local_store_makes_is_private(tmp_path):
    store = LocalStorage(tmp_path / "new" / "root")
    store.put("a/b/c/file", b"data")
    for folder in (tmp_path / "new", tmp_path / "new" / "root", *(tmp_path / "new" / "root" / p for p in ("a", "a/b", "a/b/c"))):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, folder


class FolderRemovedBeforeWrite(LocalStorage):
    """Another driver's cleanup removes the (empty) folder right after this writer made it."""

    def __init__(self, root, removals):
        super().__init__(root)
        self.removals = removals

    def _new_temp_file(self, folder, key):
        original = local_storage.make_private_folders

        def make_then_lose(path, stop=None):
            original(path, stop)
            if self.removals:
                self.removals -= 1
                os.rmdir(path)
                os.rmdir(path.parent)  # the shared lambdamr/ folder too, as a pruning cleanup does

        local_storage.make_private_folders = make_then_lose
        try:
            return super()._new_temp_file(folder, key)
        finally:
            local_storage.make_private_folders = original


def test_write_survives_its_folder_vanishing_under_a_concurrent_cleanup(tmp_path):
    store = FolderRemovedBeforeWrite(tmp_path / "store", removals=2)
    store.put("lambdamr/session/fn/abc", b"data")
    assert store.get("lambdamr/session/fn/abc") == b"data" and store.removals == 0


def test_writers_and_cleanups_of_several_drivers_on_one_folder(tmp_path):
    store = LocalStorage(tmp_path / "store")
    errors: list[BaseException] = []

    def driver(name):
        try:
            for i in range(300):
                store.put(f"lambdamr/{name}-{i}/fn/x", b"x")
                store.delete_prefix(f"lambdamr/{name}-{i}/")  # prunes lambdamr/ when it empties
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=driver, args=(f"d{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def refusing(monkeypatch, root, code):
    """File-system calls on paths under ``root`` fail with ``code`` (as a read-only remount,
    a full disk or a permission change would make them)."""

    def wrap(function):
        def call(*args, **kwargs):
            target = str(kwargs.get("dir") or (args[0] if args else ""))
            if target.startswith(str(root)) or "dir_fd" in kwargs:  # dir_fd: rmtree's relative calls
                raise OSError(code, os.strerror(code), target)
            return function(*args, **kwargs)

        return call

    for name in ("replace", "link", "unlink", "rmdir", "mkdir"):
        monkeypatch.setattr(os, name, wrap(getattr(os, name)))
    monkeypatch.setattr(local_storage.tempfile, "mkstemp", wrap(local_storage.tempfile.mkstemp))


@pytest.mark.parametrize(
    "code, error, fragment",
    [
        (errno.EROFS, StorageReadOnlyError, "read-only"),
        (errno.ENOSPC, StorageFullError, "no space left"),
        (errno.EACCES, StoragePermissionError, "permission denied"),
    ],
    ids=["read-only", "disk full", "permission"],
)
def test_file_system_failures_say_what_happened(tmp_path, monkeypatch, code, error, fragment):
    store = LocalStorage(tmp_path / "store")
    store.put("job/old", b"x")
    refusing(monkeypatch, store.root, code)
    with pytest.raises(error, match=rf"could not write .*job/new: .*{fragment}"):
        store.put("job/new", b"x")
    with pytest.raises(error, match=fragment):
        store.delete(["job/old"])
    with pytest.raises(error, match=fragment):
        store.delete_prefix("job/")
    assert store.get("job/old") == b"x"  # reading still works


def test_storage_turning_read_only_keeps_collected_results(tmp_path, monkeypatch, caplog):
    ex = LambdaExecutor(storage=str(tmp_path / "store"), workers=1, progress=False)
    results = list(ex.map(pow, range(5), [2] * 5))
    refusing(monkeypatch, ex.storage.root, errno.EROFS)
    with pytest.raises(StorageReadOnlyError, match="read-only"):
        ex.submit(repr, 1)  # staging its function: refused before launch, with what happened
    ex.shutdown()  # cleanup cannot delete: a warning, not an exception
    assert results == [0, 1, 4, 9, 16]
    assert ex.jobs[0].summary().succeeded == 5  # the job's record survives; its consumed values were let go
    assert any("could not delete temp objects" in r.getMessage() and "read-only" in r.getMessage() for r in caplog.records)


def test_open_cached_opens_a_spec_once_whatever_the_order_of_its_members(tmp_path) -> None:
    first = open_cached({"kind": "local", "root": str(tmp_path / "a")})
    assert open_cached({"root": str(tmp_path / "a"), "kind": "local"}) is first
    assert open_cached({"kind": "local", "root": str(tmp_path / "b")}) is not first
    s3 = {"kind": "s3", "bucket": "lambdamr-cached", "region": "us-east-1", "endpoint_url": "http://127.0.0.1:9"}
    store = open_cached(s3)  # no request is made to open it
    assert isinstance(store, S3Storage)
    assert open_cached(dict(reversed(list(s3.items())))) is store
