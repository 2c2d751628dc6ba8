"""A moto server with IAM enforcement on, in its own process, for tests and benchmarks.

moto checks signatures and IAM policies only when ``INITIAL_NO_AUTH_ACTION_COUNT`` is set
(https://docs.getmoto.org/en/latest/docs/iam.html): the first N requests pass unchecked,
every later one is authenticated and authorized against the caller's policies. Exactly
three unchecked requests bootstrap an administrator — CreateUser, PutUserPolicy (``*`` on
``*``), CreateAccessKey — whose keys the driver and deploy then use; the execution role's
sessions (STS AssumeRole) get only what the role's policy grants. The Lambda service itself
is played by an IAM user named ``lambda.amazonaws.com`` that may call ``sts:AssumeRole``; a
trust policy's ``{"Service": "lambda.amazonaws.com"}`` principal matches it and nobody else,
so the stand-in can assume an execution role exactly when Lambda could.

Run as ``python -m lambdamr.testing.moto_iam HOST PORT``, it starts moto's server after one
fix: moto recomputes the signature of a GET or DELETE, whose body is empty, over the request's
parsed parameters instead (for the Lambda API, over its headers), so every signed GET and
DELETE of Lambda's REST API fails with SignatureDoesNotMatch. The fix signs the empty body
that was sent, as AWS does. (Form-encoded POSTs keep moto's way: their parsed form is the body.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

BOOTSTRAP_REQUESTS = 3
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
LAMBDA_SERVICE = "lambda.amazonaws.com"
ASSUME_ANY_ROLE = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}


@dataclass(frozen=True)
class AdminKeys:
    access_key: str
    secret_key: str


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class MotoIamServer:
    """``python -m moto.server`` on 127.0.0.1 with IAM enforced, and its administrator."""

    def __init__(self, region: str = "us-east-1") -> None:
        self.region = region
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(BOOTSTRAP_REQUESTS)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lambdamr.testing.moto_iam", "127.0.0.1", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._wait_up()
        self.admin = self._bootstrap_admin()
        self.lambda_service = self._user_keys(LAMBDA_SERVICE, ASSUME_ANY_ROLE, self.admin)

    def _wait_up(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=1) as answer:
                    json.load(answer)
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start on {self.url}") from None
                time.sleep(0.1)

    def _bootstrap_admin(self) -> AdminKeys:
        """The first (unchecked) requests: an administrator and its keys."""
        return self._user_keys("lambdamr-test-admin", ADMIN_POLICY, AdminKeys("bootstrap", "bootstrap"))

    def _user_keys(self, name: str, policy: dict[str, Any], caller: AdminKeys) -> AdminKeys:
        import boto3

        iam = boto3.client(
            "iam",
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=caller.access_key,
            aws_secret_access_key=caller.secret_key,
            aws_session_token=None,
        )
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="policy", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return AdminKeys(key["AccessKeyId"], key["SecretAccessKey"])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _sign_what_was_sent() -> None:
    """Make moto check a signature over the bytes of the request's body, even when empty."""
    from botocore.awsrequest import AWSRequest
    from moto.iam import access_control

    def create_aws_request(self: access_control.IAMRequestBase) -> AWSRequest:
        signed_headers = self._get_string_between("SignedHeaders=", ",", self._headers["Authorization"]).split(";")
        headers = self._create_headers_for_aws_request(signed_headers, self._headers)
        bodiless = self._method in ("GET", "HEAD", "DELETE")
        data = self._body or (b"" if bodiless else self._data)
        request = AWSRequest(method=self._method, url=self._path, data=data, headers=headers)
        request.context["timestamp"] = headers["X-Amz-Date"]
        return request

    access_control.IAMRequestBase._create_aws_request = create_aws_request  # type: ignore[method-assign]


def _service_principals_are_users() -> None:
    """Match a trust policy's ``Service`` principal against the IAM user of that name."""
    from moto.iam import access_control

    check_aws_principal = access_control.IAMPolicyStatement._check_principal

    def check_principal(self: access_control.IAMPolicyStatement, principal: str) -> bool:
        expected = self._statement.get("Principal") or {}
        if isinstance(expected, dict) and "Service" in expected:
            services = expected["Service"] if isinstance(expected["Service"], list) else [expected["Service"]]
            if any(principal.endswith(f":user/{service}") for service in services):
                return True
            return "AWS" in expected and check_aws_principal(self, principal)
        return check_aws_principal(self, principal)

    access_control.IAMPolicyStatement._check_principal = check_principal  # type: ignore[method-assign]


def _secrets_checked_against_their_arns() -> None:
    from moto.secretsmanager.responses import SecretsManagerResponse

    def determine_resource(self: SecretsManagerResponse) -> str:
        secret_id = self._get_param("SecretId")
        secret = self.backend.secrets.get(secret_id) if secret_id else None
        return str(secret.arn) if secret is not None else "*"

    SecretsManagerResponse._determine_resource = determine_resource  # type: ignore[attr-defined]


def main(argv: list[str]) -> None:
    from moto.server import main as moto_main

    _sign_what_was_sent()
    _service_principals_are_users()
    _secrets_checked_against_their_arns()
    host, port = argv
    moto_main(["-H", host, "-p", port])


if __name__ == "__main__":
    main(sys.argv[1:])
