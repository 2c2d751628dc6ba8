"""The dashboard's server: its JSON API over the job history, read-only, loopback only,
and never the signing key."""

from __future__ import annotations

import http.client
import json

import pytest

from lambdamr.dashboard.reader import stragglers


def noisy_failure(x):
    print(f"printed by task {x}")
    if x == 1:
        raise ValueError(f"bad item {x}")
    return x


def _get(port: int, path: str, *, method: str = "GET", host: str | None = None) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Host": host} if host else {}
    connection.request(method, path, headers=headers)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), body


@pytest.fixture
def finished_job(make_executor):
    ex = make_executor()
    with pytest.raises(ValueError):
        list(ex.map(noisy_failure, range(3)))
    job_id = ex.last_job.job_id
    ex.shutdown()  # the history outlives the executor: the dashboard reads it after
    return ex, job_id


def test_the_api_lists_jobs_and_gives_a_job_and_a_failed_task(finished_job):
    ex, job_id = finished_job
    with ex.dashboard() as board:
        status, headers, body = _get(board.port, "/api/jobs")
        assert status == 200 and headers["Content-Type"] == "application/json"
        listing = json.loads(body)
        job = next(j for j in listing["jobs"] if j["job_id"] == job_id)
        assert (job["state"], job["tasks"], job["done"], job["counts"]["failed"]) == ("failed", 3, 3, 1)
        assert job["cost_usd"] > 0 and job["cold_starts"] >= 1 and job["peak_memory_mb"] > 0

        status, _, body = _get(board.port, f"/api/jobs/{job_id}")
        detail = json.loads(body)
        assert status == 200 and [r["state"] for r in detail["task_rows"]] == ["ok", "failed", "ok"]
        assert all(r["started"] <= r["finished"] <= r["completed"] for r in detail["task_rows"])
        assert detail["failures"][0]["task_id"] == 1 and "lambdamr job" in detail["summary_text"]

        status, _, body = _get(board.port, f"/api/jobs/{job_id}/tasks/1")
        task = json.loads(body)
        assert status == 200 and task["error"] == "ValueError: bad item 1"
        assert 'raise ValueError(f"bad item {x}")' in task["traceback"]
        assert task["logs"] == "printed by task 1\n" and task["logs_complete"]

        assert _get(board.port, "/api/jobs/20990101-000000-000000-0001")[0] == 404
        assert _get(board.port, f"/api/jobs/{job_id}/tasks/7")[0] == 404
        assert _get(board.port, "/etc/passwd")[0] == 404
        status, headers, page = _get(board.port, "/")
        assert status == 200 and b"lambdamr dashboard" in page
        assert "default-src 'self'" in headers["Content-Security-Policy"]


def test_it_is_read_only_answers_only_loopback_names_and_never_sends_the_key(finished_job):
    ex, job_id = finished_job
    key = ex.backend.signing_key()
    with ex.dashboard() as board:
        assert board.url.startswith("http://127.0.0.1:")
        for method in ("POST", "PUT", "DELETE"):
            assert _get(board.port, "/api/jobs", method=method)[0] == 405
        assert _get(board.port, "/api/jobs", host="attacker.example:80")[0] == 403  # DNS rebinding
        assert _get(board.port, "/api/jobs", host=f"localhost:{board.port}")[0] == 200
        bodies = b"".join(
            _get(board.port, path)[2]
            for path in ("/", "/static/app.js", "/api/jobs", f"/api/jobs/{job_id}", f"/api/jobs/{job_id}/tasks/1")
        )
    for form in (key, key.hex().encode(), __import__("base64").b64encode(key)):
        assert form not in bodies


def test_a_port_in_use_is_a_clear_error(finished_job):
    from lambdamr.errors import LambdaMRError

    ex, _ = finished_job
    with ex.dashboard() as board:
        with pytest.raises(LambdaMRError, match=f"cannot listen on 127.0.0.1:{board.port}.*port=0 picks a free one"):
            ex.dashboard(port=board.port)


def test_stragglers_are_running_tasks_well_past_the_median():
    rows = [{"id": i, "state": "ok", "invoked": 0.0, "completed": 1.0} for i in range(4)]
    rows += [
        {"id": 4, "state": "running", "started": None, "invoked": 0.5, "backups": 1},
        {"id": 5, "state": "running", "started": None, "invoked": 4.0},
    ]
    assert stragglers(rows, elapsed_s=5.0) == [{"id": 4, "running_s": 4.5, "backups": 1}]
    assert stragglers(rows[2:], elapsed_s=5.0) == []  # too few finished tasks to tell


def test_the_dashboard_command_serves_the_configured_storage(finished_job, storage_options):
    import os
    import subprocess
    import sys
    from pathlib import Path

    ex, job_id = finished_job
    args = [sys.executable, "-m", "lambdamr", "dashboard", "--port", "0", "--storage", storage_options["storage"]]
    if "endpoint_url" in storage_options:
        args += ["--endpoint-url", storage_options["endpoint_url"], "--region", "us-east-1"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    server = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = server.stdout.readline()
        assert " at http://127.0.0.1:" in line and "(Ctrl-C stops it)" in line, server.stderr.read()
        port = int(line.split("http://127.0.0.1:", 1)[1].split("/", 1)[0])
        status, _, body = _get(port, "/api/jobs")
        assert status == 200 and job_id in {j["job_id"] for j in json.loads(body)["jobs"]}
    finally:
        server.terminate()
        server.wait(timeout=30)
