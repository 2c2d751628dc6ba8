"""The job history: it outlives the executor, turns ``abandoned`` when its driver dies, is
bounded, and feeds ``lambdamr jobs`` / ``logs`` / ``clean``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lambdamr.cli import main as cli_main
from lambdamr.cost import estimate_job_cost
from lambdamr.driver.history import HistoryListing, HistoryPolicy, keys_to_prune, list_history_folder, record_key
from lambdamr.driver.history_reader import list_history, read_record, record_state
from lambdamr.driver.lease import LEASE_NAME
from lambdamr.errors import ConfigurationError, ObjectNotFound

REPO = Path(__file__).resolve().parents[2]


def noisy_failure(x):
    for line in range(30):
        print(f"line {line} of task {x}")
    if x == 1:
        raise ValueError(f"bad item {x}")
    return x


def _cli(storage_options: dict, *args: str) -> list[str]:
    extra = ["--storage", storage_options["storage"]]
    if "endpoint_url" in storage_options:
        extra += ["--endpoint-url", storage_options["endpoint_url"], "--region", "us-east-1"]
    return [*args, *extra]


def _until(predicate, timeout: float = 60.0):
    """Poll ``predicate`` until it returns something true (a background write to land)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {predicate}")
        time.sleep(0.05)


def test_an_ordinary_job_stays_in_the_history_after_shutdown(make_executor, storage_options, capsys):
    ex = make_executor()
    with pytest.raises(ValueError):
        list(ex.map(noisy_failure, range(3)))
    job_id = ex.last_job.job_id
    ex.shutdown()
    assert list(ex.storage.list(ex.session_prefix + "/")) == []  # the temp objects went

    record = read_record(ex.storage, ex.key_prefix, job_id, ex.signer)
    assert record["state"] == "failed" and record["function"].endswith("noisy_failure")
    assert record["counts"] == {"pending": 0, "running": 0, "ok": 2, "failed": 1, "cancelled": 0}
    assert record["summary"]["cost_usd"] > 0 and "wall" in record["summary"]["text"]
    assert [row["state"] for row in record["task_rows"]] == ["ok", "failed", "ok"]
    failure = record["failures"][0]
    assert failure["task_id"] == 1 and failure["error"] == "ValueError: bad item 1"
    assert 'raise ValueError(f"bad item {x}")' in failure["traceback"]
    assert failure["log_tail"].endswith("line 29 of task 1")

    capsys.readouterr()
    assert cli_main(_cli(storage_options, "jobs")) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(job_id))
    assert " failed " in row and row.endswith("noisy_failure")
    assert cli_main(_cli(storage_options, "logs", job_id, "1", "--tail", "2")) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["=== task 1 (attempt 1, " + out[0].split("(attempt 1, ", 1)[1], "line 28 of task 1", "line 29 of task 1"]
    assert out[0].endswith("): ValueError: bad item 1 ===")


DRIVER = textwrap.dedent(
    """
    import os, sys, time
    from lambdamr import LambdaExecutor

    def work(i):
        if i >= 4 and not os.environ.get("RERUN_FAST"):
            time.sleep(120)  # still running when the driver dies
        return i

    ex = LambdaExecutor(storage=sys.argv[1], workers=2, progress=False, durable=True)
    results = ex.map(work, range(8))
    print(results.job.job_id, flush=True)
    for value in results:
        print(value, flush=True)
    """
)


def test_a_killed_driver_leaves_an_abandoned_job_and_clean_removes_its_session(tmp_path, capsys):

    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(REPO), "LAMBDAMR_HISTORY_HEARTBEAT_S": "0.1"}
    driver = subprocess.Popen([sys.executable, str(script), str(store)], stdout=subprocess.PIPE, text=True, env=env)
    job_id = driver.stdout.readline().strip()
    assert [driver.stdout.readline().strip() for _ in range(4)] == ["0", "1", "2", "3"]

    def listed_state():
        assert cli_main(["jobs", "--json", "--storage", str(store)]) == 0
        return {doc["job_id"]: doc["state"] for doc in json.loads(capsys.readouterr().out)}.get(job_id)

    _until(lambda: listed_state() == "running")
    driver.kill()  # SIGKILL: no shutdown, no last record
    driver.wait()
    _until(lambda: listed_state() == "abandoned", timeout=30)  # 10 missed heartbeats of 0.1 s

    # clean: the dead driver's lease lapses (its file ages past the TTL); the history stays
    session = job_id.rsplit("-", 1)[0]
    lease = store / "lambdamr" / session / LEASE_NAME
    old = time.time() - 3600
    os.utime(lease, (old, old))
    assert cli_main(["clean", "--storage", str(store), "--yes"]) == 0
    assert "deleted" in capsys.readouterr().out
    assert not (store / "lambdamr" / session).exists()
    assert (store / record_key("lambdamr", job_id)).exists()
    assert listed_state() == "abandoned"


def test_attach_prices_the_invocations_it_made_not_its_attempt_numbers(tmp_path, monkeypatch):
    from lambdamr import LambdaExecutor

    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    driver = subprocess.Popen([sys.executable, str(script), str(store)], stdout=subprocess.PIPE, text=True, env=env)
    job_id = driver.stdout.readline().strip()
    assert [driver.stdout.readline().strip() for _ in range(4)] == ["0", "1", "2", "3"]
    driver.kill()
    driver.wait()

    monkeypatch.setenv("RERUN_FAST", "1")
    with LambdaExecutor(storage=str(store), workers=2, progress=False) as ex:
        job = ex.attach(job_id)
        assert [f.result(timeout=60) for f in job.futures] == list(range(8))
        assert min(t.attempt for t in job.tasks[4:]) > 1000
        job.wait(30)
        cost = job.summary().cost
        assert cost.requests_usd == pytest.approx(estimate_job_cost([], 1024, invocations=8).requests_usd)
    record = read_record(ex.storage, "lambdamr", job_id, ex.signer)
    assert record["state"] == "done" and [row["attempts"] for row in record["task_rows"]] == [1] * 8


def test_the_history_keeps_the_newest_jobs_and_drops_old_ones():
    day = 86400.0
    now = 100 * day
    # job ids begin with their session's time: 000004 is the newest job
    entries = [
        (f"20261201-00000{i}-abcdef-0001", f"p-history/20261201-00000{i}-abcdef-0001.json", now - (4 - i) * day)
        for i in range(5)
    ][::-1]
    listing = HistoryListing("p-history", entries, {"20261201-000004-abcdef": now - 60, "20261101-000000-abcdef": 0.0})
    doomed = keys_to_prune(listing, HistoryPolicy(max_jobs=3, max_age_days=30), now=now)
    assert doomed == [
        "p-history/20261201-000001-abcdef-0001.json", "p-history/20261201-000001-abcdef-0001.logs.json",
        "p-history/20261201-000000-abcdef-0001.json", "p-history/20261201-000000-abcdef-0001.logs.json",
        "p-history/20261101-000000-abcdef.driver.json",  # a driver gone for a day; the live one stays
    ]
    by_age = keys_to_prune(listing, HistoryPolicy(max_jobs=10, max_age_days=1.5), now=now)
    assert [key.split("-")[2] for key in by_age[:-1:2]] == ["000002", "000001", "000000"]


def test_an_executor_prunes_the_history_to_its_bound(make_executor, monkeypatch):
    monkeypatch.setenv("LAMBDAMR_HISTORY_MAX_JOBS", "2")
    ex = make_executor()
    ids = [ex.submit(int, i) for i in range(4)]
    assert [f.result(timeout=60) for f in ids] == [0, 1, 2, 3]
    newest = [job.job_id for job in ex.jobs][-2:]
    ex.shutdown()
    listing = list_history_folder(ex.storage, ex.key_prefix)
    assert sorted(job_id for job_id, _, _ in listing.records) == newest
    assert listing.drivers == {}  # a driver that shut down leaves no heartbeat
    assert [r["job_id"] for r in list_history(ex.storage, ex.key_prefix, ex.signer)] == newest[::-1]


def test_history_policy_from_the_environment():
    policy = HistoryPolicy.from_env({"LAMBDAMR_HISTORY_MAX_JOBS": "7", "LAMBDAMR_HISTORY_HEARTBEAT_S": "0.5"})
    assert (policy.max_jobs, policy.heartbeat_s, policy.stale_after_s) == (7, 0.5, 5.0)
    with pytest.raises(ConfigurationError, match="LAMBDAMR_HISTORY_MAX_JOBS='many' is not a number"):
        HistoryPolicy.from_env({"LAMBDAMR_HISTORY_MAX_JOBS": "many"})
    with pytest.raises(ConfigurationError, match="heartbeat_s=0.001"):
        HistoryPolicy(heartbeat_s=0.001)
    running = {"state": "running", "heartbeat": 1000.0, "stale_after_s": 20.0}
    assert record_state(running, now=1010.0) == "running"
    assert record_state(running, now=1021.0) == "abandoned"
    assert record_state(running, now=1021.0, driver_beat=1015.0) == "running"  # the driver still beats
    assert record_state({**running, "state": "done"}, now=5000.0) == "done"


def wait_for_gate(path):
    import os
    import time

    deadline = time.monotonic() + 120
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError("the test never opened the gate")
        time.sleep(0.01)
    return path


def test_a_job_that_does_not_change_is_not_rewritten_while_its_driver_beats(make_executor, tmp_path, monkeypatch):
    monkeypatch.setenv("LAMBDAMR_HISTORY_HEARTBEAT_S", "0.1")
    ex = make_executor()
    gate = tmp_path / "gate"
    # two jobs (other settings: the second submit does not join the first's job), both stuck running
    futures = [ex.submit(wait_for_gate, str(gate)), ex.with_options(timeout_s=299).submit(wait_for_gate, str(gate))]
    job_ids = [job.job_id for job in ex.jobs]
    session = job_ids[0].rsplit("-", 1)[0]

    def beats():
        return list_history_folder(ex.storage, ex.key_prefix).drivers.get(session)

    def records():
        return {job_id: read_record(ex.storage, ex.key_prefix, job_id, ex.signer) for job_id in job_ids}

    def both_running():
        try:
            return beats() and all(r["counts"]["running"] == 1 for r in records().values())
        except ObjectNotFound:  # the first records are still being written
            return False

    _until(both_running)
    settled_beat = beats()
    _until(lambda: beats() > settled_beat + 0.5)  # a record caught up with its job by now, if it had to
    written = {job_id: r["heartbeat"] for job_id, r in records().items()}
    first_beat = beats()
    _until(lambda: beats() > first_beat + 0.5)  # several heartbeats later (the store's mtime)
    now = records()
    assert {job_id: r["heartbeat"] for job_id, r in now.items()} == written  # no rewrite: nothing changed
    assert all(r["state"] == "running" for r in now.values())  # yet not abandoned: the driver beats
    gate.touch()
    assert [f.result(timeout=60) for f in futures] == [str(gate)] * 2
    ex.shutdown()
    assert {r["state"] for r in records().values()} == {"done"}
    assert beats() is None
