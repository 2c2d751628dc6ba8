"""Configuration: keyword arguments over LAMBDAMR_* environment variables over defaults."""

from __future__ import annotations

import pytest

from lambdamr import ConfigurationError, ExecutorConfig, LambdaExecutor
from lambdamr.backends import executor_config
from lambdamr.backends.local_options import LocalOptions


@pytest.fixture(autouse=True)
def _users_environment(monkeypatch):
    """The environment as a user's: without the suite's own buffer folder (tests/conftest.py)."""
    monkeypatch.delenv("LAMBDAMR_BUFFER_FOLDER", raising=False)


def test_defaults_run_locally_without_anything_configured():
    config = ExecutorConfig.resolve()
    assert config.backend == "local" and config.storage == "" and config.memory_mb == 1024
    assert config.storage_url.endswith("lambdamr/storage")


def test_environment_then_keywords(monkeypatch):
    monkeypatch.setenv("LAMBDAMR_MEMORY_MB", "2048")
    monkeypatch.setenv("LAMBDAMR_KEEP_TEMP", "yes")
    monkeypatch.setenv("LAMBDAMR_WORKERS", "3")
    config = executor_config(workers=5)
    assert config.memory_mb == 2048 and config.keep_temp is True and config.backend_options == LocalOptions(workers=5)


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"memory_mb": 64}, "128 to 10240 MB"),
        ({"memory_mb": 20_000}, "128 to 10240 MB"),
        ({"memory_mb": 1.5}, "whole number"),
        ({"timeout_s": 0}, "1 to 900 seconds"),
        ({"timeout_s": 901}, "1 to 900 seconds"),
        ({"workers": 0}, "at least 1 worker"),
        ({"retries": -1}, "retries"),
        ({"prefix": "/abs"}, "relative key prefix"),
        ({"colour": "red"}, "unknown executor option"),
    ],
)
def test_bad_options_are_refused_with_what_to_fix(options, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        executor_config(**options)


def test_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("LAMBDAMR_MEMORY_MB", "lots")
    with pytest.raises(ConfigurationError, match="LAMBDAMR_MEMORY_MB='lots'"):
        ExecutorConfig.resolve()


def test_unknown_backend_lists_the_known_ones(tmp_path):
    with pytest.raises(ConfigurationError, match="unknown backend 'gpu'.*local"):
        LambdaExecutor(backend="gpu", storage=str(tmp_path))


def test_per_call_options_are_validated_before_launch(tmp_path):
    with LambdaExecutor(storage=str(tmp_path), workers=1, progress=False) as ex:
        with pytest.raises(ConfigurationError, match="128 to 10240"):
            ex.map(abs, [1], memory_mb=100)
        with pytest.raises(ConfigurationError, match="1 to 900"):
            ex.with_options(timeout_s=1000)
        with pytest.raises(ConfigurationError, match="chunksize"):
            ex.map(abs, [1], chunksize=0)
        with pytest.raises(TypeError, match="callable"):
            ex.submit(42)
        assert ex.jobs == []


# ---- backend options: each keyword goes to the backend that takes it -------------------------
def test_a_backends_keyword_goes_to_its_options_and_shared_ones_stay_shared(monkeypatch):
    from lambdamr.backends.aws.options import AwsOptions

    monkeypatch.setenv("LAMBDAMR_FUNCTION_NAME", "from-env")
    config = executor_config(backend="aws", max_concurrency=8, memory_mb=2048)
    assert config.memory_mb == 2048 and "max_concurrency" not in ExecutorConfig.setting_names()
    assert config.backend_options == AwsOptions(function_name="from-env", max_concurrency=8)
    assert AwsOptions.of(config) is config.backend_options


def test_a_keyword_of_another_backend_is_refused_naming_the_backend_that_takes_it(tmp_path):
    with pytest.raises(ConfigurationError) as caught:
        LambdaExecutor(backend="aws", workers=4, storage="s3://never-opened")
    message = str(caught.value)
    assert message.startswith("workers= is an option of the local and inline backends; the aws backend takes: ")
    assert "function_name, invocation_type, max_concurrency, lambda_endpoint_url" in message
    with pytest.raises(ConfigurationError, match="function_name= is an option of the aws backend; the local backend takes: work"):
        LambdaExecutor(function_name="f", storage=str(tmp_path))
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_another_backends_environment_variable_is_not_read(monkeypatch):
    monkeypatch.setenv("LAMBDAMR_MAX_CONCURRENCY", "0")  # the aws backend's, and out of its range
    assert executor_config(backend="local").backend_options == LocalOptions()
    with pytest.raises(ConfigurationError, match="LAMBDAMR_MAX_CONCURRENCY='0'"):
        executor_config(backend="aws")


def test_options_of_a_config_made_for_another_backend_are_the_backends_defaults(monkeypatch):
    from lambdamr.backends.inline import InlineOptions

    monkeypatch.setenv("LAMBDAMR_WORKERS", "3")
    config = executor_config(backend="local")
    assert InlineOptions.of(config) == InlineOptions(workers=3)
    assert LocalOptions.of(ExecutorConfig()) == LocalOptions(workers=3)


def test_backend_options_given_whole_are_kept_and_checked():
    from lambdamr.backends.aws.options import AwsOptions

    options = AwsOptions(function_name="mine")
    assert executor_config(backend="aws", backend_options=options, invocation_type="RequestResponse").backend_options == (
        AwsOptions(function_name="mine", invocation_type="RequestResponse")
    )
    refused = r"backend_options=AwsOptions\(...\) belongs to another backend; the local backend takes LocalOptions"
    with pytest.raises(ConfigurationError, match=refused):
        executor_config(backend_options=options)
    with pytest.raises(ConfigurationError, match="invocation_type='Sync': use 'Event'"):
        AwsOptions(invocation_type="Sync")


def test_every_registered_backend_names_its_class_and_options():
    from lambdamr.backends import BACKENDS, backend_class, options_class
    from lambdamr.config import BackendOptions

    for name in BACKENDS:
        assert backend_class(name).name == name
        assert issubclass(options_class(name), BackendOptions)
    shared = set(ExecutorConfig.setting_names())
    assert all(not shared & set(options_class(name).setting_names()) for name in BACKENDS)


def test_the_inline_backend_takes_workers_as_threads(tmp_path):
    with LambdaExecutor(backend="inline", workers=2, storage=str(tmp_path), progress=False) as ex:
        assert ex.backend.capacity == 4 and list(ex.map(abs, [-1, -2])) == [1, 2]
