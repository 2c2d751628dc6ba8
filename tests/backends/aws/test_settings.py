"""Where the AWS backend's clients go: the region (one order for the driver and deploy) and
the CloudWatch Logs endpoint that explains lost tasks. Building a client sends nothing."""

from __future__ import annotations

import boto3
import pytest

from lambdamr import LambdaExecutor
from lambdamr.aws_region import require_region, resolve_region
from lambdamr.backends.aws.backend import AwsLambdaBackend
from lambdamr.errors import ConfigurationError


@pytest.fixture
def no_region(monkeypatch, tmp_path):
    """No region anywhere: not in the environment, not in the (empty) AWS config file."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "LAMBDAMR_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    return tmp_path


def test_region_order_explicit_then_aws_region_then_aws_default_region_then_profile(no_region, monkeypatch):
    (no_region / "config").write_text("[profile work]\nregion = ap-northeast-1\n")
    monkeypatch.setenv("AWS_PROFILE", "work")
    assert resolve_region(None) == "ap-northeast-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert resolve_region(None) == "eu-west-1"
    monkeypatch.setenv("AWS_REGION", "us-west-2")  # boto3 alone would pick eu-west-1 here
    assert resolve_region(None) == "us-west-2"
    assert resolve_region("eu-central-1") == "eu-central-1"
    assert resolve_region(None, boto3.session.Session(region_name="sa-east-1")) == "us-west-2"


def test_a_profile_region_is_read_from_the_session_given(no_region, monkeypatch):
    (no_region / "config").write_text("[profile other]\nregion = eu-west-2\n")
    assert resolve_region(None) is None
    assert resolve_region(None, boto3.session.Session(profile_name="other")) == "eu-west-2"


def test_no_region_at_all_says_how_to_set_one(no_region):
    with pytest.raises(ConfigurationError) as caught:
        require_region(None)
    message = str(caught.value)
    assert all(hint in message for hint in ("region=", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"))


def test_an_aws_executor_without_a_region_is_a_configuration_error_not_a_botocore_one(no_region):
    with pytest.raises(ConfigurationError, match="no AWS region is set.*AWS_REGION"):
        LambdaExecutor(backend="aws", progress=False)


def test_the_backend_prefers_aws_region_over_aws_default_region(no_region, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    backend = AwsLambdaBackend()
    assert backend.region == "us-west-2" and backend.client.meta.region_name == "us-west-2"


def test_a_missing_profile_is_a_configuration_error(no_region, monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(ConfigurationError, match="AWS_PROFILE='no-such-profile'"):
        resolve_region(None)


# ---- the CloudWatch Logs endpoint ----------------------------------------------------------


def test_logs_follow_aws_endpoint_url_logs(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_LOGS", "http://127.0.0.1:4599")
    backend = AwsLambdaBackend(region="us-east-1", endpoint_url="http://127.0.0.1:4598")
    assert backend.logs_client.meta.endpoint_url == "http://127.0.0.1:4599"


def test_logs_follow_botocores_own_endpoint_settings(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL_LOGS", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", "http://127.0.0.1:4597")
    assert AwsLambdaBackend(region="us-east-1").logs_client.meta.endpoint_url == "http://127.0.0.1:4597"
    monkeypatch.delenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4596")
    assert AwsLambdaBackend(region="us-east-1").logs_client.meta.endpoint_url == "http://127.0.0.1:4596"


def test_an_explicit_logs_endpoint_wins(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_LOGS", "http://127.0.0.1:4599")
    backend = AwsLambdaBackend(region="us-east-1", logs_endpoint_url="http://127.0.0.1:4595")
    assert backend.logs_client.meta.endpoint_url == "http://127.0.0.1:4595"


def test_logs_are_never_read_from_public_aws_when_lambda_was_redirected(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_LOGS", "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS"):
        monkeypatch.delenv(name, raising=False)
    backend = AwsLambdaBackend(region="us-east-1", endpoint_url="http://127.0.0.1:4598")
    with pytest.raises(ConfigurationError, match="AWS_ENDPOINT_URL_LOGS"):
        _ = backend.logs_client
    assert AwsLambdaBackend(region="us-east-1").logs_client.meta.endpoint_url == "https://logs.us-east-1.amazonaws.com"


# ---- the architecture the cost model prices --------------------------------------------------


def test_the_backend_reports_the_deployed_functions_architecture(moto_endpoint):
    import uuid

    from lambdamr.deploy import deploy
    from tests.aws_fixtures import REGION, fake_pip, no_sleep

    name = f"lmr-arm-{uuid.uuid4().hex[:8]}"
    deploy(
        region=REGION,
        bucket=f"lambdamr-{name}",
        function_name=name,
        endpoint_url=moto_endpoint,
        architecture="arm64",
        pip=fake_pip,
        sleep=no_sleep,
        require_tls=False,  # moto's server speaks plain HTTP
    )
    assert AwsLambdaBackend(name, region=REGION, endpoint_url=moto_endpoint).architecture == "arm64"
