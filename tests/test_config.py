"""Configuration: keyword arguments over LAMBDAMR_* environment variables over defaults."""

from __future__ import annotations

import pytest

from lambdamr import ConfigurationError, ExecutorConfig, LambdaExecutor


def test_defaults_run_locally_without_anything_configured():
    config = ExecutorConfig.resolve()
    assert config.backend == "local" and config.storage == "" and config.memory_mb == 1024
    assert config.storage_url.endswith("lambdamr/storage")


def test_environment_then_keywords(monkeypatch):
    monkeypatch.setenv("LAMBDAMR_MEMORY_MB", "2048")
    monkeypatch.setenv("LAMBDAMR_KEEP_TEMP", "yes")
    monkeypatch.setenv("LAMBDAMR_WORKERS", "3")
    config = ExecutorConfig.resolve(workers=5)
    assert config.memory_mb == 2048 and config.keep_temp is True and config.workers == 5


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
        ExecutorConfig.resolve(**options)


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
