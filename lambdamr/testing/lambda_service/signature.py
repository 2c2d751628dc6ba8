"""Signature Version 4 checks of incoming requests, recomputed with botocore's own signer.

The stand-in knows the secret of every access key it was given (the driver's) or issued (an
execution role's session), as AWS knows its own; a request signed with any other key, or whose
signature does not match, is refused with the service's 403 error.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

#: AWS refuses a request whose X-Amz-Date is more than 5 minutes away from its own clock
CLOCK_SKEW_S = 300


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: HTTP status, ``x-amzn-ErrorType`` and message."""

    status: int
    code: str
    message: str


class SignatureVerifier:
    """Checks ``Authorization: AWS4-HMAC-SHA256 ...`` headers against known secrets."""

    def __init__(self, secrets: dict[str, str] | None = None) -> None:
        self._secrets = dict(secrets or {})
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, access_key: str, secret_key: str, session_token: str | None = None) -> None:
        with self._lock:
            self._secrets[access_key] = secret_key
            if session_token:
                self._tokens[access_key] = session_token

    def check(self, method: str, host: str, path: str, headers: dict[str, str], body: bytes) -> Refusal | None:
        """None when the request is signed by a known key; else the refusal to answer."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        lower = {k.lower(): v for k, v in headers.items()}
        authorization = lower.get("authorization", "")
        if not authorization.startswith("AWS4-HMAC-SHA256 "):
            return Refusal(403, "IncompleteSignatureException", "Missing Authentication Token")
        fields = dict(
            part.strip().split("=", 1) for part in authorization.removeprefix("AWS4-HMAC-SHA256 ").split(",") if "=" in part
        )
        try:
            access_key, _date, region, service, _ = fields["Credential"].split("/")
            signed_names = fields["SignedHeaders"].split(";")
            given = fields["Signature"]
            stamp = lower["x-amz-date"]
        except (KeyError, ValueError):
            return Refusal(403, "IncompleteSignatureException", f"Authorization header is malformed: {authorization[:80]}")
        with self._lock:
            secret = self._secrets.get(access_key)
            token = self._tokens.get(access_key)
        if secret is None or (token is not None and lower.get("x-amz-security-token") != token):
            return Refusal(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
        signed_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).timestamp()
        if abs(time.time() - signed_at) > CLOCK_SKEW_S:
            return Refusal(403, "InvalidSignatureException", f"Signature expired: {stamp} is now earlier than allowed.")
        request = AWSRequest(
            method=method,
            url=f"http://{host}{path}",
            data=body,
            headers={k: v for k, v in headers.items() if k.lower() in signed_names},
        )
        request.context["timestamp"] = stamp
        auth = SigV4Auth(Credentials(access_key, secret, lower.get("x-amz-security-token")), service, region)
        expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
        if expected != given:
            return Refusal(
                403,
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. Check your AWS "
                "Secret Access Key and signing method. Consult the service documentation for details.",
            )
        return None
