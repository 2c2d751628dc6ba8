"""map_reduce through the AWS path (Lambda stand-in, S3 on moto): asynchronous invocations
whose results arrive through storage, and duplicate deliveries of mappers and reducers."""

from __future__ import annotations

import collections

import pytest

import lambdamr
from lambdamr.testing.lambda_service import Faults

LINES = ["the fox and the dog", "a dog a cat", "the end"] * 3


def words(line):
    return [(w, 1) for w in line.split()]


def total(key, values):
    return sum(values)


@pytest.mark.parametrize("invocation_type", ["Event", "RequestResponse"])
def test_word_count_on_the_aws_backend_with_duplicate_deliveries(aws_executor, invocation_type):
    # Task 0 of every job runs twice: a second copy of mapper 0 writes its own object,
    # which no reducer reads; a second copy of reducer 0 changes nothing.
    executor, service = aws_executor(Faults(duplicate={(0, 1)}), invocation_type=invocation_type)
    result = executor.map_reduce(words, LINES, total, reducers=2)
    assert result == collections.Counter(w for line in LINES for w in line.split())
    assert result.stats.intermediate_puts == len(LINES)
    assert list(executor.storage.list(executor.session_prefix + "/shuffle/")) == []


def test_storage_inputs_and_outputs_on_the_aws_backend(aws_executor, deployment):
    from lambdamr.deploy import deploy

    executor, _ = aws_executor()
    text = "\n".join(LINES * 20).encode() + b"\n"
    executor.storage.put("corpus/a.txt", text)
    corpus, out = f"s3://{deployment.bucket}/corpus/", f"s3://{deployment.bucket}/counts"

    def count(ex):
        return ex.map_reduce(
            lambda chunk: collections.Counter(chunk.text().split()),
            lambdamr.objects(corpus, chunks=3),
            total,
            reducers=2,
            output=out,
        )

    with pytest.raises(lambdamr.ConfigurationError, match=f"--read {corpus}"):
        count(executor)  # the role may not read them yet: refused before anything runs
    deploy(memory_mb=256, timeout_s=20, reads=[corpus], writes=[out + "/"], **deployment.deploy_kwargs())
    executor, _ = aws_executor()
    result = count(executor)
    assert dict(result.read_output()) == collections.Counter(text.decode().split())
    with pytest.raises(lambdamr.ConfigurationError, match="local folder"):
        executor.map_reduce(words, lambdamr.objects("/tmp"), total)
