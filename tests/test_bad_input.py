"""A user's mistake is refused before anything is launched, with a message that says what to
fix (more cases live beside the feature they guard: test_config, test_serialize,
test_storage, test_protocol, tests/backends/aws)."""

from __future__ import annotations

import itertools
import signal
import threading

import numpy as np
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
    assert not ex.session.started


def test_arguments_larger_than_storage_can_take(ex, monkeypatch):
    import lambdamr.driver.staging as staging

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


# ---- options of the wrong type or range: refused before anything starts, naming the option ----
@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"workers": 10**6}, r"workers=1000000: at most \d+ local workers"),
        ({"workers": "4"}, r"workers='4': give at least 1 worker"),
        ({"workers": 2.5}, r"workers=2.5: give at least 1 worker"),
        ({"retries": "3"}, r"retries='3': use 0 to disable retries"),
        ({"retries": 1.5}, r"retries=1.5"),
        ({"backend": "aws", "max_concurrency": 2.5}, r"max_concurrency=2.5: give the most tasks in flight"),
        ({"reply_inline_max": "big"}, r"reply_inline_max='big': give a size in bytes"),
        ({"inline_args_max": -1}, r"inline_args_max=-1: give a size in bytes"),
        ({"poll_interval_s": float("nan")}, r"poll_interval_s=nan: give the polling period in seconds as a finite"),
        ({"poll_interval_s": float("inf")}, r"poll_interval_s=inf"),
        ({"poll_interval_s": 0}, r"poll_interval_s=0: give a polling period above 0"),
        ({"timeout_s": float("nan")}, r"timeout_s=nan: AWS Lambda allows 1 to 900"),
        ({"keep_temp": "false"}, r"keep_temp='false': give True or False"),
        ({"durable": "false"}, r"durable='false': give True, False or None"),
        ({"speculate": "false"}, r"speculate='false': give True or False"),
        ({"verbose": "false"}, r"verbose='false': give True or False"),
        ({"progress": "no"}, r"progress='no': give True, False or None"),
        ({"prefix": "a//b"}, r"prefix='a//b': use a relative key prefix"),
        ({"prefix": "a/../b"}, r"prefix='a/../b'"),
        ({"memory_mb": True}, r"memory_mb=True: give a whole number of MB"),
        ({"storage": "file://relative/sub"}, r"names the host 'relative'.*file:///absolute/path.*'relative/sub'"),
    ],
    ids=lambda v: str(v)[:40] if isinstance(v, dict) else "",
)
def test_bad_option_is_refused_when_the_executor_is_made(tmp_path, options, fragment):
    options = {"storage": str(tmp_path), "progress": False, **options}
    with pytest.raises(ConfigurationError, match=fragment):
        LambdaExecutor(**options)


@pytest.mark.parametrize(
    "value, kept",
    [(np.int64(1024), 1024), (np.int32(2048), 2048), (512, 512)],
    ids=["numpy int64", "numpy int32", "int"],
)
def test_any_integral_memory_is_accepted_as_int(tmp_path, value, kept):
    with LambdaExecutor(storage=str(tmp_path), memory_mb=value, workers=1, progress=False) as ex:
        assert ex.config.memory_mb == kept and type(ex.config.memory_mb) is int
        assert ex.submit(identity, 3).result(timeout=60) == 3


def test_prefix_with_a_trailing_slash_is_the_same_prefix(tmp_path):
    with LambdaExecutor(storage=str(tmp_path), prefix="a/", workers=1, progress=False) as ex:
        assert ex.config.prefix == "a" and ex.session_prefix.startswith("a/") and "//" not in ex.session_prefix


def test_attach_with_a_trailing_slash_prefix_collects_instead_of_rerunning(tmp_path):
    marker = tmp_path / "runs"
    marker.mkdir()
    options = {"storage": str(tmp_path / "store"), "workers": 1, "progress": False, "durable": True}
    with LambdaExecutor(prefix="a", keep_temp=True, **options) as first:
        assert list(first.map(count_run, [1, 2], [str(marker)] * 2)) == [1, 2]
        job_id = first.last_job.job_id
    with LambdaExecutor(prefix="a/", **options) as second:
        job = second.attach(job_id)
        assert [f.result(timeout=60) for f in job.futures] == [1, 2]
    assert len(list(marker.iterdir())) == 2  # each task ran once: attach collected, re-ran nothing


def count_run(x, marker_dir):
    import os
    import uuid

    open(os.path.join(marker_dir, uuid.uuid4().hex), "w").close()
    return x


async def an_async_function(x):
    return x


class AsyncCallable:
    async def __call__(self, x):
        return x


def infinite():
    return itertools.count()


@pytest.mark.parametrize(
    "call, error, fragment",
    [
        (lambda ex: ex.map(identity, [1], timeout="5"), ConfigurationError, r"map\(timeout='5'\)"),
        (lambda ex: ex.map(identity, [1], timeout=float("nan")), ConfigurationError, r"map\(timeout=nan\)"),
        (lambda ex: ex.map(identity, [1], timeout=-1), ConfigurationError, r"map\(timeout=-1\)"),
        (lambda ex: ex.map(identity, [1], chunksize=np.int64(0)), ConfigurationError, "chunksize"),
        (lambda ex: ex.submit(an_async_function, 1), ConfigurationError, r"'an_async_function' is an async def.*asyncio.run"),
        (lambda ex: ex.map(an_async_function, [1]), ConfigurationError, "async def"),
        (lambda ex: ex.submit(AsyncCallable(), 1), ConfigurationError, "async def"),
        (lambda ex: ex.map_reduce(an_async_function, [1], identity), ConfigurationError, r"map_reduce: map_fn.*async def"),
        (lambda ex: ex.map_then_reduce(identity, [1], an_async_function), ConfigurationError, "reduce_fn.*async def"),
        (lambda ex: ex.map_reduce(identity, [1], identity, reducers=10**6), ConfigurationError, r"at most 10,000 reducers"),
        (lambda ex: ex.map_reduce(identity, [1], identity, keep_intermediate="false"), ConfigurationError, "True or False"),
        (lambda ex: ex.with_options(retries="3"), ConfigurationError, r"retries='3'"),
        (lambda ex: ex.with_options(speculate="false"), ConfigurationError, r"speculate='false'"),
        (lambda ex: ex.map_reduce(identity, infinite(), identity), ConfigurationError, r"more than 1,000 items: is it endless"),
        (lambda ex: ex.map(identity, [1], buffersize=0), ConfigurationError, r"buffersize=0.*whole number >= 1"),
        (lambda ex: ex.map(identity, [1], buffersize="8"), ConfigurationError, r"buffersize='8'"),
        (lambda ex: ex.map(identity, [1], buffersize=2.5), ConfigurationError, r"buffersize=2.5"),
        (lambda ex: ex.map(identity, [1], buffersize=True), ConfigurationError, r"buffersize=True"),
        (lambda ex: ex.map(pow, range(3), infinite()), ConfigurationError, r"different lengths \(3, more than 3\)"),
    ],
    ids=[
        "string map timeout", "nan map timeout", "negative map timeout", "numpy zero chunksize", "async submit",
        "async map", "async __call__", "async map_fn", "async reduce_fn", "a million reducers",
        "string keep_intermediate", "string retries", "string speculate", "endless map_reduce input",
        "zero buffersize", "string buffersize", "fractional buffersize", "boolean buffersize", "endless second iterable",
    ],
)
def test_bad_call_of_the_wrong_type_is_refused_before_launch(ex, monkeypatch, call, error, fragment):
    import lambdamr.driver.inputs

    monkeypatch.setattr(lambdamr.driver.inputs, "MAX_MATERIALISED_ITEMS", 1000)
    with pytest.raises(error, match=fragment):
        call(ex)
    assert ex.jobs == []
    assert not ex.session.started


def test_map_reduce_over_an_endless_c_iterator_stops_on_ctrl_c(ex):
    # map streams its input; map_reduce reads it whole before the shuffle starts.
    # list(itertools.count()) never returns to the interpreter; the iteration must, so that
    # Ctrl-C (here SIGALRM's handler raising KeyboardInterrupt, as SIGINT's does) stops it.
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    try:
        with pytest.raises(KeyboardInterrupt):
            ex.map_reduce(identity, itertools.count(), identity)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert ex.jobs == []


@pytest.mark.parametrize(
    "var, raw, fragment",
    [
        ("LAMBDAMR_WORKERS", "0", r"LAMBDAMR_WORKERS='0': give at least 1 worker"),
        ("LAMBDAMR_WORKERS", "2.5", r"LAMBDAMR_WORKERS='2.5': give a whole number"),
        ("LAMBDAMR_RETRIES", "-1", r"LAMBDAMR_RETRIES='-1': use 0 to disable retries"),
        ("LAMBDAMR_TIMEOUT_S", "0", r"LAMBDAMR_TIMEOUT_S='0': AWS Lambda allows 1 to 900"),
        ("LAMBDAMR_TIMEOUT_S", "nan", r"LAMBDAMR_TIMEOUT_S='nan'"),
        ("LAMBDAMR_POLL_INTERVAL_S", "nan", r"LAMBDAMR_POLL_INTERVAL_S='nan': give the polling period"),
        ("LAMBDAMR_MAX_CONCURRENCY", "0", r"LAMBDAMR_MAX_CONCURRENCY='0'"),  # read with LAMBDAMR_BACKEND=aws
        ("LAMBDAMR_KEEP_TEMP", "maybe", r"LAMBDAMR_KEEP_TEMP='maybe': use 1/0"),
        ("LAMBDAMR_PREFIX", "/abs", r"LAMBDAMR_PREFIX='/abs': use a relative key prefix"),
    ],
)
def test_bad_environment_value_is_refused_naming_the_variable(monkeypatch, tmp_path, var, raw, fragment):
    monkeypatch.setenv(var, raw)
    if var == "LAMBDAMR_MAX_CONCURRENCY":  # a backend's own variable is read only when it is chosen
        monkeypatch.setenv("LAMBDAMR_BACKEND", "aws")
    with pytest.raises(ConfigurationError, match=fragment):
        LambdaExecutor(storage=str(tmp_path), progress=False)


def test_false_from_the_environment_is_false(monkeypatch):
    from lambdamr import ExecutorConfig

    for var in ("LAMBDAMR_KEEP_TEMP", "LAMBDAMR_DURABLE", "LAMBDAMR_SPECULATE", "LAMBDAMR_VERBOSE"):
        monkeypatch.setenv(var, "false")
    config = ExecutorConfig.resolve()
    assert (config.keep_temp, config.durable, config.speculate, config.verbose) == (False, False, False, False)


def test_local_backend_made_directly_refuses_a_million_workers():
    from lambdamr.backends.local import LocalBackend

    with pytest.raises(ConfigurationError, match="at most"):
        LocalBackend(workers=10**6)
