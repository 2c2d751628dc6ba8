"""``extra_env``: per-job environment variables, checked before launch, carried in the event
(and once per job on the local wire), set around each task and restored after it — and never
shown in a repr or a message."""

from __future__ import annotations

import os

import pytest

from lambdamr.config import ExecutorConfig, JobOptions
from lambdamr.errors import ConfigurationError, ProtocolError
from lambdamr.protocol import EXTRA_ENV_MAX_BYTES, ExtraEnv, TaskEvent, check_extra_env
from lambdamr.runtime.environment import extra_environment

SECRET = "s3cr3t-value-never-shown"
WAIT_S = 120


def event(**fields) -> TaskEvent:
    base = dict(
        job_id="20261201-000000-abcdef-0007", task_id=3, attempt=1,
        storage={"kind": "local", "root": "/nowhere"}, function_key="p/s/fn/abc",
        result_key="p/s/0007/results/000003.1", timeout_s=30.0, memory_mb=512, args_raw=b"calls",
    )
    base.update(fields)
    return TaskEvent(**base)


# ---- the check -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"LAMBDAMR_SIGNING_KEY": "00"}, "LAMBDAMR_SIGNING_KEY is reserved"),
        ({"lambdamr_grants": "{}"}, "lambdamr_grants is reserved"),
        ({"AWS_SECRET_ACCESS_KEY": "x"}, "AWS_SECRET_ACCESS_KEY is reserved"),
        ({"AWS_REGION": "eu-west-1"}, "AWS_REGION is reserved"),
        ({"LAMBDA_TASK_ROOT": "/x"}, "reserved"),
        ({"_HANDLER": "x"}, "_HANDLER is reserved"),
        ({"1ABC": "x"}, "not an environment variable name"),
        ({"A=B": "x"}, "not an environment variable name"),
        ({"": "x"}, "not an environment variable name"),
        ({"N": 1}, "the value of N is a int"),
        ({"N": "a\x00b"}, "NUL"),
        ({"BIG": "x" * EXTRA_ENV_MAX_BYTES}, "more than"),
        ([("A", "1")], "give a dict"),
    ],
)
def test_what_extra_env_refuses(env, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        check_extra_env(env)


def test_values_never_show_in_reprs_or_messages():
    env = check_extra_env({"TOKEN": SECRET, "MODE": "fast"})
    assert env == {"TOKEN": SECRET, "MODE": "fast"} and isinstance(env, ExtraEnv)
    for shown in (repr(env), repr(JobOptions(extra_env=env)), repr(event(extra_env=env)),
                  repr(ExecutorConfig.resolve(extra_env={"TOKEN": SECRET}))):
        assert "TOKEN" in shown and SECRET not in shown
    with pytest.raises(ConfigurationError) as refused:
        ExecutorConfig.resolve(extra_env={"AWS_SESSION_TOKEN": SECRET})
    assert SECRET not in str(refused.value)


def test_a_jobs_extra_env_adds_to_the_executors():
    config = ExecutorConfig.resolve(extra_env={"A": "executor", "B": "executor"})
    settings = JobOptions(extra_env={"B": "job", "C": "job"}).resolve(config)
    assert settings.extra_env == {"A": "executor", "B": "job", "C": "job"}
    assert JobOptions().resolve(config).extra_env == {"A": "executor", "B": "executor"}


# ---- the event and the local wire ------------------------------------------------------------
def test_the_event_carries_it_and_the_runtime_checks_it_again():
    sent = event(extra_env=check_extra_env({"MODE": "fast"}))
    received = TaskEvent.from_dict(sent.to_dict())
    assert received.extra_env == {"MODE": "fast"}
    assert "extra_env" not in event().to_dict()  # nothing for a job without
    forged = {**sent.to_dict(), "extra_env": {"LAMBDAMR_SIGNING_KEY": "00" * 32}}
    with pytest.raises(ProtocolError, match="LAMBDAMR_SIGNING_KEY is reserved"):
        TaskEvent.from_dict(forged)


# ---- set around the task, restored after -----------------------------------------------------
def test_the_environment_is_restored_after_the_task(monkeypatch):
    monkeypatch.setenv("KEPT", "before")
    monkeypatch.delenv("ADDED", raising=False)
    with pytest.raises(RuntimeError), extra_environment({"KEPT": "during", "ADDED": "during"}):
        assert os.environ["KEPT"] == os.environ["ADDED"] == "during"
        raise RuntimeError("the task failed")
    assert os.environ["KEPT"] == "before"
    assert "ADDED" not in os.environ


# ---- on every target -------------------------------------------------------------------------
def read_env(_: object = None) -> tuple[str | None, str | None]:
    return os.environ.get("LMR_TEST_MODE"), os.environ.get("LMR_TEST_LEVEL")


def test_tasks_see_their_jobs_variables_and_the_next_job_does_not(target, executor_factory):
    executor = executor_factory(extra_env={"LMR_TEST_LEVEL": "3"})
    if target.backend == "inline":
        with pytest.raises(ConfigurationError, match="processes of their own"):
            executor.map(read_env, range(2), extra_env={"LMR_TEST_MODE": "fast"})
        assert executor.jobs == []  # refused before anything launched
        return
    assert list(executor.map(read_env, range(4), extra_env={"LMR_TEST_MODE": "fast"})) == [("fast", "3")] * 4
    # the same warm workers or containers run the next job: the job's variable is gone
    assert list(executor.map(read_env, range(4))) == [(None, "3")] * 4
    view = executor.with_options(extra_env={"LMR_TEST_MODE": "view"})
    assert view.submit(read_env).result(timeout=WAIT_S) == ("view", "3")
    assert list(view.map(read_env, range(2), extra_env={"LMR_TEST_LEVEL": "9"})) == [("view", "9")] * 2
