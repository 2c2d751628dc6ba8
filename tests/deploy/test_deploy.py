"""``lambdamr.deploy`` against moto's ``mock_aws``: what it creates, that it creates it once,
and that teardown removes exactly that."""

from __future__ import annotations

import json
import re

import boto3
import pytest
from moto import mock_aws

from lambdamr.deploy import ResourceNotOursError, clean, deploy, status, teardown
from lambdamr.deploy import layer as layer_module
from lambdamr.deploy import package as package_module
from lambdamr.driver.history import history_prefix, logs_key, record_key
from lambdamr.errors import ConfigurationError
from tests.aws_fixtures import REGION, fake_pip, no_sleep

BUCKET = "lambdamr-123456789012-us-east-1"  # moto's account id
ROLE = "lambdamr-runtime-role"


@pytest.fixture
def aws():
    with mock_aws():
        yield {name: boto3.client(name, region_name=REGION) for name in ("s3", "iam", "lambda", "logs")}


@pytest.fixture
def pip_calls(monkeypatch):
    calls = []

    def recording_pip(command):
        calls.append(list(command))
        fake_pip(command)

    monkeypatch.setattr(layer_module, "run_pip", recording_pip)
    return calls


def _deploy(**kwargs):
    return deploy(region=REGION, sleep=no_sleep, **kwargs)


def test_the_role_policy_is_least_privilege(aws, pip_calls):
    _deploy()
    iam = aws["iam"]
    trust = iam.get_role(RoleName=ROLE)["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    assert iam.list_role_policies(RoleName=ROLE)["PolicyNames"] == ["lambdamr-runtime"]
    assert iam.list_attached_role_policies(RoleName=ROLE)["AttachedPolicies"] == []  # no managed policies
    statements = {
        s["Sid"]: s for s in iam.get_role_policy(RoleName=ROLE, PolicyName="lambdamr-runtime")["PolicyDocument"]["Statement"]
    }
    assert set(statements) == {"ReadObjects", "WriteObjects", "SigningKey", "OwnLogs"}
    assert all(s["Effect"] == "Allow" for s in statements.values())
    assert statements["ReadObjects"]["Action"] == "s3:GetObject"
    assert statements["ReadObjects"]["Resource"] == [f"arn:aws:s3:::{BUCKET}/lambdamr/*"]
    assert statements["WriteObjects"]["Action"] == ["s3:PutObject", "s3:AbortMultipartUpload"]
    assert statements["WriteObjects"]["Resource"] == [f"arn:aws:s3:::{BUCKET}/lambdamr/*"]
    secret_arn = boto3.client("secretsmanager", region_name=REGION).describe_secret(
        SecretId="lambdamr/lambdamr-runtime/signing-key"
    )["ARN"]
    assert statements["SigningKey"] == {
        "Sid": "SigningKey",
        "Effect": "Allow",
        "Action": "secretsmanager:GetSecretValue",
        "Resource": secret_arn,
    }
    assert statements["OwnLogs"]["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert statements["OwnLogs"]["Resource"] == f"arn:aws:logs:{REGION}:123456789012:log-group:/aws/lambda/lambdamr-runtime:*"
    document = json.dumps(list(statements.values()))
    assert "s3:ListBucket" not in document and "s3:DeleteObject" not in document  # the runtime never lists or deletes
    for statement in statements.values():  # no wildcards beyond the prefix and the log streams
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not any(a.endswith("*") for a in actions)


def test_the_bucket_is_private_encrypted_tls_only_and_expires_temp_keys(aws, pip_calls):
    _deploy()
    s3 = aws["s3"]
    assert all(s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"].values())
    rule = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    policy = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])["Statement"][0]
    assert policy["Effect"] == "Deny" and policy["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    (lifecycle,) = s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    assert lifecycle["Filter"]["Prefix"] == "lambdamr/" and lifecycle["Expiration"]["Days"] == 1
    # The job history outlives the temp objects: the expiry rule does not reach it.
    assert not history_prefix("lambdamr").startswith(lifecycle["Filter"]["Prefix"])


def test_the_layer_and_function_are_created_for_the_chosen_platform(aws, pip_calls):
    report = _deploy(memory_mb=512, timeout_s=60, architecture="arm64", python_version="3.12", packages=["scikit-learn"])
    lam = aws["lambda"]
    config = lam.get_function_configuration(FunctionName="lambdamr-runtime")
    assert config["Handler"] == "lambdamr.runtime.handler.handler"
    assert (config["Runtime"], config["Architectures"], config["MemorySize"], config["Timeout"]) == (
        "python3.12",
        ["arm64"],
        512,
        60,
    )
    env = config["Environment"]["Variables"]
    assert env["LAMBDAMR_VERSION"] == "0.1.0" and env["LAMBDAMR_STORAGE"] == f"s3://{BUCKET}"
    assert "LAMBDAMR_SIGNING_KEY" not in env  # only where the key is: the secret's ARN and version
    assert env["LAMBDAMR_SIGNING_KEY_SECRET"].startswith(f"arn:aws:secretsmanager:{REGION}:123456789012:secret:")
    assert [layer["Arn"] for layer in config["Layers"]] == [report.layer_arn]
    (version,) = lam.list_layer_versions(LayerName="lambdamr-runtime-deps")["LayerVersions"]
    assert version["CompatibleRuntimes"] == ["python3.12"] and version["CompatibleArchitectures"] == ["arm64"]
    (command,) = pip_calls
    assert command[command.index("--target") + 2 :] == ["cloudpickle", "tblib", "numpy", "blake3", "scikit-learn"]
    assert "manylinux_2_28_aarch64" in command and command[command.index("--python-version") + 1] == "3.12"
    assert lam.get_function_event_invoke_config(FunctionName="lambdamr-runtime")["MaximumRetryAttempts"] == 0
    assert [a["Name"] for a in lam.list_aliases(FunctionName="lambdamr-runtime")["Aliases"]] == ["m512-t60"]
    (group,) = aws["logs"].describe_log_groups(logGroupNamePrefix="/aws/lambda/lambdamr-runtime")["logGroups"]
    assert group["retentionInDays"] == 14
    tags = lam.list_tags(Resource=config["FunctionArn"])["Tags"]
    assert tags["lambdamr:managed"] == "true"


def test_a_second_deploy_is_a_noop(aws, pip_calls):
    first = _deploy()
    env = aws["lambda"].get_function_configuration(FunctionName="lambdamr-runtime")["Environment"]["Variables"]
    second = _deploy()
    assert first.changes and second.changes == []
    assert len(pip_calls) == 1  # the layer was not even rebuilt
    assert "already up to date" in str(second)
    assert aws["lambda"].get_function_configuration(FunctionName="lambdamr-runtime")["Environment"]["Variables"] == env


def test_changed_code_or_options_update_only_what_changed(aws, pip_calls, monkeypatch):
    _deploy()
    monkeypatch.setattr("lambdamr.deploy.deployer.function_package", lambda: package_module.function_package() + b"")
    assert _deploy(memory_mb=2048).changes == [
        "updated the configuration of lambdamr-runtime (MemorySize)",
        "published version m2048-t300 (2048 MB, 300 s), with Lambda's retries off",
    ]
    assert any("published layer" in c for c in _deploy(memory_mb=2048, packages=["pandas"]).changes)


def test_a_layer_over_50_mb_goes_through_s3(aws, pip_calls, monkeypatch):
    monkeypatch.setattr(layer_module, "DIRECT_UPLOAD_LIMIT", 100)
    report = _deploy(require_tls=False)  # moto counts its in-process requests as plain HTTP
    assert any("published layer" in change for change in report.changes)
    assert "Contents" not in aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="lambdamr-deploy/")  # upload removed


def test_teardown_removes_what_deploy_made_and_nothing_else(aws, pip_calls):
    aws["s3"].create_bucket(Bucket="someone-elses")
    aws["iam"].create_role(RoleName="other-role", AssumeRolePolicyDocument="{}")
    aws["logs"].create_log_group(logGroupName="/aws/lambda/other")
    _deploy(require_tls=False)  # moto counts its in-process requests as plain HTTP
    aws["s3"].put_object(Bucket=BUCKET, Key="lambdamr/session/results/000001.1", Body=b"x")
    result = teardown(region=REGION)
    assert sorted(result["removed"]) == sorted(
        [
            "function lambdamr-runtime",
            "layer lambdamr-runtime-deps:1",
            "log group /aws/lambda/lambdamr-runtime",
            f"IAM role {ROLE}",
            "Secrets Manager secret lambdamr/lambdamr-runtime/signing-key (deleted in 7 days unless restored)",
            f"1 object (1 B) under s3://{BUCKET}/lambdamr/",
            f"bucket {BUCKET}",
        ]
    )
    assert [b["Name"] for b in aws["s3"].list_buckets()["Buckets"]] == ["someone-elses"]
    assert [r["RoleName"] for r in aws["iam"].list_roles()["Roles"]] == ["other-role"]
    assert [g["logGroupName"] for g in aws["logs"].describe_log_groups()["logGroups"]] == ["/aws/lambda/other"]
    assert aws["lambda"].list_functions()["Functions"] == []
    assert teardown(region=REGION)["removed"] == []


def test_deploy_never_takes_over_a_function_it_did_not_create(aws, pip_calls):
    _deploy(function_name="mine")
    lam = aws["lambda"]
    role = aws["iam"].get_role(RoleName="mine-role")["Role"]["Arn"]
    lam.create_function(FunctionName="theirs", Runtime="python3.11", Role=role, Handler="app.handler", Code={"ZipFile": b"PK"})
    with pytest.raises(ResourceNotOursError, match="'theirs' exists but was not created by lambdamr"):
        _deploy(function_name="theirs")
    result = teardown(region=REGION, function_name="theirs", keep_bucket=True)
    assert "function theirs (not created by lambdamr deploy)" in result["kept"]
    assert lam.get_function(FunctionName="theirs")["Configuration"]["Handler"] == "app.handler"


def test_a_bucket_it_did_not_create_is_used_but_never_reconfigured_or_deleted(aws, pip_calls):
    aws["s3"].create_bucket(Bucket="my-data")
    aws["s3"].put_object(Bucket="my-data", Key="precious.csv", Body=b"1,2")
    _deploy(bucket="my-data")
    with pytest.raises(Exception, match="NoSuchLifecycleConfiguration"):
        aws["s3"].get_bucket_lifecycle_configuration(Bucket="my-data")
    result = teardown(region=REGION)
    assert "bucket my-data (not created by lambdamr deploy)" in result["kept"]
    assert aws["s3"].get_object(Bucket="my-data", Key="precious.csv")["Body"].read() == b"1,2"


def test_status_reports_what_is_deployed_and_a_version_mismatch(aws, pip_calls):
    assert status(region=REGION)["problem"] == f"nothing deployed: run `lambdamr deploy --region {REGION}`"
    _deploy()
    report = status(region=REGION)
    assert report["compatible"] and report["runtime"]["lambdamr"] == "0.1.0" and report["versions"] == ["m1024-t300"]
    lam = aws["lambda"]
    env = lam.get_function_configuration(FunctionName="lambdamr-runtime")["Environment"]["Variables"]
    lam.update_function_configuration(
        FunctionName="lambdamr-runtime", Runtime="python3.9", Environment={"Variables": {**env, "LAMBDAMR_VERSION": "0.0.7"}}
    )
    report = status(region=REGION)
    assert not report["compatible"] and "lambdamr 0.0.7" in report["problem"] and "lambdamr deploy" in report["problem"]
    lam.update_function_configuration(FunctionName="lambdamr-runtime", Environment={"Variables": env})
    report = status(region=REGION)
    assert "Python 3.9" in report["problem"] and "--python-version" in report["problem"]


def test_clean_deletes_temp_keys_only(aws, pip_calls):
    _deploy(require_tls=False)  # moto counts its in-process requests as plain HTTP
    s3 = aws["s3"]
    for key in ("lambdamr/a/fn", "lambdamr/a/results/000000.1", "keep/me"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    assert clean(region=REGION) == 2
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == ["keep/me"]
    assert clean(region=REGION, older_than_s=3600) == 0


def test_clean_prunes_the_job_history_on_s3_to_its_bounds(aws, pip_calls, monkeypatch):
    _deploy(require_tls=False)
    s3 = aws["s3"]
    jobs = [f"20261201-10000{n}-abc123-0001" for n in range(3)]  # oldest first
    for job_id in jobs:
        for key in (record_key("lambdamr", job_id), logs_key("lambdamr", job_id)):
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"{}")
    monkeypatch.setenv("LAMBDAMR_HISTORY_MAX_JOBS", "2")
    assert clean(region=REGION) == 2  # the oldest job's record and its logs
    left = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=history_prefix("lambdamr"))["Contents"])
    assert left == sorted(k for j in jobs[1:] for k in (record_key("lambdamr", j), logs_key("lambdamr", j)))
    monkeypatch.delenv("LAMBDAMR_HISTORY_MAX_JOBS")
    assert clean(region=REGION) == 0  # within the default bounds: the history is kept


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: clean(region=REGION, bucket="does-not-exist"), "the bucket does not exist"),
        (lambda: deploy(region="eu-nowhere-1"), "does not offer AWS Lambda"),
        (lambda: deploy(region="not a region"), "is not an AWS region name"),
        (lambda: deploy(region=REGION, memory_mb=64), "128 to 10240 MB"),
        (lambda: deploy(region=REGION, python_version="2.7"), "AWS Lambda runs Python"),
        (lambda: deploy(region=REGION, architecture="sparc"), "x86_64 or arm64"),
        (lambda: deploy(region=REGION, bucket="Bad_Bucket"), "S3 bucket names"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(aws, call, message):
    with pytest.raises(ConfigurationError, match=message):
        call()


def test_missing_credentials_say_how_to_configure_them(monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask the instance metadata service
    with pytest.raises(ConfigurationError, match="no AWS credentials found"):
        deploy(region=REGION)


# ---- Lambda's own retries, per qualifier ------------------------------------------------------
RETRIES_OFF = (
    "turned off Lambda's automatic retries of lambdamr-runtime:{} (the driver retries; events older than {} s are dropped)"
)


class EventInvokeConfigs:
    """Lambda's event-invoke configs as the service keeps them — one per qualifier (the
    function's does not cover its aliases), ResourceNotFoundException when a qualifier has
    none, Put replacing and Update merging — answered in front of moto, which keeps one per
    function whatever the qualifier. Hooked into a boto3 session's clients."""

    OPERATIONS = ("PutFunctionEventInvokeConfig", "UpdateFunctionEventInvokeConfig", "GetFunctionEventInvokeConfig")
    FIELDS = ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")

    def __init__(self, session: boto3.session.Session) -> None:
        self.configs: dict[tuple[str, str], dict] = {}
        self.writes: list[tuple[str, str]] = []
        for operation in self.OPERATIONS:
            session.events.register(f"before-parameter-build.lambda.{operation}", self._remember)
            session.events.register(f"before-call.lambda.{operation}", self._answer)

    def of(self, qualifier: str, function: str = "lambdamr-runtime") -> dict:
        return self.configs[(function, qualifier)]

    @staticmethod
    def _remember(params, context, **kwargs):
        context["event_invoke_params"] = dict(params)

    def _answer(self, model, context, **kwargs):
        from botocore.awsrequest import AWSResponse

        params = context["event_invoke_params"]
        key = (params["FunctionName"], params.get("Qualifier") or "$LATEST")
        if model.name != "PutFunctionEventInvokeConfig" and key not in self.configs:
            message = f"The function {key[0]} has no event invoke config for qualifier {key[1]}"
            error = {"Error": {"Code": "ResourceNotFoundException", "Message": message}}
            return AWSResponse("", 404, {}, None), {**error, "ResponseMetadata": {"HTTPStatusCode": 404}}
        if model.name != "GetFunctionEventInvokeConfig":
            base = {} if model.name == "PutFunctionEventInvokeConfig" else dict(self.configs[key])
            self.configs[key] = {**base, **{k: params[k] for k in self.FIELDS if k in params}}
            self.writes.append((model.name, key[1]))
        return AWSResponse("", 200, {}, None), {**self.configs[key], "ResponseMetadata": {"HTTPStatusCode": 200}}


@pytest.fixture
def session_configs(aws):
    session = boto3.session.Session(region_name=REGION)
    return session, EventInvokeConfigs(session)


def test_every_qualifier_invoked_has_retries_off_and_a_short_event_age(aws, pip_calls, session_configs):
    from lambdamr.backends.aws.function import DeployedRuntime, ensure_alias

    session, configs = session_configs
    first = _deploy(session=session)
    assert configs.of("$LATEST") == {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 330}  # 300 s + 30 s
    assert configs.of("m1024-t300") == {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 330}
    assert RETRIES_OFF.format("$LATEST", 330) in first.changes
    assert "published version m1024-t300 (1024 MB, 300 s), with Lambda's retries off" in first.changes
    # the driver creates an alias for another memory and timeout on demand
    lam = session.client("lambda")
    latest = DeployedRuntime.from_configuration(lam.get_function_configuration(FunctionName="lambdamr-runtime"))
    assert ensure_alias(lam, "lambdamr-runtime", 512, 20, latest, sleep=no_sleep) == "m512-t20"
    assert configs.of("m512-t20") == {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}  # Lambda's minimum
    writes = len(configs.writes)
    assert _deploy(session=session).changes == []  # compared before writing: nothing to change
    assert len(configs.writes) == writes


def test_an_alias_from_before_gets_retries_off_and_keeps_its_destination(aws, pip_calls, session_configs):
    session, configs = session_configs
    _deploy(session=session)
    lam = session.client("lambda")
    version = lam.publish_version(FunctionName="lambdamr-runtime")["Version"]
    lam.create_alias(FunctionName="lambdamr-runtime", Name="m256-t900", FunctionVersion=version)  # no config: 2 retries
    destination = {"OnFailure": {"Destination": "arn:aws:sqs:us-east-1:123456789012:failed"}}
    lam.put_function_event_invoke_config(
        FunctionName="lambdamr-runtime", Qualifier="m1024-t300", MaximumRetryAttempts=2, DestinationConfig=destination
    )
    report = _deploy(session=session)
    assert configs.of("m256-t900") == {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 990}
    assert configs.of("m1024-t300") == {
        "MaximumRetryAttempts": 0,
        "MaximumEventAgeInSeconds": 330,
        "DestinationConfig": destination,  # updated, not replaced
    }
    assert ("UpdateFunctionEventInvokeConfig", "m1024-t300") in configs.writes
    assert sorted(c for c in report.changes if "retries" in c) == [
        RETRIES_OFF.format("m1024-t300", 330),
        RETRIES_OFF.format("m256-t900", 990),
    ]


def test_the_event_age_follows_the_drivers_lost_deadline_within_lambdas_bounds():
    from lambdamr.backends.aws.versions import max_event_age
    from lambdamr.driver.scheduler import LOST_GRACE_S

    assert max_event_age(1) == 60 and max_event_age(49) == 60  # Lambda's minimum
    assert max_event_age(60) == 60 + LOST_GRACE_S
    assert max_event_age(900) == 990  # 15 minutes plus a tenth
    assert max_event_age(10**6) == 21600  # Lambda's maximum


# ---- versions that pile up ----------------------------------------------------------------
def _versions(lam):
    return [v["Version"] for v in lam.list_versions_by_function(FunctionName="lambdamr-runtime")["Versions"]]


def test_versions_and_layers_no_one_uses_are_deleted_on_deploy(aws, pip_calls, monkeypatch):
    lam = aws["lambda"]
    _deploy()
    _deploy(memory_mb=2048)  # a second alias, on version 2
    assert _versions(lam) == ["$LATEST", "1", "2"]
    monkeypatch.setattr("lambdamr.deploy.deployer.function_package", lambda: package_module.function_package() + b"\0")
    report = _deploy(packages=["pandas"])  # new code and a new layer: m1024-t300 moves to version 3
    assert "deleted 1 version(s) of lambdamr-runtime no alias uses: 1" in report.changes
    assert "deleted 1 old version(s) of layer lambdamr-runtime-deps: 1" in report.changes
    assert _versions(lam) == ["$LATEST", "2", "3"]  # 2 is still m2048-t300's
    (layer,) = lam.list_layer_versions(LayerName="lambdamr-runtime-deps")["LayerVersions"]
    assert layer["Version"] == 2 and "pandas" in layer["Description"]


def test_a_version_published_after_the_newest_one_in_use_is_kept(aws, pip_calls):
    from lambdamr.backends.aws.versions import prune_versions

    lam = aws["lambda"]
    _deploy()

    def publish(description):
        lam.update_function_configuration(FunctionName="lambdamr-runtime", Description=description)
        return lam.publish_version(FunctionName="lambdamr-runtime")["Version"]

    in_use = publish("what the alias moves to")
    lam.update_alias(FunctionName="lambdamr-runtime", Name="m1024-t300", FunctionVersion=in_use)
    fresh = publish("another driver's, its alias not moved yet")
    assert prune_versions(lam, "lambdamr-runtime") == ["1"]
    assert _versions(lam) == ["$LATEST", in_use, fresh] == ["$LATEST", "2", "3"]


# ---- a function that cannot run ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("configuration", "reason"),
    [
        (
            {"State": "Failed", "StateReasonCode": "InvalidSubnet", "StateReason": "The subnet does not exist"},
            "State is Failed (InvalidSubnet: The subnet does not exist)",
        ),
        (
            {"State": "Active", "LastUpdateStatus": "Failed", "LastUpdateStatusReasonCode": "EniLimitExceeded"},
            "LastUpdateStatus is Failed (EniLimitExceeded)",
        ),
        ({"State": "Failed"}, "State is Failed (Lambda gave no reason)"),
    ],
)
def test_a_failed_function_fails_at_once_with_lambdas_reason(configuration, reason):
    from botocore.stub import Stubber

    from lambdamr.backends.aws.function import DeployedRuntime, wait_updated
    from lambdamr.errors import BackendError

    lam = boto3.client("lambda", region_name=REGION, endpoint_url="http://127.0.0.1:9")
    waits = []
    with Stubber(lam) as stub:
        stub.add_response("get_function_configuration", {"FunctionName": "f", **configuration}, {"FunctionName": "f"})
        message = rf"'f' cannot run: {re.escape(reason)}; fix the cause, then run `lambdamr deploy`"
        with pytest.raises(BackendError, match=message):
            wait_updated(lam, "f", sleep=waits.append)
    assert waits == []  # no waiting for an update that will never finish
    assert DeployedRuntime.from_configuration(configuration).state_reason == reason


# ---- one region rule for deploy and driver ----------------------------------------------------
def test_deploy_status_and_teardown_honour_aws_region_like_the_driver(aws, pip_calls, monkeypatch):
    from lambdamr.config import ExecutorConfig

    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    assert ExecutorConfig.resolve().region == "eu-west-3"
    report = deploy(sleep=no_sleep)
    assert ":eu-west-3:" in report.function_arn
    assert boto3.client("lambda", region_name="eu-west-3").get_function(FunctionName="lambdamr-runtime")
    assert aws["lambda"].list_functions()["Functions"] == []  # nothing in AWS_DEFAULT_REGION's
    assert status()["region"] == "eu-west-3" and status()["deployed"]
    assert "function lambdamr-runtime" in teardown()["removed"]


def test_the_region_comes_from_the_argument_then_aws_region_then_aws_default_region_then_the_profile(
    monkeypatch, tmp_path
):
    from lambdamr.aws_region import resolve_region

    config = tmp_path / "config"
    config.write_text("[default]\nregion = ap-south-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    assert resolve_region("ca-central-1") == "ca-central-1"
    assert resolve_region() == "eu-west-3"
    monkeypatch.delenv("AWS_REGION")
    assert resolve_region() == "us-west-2"
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert resolve_region() == "ap-south-1"
    config.write_text("[default]\n")
    assert resolve_region() is None
    with pytest.raises(ConfigurationError, match="no AWS region given: pass --region"):
        deploy()
