"""``task_storage()``: tasks store bytes and signed values, return references, and whoever
holds a reference (the driver, a later task) opens it — on every backend × storage,
including the AWS stand-in, whose role's IAM is enforced by moto."""

from __future__ import annotations

import uuid

import pytest

import lambdamr
from lambdamr import NotInTaskError, ObjectRef, ValueRef, task_storage
from lambdamr.data.refs import location_of
from lambdamr.errors import ConfigurationError, IntegrityError, ObjectNotFound, StoragePermissionError
from lambdamr.storage import open_cached
from tests.targets import AWS_ONLY

WAIT_S = 120


# ---- what the tasks do ---------------------------------------------------------------------
def store_both(x: int) -> tuple[ObjectRef, ValueRef]:
    store = task_storage()
    return store.put(f"part-{x}.bin", bytes([x]) * 1000), store.put_value({"x": x, "square": x * x})


def read_both(ref: ObjectRef, value: ValueRef) -> tuple[int, int]:
    store = task_storage()
    return len(store.get(ref)) + len(store.open(ref).read()), store.get_value(value)["square"]


def put_at(url: str, data: bytes) -> ObjectRef:
    return task_storage().put(url, data)


def put_value_at(url: str, value: object) -> ValueRef:
    return task_storage().put_value(value, url)


def read_url(url: str) -> bytes:
    return task_storage().get(url)


def get_value_as_bytes(value: ValueRef) -> bytes:
    return task_storage().get(value)  # type: ignore[arg-type]  # refused: a value is no raw bytes


def folder_of_task() -> str:
    return task_storage().folder


def keep_url(executor: lambdamr.LambdaExecutor, name: str) -> str:
    """A URL outside the session's temp folder that the target's runtime may write: on AWS
    inside the deployment's grant (the temp prefix, beside the sessions)."""
    store = executor.storage
    unique = f"keep-{uuid.uuid4().hex[:8]}/{name}"
    if store.kind == "s3":
        granted = executor.session.key_prefix
        return f"s3://{store.bucket}/{granted}/{unique}" if executor.config.backend == "aws" else f"s3://{store.bucket}/{unique}"
    return f"file://{store.root}/{unique}"


# ---- the driver and later tasks open what tasks stored -----------------------------------------
def test_refs_returned_by_tasks_open_in_the_driver(target_executor):
    results = list(target_executor.map(store_both, range(4)))
    for x, (ref, value) in enumerate(results):
        assert isinstance(ref, ObjectRef) and isinstance(value, ValueRef)
        assert ref.temporary and value.temporary
        assert ref.get() == bytes([x]) * 1000
        with ref.open() as stream:
            assert stream.read() == bytes([x]) * 1000
        assert value.get() == {"x": x, "square": x * x}
        job = target_executor.last_job
        assert ref.key.startswith(f"{job.prefix}/objects/{x:06d}.")
        assert ref.url == location_of(ref.storage, ref.key)
        assert ref.url.startswith("s3://" if target_executor.storage.kind == "s3" else "file:///")


def test_a_later_task_reads_the_refs_of_an_earlier_job(target_executor):
    refs = list(target_executor.map(store_both, range(3)))
    assert list(target_executor.map(read_both, *zip(*refs))) == [(2000, x * x) for x in range(3)]


def test_raw_bytes_and_values_are_kept_apart(target_executor):
    _, value = target_executor.submit(store_both, 1).result(timeout=WAIT_S)
    with pytest.raises(ConfigurationError, match="get_value"):
        target_executor.submit(get_value_as_bytes, value).result(timeout=WAIT_S)


def test_a_plain_name_goes_under_the_task_attempts_temp_folder(target_executor):
    folder = target_executor.submit(folder_of_task).result(timeout=WAIT_S)
    job = target_executor.last_job
    assert folder == location_of(target_executor.storage.spec(), f"{job.prefix}/objects/000000.1/")


# ---- what a reference checks -------------------------------------------------------------------
def test_a_value_copied_over_another_is_refused(target_executor):
    (_, first), (_, second) = target_executor.map(store_both, [5, 6])
    store = open_cached(first.storage)
    store.put(first.key, store.get(second.key))  # validly signed, but for another task and key
    with pytest.raises(IntegrityError, match="for another place"):
        first.get()


def test_replaced_bytes_are_refused_by_get_and_by_the_stream(target_executor):
    ref, _ = target_executor.submit(store_both, 7).result(timeout=WAIT_S)
    open_cached(ref.storage).put(ref.key, b"\x08" * 1000)  # same size, other bytes
    with pytest.raises(IntegrityError, match="digest"):
        ref.get()
    with pytest.raises(IntegrityError, match="digest"), ref.open() as stream:
        stream.read()


# ---- where objects live, and how long ----------------------------------------------------------
def test_temp_objects_go_at_shutdown_and_urls_stay(executor_factory):
    executor = executor_factory()
    url = keep_url(executor, "kept.bin")
    temp_ref, _ = executor.submit(store_both, 2).result(timeout=WAIT_S)
    kept = executor.submit(put_at, url, b"kept").result(timeout=WAIT_S)
    value = executor.submit(put_value_at, keep_url(executor, "kept.pickle"), [1, 2, 3]).result(timeout=WAIT_S)
    assert not kept.temporary and kept.url == url
    assert executor.submit(read_url, url).result(timeout=WAIT_S) == b"kept"
    executor.shutdown(wait=True)
    with pytest.raises(ObjectNotFound, match="deleted when it shuts down"):
        temp_ref.get()
    assert kept.get() == b"kept"
    assert value.get() == [1, 2, 3]  # its executor is gone; its key is still trusted here


def test_a_url_of_another_kind_of_storage_is_refused(target_executor):
    other = "file:///tmp/x.bin" if target_executor.storage.kind == "s3" else "s3://some-bucket/x.bin"
    with pytest.raises(ConfigurationError, match="URLs"):
        target_executor.submit(put_at, other, b"x").result(timeout=WAIT_S)


def test_names_that_escape_the_task_folder_are_refused(target_executor):
    for name in ("../x", "/abs", "a//b", ""):
        with pytest.raises(ConfigurationError, match="name"):
            target_executor.submit(put_at, name, b"x").result(timeout=WAIT_S)
    with pytest.raises(ConfigurationError, match="encode"):
        target_executor.submit(put_at, "text.txt", "not bytes").result(timeout=WAIT_S)


# ---- AWS: the role writes its grants, and the driver checks references before launch ------------
@pytest.mark.parametrize("target", AWS_ONLY, indirect=True, ids=str)  # local runtimes reach what the driver reaches
def test_on_aws_a_write_outside_the_grants_fails_naming_the_deploy_command(target, target_executor):
    url = f"s3://{target_executor.storage.bucket}/ungranted-{uuid.uuid4().hex[:8]}/x.bin"
    with pytest.raises(StoragePermissionError, match=r"lambdamr deploy --write s3://.*/ungranted-"):
        target_executor.submit(put_at, url, b"x").result(timeout=WAIT_S)
    assert not list(open_cached(target_executor.storage.spec()).list(url.split("/", 3)[3]))


@pytest.mark.parametrize("target", AWS_ONLY, indirect=True, ids=str)  # only the AWS backend checks grants
def test_on_aws_a_reference_outside_the_read_grants_is_refused_before_launch(target, target_executor):
    spec = target_executor.storage.spec()
    outside = ObjectRef(spec, "ungranted/x.bin", 1, "b3:" + "0" * 32)
    launched = len(target_executor.jobs)
    with pytest.raises(ConfigurationError, match="may not read"):
        target_executor.submit(read_both, outside, None)
    assert len(target_executor.jobs) == launched


# ---- outside a task ----------------------------------------------------------------------------
def test_outside_a_task_task_storage_says_where_it_works():
    with pytest.raises(NotInTaskError, match="only inside a running lambdamr task"):
        task_storage()
    assert issubclass(NotInTaskError, RuntimeError)


def test_the_handle_is_bound_for_the_task_only_and_writes_its_attempts_folder(tmp_path):
    from lambdamr.data.task_storage import bound_to
    from lambdamr.protocol import TaskEvent
    from lambdamr.signing import Signer, process_key

    spec = {"kind": "local", "root": str(tmp_path / "store")}
    event = TaskEvent(
        job_id="20261201-000000-abcdef-0003", task_id=4, attempt=2, storage=spec, function_key="p/s/fn/x",
        result_key="p/20261201-000000-abcdef/0003/results/000004.2", timeout_s=30.0, memory_mb=256,
    )
    with bound_to(event, open_cached(spec), Signer(process_key())):
        store = task_storage()
        assert task_storage() is store  # one handle per task
        ref = store.put("a/b.bin", b"bytes")
        value = store.put_value(("a", 1))
        assert store.put_value(None).key != value.key  # each unnamed value gets a name of its own
    assert ref.key == "p/20261201-000000-abcdef/0003/objects/000004.2/a/b.bin"
    assert (value.session, value.job, value.task, value.attempt) == ("20261201-000000-abcdef", event.job_id, 4, 2)
    assert ref.get() == b"bytes" and value.get() == ("a", 1)
    with pytest.raises(NotInTaskError):
        task_storage()  # the task is over


def test_a_value_signed_with_a_key_no_executor_here_holds_is_refused(tmp_path):
    import os

    from lambdamr.data.refs import task_value_context
    from lambdamr.signing import Signer

    spec = {"kind": "local", "root": str(tmp_path / "store")}
    stranger = Signer(os.urandom(32))
    context = task_value_context("s", "s-0001", 0, 1, "v.pickle")
    open_cached(spec).put("v.pickle", stranger.sign(b"\x80\x05N.", context))
    value = ValueRef(spec, "v.pickle", 0, "s", "s-0001", 0, 1, stranger.key_id)
    with pytest.raises(IntegrityError, match="no executor of this process holds"):
        value.get()
