"""``deploy --plan`` / ``lambdamr plan`` / ``lambdamr policies``: everything deploy would do,
found with read calls only (a botocore hook fails any other call), and nothing once deployed."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from lambdamr.cli import main
from lambdamr.deploy import deploy, plan_deploy, teardown
from lambdamr.deploy import layer as layer_module
from lambdamr.deploy.contents import bucket_size

from .cli_support import AWS, BUCKET, REGION, fake_pip

READ_ONLY = ("Get", "List", "Describe", "Head")


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setattr(layer_module, "run_pip", fake_pip)
    monkeypatch.setattr("lambdamr.backends.aws.function.time.sleep", lambda s: None)
    with mock_aws():
        yield {n: boto3.client(n, region_name=REGION) for n in ("s3", "iam", "lambda", "logs", "secretsmanager")}


@pytest.fixture
def read_only_session():
    """A boto3 session on which any call but Get*/List*/Describe*/Head* fails the test; it
    records the operations it saw."""
    session = boto3.session.Session(region_name=REGION)
    seen: list[str] = []

    def only_reads(model, **kwargs):
        seen.append(model.name)
        if not model.name.startswith(READ_ONLY):
            raise AssertionError(f"the plan made a {model.name} call")

    session.events.register("before-call", only_reads)
    session.seen = seen
    return session


def _nothing_exists(aws):
    assert aws["s3"].list_buckets()["Buckets"] == []
    assert aws["iam"].list_roles()["Roles"] == []
    assert aws["lambda"].list_functions()["Functions"] == []
    assert aws["lambda"].list_layers()["Layers"] == []
    assert aws["logs"].describe_log_groups()["logGroups"] == []
    assert aws["secretsmanager"].list_secrets()["SecretList"] == []


def test_the_plan_of_a_fresh_account_lists_everything_and_creates_nothing(aws, read_only_session):
    plan = plan_deploy(region=REGION, memory_mb=512, timeout_s=60, session=read_only_session)
    assert {"GetCallerIdentity", "HeadBucket", "GetRole", "DescribeSecret", "GetFunction"} <= set(read_only_session.seen)
    lines = [step.what for step in plan.steps]
    for expected in (
        f"create bucket {BUCKET}",
        f"block public access to {BUCKET}",
        f"turn on default encryption of {BUCKET}",
        f"set the TLS-only policy of {BUCKET}",
        "set the lifecycle rule expiring lambdamr/ after 1 day",
        "create Secrets Manager secret lambdamr/lambdamr-runtime/signing-key holding a new signing key",
        "create IAM role lambdamr-runtime-role, which only Lambda may assume",
        "attach the runtime policy of lambdamr-runtime-role",
        "create log group /aws/lambda/lambdamr-runtime, keeping logs 14 days",
    ):
        assert expected in lines
    assert any(line.startswith("limit who may read the signing key") for line in lines)
    assert any(line.startswith("publish a version of layer lambdamr-runtime-deps: cloudpickle tblib numpy") for line in lines)
    assert any(line.startswith("create function lambdamr-runtime (python3.11, x86_64") for line in lines)
    assert any(line.startswith("turn off Lambda's automatic retries of lambdamr-runtime:$LATEST") for line in lines)
    assert any("create alias m512-t60" in line for line in lines)
    assert plan.unchanged == []
    _nothing_exists(aws)

    # the documents, in full, as deploy attaches them
    docs = plan.documents
    assert set(docs) == {"bucket policy", "role trust policy", "role inline policy lambdamr-runtime", "secret resource policy"}
    sids = [s["Sid"] for s in docs["role inline policy lambdamr-runtime"]["Statement"]]
    assert sids == ["ReadObjects", "WriteObjects", "SigningKey", "OwnLogs"]
    assert docs["role trust policy"]["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert docs["bucket policy"]["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    readers = docs["secret resource policy"]["Statement"][0]["Condition"]["StringNotLike"]["aws:userid"]
    assert "<the role's unique id, known once created>:*" in readers

    # and what it costs at rest, priced
    assert plan.usd_per_month == pytest.approx(0.40)
    assert [item.what.split(" ")[0] for item in plan.at_rest] == ["function", "bucket", "signing", "log"]


def test_a_plan_after_deploy_lists_nothing_to_change(aws, capsys):
    assert main(["deploy", *AWS, "--memory", "512", "--timeout", "60"]) == 0
    out = capsys.readouterr().out
    plan, _, rest = out.partition("deploying:\n")
    assert plan.startswith("lambdamr deploy plan: lambdamr-runtime in us-east-1 (account 123456789012)")
    assert "  + create function lambdamr-runtime" in plan and '"Sid": "ReadObjects"' in plan  # documents in full
    assert "  - created function lambdamr-runtime (python3.11, x86_64)" in rest  # as it goes
    assert "change(s)" in rest.splitlines()[-2] and "LambdaExecutor(backend='aws'" in rest.splitlines()[-1]

    assert main(["deploy", *AWS, "--memory", "512", "--timeout", "60", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "  nothing to change" in out and "  + " not in out
    for resource in ("bucket", "IAM role", "Secrets Manager secret", "layer", "function", "alias m512-t60", "log group"):
        assert resource in out.split("unchanged: ", 1)[1]
    assert "total: $0.40 a month" in out
    assert main(["plan", *AWS, "--memory", "512", "--timeout", "60", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["changes"] == []


def test_a_plan_shows_what_an_option_would_change(aws, read_only_session):
    deploy(region=REGION, sleep=lambda s: None)
    plan = plan_deploy(region=REGION, memory_mb=2048, writes=[f"s3://{BUCKET}/out/"], session=read_only_session)
    by_change = {step.what: step for step in plan.steps}
    policy = by_change["update the runtime policy of lambdamr-runtime-role"].document
    write = next(s for s in policy["Statement"] if s["Sid"] == "WriteObjects")
    assert f"arn:aws:s3:::{BUCKET}/out/*" in write["Resource"]
    assert "update the configuration of lambdamr-runtime (MemorySize, Environment)" in by_change
    assert any("create alias m2048-t300" in what for what in by_change)
    assert not any(what.startswith(("create bucket", "create IAM role", "publish a version of layer")) for what in by_change)
    assert deploy(region=REGION, memory_mb=2048, writes=[f"s3://{BUCKET}/out/"], sleep=lambda s: None).changes
    assert plan_deploy(region=REGION, memory_mb=2048, session=read_only_session).steps == []  # the grant is kept


def test_after_a_teardown_the_plan_restores_the_secret_and_recreates_the_rest(aws, read_only_session):
    deploy(region=REGION, sleep=lambda s: None)
    teardown(region=REGION)
    lines = [step.what for step in plan_deploy(region=REGION, session=read_only_session).steps]
    assert "restore Secrets Manager secret lambdamr/lambdamr-runtime/signing-key (teardown had scheduled its deletion)" in lines
    assert f"create bucket {BUCKET}" in lines and "create IAM role lambdamr-runtime-role, which only Lambda may assume" in lines
    assert any(line.startswith("create function lambdamr-runtime") for line in lines)
    deploy(region=REGION, sleep=lambda s: None)
    assert plan_deploy(region=REGION, session=read_only_session).steps == []


def test_a_plan_sizes_a_big_bucket_from_its_first_objects_only(aws):
    aws["s3"].create_bucket(Bucket="big")
    for i in range(5):
        aws["s3"].put_object(Bucket="big", Key=f"k{i}", Body=b"x" * (i + 1))
    assert bucket_size(aws["s3"], "big", limit=3) == (6, False)
    assert bucket_size(aws["s3"], "big", limit=5) == (15, True)


def test_policies_prints_the_documents_for_a_review_before_anything_exists(aws, capsys):
    assert main(["policies", *AWS, "--read", "s3://inputs/corpus/", "--json"]) == 0
    docs = json.loads(capsys.readouterr().out)
    read = next(s for s in docs["role inline policy lambdamr-runtime"]["Statement"] if s["Sid"] == "ReadObjects")
    assert sorted(read["Resource"]) == ["arn:aws:s3:::inputs/corpus/*", f"arn:aws:s3:::{BUCKET}/lambdamr/*"]
    assert main(["policies", *AWS]) == 0
    out = capsys.readouterr().out
    assert out.startswith("bucket policy:\n{") and "role trust policy:" in out and "secret resource policy:" in out
    _nothing_exists(aws)
