"""Deploy grants exactly what jobs touch, and the driver refuses, before launching anything,
a job that would make the runtime read or write outside the grants.

The role's policy is proven with moto's IAM enforcement on and an assumed-role session of
the deployed role: what is inside the grants succeeds, what is outside is AccessDenied.
"""

from __future__ import annotations

import json
import re

import boto3
import pytest

import lambdamr
from lambdamr import LambdaExecutor
from lambdamr.backends.aws.backend import AwsLambdaBackend
from lambdamr.backends.aws.grants import Grants, check_grants, normalize_location
from lambdamr.cli import main
from lambdamr.deploy import deploy
from lambdamr.deploy.bucket import tls_only_policy
from lambdamr.deploy.iam import runtime_policy
from lambdamr.deploy.options import DeployOptions, partition_of
from lambdamr.errors import ConfigurationError

from .moto_iam import BUCKET, REGION, command_in, enforced, error_code, moto_in_process, no_sleep, role_policy, role_session

pytestmark = pytest.mark.usefixtures(moto_in_process.__name__)

ROLE = "lambdamr-runtime-role"
DATA = "my-data"


def _word(x: str) -> str:
    return x.upper()


def _pairs(chunk):
    return [(line, 1) for line in chunk.lines()]


def _count(key, values):
    return sum(values)


@pytest.fixture
def deployed():
    """A deployment granted one input prefix and one output prefix, and data in and out of them."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=DATA)
    for key in ("inputs/a.txt", "inputs/b.txt", "other/c.txt"):
        s3.put_object(Bucket=DATA, Key=key, Body=b"one\ntwo\nthree\n")
    report = deploy(
        region=REGION,
        sleep=no_sleep,
        require_tls=False,  # moto in-process requests count as plain HTTP
        reads=[f"s3://{DATA}/inputs/"],
        writes=[f"s3://{BUCKET}/out/"],
    )
    return report


# ---- the grants record ------------------------------------------------------------------
def test_a_location_is_an_s3_key_prefix_without_wildcards():
    assert normalize_location("s3://my-data") == "s3://my-data/"
    assert normalize_location("s3://my-data/in/") == "s3://my-data/in/"
    for bad, message in [
        ("/data", "give an S3 location"),
        ("s3://My_Bucket/x", "is not an S3 bucket name"),
        ("s3://data/in/*", "without \\* or \\?"),
        ("s3://data//x", "do not start with '/'"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            normalize_location(bad)


def test_grants_cover_keys_and_prefixes_by_plain_prefix_match():
    grants = Grants.build("s3://bkt/lambdamr/", read=["s3://data/in/"], write=["s3://bkt/out/"])
    assert Grants.parse(grants.to_json()) == grants
    assert grants.read == ("s3://bkt/lambdamr/", "s3://data/in/") and grants.write == ("s3://bkt/lambdamr/", "s3://bkt/out/")
    assert grants.allows("s3://data/in/x/y.txt", write=False)
    assert not grants.allows("s3://data/in/x.txt", write=True)  # read-only
    assert not grants.allows("s3://data/inputs-old/x", write=False)
    assert grants.allows("s3://bkt/out/part-*", write=True)
    assert not grants.allows("s3://bkt/*", write=True)  # the whole bucket is more than out/
    assert grants.allows("s3://bkt/lambdamr/20261201-x/0001/results/000000.1", write=True)
    with pytest.raises(ConfigurationError, match="not a lambdamr grants record"):
        Grants.parse('{"read": []}')


def test_a_missing_grant_names_the_deploy_command_that_adds_it():
    grants = Grants.build("s3://bkt/lambdamr/", read=["s3://data/in/"])
    check_grants(grants, reads=["s3://data/in/a"], writes=["s3://bkt/lambdamr/*"], function_name="fn", region="eu-west-1")
    with pytest.raises(ConfigurationError) as caught:
        check_grants(
            grants,
            reads=[f"s3://data/logs/{i}.txt" for i in range(5)],
            writes=["s3://bkt/out/part-*"],
            function_name="fn",
            region="eu-west-1",
        )
    message = str(caught.value)
    shown = "s3://data/logs/0.txt, s3://data/logs/1.txt, s3://data/logs/2.txt and 2 more"
    assert f"may not read {shown} or write s3://bkt/out/part-*" in message
    assert "nothing was launched" in message
    assert command_in(message) == [
        "lambdamr", "deploy", "--function-name", "fn", "--region", "eu-west-1", "--bucket", "bkt",
        "--read", "s3://data/logs/", "--write", "s3://bkt/out/",
    ]  # fmt: skip
    with pytest.raises(ConfigurationError, match="can only reach S3, not local:/tmp/x"):
        check_grants(grants, reads=["local:/tmp/x"], writes=[], function_name="fn", region=None)


def test_deploy_options_refuse_bad_grants():
    with pytest.raises(ConfigurationError, match="--read 'data/in'"):
        DeployOptions(reads=("data/in",))
    with pytest.raises(ConfigurationError, match="give a list"):
        DeployOptions(writes="s3://bkt/out/")  # type: ignore[arg-type]


# ---- partitions -------------------------------------------------------------------------
@pytest.mark.parametrize("region, partition", [("eu-west-1", "aws"), ("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")])
def test_arns_use_the_partition_of_the_region(region, partition):
    assert partition_of(region) == partition
    grants = Grants.build("s3://bkt/lambdamr/", read=["s3://data/in/"])
    secret = f"arn:{partition}:secretsmanager:{region}:123456789012:secret:lambdamr/fn/signing-key-AbCdEf"
    policy = runtime_policy(grants, region=region, account="123456789012", log_group="/aws/lambda/fn", secret_arn=secret)
    arns = [r for s in policy["Statement"] for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])]
    assert arns and all(arn.startswith(f"arn:{partition}:") for arn in arns)
    assert f"arn:{partition}:s3:::data/in/*" in arns
    tls = tls_only_policy("bkt", partition)["Statement"][0]
    assert tls["Resource"] == [f"arn:{partition}:s3:::bkt", f"arn:{partition}:s3:::bkt/*"]


# ---- the role, with IAM enforced ----------------------------------------------------------
def test_the_role_may_touch_exactly_its_grants(deployed):
    runtime = role_session(ROLE)
    s3 = runtime.client("s3")
    secret_arn = boto3.client("secretsmanager", region_name=REGION).describe_secret(
        SecretId="lambdamr/lambdamr-runtime/signing-key"
    )["ARN"]
    other_secret = boto3.client("secretsmanager", region_name=REGION).create_secret(Name="someone-else", SecretString="x")
    secrets = runtime.client("secretsmanager")

    def attempts():
        return {
            "ranged read of a granted input": error_code(
                lambda: s3.get_object(Bucket=DATA, Key="inputs/a.txt", Range="bytes=0-3")
            ),
            "read outside the read grants": error_code(lambda: s3.get_object(Bucket=DATA, Key="other/c.txt")),
            "write to a read-only grant": error_code(lambda: s3.put_object(Bucket=DATA, Key="inputs/new", Body=b"x")),
            "write a map_reduce output part": error_code(lambda: s3.put_object(Bucket=BUCKET, Key="out/part-00000", Body=b"x")),
            "write outside the write grants": error_code(lambda: s3.put_object(Bucket=BUCKET, Key="elsewhere/x", Body=b"x")),
            "write a result in the temp prefix": error_code(
                lambda: s3.put_object(Bucket=BUCKET, Key="lambdamr/s/0001/results/000000.1", Body=b"x", IfNoneMatch="*")
            ),
            "read the temp prefix": error_code(lambda: s3.get_object(Bucket=BUCKET, Key="lambdamr/s/0001/results/000000.1")),
            "list the temp prefix": error_code(lambda: s3.list_objects_v2(Bucket=BUCKET, Prefix="lambdamr/")),
            "delete in the temp prefix": error_code(
                lambda: s3.delete_object(Bucket=BUCKET, Key="lambdamr/s/0001/results/000000.1")
            ),
            "read its signing key": error_code(lambda: secrets.get_secret_value(SecretId=secret_arn)),
            "read another secret": error_code(lambda: secrets.get_secret_value(SecretId=other_secret["ARN"])),
        }

    assert enforced(attempts) == {
        "ranged read of a granted input": "ok",
        "read outside the read grants": "denied",
        "write to a read-only grant": "denied",
        "write a map_reduce output part": "ok",
        "write outside the write grants": "denied",
        "write a result in the temp prefix": "ok",
        "read the temp prefix": "ok",
        "list the temp prefix": "denied",
        "delete in the temp prefix": "denied",
        "read its signing key": "ok",
        "read another secret": "denied",
    }


def test_grants_are_kept_across_deploys_until_revoked(deployed, capsys):
    lam = boto3.client("lambda", region_name=REGION)

    def recorded() -> Grants:
        env = lam.get_function_configuration(FunctionName="lambdamr-runtime")["Environment"]["Variables"]
        return Grants.parse(env["LAMBDAMR_GRANTS"])

    assert recorded() == Grants.build(f"s3://{BUCKET}/lambdamr/", [f"s3://{DATA}/inputs/"], [f"s3://{BUCKET}/out/"])
    assert deploy(region=REGION, sleep=no_sleep, require_tls=False).changes == []  # a plain redeploy keeps them
    report = deploy(region=REGION, sleep=no_sleep, require_tls=False, revoke=[f"s3://{DATA}/inputs/"])
    assert "updated the runtime policy of lambdamr-runtime-role" in report.changes
    assert recorded().read == (f"s3://{BUCKET}/lambdamr/",)
    assert f"arn:aws:s3:::{DATA}/inputs/*" not in json.dumps(role_policy(ROLE))
    assert main(["status", "--region", REGION]) == 0
    assert f"writes: s3://{BUCKET}/lambdamr/, s3://{BUCKET}/out/" in capsys.readouterr().out


# ---- the driver's check, before anything is launched -------------------------------------
def _temp_objects() -> list[str]:
    s3 = boto3.client("s3", region_name=REGION)
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


@pytest.mark.parametrize(
    "storage, options, temp",
    [
        (f"s3://{BUCKET}/runs", {}, f"s3://{BUCKET}/runs/lambdamr/"),
        (f"s3://{BUCKET}", {"prefix": "jobs"}, f"s3://{BUCKET}/jobs/"),
        ("s3://my-data", {}, "s3://my-data/lambdamr/"),
    ],
)
def test_a_temp_prefix_outside_the_grants_is_refused_at_once(deployed, storage, options, temp):
    with pytest.raises(ConfigurationError) as caught:
        LambdaExecutor(backend=AwsLambdaBackend(region=REGION), storage=storage, progress=False, **options)
    message = str(caught.value)
    assert f"may not read {temp}* or write {temp}*" in message
    assert command_in(message)[-4:] == ["--read", temp, "--write", temp]
    assert _temp_objects() == []


def test_inputs_and_outputs_outside_the_grants_are_refused_before_launch(deployed):
    backend = AwsLambdaBackend(region=REGION)
    with LambdaExecutor(backend=backend, storage=f"s3://{BUCKET}", progress=False) as ex:
        with pytest.raises(ConfigurationError, match=re.escape(f"may not read s3://{DATA}/other/c.txt")) as caught:
            ex.map(_word, lambdamr.objects(f"s3://{DATA}/other/"))
        assert command_in(str(caught.value))[-2:] == ["--read", f"s3://{DATA}/other/"]
        with pytest.raises(ConfigurationError, match=re.escape(f"may not read s3://{DATA}/other/c.txt")):
            ex.map_reduce(_pairs, lambdamr.objects(f"s3://{DATA}/"), _count)
        with pytest.raises(ConfigurationError, match=re.escape(f"may not write s3://{BUCKET}/results/part-*")) as caught:
            ex.map_reduce(_pairs, lambdamr.objects(f"s3://{DATA}/inputs/"), _count, output=f"s3://{BUCKET}/results/")
        assert command_in(str(caught.value))[-2:] == ["--write", f"s3://{BUCKET}/results/"]
        other = LambdaExecutor(backend="inline", storage=f"s3://{DATA}/shared", progress=False)
        handle = other.share([1, 2, 3])  # stored where the role may not read
        with pytest.raises(ConfigurationError, match=re.escape(f"may not read s3://{DATA}/shared/lambdamr/")):
            ex.submit(len, handle)
        other.shutdown()
        assert ex.jobs == [] and not ex.session.started  # nothing staged, nothing invoked
    assert _temp_objects() == []


def test_the_suggested_command_grants_what_was_missing(deployed, monkeypatch):
    backend = AwsLambdaBackend(region=REGION)
    with pytest.raises(ConfigurationError) as caught:
        backend.check_access(reads=[f"s3://{DATA}/other/c.txt"], writes=[f"s3://{BUCKET}/results/part-*"])
    words = command_in(str(caught.value))
    assert words[:2] == ["lambdamr", "deploy"]
    monkeypatch.setattr("lambdamr.deploy.deployer.time.sleep", no_sleep)
    assert main(words[1:]) == 0
    boto3.client("s3", region_name=REGION).delete_bucket_policy(Bucket=BUCKET)  # TLS-only: moto in-process is plain HTTP
    AwsLambdaBackend(region=REGION).check_access(reads=[f"s3://{DATA}/other/c.txt"], writes=[f"s3://{BUCKET}/results/part-*"])
    s3 = role_session(ROLE).client("s3")
    assert enforced(
        lambda: (
            error_code(lambda: s3.get_object(Bucket=DATA, Key="other/c.txt")),
            error_code(lambda: s3.put_object(Bucket=BUCKET, Key="results/part-00000", Body=b"x")),
            error_code(lambda: s3.get_object(Bucket=DATA, Key="inputs/a.txt")),  # the earlier grant is still there
        )
    ) == ("ok", "ok", "ok")


def test_a_moved_temp_prefix_stops_being_granted(deployed):
    report = deploy(region=REGION, sleep=no_sleep, require_tls=False, prefix="scratch")
    assert report.grants is not None and report.grants.temp == f"s3://{BUCKET}/scratch/"
    assert report.grants.read == (f"s3://{BUCKET}/scratch/", f"s3://{DATA}/inputs/")
    assert report.grants.write == (f"s3://{BUCKET}/out/", f"s3://{BUCKET}/scratch/")
    s3 = role_session(ROLE).client("s3")
    assert enforced(
        lambda: (
            error_code(lambda: s3.put_object(Bucket=BUCKET, Key="lambdamr/s/x", Body=b"x")),
            error_code(lambda: s3.put_object(Bucket=BUCKET, Key="scratch/s/x", Body=b"x")),
        )
    ) == ("denied", "ok")


def test_too_many_grants_for_one_role_policy_are_refused_with_what_to_do():
    from lambdamr.deploy.iam import ensure_role

    grants = Grants.build(f"s3://{BUCKET}/lambdamr/", read=[f"s3://{DATA}/inputs/day-{i:04d}/" for i in range(400)])
    with pytest.raises(ConfigurationError, match="10240-character limit with 401 read .* grant common parent prefixes"):
        ensure_role(None, DeployOptions(), grants, "arn:aws:secretsmanager:x", REGION, "123456789012", [])
