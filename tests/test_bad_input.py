"""A user's mistake is refused before anything is launched, with a message that says what to
fix (more cases live beside the feature they guard: test_config, test_remote_errors,
test_storage, test_protocol, tests/aws)."""

from __future__ import annotations

import threading

import pytest

from lambdamr import ConfigurationError, LambdaExecutor, PayloadTooLargeError, SerializationError, StoragePermissionError

LOCK = threading.Lock()


def uses_global_lock(x):
    with LOCK:
        return x


def identity(x=None, **kwargs):
    return x


@pytest.fixture
def ex(tmp_path):
    with LambdaExecutor(storage=str(tmp_path), workers=1, progress=False) as executor:
        yield executor


@pytest.mark.parametrize(
    "call, error, fragment",
    [
        (lambda ex: ex.map("not a function", [1]), TypeError, "must be callable"),
        (lambda ex: ex.submit(uses_global_lock, 1), SerializationError, r"global 'LOCK' is a _thread.lock"),
        (lambda ex: ex.submit(identity, 1, conn=threading.Lock()), SerializationError, r"\[1\] -> \['conn'\]"),
        (lambda ex: ex.map(identity), ConfigurationError, "at least one iterable"),
        (lambda ex: ex.with_options(retry_on=(ValueError, "oops")), ConfigurationError, "tuple of exception classes"),
        (lambda ex: ex.with_options(retries=-2), ConfigurationError, "use 0 to disable retries"),
        (lambda ex: ex.share(threading.Lock()), SerializationError, "shared object"),
        (lambda ex: ex.map(identity, [1], memory_mb=True), ConfigurationError, "whole number of MB"),
        (lambda ex: ex.map(identity, [1], timeout_s="60"), ConfigurationError, "number of seconds"),
        (lambda ex: ex.map(identity, [1], chunksize=2.5), ConfigurationError, "chunksize"),
    ],
    ids=[
        "non-callable map", "unpicklable global", "unpicklable kwarg", "no iterables", "retry_on not exceptions",
        "negative retries", "unpicklable shared object", "bool memory", "string timeout", "float chunksize",
    ],
)
def test_bad_call_is_refused_before_launch(ex, call, error, fragment):
    with pytest.raises(error, match=fragment):
        call(ex)
    assert ex.jobs == []
    assert not ex._started


def test_arguments_larger_than_storage_can_take(ex, monkeypatch):
    import lambdamr.staging as staging

    monkeypatch.setattr(staging, "MAX_OBJECT_BYTES", 1024 * 1024)
    with pytest.raises(PayloadTooLargeError, match="more than one storage object can hold"):
        ex.map(len, [b"x" * 700_000, b"y" * 700_000])
    assert ex.jobs == []


def test_remote_backend_refuses_a_local_folder(tmp_path):
    with pytest.raises(ConfigurationError, match="cannot read a local folder.*s3://"):
        LambdaExecutor(backend="aws", storage=str(tmp_path))


def test_missing_aws_credentials_say_how_to_configure_them(monkeypatch, tmp_path, moto_endpoint):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    from lambdamr.storage.s3 import S3Storage

    store = S3Storage("some-bucket", endpoint_url=moto_endpoint, region="us-east-1")
    with pytest.raises(StoragePermissionError, match="no AWS credentials found.*aws configure"):
        store.put("k", b"x")
