"""Rotating the deployment's signing key: a new Secrets Manager version, then every version follows.

An operation of its own (like ``deploy`` and ``teardown``) on top of ``deployer``'s clients and
``secret``'s primitives, so that neither of those imports the other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from lambdamr.aws_errors import translate
from lambdamr.backends.aws.function import DeployedRuntime, wait_updated
from lambdamr.deploy.deployer import AwsClients, deploy_options
from lambdamr.deploy.secret import SecretRef, put_new_key
from lambdamr.errors import ConfigurationError, LambdaMRError
from lambdamr.runtime.key_source import ENV_KEY_VERSION


def rotate_key(
    region: str | None = None,
    function_name: str = "lambdamr-runtime",
    *,
    endpoint_url: str | None = None,
    lambda_endpoint_url: str | None = None,
    session: Any = None,
    sleep: Callable[[float], None] | None = None,
) -> SecretRef:
    """Replace the deployment's signing key with a fresh one.

    The function's environment then names the new key version, so every published version
    the drivers invoke is re-published (and its containers start afresh with the new key).
    Results and arguments signed with the old key no longer verify: jobs running now fail
    with ``IntegrityError`` and durable jobs can no longer be attached.

    Raises:
        ConfigurationError: nothing deployed, or the deployment has no secret (redeploy first).
    """
    options = deploy_options(
        region=region, function_name=function_name, endpoint_url=endpoint_url, lambda_endpoint_url=lambda_endpoint_url
    )
    clients = AwsClients.create(options, session)
    try:
        cfg = clients.lam.get_function_configuration(FunctionName=function_name)
        runtime = DeployedRuntime.from_configuration(cfg)
        if not runtime.signing_key_secret:
            raise ConfigurationError(
                f"the function {function_name!r} keeps no signing key in Secrets Manager yet: run `lambdamr deploy` first"
            )
        secret = put_new_key(clients.secrets, runtime.signing_key_secret)
        variables = dict((cfg.get("Environment") or {}).get("Variables") or {})
        variables[ENV_KEY_VERSION] = secret.version_id
        clients.lam.update_function_configuration(FunctionName=function_name, Environment={"Variables": variables})
        wait_updated(clients.lam, function_name, sleep=sleep or time.sleep)
    except LambdaMRError:
        raise
    except Exception as exc:
        raise translate(exc, "deploy", "rotating the signing key", region=clients.region) from exc
    return secret
