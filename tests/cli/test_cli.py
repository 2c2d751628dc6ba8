"""The ``lambdamr`` command line: deploy, status, teardown and clean under ``mock_aws``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from moto import mock_aws

from lambdamr.cli import build_parser, main
from lambdamr.deploy import layer as layer_module
from tests.aws_fixtures import fake_pip


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setattr(layer_module, "run_pip", fake_pip)
    monkeypatch.setattr("lambdamr.backends.aws.function.time.sleep", lambda s: None)
    with mock_aws():
        yield


def test_deploy_status_clean_teardown(aws, capsys):
    assert main(["deploy", "--region", "us-east-1", "--memory", "512", "--timeout", "60", "--package", "scikit-learn"]) == 0
    out = capsys.readouterr().out
    assert "created function lambdamr-runtime (python3.11, x86_64)" in out
    assert "LambdaExecutor(backend='aws', storage='s3://lambdamr-123456789012-us-east-1')" in out
    assert main(["deploy", "--region", "us-east-1", "--memory", "512", "--timeout", "60", "--package", "scikit-learn"]) == 0
    assert "everything was already up to date" in capsys.readouterr().out

    assert main(["status", "--region", "us-east-1"]) == 0
    out = capsys.readouterr().out
    assert "compatible: yes" in out and "512 MB, 60 s" in out and "m512-t60" in out
    assert main(["status", "--region", "us-east-1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["compatible"] is True

    assert main(["clean", "--region", "us-east-1", "--older-than", "1"]) == 0
    assert "nothing to delete under s3://lambdamr-123456789012-us-east-1/lambdamr/" in capsys.readouterr().out
    assert main(["teardown", "--region", "us-east-1", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "removed function lambdamr-runtime" in out and "removed IAM role lambdamr-runtime-role" in out
    assert main(["status", "--region", "us-east-1"]) == 1
    assert "not deployed" in capsys.readouterr().out


def test_errors_print_one_clear_line(aws, capsys):
    assert main(["deploy", "--region", "mars-north-1", "--memory", "512"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lambdamr deploy: error: region='mars-north-1' is not an AWS region name") and "Traceback" not in err


def test_options_are_validated_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["deploy", "--architecture", "sparc"])
    assert "invalid choice: 'sparc'" in capsys.readouterr().err
    args = build_parser().parse_args(["deploy", "--package", "scipy", "--package", "pandas", "--python-version", "3.12"])
    assert (args.package, args.python_version, args.function_name) == (["scipy", "pandas"], "3.12", "lambdamr-runtime")


@pytest.mark.parametrize("module", ["lambdamr", "lambdamr.cli"])
def test_the_package_runs_as_a_program(module):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("deploy", "plan", "policies", "status", "teardown", "clean", "rotate-key", "jobs", "logs"):
        assert command in out
