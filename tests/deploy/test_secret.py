"""The signing key lives in Secrets Manager: created by deploy, readable by the execution role
(IAM enforced), fetched once per container, never in the function's configuration or in an
error; rotated by ``lambdamr rotate-key``; moved out of the environment of older deployments;
scheduled for deletion by teardown."""

from __future__ import annotations

import json

import boto3
import pytest

from lambdamr import signing
from lambdamr.backends.aws.backend import AwsLambdaBackend
from lambdamr.backends.aws.function import DeployedRuntime, ensure_alias
from lambdamr.cli import main
from lambdamr.deploy import deploy, rotate_key, teardown
from lambdamr.errors import ConfigurationError
from lambdamr.runtime import key_source

from .moto_iam import ACCOUNT, REGION, enforced, moto_in_process, no_sleep, role_session

pytestmark = pytest.mark.usefixtures(moto_in_process.__name__)

FUNCTION = "lambdamr-runtime"
SECRET = f"lambdamr/{FUNCTION}/signing-key"
ROLE = f"{FUNCTION}-role"


def _deploy(**kwargs):
    return deploy(region=REGION, sleep=no_sleep, require_tls=False, **kwargs)


def _env(qualifier: str | None = None) -> dict[str, str]:
    kwargs = {"Qualifier": qualifier} if qualifier else {}
    cfg = boto3.client("lambda", region_name=REGION).get_function_configuration(FunctionName=FUNCTION, **kwargs)
    return cfg["Environment"]["Variables"]


def _secret_value() -> str:
    return boto3.client("secretsmanager", region_name=REGION).get_secret_value(SecretId=SECRET)["SecretString"]


@pytest.fixture
def fresh_process_key(monkeypatch):
    """``signing.process_key`` as in a new process (its cache empty), restored after."""
    monkeypatch.setattr(signing, "_process_key", None)
    monkeypatch.delenv(signing.KEY_ENV, raising=False)


def test_deploy_keeps_the_key_in_a_tagged_secret_and_only_its_arn_in_the_function(fresh_process_key):
    _deploy()
    sm = boto3.client("secretsmanager", region_name=REGION)
    description = sm.describe_secret(SecretId=SECRET)
    assert {t["Key"]: t["Value"] for t in description["Tags"]} == {
        "lambdamr:managed": "true",
        "lambdamr:deployment": FUNCTION,
    }
    key = _secret_value()
    assert len(bytes.fromhex(key)) == 32
    env = _env()
    assert "LAMBDAMR_SIGNING_KEY" not in env
    assert env["LAMBDAMR_SIGNING_KEY_SECRET"] == description["ARN"]
    assert key not in json.dumps(boto3.client("lambda", region_name=REGION).list_functions())
    # readable only by the role and the deploying principal: a Deny for every other aws:userid
    (statement,) = json.loads(sm.get_resource_policy(SecretId=SECRET)["ResourcePolicy"])["Statement"]
    role_id = boto3.client("iam", region_name=REGION).get_role(RoleName=ROLE)["Role"]["RoleId"]
    caller = boto3.client("sts", region_name=REGION).get_caller_identity()["UserId"]
    assert statement["Effect"] == "Deny" and statement["Action"] == "secretsmanager:GetSecretValue"
    assert statement["Condition"] == {"StringNotLike": {"aws:userid": sorted([f"{role_id}:*", caller])}}
    # the driver reads it through the function's configuration
    assert AwsLambdaBackend(region=REGION).signing_key() == bytes.fromhex(key)


def test_a_container_fetches_the_key_once_with_the_role_credentials(fresh_process_key, monkeypatch):
    _deploy()
    env = _env()
    for name in ("LAMBDAMR_SIGNING_KEY_SECRET", "LAMBDAMR_SIGNING_KEY_VERSION"):
        monkeypatch.setenv(name, env[name])
    creds = role_session(ROLE).get_credentials().get_frozen_credentials()  # what Lambda gives the container
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds.secret_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", creds.token)
    monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
    monkeypatch.setenv("AWS_REGION", REGION)
    calls = []
    real_fetch = key_source.fetch_key_hex
    monkeypatch.setattr(key_source, "fetch_key_hex", lambda *a, **k: calls.append(a) or real_fetch(*a, **k))

    keys = enforced(lambda: [signing.process_key(), signing.process_key()])
    assert keys == [bytes.fromhex(_secret_value())] * 2
    assert len(calls) == 1  # once per container


def test_an_unreadable_key_is_named_but_never_shown(fresh_process_key, monkeypatch):
    _deploy()
    key = _secret_value()
    arn = _env()["LAMBDAMR_SIGNING_KEY_SECRET"]
    with pytest.raises(ConfigurationError) as caught:
        key_source.fetch_key_hex(arn, "00000000-0000-0000-0000-000000000000", region=REGION)
    assert arn in str(caught.value) and key not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    boto3.client("iam", region_name=REGION).delete_role_policy(RoleName=ROLE, PolicyName="lambdamr-runtime")
    sm = role_session(ROLE).client("secretsmanager")
    with pytest.raises(ConfigurationError, match="need secretsmanager:GetSecretValue on it") as caught:
        enforced(lambda: key_source.fetch_key_hex(arn, client=sm))
    assert key not in str(caught.value)


def test_an_environment_key_is_moved_into_the_secret_on_redeploy(fresh_process_key):
    _deploy()
    lam = boto3.client("lambda", region_name=REGION)
    sm = boto3.client("secretsmanager", region_name=REGION)
    # a deployment from before the secret store: the key in the environment, in a published version too
    old_key = signing.new_key_hex()
    legacy = {k: v for k, v in _env().items() if not k.startswith("LAMBDAMR_SIGNING_KEY") and k != "LAMBDAMR_GRANTS"}
    lam.update_function_configuration(
        FunctionName=FUNCTION, Environment={"Variables": {**legacy, "LAMBDAMR_SIGNING_KEY": old_key}}
    )
    version = lam.publish_version(FunctionName=FUNCTION)["Version"]
    lam.update_alias(FunctionName=FUNCTION, Name="m1024-t300", FunctionVersion=version)
    sm.delete_secret(SecretId=SECRET, ForceDeleteWithoutRecovery=True)

    report = _deploy()
    assert any("moved the signing key into Secrets Manager" in c and "rotate-key" in c for c in report.changes)
    assert _secret_value() == old_key  # durable jobs signed with it can still be attached
    assert "LAMBDAMR_SIGNING_KEY" not in _env()
    versions = lam.list_versions_by_function(FunctionName=FUNCTION)["Versions"]
    assert not [v["Version"] for v in versions if "LAMBDAMR_SIGNING_KEY" in (v.get("Environment") or {}).get("Variables", {})]
    assert "LAMBDAMR_SIGNING_KEY" not in _env("m1024-t300")  # the alias was re-published from clean code
    assert AwsLambdaBackend(region=REGION).signing_key() == bytes.fromhex(old_key)


def test_rotate_key_replaces_the_key_and_every_invoked_version_follows(fresh_process_key):
    _deploy()
    lam = boto3.client("lambda", region_name=REGION)
    before, before_env = _secret_value(), _env()
    secret = rotate_key(region=REGION, sleep=no_sleep)
    after = _secret_value()
    assert (
        after != before
        and _env()["LAMBDAMR_SIGNING_KEY_VERSION"] == secret.version_id != before_env["LAMBDAMR_SIGNING_KEY_VERSION"]
    )
    assert AwsLambdaBackend(region=REGION).signing_key() == bytes.fromhex(after)
    # a published version still pins the old key version: the driver re-publishes it before use
    assert _env("m1024-t300")["LAMBDAMR_SIGNING_KEY_VERSION"] == before_env["LAMBDAMR_SIGNING_KEY_VERSION"]
    latest = DeployedRuntime.from_configuration(lam.get_function_configuration(FunctionName=FUNCTION))
    ensure_alias(lam, FUNCTION, 1024, 300, latest, sleep=no_sleep)
    assert _env("m1024-t300")["LAMBDAMR_SIGNING_KEY_VERSION"] == secret.version_id
    assert key_source.fetch_key_hex(secret.arn, before_env["LAMBDAMR_SIGNING_KEY_VERSION"], region=REGION) == before


def test_rotate_key_asks_on_a_terminal_and_needs_yes_elsewhere(fresh_process_key, monkeypatch, capsys):
    _deploy()
    monkeypatch.setattr("lambdamr.backends.aws.function.time.sleep", no_sleep)
    first = _secret_value()
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["rotate-key", "--region", REGION]) == 1
    assert "not on a terminal, so pass --yes" in capsys.readouterr().err
    assert _secret_value() == first
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert main(["rotate-key", "--region", REGION]) == 1 and _secret_value() == first
    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    assert main(["rotate-key", "--region", REGION]) == 0
    second = _secret_value()
    assert second != first and second not in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["rotate-key", "--region", REGION, "--yes"]) == 0 and _secret_value() != second


def test_teardown_schedules_the_secret_for_deletion_and_a_redeploy_restores_it(fresh_process_key):
    _deploy()
    key = _secret_value()
    sm = boto3.client("secretsmanager", region_name=REGION)
    teardown(region=REGION)
    assert "DeletedDate" in sm.describe_secret(SecretId=SECRET)
    report = _deploy()
    assert any("restored Secrets Manager secret" in c for c in report.changes)
    assert _secret_value() == key
    result = teardown(region=REGION, delete_key_now=True)
    assert f"Secrets Manager secret {SECRET} (deleted without recovery)" in result["removed"]
    with pytest.raises(sm.exceptions.ResourceNotFoundException):
        sm.describe_secret(SecretId=SECRET)


def test_a_secret_deploy_did_not_create_is_never_used(fresh_process_key):
    from lambdamr.deploy import ResourceNotOursError

    boto3.client("secretsmanager", region_name=REGION).create_secret(Name=SECRET, SecretString="theirs")
    with pytest.raises(ResourceNotOursError, match="Secrets Manager secret"):
        _deploy()
    assert ACCOUNT in boto3.client("sts", region_name=REGION).get_caller_identity()["Account"]
