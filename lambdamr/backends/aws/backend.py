"""The AWS Lambda backend: tasks run as invocations of the deployed lambdamr function.

    driver ── Invoke (Event, payload ≤ 1 MB) ──> Lambda ──> runtime handler ──> S3 result
      └────── lists {job}/results/ in S3 to learn of completions; deadlines find lost ones

* ``invocation_type="Event"`` (default): fire and forget. The invoke answers 202 as soon as
  Lambda has queued the event; the result comes back through storage, so
  ``reports_outcomes`` is False and the scheduler polls storage and re-invokes any task past
  its deadline (``timeout + grace``) with the next attempt number. Result keys are per
  attempt and written once, so a duplicate delivery never corrupts a result.
* ``invocation_type="RequestResponse"``: the invoke waits for the task and small results
  return inline in the response (6 MB limit), so short tasks need no result object;
  ``reports_outcomes`` is True and timeouts, out-of-memory kills and import failures come back
  at once as distinct errors with the request id and the log tail.

Before the first invoke, ``prepare`` checks that the deployed runtime's lambdamr, protocol and
Python versions match the driver's and says how to fix a mismatch; each (memory, timeout) a
task asks for runs on its own published version (``aws_function.ensure_alias``).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from lambdamr.aws_region import require_region, resolve_region
from lambdamr.backends.aws.errors import classify_logs
from lambdamr.backends.aws.fast_client import FastInvokeClient
from lambdamr.backends.aws.function import (
    DeployedRuntime,
    alias_name,
    check_compatible,
    describe_function,
    ensure_alias,
    lambda_error,
    wait_updated,
)
from lambdamr.backends.aws.invoke import BotoClientPerTimeout, LambdaInvoker
from lambdamr.backends.aws.options import AwsOptions
from lambdamr.backends.base import Backend, Invocation, OutcomeCallback
from lambdamr.errors import ConfigurationError, TaskError, WorkerLostError

if TYPE_CHECKING:
    from lambdamr.config import ExecutorConfig
    from lambdamr.storage import Storage

#: "For asynchronous invocations, the maximum payload size is 1 MB" (raised from 256 KB)
ASYNC_PAYLOAD_LIMIT = 1024 * 1024
#: synchronous request and response payloads
SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024
#: largest result record returned inline: base64 takes 4/3, the JSON envelope a little more
SYNC_REPLY_MAX = (SYNC_PAYLOAD_LIMIT - 4096) * 3 // 4
#: Lambda's default concurrency quota, used when the account's cannot be read
DEFAULT_CONCURRENCY = 1000
#: a lambdamr-specific name for the CloudWatch Logs endpoint (botocore's own is
#: AWS_ENDPOINT_URL_CLOUDWATCH_LOGS, which works too)
LOGS_ENDPOINT_ENV = "AWS_ENDPOINT_URL_LOGS"
#: invoker threads in Event mode: enough requests in flight to hide ~30-60 ms of latency
EVENT_INVOKE_THREADS = 64
#: sync mode blocks one thread per running task; more than this is better served by Event
MAX_SYNC_THREADS = 1000


class AwsLambdaBackend(Backend):
    """Runs tasks on the function ``lambdamr deploy`` created."""

    name = "aws"
    reports_outcomes = False
    supports_local_storage = False
    max_payload_bytes = ASYNC_PAYLOAD_LIMIT
    max_response_bytes = SYNC_REPLY_MAX  # a record inline in a 6 MB response, after base64

    def __init__(
        self,
        function_name: str = "lambdamr-runtime",
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        invocation_type: str = "Event",
        max_concurrency: int | None = None,
        invoke_threads: int | None = None,
        memory_mb: int = 1024,
        timeout_s: float = 300.0,
        throttle_deadline_s: float = 300.0,
        fast_invoke: bool = True,
        client: Any = None,
        logs_client: Any = None,
        logs_endpoint_url: str | None = None,
    ) -> None:
        if invocation_type not in ("Event", "RequestResponse"):
            raise ConfigurationError(f"invocation_type={invocation_type!r}: use 'Event' or 'RequestResponse'")
        self.function_name = function_name
        self.region = resolve_region(region)  # AWS_REGION, AWS_DEFAULT_REGION, the profile's
        self.endpoint_url = endpoint_url
        self.invocation_type = invocation_type
        self.reports_outcomes = invocation_type == "RequestResponse"
        self.max_payload_bytes = SYNC_PAYLOAD_LIMIT if self.reports_outcomes else ASYNC_PAYLOAD_LIMIT
        self.max_concurrency = max_concurrency
        self.invoke_threads = invoke_threads
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self.throttle_deadline_s = throttle_deadline_s
        self.fast_invoke = fast_invoke
        self._client = client
        self._logs_client = logs_client
        self.logs_endpoint_url = logs_endpoint_url
        self._capacity: int | None = None
        self._latest: DeployedRuntime | None = None
        self._qualifiers: dict[tuple[int, float], str] = {}
        self._qualifier_lock = threading.Lock()
        self._invoker: LambdaInvoker | None = None
        self._stats: Any = None  # the last invoker's counters, kept past shutdown
        self._last_invoker: LambdaInvoker | None = None

    @classmethod
    def from_config(cls, config: ExecutorConfig, storage: Storage) -> AwsLambdaBackend:
        options = AwsOptions.of(config)
        return cls(
            options.function_name,
            region=config.region,
            endpoint_url=options.lambda_endpoint_url,
            invocation_type=options.invocation_type,
            max_concurrency=options.max_concurrency,
            memory_mb=config.memory_mb,
            timeout_s=config.timeout_s,
        )

    @classmethod
    def default_storage_url(cls, config: ExecutorConfig) -> str | None:
        """The bucket ``lambdamr deploy`` made for the function (read from its environment)."""
        options = AwsOptions.of(config)
        backend = cls(options.function_name, region=config.region, endpoint_url=options.lambda_endpoint_url)
        runtime = describe_function(backend.client, options.function_name, region=config.region)
        if not runtime.storage_url:
            raise ConfigurationError(
                f"the function {options.function_name!r} does not name its bucket; pass "
                "storage='s3://BUCKET' or redeploy with `lambdamr deploy`"
            )
        return runtime.storage_url

    # ---- AWS clients --------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The boto3 Lambda client (control plane, and the Invoke calls' credentials)."""
        if self._client is None:
            self._client = self._boto_client(pool=10)
        return self._client

    def _boto_client(self, pool: int, read_timeout: int | None = None) -> Any:
        import boto3
        from botocore.config import Config

        region = require_region(self.region, what=f"using the Lambda function {self.function_name!r}")
        config = Config(
            retries={"mode": "standard", "total_max_attempts": 1},  # our backoff loop retries
            max_pool_connections=pool,
            connect_timeout=10,
            read_timeout=read_timeout or (960 if self.reports_outcomes else 30),  # sync waits for the task (≤ 900 s)
            tcp_keepalive=True,
        )
        # endpoint_url=None lets botocore apply AWS_ENDPOINT_URL_LAMBDA / AWS_ENDPOINT_URL / the profile's
        return boto3.session.Session().client("lambda", region_name=region, endpoint_url=self.endpoint_url, config=config)

    def _invoke_client(self, threads: int) -> Any:
        """What the invoker threads call ``invoke`` on: the lean HTTP client when it applies
        (no proxy), else boto3 clients with a connection per thread (in sync mode one per
        read timeout, so that each invoke gives up at its task's deadline)."""
        if self.fast_invoke and FastInvokeClient.usable(self.client):
            return FastInvokeClient(self.client, timeout_s=960 if self.reports_outcomes else 30)
        if self._client is not None and self._client.meta.config.max_pool_connections >= threads:
            return self._client  # a client given by the caller
        if self.reports_outcomes:
            return BotoClientPerTimeout(lambda seconds: self._boto_client(pool=threads, read_timeout=seconds))
        return self._boto_client(pool=threads)

    @property
    def logs_client(self) -> Any:
        """The CloudWatch Logs client that explains lost invocations, at ``logs_endpoint_url``,
        else ``AWS_ENDPOINT_URL_LOGS``, else where botocore's own settings point it
        (``AWS_ENDPOINT_URL_CLOUDWATCH_LOGS``, ``AWS_ENDPOINT_URL``, the profile's endpoint_url)."""
        if self._logs_client is None:
            import boto3
            from botocore.config import Config

            region = require_region(self.region, what="reading the function's CloudWatch logs")
            endpoint = self.logs_endpoint_url or os.environ.get(LOGS_ENDPOINT_ENV) or None
            # Read past a task's deadline, off the scheduler thread: a short budget, not botocore's 5 attempts.
            config = Config(retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=5, read_timeout=30)
            client = boto3.session.Session().client("logs", region_name=region, endpoint_url=endpoint, config=config)
            if self.endpoint_url and _is_aws_host(client.meta.endpoint_url) and not _is_aws_host(self.endpoint_url):
                # Lambda was redirected (a stand-in, a proxy) but the logs were not: never read
                # them from the public service behind the user's back.
                raise ConfigurationError(
                    f"the Lambda endpoint is {self.endpoint_url} but no CloudWatch Logs endpoint is "
                    f"set, so the logs were not read from {client.meta.endpoint_url}; set "
                    f"{LOGS_ENDPOINT_ENV} (or AWS_ENDPOINT_URL) to where the function's logs are"
                )
            self._logs_client = client
        return self._logs_client

    @property
    def architecture(self) -> str:
        """The deployed function's instruction set (``x86_64`` or ``arm64``), which the cost
        model prices (arm64 GB-seconds cost 20 % less)."""
        if self._latest is None:
            self._latest = describe_function(self.client, self.function_name, region=self.region)
        return self._latest.architecture

    def _threads(self) -> int:
        if self.reports_outcomes:
            return min(self.capacity, MAX_SYNC_THREADS)
        return min(self.capacity, self.invoke_threads or EVENT_INVOKE_THREADS)

    # ---- Backend interface --------------------------------------------------------------
    @property
    def capacity(self) -> int:
        """The concurrency cap: ``max_concurrency``, else the function's reserved concurrency,
        else the account's unreserved concurrency, else Lambda's default of 1,000."""
        if self._capacity is None:
            self._capacity = self.max_concurrency or self._account_concurrency()
        return self._capacity

    def _account_concurrency(self) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            reserved = self.client.get_function_concurrency(FunctionName=self.function_name)
            if reserved.get("ReservedConcurrentExecutions"):
                return int(reserved["ReservedConcurrentExecutions"])
        except (ClientError, BotoCoreError):
            pass
        try:
            limits = self.client.get_account_settings()["AccountLimit"]
            return int(limits.get("UnreservedConcurrentExecutions") or limits["ConcurrentExecutions"])
        except (ClientError, BotoCoreError, KeyError):
            return DEFAULT_CONCURRENCY  # reading it is not allowed, or not implemented

    def signing_key(self) -> bytes:
        """The deployment's key, read from the Secrets Manager secret the function's
        environment names (the driver's own ``LAMBDAMR_SIGNING_KEY`` wins when set)."""
        import os

        from lambdamr.runtime.key_source import fetch_key_hex
        from lambdamr.signing import KEY_ENV, parse_key

        if os.environ.get(KEY_ENV):
            return parse_key(os.environ[KEY_ENV])
        latest = self._deployed()
        if latest.signing_key_secret:
            return parse_key(fetch_key_hex(latest.signing_key_secret, latest.signing_key_version or None, region=self.region))
        if not latest.signing_key:  # a deployment from before the secret store still has it here
            raise ConfigurationError(
                f"the function {self.function_name!r} names no signing key secret; redeploy it with `lambdamr deploy`"
            )
        return parse_key(latest.signing_key)

    def _deployed(self) -> DeployedRuntime:
        if self._latest is None:
            self._latest = describe_function(self.client, self.function_name, region=self.region)
        return self._latest

    def check_access(self, *, reads: Iterable[str] = (), writes: Iterable[str] = ()) -> None:
        """Refuse locations the function's role may not read or write (``aws_grants``)."""
        from lambdamr.backends.aws.grants import ENV_GRANTS, Grants, check_grants

        latest = self._deployed()
        if not latest.grants:
            raise ConfigurationError(
                f"the function {self.function_name!r} records no S3 grants ({ENV_GRANTS}); redeploy it with `lambdamr deploy`"
            )
        check_grants(
            Grants.parse(latest.grants), reads=reads, writes=writes, function_name=self.function_name, region=self.region
        )

    def prepare(self, storage: Storage) -> None:
        """Check the deployed runtime against this driver and ``storage``; publish the
        version for the configured memory and timeout if it is missing."""
        if storage.kind != "s3":
            raise ConfigurationError(
                f"the aws backend needs storage that Lambda can reach, not {storage.url()}: use "
                "storage='s3://BUCKET' (the bucket `lambdamr deploy` created; `lambdamr status` shows it)"
            )
        latest = describe_function(self.client, self.function_name, region=self.region)
        check_compatible(latest)
        if latest.state_reason:  # its creation or last update failed
            raise ConfigurationError(
                f"the function {self.function_name!r} cannot run: {latest.state_reason}; fix the cause, "
                "then redeploy it with `lambdamr deploy`"
            )
        if latest.state == "Pending" or latest.last_update == "InProgress":
            wait_updated(self.client, self.function_name)
        self._latest = latest
        self._qualifier(self.memory_mb, self.timeout_s)

    def _qualifier(self, memory_mb: int, timeout_s: float) -> str:
        """The alias of the version with this memory and timeout (published when missing):
        every invocation names one, so each attempt runs with the memory and time its job
        asked for (and is priced at), escalated retries included."""
        key = (memory_mb, timeout_s)
        name = self._qualifiers.get(key)
        if name is not None:
            return name
        with self._qualifier_lock:  # one version published at a time, once per setting
            name = self._qualifiers.get(key)
            if name is None:
                from botocore.exceptions import BotoCoreError, ClientError

                if self._latest is None:
                    self._latest = describe_function(self.client, self.function_name, region=self.region)
                try:
                    name = ensure_alias(self.client, self.function_name, memory_mb, timeout_s, self._latest)
                except (ClientError, BotoCoreError) as exc:
                    raise lambda_error(
                        exc, self.function_name, self.region, f"publishing {alias_name(memory_mb, timeout_s)}"
                    ) from exc
                self._qualifiers[key] = name
            return name

    def _payload(self, invocation: Invocation) -> bytes:
        event = invocation.event
        if self.reports_outcomes and (event.reply_inline_max > SYNC_REPLY_MAX or event.reply_inline_max <= 0):
            # The response must fit in 6 MB: records too large for it go through storage.
            return dataclasses.replace(event, reply_inline_max=SYNC_REPLY_MAX).to_json()
        return invocation.payload

    def start(self, on_outcome: OutcomeCallback) -> None:
        if self._invoker is not None:
            return
        threads = self._threads()
        self._invoker = LambdaInvoker(
            self._invoke_client(threads),
            self.function_name,
            on_outcome,
            invocation_type=self.invocation_type,
            threads=threads,
            max_payload_bytes=self.max_payload_bytes,
            qualifier_for=lambda inv: self._qualifier(inv.event.memory_mb, inv.event.timeout_s),
            payload_for=self._payload,
            throttle_deadline_s=self.throttle_deadline_s,
        )
        self._invoker.start()

    def invoke(self, invocations: Sequence[Invocation]) -> None:
        if self._invoker is None:
            raise ConfigurationError("the aws backend was not started")
        self._invoker.submit(invocations)

    def wait_sent(self, timeout: float | None = None) -> bool:
        """Wait until every invocation handed to ``invoke`` has been sent; False on timeout."""
        return self._invoker.wait_sent(timeout) if self._invoker is not None else True

    def shutdown(self, wait: bool = True) -> None:
        if self._invoker is not None:
            self._invoker.shutdown(wait)
            self._stats = self._invoker.stats
            self._last_invoker = self._invoker  # its request ids still explain lost invocations
            self._invoker = None

    # ---- lost invocations ---------------------------------------------------------------
    def explain_lost(self, invocation: Invocation) -> TaskError:
        """Why an Event invocation left no result by its deadline, from its CloudWatch logs
        (timeout, out of memory, import failure), or a plain ``WorkerLostError``."""
        invoker = self._invoker or self._last_invoker
        request_id = invoker.request_id(invocation) if invoker else None
        where: dict[str, Any] = {
            "job_id": invocation.event.job_id,
            "task_id": invocation.event.task_id,
            "attempt": invocation.event.attempt,
            "request_id": request_id,
        }
        if not request_id:
            return WorkerLostError("the invocation left no result by its deadline", **where)
        try:
            answer = self.logs_client.filter_log_events(
                logGroupName=f"/aws/lambda/{self.function_name}", filterPattern=f'"{request_id}"', limit=100
            )
            logs = "\n".join(e["message"].rstrip() for e in answer.get("events", []))
        except Exception as exc:  # no logs permission or no logs yet: still a clear error
            return WorkerLostError(f"the invocation left no result by its deadline (its logs could not be read: {exc})", **where)
        if not logs:
            return WorkerLostError(
                "the invocation left no result by its deadline and wrote no logs: it never "
                "started (lost or still queued by Lambda)",
                **where,
            )
        return classify_logs(logs, invocation, request_id)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "backend": self.name,
            "capacity": self.capacity,
            "function": self.function_name,
            "region": self.region,
            "invocation_type": self.invocation_type,
        }
        if self._latest is not None:
            info.update(
                python=self._latest.python, lambdamr=self._latest.lambdamr_version, architecture=self._latest.architecture
            )
        stats = self._invoker.stats if self._invoker is not None else self._stats
        if stats is not None:
            info["invokes"] = stats.snapshot()
        return info


def _is_aws_host(url: str | None) -> bool:
    host = (urlparse(url or "").hostname or "").lower()
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws"))


__all__ = ["ASYNC_PAYLOAD_LIMIT", "SYNC_PAYLOAD_LIMIT", "AwsLambdaBackend"]
