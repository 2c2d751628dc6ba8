"""`lambdamr clean` deletes what dead drivers left and spares every live driver's objects."""

from __future__ import annotations

import os
import time

import pytest

from lambdamr import LambdaExecutor
from lambdamr.cli import main
from lambdamr.deploy.bucket import clean_keys
from lambdamr.driver.lease import LEASE_NAME, LEASE_TTL_S, clean_storage, keys_to_clean
from lambdamr.storage.local import LocalStorage

NOW = 1_000_000.0
OLD = NOW - LEASE_TTL_S - 1


@pytest.mark.parametrize(
    "entries, older_than_s, deleted",
    [
        ([("p/live/fn/x", OLD), (f"p/live/{LEASE_NAME}", NOW - 5)], 0, []),
        ([("p/dead/fn/x", OLD), (f"p/dead/{LEASE_NAME}", OLD)], 0, ["p/dead/fn/x", f"p/dead/{LEASE_NAME}"]),
        ([("p/unleased/fn/x", NOW - 1)], 0, ["p/unleased/fn/x"]),
        ([("p/unleased/fn/x", NOW - 1), ("p/unleased/fn/y", NOW - 7200)], 3600, ["p/unleased/fn/y"]),
        ([("p/stray", OLD)], 0, ["p/stray"]),  # not in a session folder
        (
            [("p/a/0001/args", NOW - 9), (f"p/a/{LEASE_NAME}", NOW - 1), ("p/b/0001/args", NOW - 9)],
            0,
            ["p/b/0001/args"],
        ),
    ],
    ids=["fresh lease", "stale lease", "no lease", "older than", "outside a session", "two sessions"],
)
def test_only_sessions_without_a_fresh_lease_are_cleaned(entries, older_than_s, deleted):
    assert sorted(keys_to_clean(entries, "p/", older_than_s=older_than_s, now=NOW)) == sorted(deleted)


def test_the_lease_sorts_after_every_other_key_of_its_session():
    for other in ("0001/args", "9999/results/000001.1", "fn/abc", "shared/x", "shuffle/mr-1/ab/m00001.1-ff"):
        assert f"p/s/{other}" < f"p/s/{LEASE_NAME}"


def wait_on_fifo(path, x):
    with open(path, "rb") as fh:  # blocks until the test opens the FIFO for writing
        fh.read()
    return x


def clean_now(storage_kind, storage_options, request):
    """`lambdamr clean`'s deletion, against the store under test."""
    if storage_kind == "folder":
        return clean_storage(LocalStorage(storage_options["storage"]), "lambdamr")
    import boto3

    s3 = boto3.client("s3", endpoint_url=request.getfixturevalue("moto_endpoint"), region_name="us-east-1")
    return clean_keys(s3, request.getfixturevalue("s3_bucket"), "runs/lambdamr/")


def test_clean_during_a_job_spares_its_objects(tmp_path, storage_kind, storage_options, request):
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    # inline_args_max=0: every task reads its arguments from storage when it starts.
    with LambdaExecutor(workers=1, inline_args_max=0, progress=False, **storage_options) as ex:
        results = ex.map(wait_on_fifo, [str(fifo)] + [os.devnull] * 7, range(8))
        with open(fifo, "wb"):  # opens once task 0 is running (reading the FIFO)
            assert clean_now(storage_kind, storage_options, request) == 0
        assert list(results) == list(range(8))
        assert ex.last_job.summary().retries == 0


def test_clean_deletes_what_a_dead_driver_left(tmp_path):
    store_path = tmp_path / "store"
    with LambdaExecutor(storage=str(store_path), workers=1, keep_temp=True, progress=False) as ex:
        assert ex.submit(abs, -1).result(timeout=60) == 1
        session = ex.session_prefix
    store = LocalStorage(store_path)
    left = [info.key for info in store.list(session + "/")]
    assert f"{session}/{LEASE_NAME}" in left and len(left) > 1
    assert clean_storage(store, "lambdamr") == 0  # its lease is still fresh: it might be alive
    old = time.time() - LEASE_TTL_S - 1
    for key in left:
        os.utime(store.root / key, (old, old))  # as if LEASE_TTL_S had passed without a refresh
    assert clean_storage(store, "lambdamr") == len(left)
    assert list(store.list("lambdamr/")) == []
    # The job's history record, beside the temp prefix, is kept (docs/observability.md).
    assert [info.key for info in store.list("lambdamr-history/")] == [f"lambdamr-history/{ex.last_job.job_id}.json"]


def test_clean_command_cleans_a_local_folder_without_aws(tmp_path, capsys):
    store = LocalStorage(tmp_path / "store")
    old = time.time() - LEASE_TTL_S - 1
    for key in ("lambdamr/dead/fn/x", f"lambdamr/dead/{LEASE_NAME}", "lambdamr/live/fn/x", f"lambdamr/live/{LEASE_NAME}"):
        store.put(key, b"x")
    for key in ("lambdamr/dead/fn/x", f"lambdamr/dead/{LEASE_NAME}", "lambdamr/live/fn/x"):
        os.utime(store.root / key, (old, old))
    assert main(["clean", "--storage", str(store.root), "--yes"]) == 0
    assert "deleted 2 temp objects" in capsys.readouterr().out
    assert sorted(i.key for i in store.list("lambdamr/")) == ["lambdamr/live/fn/x", f"lambdamr/live/{LEASE_NAME}"]
