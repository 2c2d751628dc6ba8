"""Deployment errors: built on lambdamr's, with messages that say what to do."""

from __future__ import annotations

from typing import Any

from lambdamr.errors import ConfigurationError, LambdaMRError


class DeployError(LambdaMRError):
    """A deployment step failed."""


class ResourceNotOursError(ConfigurationError):
    """A resource with the name deploy wants exists but was not made by lambdamr deploy."""


class LayerTooLargeError(ConfigurationError):
    """The runtime layer is over an AWS Lambda size limit."""


class LayerPlatformError(ConfigurationError):
    """The layer holds compiled code that the target runtime's OS cannot load (too new a glibc)."""


def not_ours(kind: str, name: str) -> ResourceNotOursError:
    return ResourceNotOursError(
        f"{kind} {name!r} exists but was not created by lambdamr deploy (it lacks the "
        "lambdamr:managed tag), so lambdamr will not change it; pick another --function-name, "
        "or remove it yourself"
    )


def translate(exc: Exception, what: str, region: str | None) -> Exception:
    """A botocore error of a deployment step as a lambdamr error."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

    if isinstance(exc, NoCredentialsError):
        return ConfigurationError(
            f"{what}: no AWS credentials found; configure them first (aws configure, AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
        )
    if isinstance(exc, NoRegionError):
        return ConfigurationError(f"{what}: no AWS region set; pass --region or set AWS_REGION")
    if isinstance(exc, EndpointConnectionError):
        return ConfigurationError(f"{what}: cannot reach AWS in region {region!r} ({exc}); check the region name and the network")
    if isinstance(exc, ClientError):
        error: dict[str, Any] = exc.response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", "")
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
            return ConfigurationError(
                f"{what}: access denied ({message}); deploy needs permissions for S3, IAM "
                "(create role, put role policy, pass role), Lambda and CloudWatch Logs"
            )
        if code == "NoSuchBucket":
            return ConfigurationError(
                f"{what}: the bucket does not exist ({message}); check --bucket, or create it with `lambdamr deploy`"
            )
        if code in ("InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch", "ExpiredToken"):
            return ConfigurationError(f"{what}: AWS rejected the credentials ({code}); check or refresh them")
        return DeployError(f"{what}: {code}: {message}")
    return DeployError(f"{what}: {exc!r}")
