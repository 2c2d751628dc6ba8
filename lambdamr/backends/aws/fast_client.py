"""A lean client for the one hot call of the driver: Lambda's Invoke.

boto3's ``invoke`` costs about 1.5 ms of driver CPU per call here (serialisation through the
service model, a dozen event hooks, the user-agent string, urllib3), which caps one driver
near 500 invokes/s. ``FastInvokeClient.invoke`` sends the same HTTP request — ``POST
/2015-03-31/functions/{name}/invocations`` with Signature Version 4 — on one keep-alive
``http.client`` connection per thread, and answers with the same dict shape and the same
``botocore`` exceptions as boto3's, so the invoker treats both alike. Credentials, region and
endpoint come from a real boto3 client (credentials are re-read every call, so refreshing
credentials keep working), and so does TLS verification: the client's resolved ``verify``
(``verify=False``, a CA bundle path, ``AWS_CA_BUNDLE`` / the profile's ``ca_bundle``, or
botocore's default, certifi) builds the one ``ssl.SSLContext``. Tests check the signature byte
for byte against botocore's signer, and TLS against a server with a self-signed certificate.

Each call may pass ``read_timeout_s`` (not a boto3 argument): a synchronous invoke then gives
up at its task's deadline, not at the client's 960 s.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import io
import json
import os
import ssl
import threading
import time
from typing import Any
from urllib.parse import quote, urlparse

_SERVICE = "lambda"
_ALGORITHM = "AWS4-HMAC-SHA256"
#: seconds to open a connection (TCP and TLS); botocore's client uses the same figure here
CONNECT_TIMEOUT_S = 10.0


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class SigV4Signer:
    """Signature Version 4 for the ``lambda`` service, caching the daily signing key."""

    def __init__(self, region: str) -> None:
        self.region = region
        self._key: tuple[str, str, bytes] | None = None  # (secret, date, key)

    def _signing_key(self, secret: str, date: str) -> bytes:
        cached = self._key
        if cached is not None and cached[0] == secret and cached[1] == date:
            return cached[2]
        key = _hmac(("AWS4" + secret).encode(), date)
        for part in (self.region, _SERVICE, "aws4_request"):
            key = _hmac(key, part)
        self._key = (secret, date, key)
        return key

    def sign(
        self,
        method: str,
        host: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
        credentials: Any,
        now: float | None = None,
    ) -> dict[str, str]:
        """Return ``headers`` plus ``X-Amz-Date``, the token and ``Authorization``."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        date = stamp[:8]
        signed = {k.lower(): " ".join(str(v).split()) for k, v in headers.items()}
        signed["host"] = host
        signed["x-amz-date"] = stamp
        if credentials.token:
            signed["x-amz-security-token"] = credentials.token
        names = sorted(signed)
        canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items()))
        canonical = "\n".join(
            [
                method,
                quote(path, safe="/~"),
                canonical_query,
                "".join(f"{name}:{signed[name]}\n" for name in names),
                ";".join(names),
                hashlib.sha256(body).hexdigest(),
            ]
        )
        scope = f"{date}/{self.region}/{_SERVICE}/aws4_request"
        to_sign = f"{_ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(credentials.secret_key, date), to_sign.encode(), hashlib.sha256).hexdigest()
        out = dict(headers)
        out["X-Amz-Date"] = stamp
        if credentials.token:
            out["X-Amz-Security-Token"] = credentials.token
        out["Authorization"] = (
            f"{_ALGORITHM} Credential={credentials.access_key}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        return out


def _error_code(status: int, headers: http.client.HTTPMessage, body: bytes) -> tuple[str, str]:
    code = (headers.get("x-amzn-ErrorType") or "").split(":")[0]
    message = ""
    try:
        doc = json.loads(body) if body else {}
        if isinstance(doc, dict):
            code = code or str(doc.get("__type") or doc.get("code") or "").split("#")[-1]
            message = str(doc.get("message") or doc.get("Message") or "")
    except ValueError:
        message = body[:500].decode("utf-8", "replace")
    return code or str(status), message


def resolved_verify(boto_client: Any) -> bool | str:
    """What the boto3 client verifies TLS with: ``False``, ``True`` (botocore's default CA
    bundle) or the path of a CA bundle — its ``verify=`` argument, else ``AWS_CA_BUNDLE`` or the
    profile's ``ca_bundle``, else ``REQUESTS_CA_BUNDLE``, as botocore resolved it."""
    session = getattr(getattr(boto_client, "_endpoint", None), "http_session", None)
    verify = getattr(session, "_verify", None)
    if verify is None:  # not a botocore-built client: resolve it the way botocore does
        verify = os.environ.get("AWS_CA_BUNDLE") or os.environ.get("REQUESTS_CA_BUNDLE") or True
    return verify


def tls_context(verify: bool | str) -> ssl.SSLContext:
    """The ``SSLContext`` botocore's ``verify`` value asks for."""
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    from botocore.httpsession import get_cert_path

    path = get_cert_path(verify)  # type: ignore[arg-type]  # botocore takes True or a CA bundle path
    if path is not None and os.path.isdir(path):
        return ssl.create_default_context(capath=path)
    return ssl.create_default_context(cafile=path)


class FastInvokeClient:
    """``invoke(**kwargs)`` with boto3's arguments, answer and exceptions, minus its overhead.

    Args:
        boto_client: a boto3 Lambda client: its region, endpoint, TLS settings and
            credentials are used, and every other method call is forwarded to it.
        timeout_s: default socket read timeout of each request.
    """

    #: ``invoke`` takes ``read_timeout_s`` (the invoker passes a sync task's deadline)
    accepts_read_timeout = True

    def __init__(self, boto_client: Any, timeout_s: float = 30.0) -> None:
        self.boto_client = boto_client
        self.meta = boto_client.meta
        endpoint = urlparse(boto_client.meta.endpoint_url)
        self._https = endpoint.scheme == "https"
        self._host = endpoint.hostname or ""
        self._port = endpoint.port or (443 if self._https else 80)
        self._host_header = endpoint.netloc
        self._base_path = endpoint.path.rstrip("/")
        self._timeout = timeout_s
        self._signer = SigV4Signer(boto_client.meta.region_name or "us-east-1")
        self._local = threading.local()
        self._ssl_context = tls_context(resolved_verify(boto_client)) if self._https else None

    @staticmethod
    def usable(boto_client: Any) -> bool:
        """Whether the fast path applies: no proxy and no client certificate (mutual TLS) is
        configured for the endpoint."""
        if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")):
            return False
        config = boto_client.meta.config
        if getattr(config, "client_cert", None):
            return False
        return bool(getattr(boto_client.meta, "endpoint_url", None)) and not config.proxies

    def __getattr__(self, name: str) -> Any:  # everything but invoke: the boto3 client
        return getattr(self.boto_client, name)

    def _connection(self, read_timeout_s: float) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._https:
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=CONNECT_TIMEOUT_S, context=self._ssl_context)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=CONNECT_TIMEOUT_S)
            self._local.conn = conn
        if conn.sock is None:
            conn.connect()  # TCP and TLS, under the connect timeout; errors: see _connect_error
        conn.sock.settimeout(read_timeout_s)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def invoke(
        self,
        *,
        FunctionName: str,
        Payload: bytes = b"",
        InvocationType: str = "RequestResponse",
        LogType: str | None = None,
        Qualifier: str | None = None,
        read_timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Invoke the function like ``boto3.client("lambda").invoke``; ``read_timeout_s``
        (default: the client's) bounds the wait for the answer."""
        from botocore.exceptions import ClientError, ConnectionClosedError, NoCredentialsError, ReadTimeoutError

        credentials = self.boto_client._request_signer._credentials
        if credentials is None:
            raise NoCredentialsError()
        frozen = credentials.get_frozen_credentials()
        path = f"{self._base_path}/2015-03-31/functions/{quote(FunctionName, safe='')}/invocations"
        query = {"Qualifier": Qualifier} if Qualifier else {}
        headers = {"X-Amz-Invocation-Type": InvocationType}
        if LogType:
            headers["X-Amz-Log-Type"] = LogType
        body = bytes(Payload)
        headers = self._signer.sign("POST", self._host_header, path, query, headers, body, frozen)
        url = path + (f"?Qualifier={quote(Qualifier, safe='-_.~')}" if Qualifier else "")
        url_text = f"{'https' if self._https else 'http'}://{self._host_header}{url}"
        try:
            conn = self._connection(self._timeout if read_timeout_s is None else read_timeout_s)
        except OSError as exc:  # nothing was sent: always safe to retry, unless TLS is misconfigured
            self._drop_connection()
            raise _connect_error(exc, url_text) from exc
        try:
            conn.request("POST", url, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
        except TimeoutError as exc:
            self._drop_connection()
            raise ReadTimeoutError(endpoint_url=url_text, error=exc) from exc
        except (OSError, http.client.HTTPException) as exc:  # reset, closed keep-alive...
            self._drop_connection()
            raise ConnectionClosedError(endpoint_url=url_text, error=exc) from exc
        if answer.will_close:
            self._drop_connection()
        request_id = answer.headers.get("x-amzn-RequestId", "")
        meta: Any = {
            "RequestId": request_id,
            "HTTPStatusCode": answer.status,
            "HTTPHeaders": {k.lower(): v for k, v in answer.headers.items()},
        }
        if answer.status >= 300:
            code, message = _error_code(answer.status, answer.headers, data)
            raise ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": meta}, "Invoke")
        response: dict[str, Any] = {"StatusCode": answer.status, "ResponseMetadata": meta, "Payload": io.BytesIO(data)}
        for header, key in (
            ("X-Amz-Function-Error", "FunctionError"),
            ("X-Amz-Log-Result", "LogResult"),
            ("X-Amz-Executed-Version", "ExecutedVersion"),
        ):
            value = answer.headers.get(header)
            if value is not None:
                response[key] = value
        return response


def _connect_error(exc: OSError, url: str) -> Exception:
    """The botocore exception for a connection that could not be opened."""
    from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, SSLError

    if isinstance(exc, ssl.SSLError):  # certificate not trusted, hostname mismatch, bad handshake
        return SSLError(endpoint_url=url, error=exc)
    if isinstance(exc, TimeoutError):
        return ConnectTimeoutError(endpoint_url=url, error=exc)
    return EndpointConnectionError(endpoint_url=url, error=exc)
