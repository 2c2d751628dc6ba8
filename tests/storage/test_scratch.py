"""A session's scratch folder in RAM for big buffers: made, used while it has room, released
as its buffers are consumed, removed with its session and swept after a crash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lambdamr import IntegrityError, serialize
from lambdamr.backends.local_options import LocalOptions
from lambdamr.data import buffers
from lambdamr.data.buffers import BufferSink, result_sink
from lambdamr.errors import ConfigurationError, StorageFullError
from lambdamr.storage import scratch
from lambdamr.storage.local import LocalStorage
from lambdamr.storage.scratch import SessionScratch, has_room, sweep_stale

MB = 1024 * 1024
REPOSITORY = Path(__file__).resolve().parents[2]


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_a_session_folder_is_private_locked_and_removed_at_close(scratch_base):
    session = SessionScratch.open("s1", scratch_base)
    assert session is not None
    user_folder = scratch_base / f"lambdamr-{os.geteuid()}"
    assert session.root == user_folder / "s1"
    assert (user_folder / "s1.lock").is_file()
    assert user_folder.stat().st_mode & 0o777 == 0o700
    assert session.root.stat().st_mode & 0o777 == 0o700
    session.store.put("a/b", b"x")
    assert sweep_stale(scratch_base) == 0  # its lock is held: a live session is kept
    assert (session.root / "a" / "b").is_file()
    session.close()
    assert os.listdir(user_folder) == []


@pytest.mark.parametrize("problem", ["missing", "a file", "off"])
def test_no_scratch_where_the_folder_is_missing_or_no_folder(scratch_base, problem):
    base = {"missing": scratch_base / "nowhere", "a file": scratch_base / "file", "off": None}[problem]
    if problem == "a file":
        base.write_bytes(b"")
    assert SessionScratch.open("s1", base) is None


def test_no_scratch_on_a_full_file_system(scratch_base, monkeypatch):
    monkeypatch.setattr(scratch, "RESERVE_MIN_BYTES", 1 << 62)  # no file system has that much free
    assert not has_room(scratch_base, 0)
    assert SessionScratch.open("s1", scratch_base) is None


def test_buffers_go_to_the_store_when_scratch_has_no_room(tmp_path, scratch_base, monkeypatch):
    store = LocalStorage(tmp_path / "store")
    session = SessionScratch.open("s1", scratch_base)
    assert session is not None
    sink = BufferSink(store, "job/values", scratch=session.store)
    array = np.arange(MB // 2, dtype=np.float64)  # 4 MB
    in_scratch = serialize.dumps(array, sink=sink)
    assert buffers.split(in_scratch)[0]["storage"] == session.store.spec()
    assert list(store.list("")) == [] and len(files_under(session.root)) == 1
    monkeypatch.setattr(scratch, "RESERVE_MIN_BYTES", 1 << 62)  # full now
    in_store = serialize.dumps(array + 1, sink=sink)
    assert buffers.split(in_store)[0]["storage"] == store.spec()
    assert len(list(store.list("job/values/"))) == 1
    np.testing.assert_array_equal(serialize.loads(in_scratch), array)
    np.testing.assert_array_equal(serialize.loads(in_store), array + 1)
    session.close()


def test_a_scratch_folder_that_fills_up_while_writing_leaves_the_buffers_to_the_store(tmp_path, scratch_base):
    store = LocalStorage(tmp_path / "store")
    session = SessionScratch.open("s1", scratch_base)
    assert session is not None

    def full(key, data):
        raise StorageFullError("no space left on the device")

    session.store.store_buffer = full  # as another writer filled it between the check and the write
    frame = serialize.dumps(np.arange(MB // 2), sink=BufferSink(store, "job/values", scratch=session.store, release=True))
    manifest, _ = buffers.split(frame)
    assert manifest["storage"] == store.spec() and "release" not in manifest
    np.testing.assert_array_equal(serialize.loads(frame), np.arange(MB // 2))
    session.close()


def test_a_result_in_scratch_is_released_once_read_and_stays_mapped(tmp_path, scratch_base):
    store = LocalStorage(tmp_path / "store")
    session = SessionScratch.open("s1", scratch_base)
    assert session is not None
    sink = result_sink(store, "p/0001/results/000003.1", str(session.root))
    value = [np.full(MB, 7.0), np.full(MB, 7.0), np.arange(MB // 4)]  # two equal buffers: one file
    frame = serialize.dumps(value, sink=sink)
    manifest, _ = buffers.split(frame)
    assert manifest["release"] is True
    assert {entry[0].rsplit("/", 1)[0] for entry in manifest["buffers"]} == {"p/0001/returned/000003.1"}
    assert len(files_under(session.root)) == 2
    back = serialize.loads(frame)
    assert files_under(session.root) == []  # released: the driver holds the only map
    np.testing.assert_array_equal(back[0], value[0])
    np.testing.assert_array_equal(back[2], value[2])
    back[0][0] = -1.0  # its own memory, writable
    assert back[1][0] == 7.0
    assert list(store.list("")) == []
    session.close()


def test_a_result_stored_for_later_keeps_its_buffers_in_the_store(tmp_path):
    store = LocalStorage(tmp_path / "store")
    frame = serialize.dumps(np.zeros(MB), sink=result_sink(store, "p/0001/results/000000.1"))
    manifest, _ = buffers.split(frame)
    assert manifest["storage"] == store.spec() and "release" not in manifest
    serialize.loads(frame)
    assert len(list(store.list("p/0001/values/"))) == 1  # a durable record's value stays readable


def test_a_tampered_or_swapped_scratch_buffer_is_refused(tmp_path, scratch_base):
    store = LocalStorage(tmp_path / "store")
    session = SessionScratch.open("s1", scratch_base)
    assert session is not None
    sink = BufferSink(store, "job/values", scratch=session.store)
    first = serialize.dumps(np.zeros(MB // 4), sink=sink)
    second = serialize.dumps(np.ones(MB // 4), sink=sink)
    (first_key,) = [entry[0] for entry in buffers.split(first)[0]["buffers"]]
    (second_key,) = [entry[0] for entry in buffers.split(second)[0]["buffers"]]
    path = session.root / first_key
    path.write_bytes((session.root / second_key).read_bytes())  # a validly written buffer, moved
    with pytest.raises(IntegrityError, match="does not match the digest"):
        serialize.loads(first)
    data = bytearray((session.root / second_key).read_bytes())
    data[100] ^= 1
    (session.root / second_key).write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="does not match the digest"):
        serialize.loads(second)
    session.close()


def test_a_crashed_drivers_folder_is_swept_by_the_next_session(scratch_base):
    code = (
        "import os, sys; from lambdamr.storage.scratch import SessionScratch; "
        "s = SessionScratch.open('dead', sys.argv[1]); s.store.put('job/values/b3-x', b'x' * 100); "
        "print(s.root, flush=True); os._exit(9)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    done = subprocess.run([sys.executable, "-c", code, str(scratch_base)], env=env, capture_output=True, text=True)
    assert done.returncode == 9, done.stderr
    dead = Path(done.stdout.strip())
    assert (dead / "job" / "values" / "b3-x").is_file()  # left behind by the crash
    user_folder = dead.parent
    orphan = user_folder / "orphan"  # remade by a late write after its session ended: no lock
    orphan.mkdir()
    (orphan / "x").write_bytes(b"x")
    session = SessionScratch.open("next", scratch_base)
    assert session is not None
    assert sorted(os.listdir(user_folder)) == ["next", "next.lock"]
    session.close()


def test_a_live_session_in_another_process_is_not_swept(scratch_base):
    code = (
        "import sys; from lambdamr.storage.scratch import SessionScratch; "
        "s = SessionScratch.open('alive', sys.argv[1]); print(s.root, flush=True); sys.stdin.read()"
    )
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(scratch_base)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        alive = Path(holder.stdout.readline().strip())
        assert alive.is_dir()
        assert sweep_stale(scratch_base) == 0
        assert alive.is_dir()
    finally:
        holder.kill()
        holder.wait()
    assert sweep_stale(scratch_base) == 1  # its lock died with it
    assert not alive.exists()


def test_the_buffer_folder_option(monkeypatch, scratch_base):
    assert LocalOptions().scratch_base() == "/dev/shm"
    assert LocalOptions(buffer_folder="OFF").scratch_base() is None
    assert LocalOptions(buffer_folder=scratch_base).scratch_base() == str(scratch_base)
    monkeypatch.setenv("LAMBDAMR_BUFFER_FOLDER", "off")
    assert LocalOptions.resolve().scratch_base() is None
    with pytest.raises(ConfigurationError, match="absolute folder path"):
        LocalOptions(buffer_folder="shm")
    with pytest.raises(ConfigurationError, match="give a folder path"):
        LocalOptions(buffer_folder=3)


def _dead_session(scratch_base: Path, name: str, payload: bytes) -> Path:
    """A session folder whose driver died: its lock file is there, and free."""
    code = (
        "import os, sys; from lambdamr.storage.scratch import SessionScratch; "
        "s = SessionScratch.open(sys.argv[2], sys.argv[1]); s.store.put('job/values/b3-x', sys.argv[3].encode()); "
        "print(s.root, flush=True); os._exit(9)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    done = subprocess.run(
        [sys.executable, "-c", code, str(scratch_base), name, payload.decode()], env=env, capture_output=True, text=True
    )
    assert done.returncode == 9, done.stderr
    return Path(done.stdout.strip())


def test_stale_folders_lists_dead_sessions_with_their_sizes_and_deletes_nothing(scratch_base):
    live = SessionScratch.open("live", scratch_base)  # first: opening a session sweeps
    assert live is not None
    dead = _dead_session(scratch_base, "dead", b"x" * 100)
    try:
        live.store.put("job/values/b3-y", b"y" * 10)
        found = scratch.stale_folders(scratch_base)
        assert [(f.path, f.size) for f in found] == [(dead, 100)]
        assert (dead / "job" / "values" / "b3-x").is_file()  # listed, not touched
    finally:
        live.close()


def test_sweep_stale_removes_only_the_folders_named(scratch_base):
    first = _dead_session(scratch_base, "first", b"1")
    second = first.parent / "second"  # what another dead driver left (its open would have swept "first")
    (second / "job").mkdir(parents=True)
    (second / "job" / "b3-2").write_bytes(b"2")
    (first.parent / "second.lock").touch()
    assert sweep_stale(scratch_base, only={"second"}) == 1
    assert first.is_dir() and not second.exists()
    assert not (second.parent / "second.lock").exists()
    assert sweep_stale(scratch_base) == 1
    assert os.listdir(first.parent) == []


def test_lambdamr_clean_lists_and_removes_dead_drivers_scratch_folders(tmp_path, scratch_base, monkeypatch, capsys):
    from lambdamr.cli import main

    monkeypatch.setenv("LAMBDAMR_BUFFER_FOLDER", str(scratch_base))
    live = SessionScratch.open("alive", scratch_base)  # first: opening a session sweeps
    assert live is not None
    dead = _dead_session(scratch_base, "gone", b"z" * 2048)
    store = tmp_path / "store"
    store.mkdir()
    try:
        assert main(["clean", "--storage", str(store)]) == 1  # no terminal, no --yes: nothing happens
        out = capsys.readouterr().out
        assert f"lambdamr clean will delete 1 scratch folder of big buffers in {dead.parent}" in out
        assert "gone (2.0 KB)" in out and "alive" not in out
        assert dead.is_dir()
        assert main(["clean", "--storage", str(store), "--yes"]) == 0
        assert f"deleted 1 scratch folder in {dead.parent}" in capsys.readouterr().out
        assert not dead.exists() and live.root.is_dir()
        assert main(["clean", "--storage", str(store), "--yes"]) == 0
        assert "nothing to delete" in capsys.readouterr().out
    finally:
        live.close()
