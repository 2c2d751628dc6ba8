"""Observability: captured output, timings, summary, timeline plot, manifests and the CLI."""

from __future__ import annotations

import io
import json
import logging
import math
import sys
import threading
import time
import traceback

import numpy as np
import pytest

from lambdamr.cli import main as cli_main
from lambdamr.driver.jobstore import list_jobs
from lambdamr.driver.progress import JobProgress, progress_enabled
from lambdamr.runtime.capture import CapturedText, capture_task_output, log_tail
from tests.gates import until, wait_for


@pytest.fixture(scope="module")
def executor(shared_local_executor):
    """One executor per storage for this module's tests (tests/conftest.py)."""
    return shared_local_executor


def chatty(x):
    print(f"out {x}")
    print(f"err {x}", file=sys.stderr)
    logging.getLogger("user.code").warning("warned %s", x)
    helper = threading.Thread(target=print, args=(f"thread {x}",))
    helper.start()
    helper.join()
    return x


def noisy_failure(x):
    for line in range(30):
        print(f"line {line} of task {x}")
    if x == 1:
        raise ValueError(f"bad item {x}")
    return x


def wait_for_gate(path, limit_s=60.0):
    """Runs until the test creates ``path``: a task that is surely still running while the
    test looks at it, however busy the machine."""
    return wait_for(path, path, limit_s)


def nap(seconds, fail=False):
    time.sleep(seconds)
    if fail:
        raise RuntimeError("failed on purpose")
    return seconds


def flood(chars):
    sys.stdout.write("A" * chars)
    print("THE END")


# ---- capture ------------------------------------------------------------------------------
def test_future_logs_return_prints_stderr_logging_and_thread_output(executor):
    futures = [executor.submit(chatty, i) for i in range(3)]
    for i, future in enumerate(futures):
        assert future.result() == i
        assert future.logs() == f"out {i}\nerr {i}\n[WARNING] user.code: warned {i}\nthread {i}\n"


def test_failed_task_error_ends_with_the_tail_of_its_log(executor):
    future = executor.submit(noisy_failure, 1)
    with pytest.raises(ValueError, match="bad item 1") as info:
        future.result()
    note = info.value.__notes__[-1]
    assert note.endswith("line 29 of task 1")
    assert "line 10 of task 1" in note and "line 9 of task 1\n" not in note  # the last 20 lines
    printed = "".join(traceback.format_exception(info.value))
    assert printed.rstrip().endswith("line 29 of task 1")
    assert future.logs().count("\n") == 30  # the full log stays available


def test_output_past_the_limit_keeps_head_and_tail(executor):
    future = executor.submit(flood, 200_000)
    future.result()
    text = future.logs()
    assert len(text) < 70_000
    assert text.startswith("A" * 1000) and text.endswith("THE END\n")
    assert "characters of output dropped" in text


def test_captured_text_bounds_and_counts_what_it_drops():
    buffer = CapturedText(head=5, tail=5)
    for chunk in ("abc", "defg", "hijkl", "mn"):
        buffer.write(chunk)
    assert buffer.dropped == 4
    assert buffer.text() == "abcde\n... [4 characters of output dropped] ...\njklmn"
    assert log_tail("a\nb\nc\n", lines=2) == "b\nc"


def test_capture_restores_streams_and_logging_and_ignores_other_threads():
    stdout, stderr, handlers = sys.stdout, sys.stderr, list(logging.getLogger().handlers)
    outside: list[str] = []
    in_task = threading.Event()
    release = threading.Event()

    def task() -> None:  # a task on a worker thread, as the inline backend runs them
        with capture_task_output(tee=False) as captured:
            print("inside")
            in_task.set()
            release.wait(5)
        outside.append(captured.text())

    worker = threading.Thread(target=task)
    worker.start()
    assert in_task.wait(5)
    print("from the main thread")  # not the task's output
    release.set()
    worker.join()
    assert outside == ["inside\n"]
    assert (sys.stdout, sys.stderr) == (stdout, stderr)
    assert logging.getLogger().handlers == handlers


def test_tee_also_writes_to_the_real_stream_as_on_lambda(capsys):
    with capture_task_output(tee=True) as captured:
        print("to CloudWatch too")
    with capture_task_output(tee=False) as quiet:
        print("only captured")
    assert captured.text() == "to CloudWatch too\n" and quiet.text() == "only captured\n"
    assert capsys.readouterr().out == "to CloudWatch too\n"


def test_a_record_a_task_handler_already_streams_is_captured_once():
    user_logger = logging.getLogger("user.streams")
    with capture_task_output(tee=False) as captured:
        handler = logging.StreamHandler(sys.stderr)  # what logging.basicConfig() in a task makes
        user_logger.addHandler(handler)
        try:
            user_logger.warning("once")
        finally:
            user_logger.removeHandler(handler)
    assert captured.text() == "once\n"


# ---- timings, summary -----------------------------------------------------------------------
def test_timings_are_present_and_ordered(executor):
    results = executor.map(nap, [0.02] * 6)
    futures = results.job.futures  # held here: the job lets go of a future once its value is consumed
    assert list(results) == [0.02] * 6
    assert len(futures) == 6
    for future in futures:
        t = future.timing()
        order = [t["submitted"], t["dispatched"], t["invoked"], t["started"], t["finished"], t["fetched"], t["completed"]]
        assert order == sorted(order), t
        assert t["finished"] - t["started"] >= 0.02
        assert isinstance(t["cold"], bool) and t["peak_rss_mb"] > 10
        init_ms = t["init_ms"] if t["cold"] else 0  # a cold start bills its INIT phase too
        assert t["billed_ms"] == math.ceil((t["finished"] - t["started"]) * 1000) + init_ms
        assert t["request_id"]


def test_summary_reports_counts_time_parallelism_requests_and_cost(make_executor):
    ex = make_executor(workers=2, reply_inline_max=0)  # each result record goes through storage
    list(ex.map(nap, [0.01] * 2))  # warm both workers
    failing = ex.submit(nap, 0.0, fail=True)
    with pytest.raises(RuntimeError):
        failing.result()
    results = ex.map(nap, [0.2] * 6)
    futures = results.job.futures  # held here: the job lets go of a future once its value is consumed
    assert list(results) == [0.2] * 6
    summary = ex.last_job.summary()
    assert (summary.tasks, summary.calls, summary.succeeded, summary.failed, summary.cancelled) == (6, 6, 6, 0, 0)
    assert (summary.retries, summary.backups, summary.cold_starts) == (0, 0, 0)
    # The tasks' own run times summed (not the wall time, not the time queued): each napped 0.2 s.
    run_times = [f.timing()["finished"] - f.timing()["started"] for f in futures]
    assert min(run_times) >= 0.2
    assert summary.task_seconds == pytest.approx(sum(run_times))
    assert summary.peak_concurrency == 2  # two workers
    assert 0.3 < summary.parallel_efficiency <= 1.0
    assert summary.speedup == pytest.approx(summary.task_seconds / summary.wall_s)
    # Arguments travel in the events; each task PUTs its record, the driver GETs it; a worker
    # that did not run the warm-up GETs the function once.
    requests = summary.storage_requests
    assert (requests["puts"], requests["lists"], requests["deletes"]) == (6, 0, 0) and 6 <= requests["gets"] <= 8
    assert summary.cost.total_usd > 0 and summary.cost.gb_seconds >= 1.2
    text = str(summary)
    assert "6 tasks" in text and "0 backups" in text and "peak concurrency 2" in text and "$" in text
    assert len(text.splitlines()) == 4
    assert (ex.jobs[-2].summary().failed, ex.jobs[-2].summary().succeeded) == (1, 0)


# ---- plot -----------------------------------------------------------------------------------
def test_job_plot_writes_a_timeline_png_that_is_not_blank(executor, tmp_path):
    from matplotlib import image

    results = executor.map(nap, [0.05] * 7 + [0.1], [False] * 7 + [True])
    with pytest.raises(RuntimeError):
        list(results)
    executor.last_job.wait(10)
    path = executor.last_job.plot(tmp_path / "timeline.png")
    pixels = image.imread(path)
    assert pixels.shape == (770, 1100, 4)  # 10 x 7 inches at 110 dpi
    rgb = pixels[..., :3]
    assert rgb.std() > 0.05  # not one flat colour
    run_blue = np.array([0x1F, 0x77, 0xB4]) / 255
    failed_red = np.array([0xD6, 0x27, 0x28]) / 255
    assert (np.abs(rgb - run_blue).max(axis=-1) < 0.02).sum() > 200  # bars of the run phase
    assert (np.abs(rgb - failed_red).max(axis=-1) < 0.02).sum() > 20  # the task that raised


# ---- manifests and the command line --------------------------------------------------------
def _cli(storage_options: dict, *args: str) -> list[str]:
    options = ["--storage", storage_options["storage"]]
    if "endpoint_url" in storage_options:
        options += ["--endpoint-url", storage_options["endpoint_url"], "--region", storage_options["region"]]
    return [*args, *options]


def test_jobs_and_logs_commands_read_a_job_kept_with_keep_temp(make_executor, storage_options, capsys):
    ex = make_executor(keep_temp=True)
    with pytest.raises(ValueError):
        list(ex.map(noisy_failure, range(3)))
    ex.last_job.wait(10)
    job_id = ex.last_job.job_id
    in_driver = ex.last_job.logs()
    assert in_driver.startswith("=== task 0 (attempt 1, ") and in_driver.count("line 29 of task") == 3
    assert ex.last_job.logs(1).endswith("line 29 of task 1\n")
    ex.shutdown()
    capsys.readouterr()

    assert cli_main(_cli(storage_options, "jobs")) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split()[:3] == ["JOB", "STATE", "SUBMITTED"]
    row = next(line for line in listing if line.startswith(job_id))
    assert " failed " in row and row.endswith("noisy_failure")

    assert cli_main(_cli(storage_options, "logs", job_id)) == 0
    out = capsys.readouterr().out
    assert "=== task 0 (attempt 1" in out and "=== task 2 (attempt 1" in out
    assert "): ValueError: bad item 1 ===" in out
    assert out.count("line 29 of task") == 3

    assert cli_main(_cli(storage_options, "logs", job_id, "2", "--tail", "2")) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == ["line 28 of task 2", "line 29 of task 2"]


def test_a_running_job_is_listed_and_its_stored_records_give_its_logs(make_executor, storage_options, capsys, tmp_path):
    ex = make_executor(reply_inline_max=0)  # every result record goes to storage
    assert list(ex.map(chatty, range(2))) == [0, 1]
    done_id = ex.last_job.job_id
    gate = tmp_path / "gate"
    slow = ex.submit(wait_for_gate, str(gate))  # runs until the listing below has been read
    until(lambda: len(list_jobs(ex.storage, ex.session_prefix)) == 2, timeout=60)  # manifests are written in the background

    assert cli_main(_cli(storage_options, "jobs", "--json")) == 0
    states = {doc["job_id"]: doc["state"] for doc in json.loads(capsys.readouterr().out)}
    assert states[slow.job_id] == "running" and states[done_id] == "done"
    assert cli_main(_cli(storage_options, "logs", done_id, "1")) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["out 1", "err 1", "[WARNING] user.code: warned 1", "thread 1"]
    gate.touch()
    assert slow.result(timeout=60) == str(gate)


def test_manifests_go_away_with_the_temp_objects(make_executor):
    ex = make_executor()
    list(ex.map(nap, [0.0] * 2))
    until(lambda: [doc["state"] for doc in list_jobs(ex.storage, ex.session_prefix)] == ["done"])
    ex.shutdown()
    assert list_jobs(ex.storage, ex.session_prefix) == []


# ---- progress -------------------------------------------------------------------------------
def test_progress_bar_shows_done_running_and_failed(make_executor):
    ex = make_executor(workers=2)
    results = ex.map(nap, [0.15] * 6, [False] * 5 + [True])
    stream = io.StringIO()
    bar = JobProgress(results.job, "nap", delay=0.0, file=stream)
    results.job.wait(10)
    bar._thread.join(5)
    text = stream.getvalue()
    assert "running=" in text and "failed=1" in text and "6/6" in text


def test_progress_is_silent_when_not_a_terminal_unless_asked(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert progress_enabled(None) is False
    assert progress_enabled(True) is True
