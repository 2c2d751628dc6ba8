"""The Lambda stand-in: an Invoke API on 127.0.0.1 that runs what deploy shipped.

    boto3 / lean client ──SigV4──> front (verify, limits, routes)
        │ Invoke RequestResponse ─> EnvironmentPool ─> ExecutionEnvironment (python -I -S,
        │ Invoke Event ──> EventQueue (retries per qualifier) ─┘   awslambdaric, Runtime API)
        │ event-invoke-config ─> EventInvokeConfigs (per version / alias)
        └ anything else ─────────> moto server (control plane), uploads kept by CodeStore

Each environment runs the deployed handler under AWS's runtime interface client with only the
function package, the layers and the runtime folder on its path, the function's environment
variables and the execution role's own credentials (STS AssumeRole against moto), so a
module the package lacks or a permission the role lacks fails here as it would on Lambda.

``run=False`` accepts invocations without running anything (driver benchmarks).
"""

from __future__ import annotations

import base64
import json
import queue
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lambdamr.testing.lambda_service.async_queue import EventQueue, QueuedEvent
from lambdamr.testing.lambda_service.code_store import CodeStore
from lambdamr.testing.lambda_service.environment import Credentials, ExecutionEnvironment, InvocationResult
from lambdamr.testing.lambda_service.event_config import EventInvokeConfigs
from lambdamr.testing.lambda_service.faults import Faults, task_attempt
from lambdamr.testing.lambda_service.functions import (
    EnvironmentPool,
    FunctionDirectory,
    FunctionVersion,
    Throttled,
    make_setup_factory,
)
from lambdamr.testing.lambda_service.reply import Reply, error_reply
from lambdamr.testing.lambda_service.runtime_folder import build_runtime_folder
from lambdamr.testing.lambda_service.signature import SignatureVerifier

ASYNC_PAYLOAD_LIMIT = 1024 * 1024  # "For asynchronous invocations, the maximum payload size is 1 MB"
SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024
LOG_TAIL_BYTES = 4096  # X-Amz-Log-Result: "the last 4 KB of the execution log"


@dataclass(frozen=True)
class Delivery:
    """One run of an invocation in an environment (re-deliveries of an event included)."""

    task_attempt: tuple[int, int] | None
    qualifier: str | None
    request_id: str
    invocation_type: str
    status: str  # success, error, timeout


class LambdaService:
    """The stand-in service. Give it the control plane (``control_url``, a moto server), the
    keys whose signatures it accepts (``credentials``: access key -> secret, plus ``admin``,
    the pair it uses itself for the control plane and logs) and the keys of the Lambda service
    principal that assumes execution roles (``lambda_service``; ``admin`` when not given)."""

    def __init__(
        self,
        *,
        control_url: str | None = None,
        admin: tuple[str, str] | None = None,
        lambda_service: tuple[str, str] | None = None,
        credentials: dict[str, str] | None = None,
        region: str = "us-east-1",
        run: bool = True,
        faults: Faults | None = None,
        account_concurrency: int = 1000,
        max_environments: int = 2,
        retry_delay_scale: float = 1.0,
        event_age_scale: float = 1.0,
        code_store: CodeStore | None = None,
        work_dir: Path | None = None,
        ship_logs: bool = True,
    ) -> None:
        self.control_url = control_url
        self.region = region
        self.run = run
        self.faults = faults or Faults()
        self.account_concurrency = account_concurrency
        self.admin = admin
        self.lambda_service = lambda_service or admin
        self.verifier = SignatureVerifier(credentials)
        if admin:
            self.verifier.add(*admin)
        self._tmp = None if work_dir else tempfile.TemporaryDirectory(prefix="lambda-standin-")
        self.work_dir = Path(work_dir or self._tmp.name)  # type: ignore[union-attr]
        self.code = code_store or CodeStore(self.work_dir / "code", read_s3=self._read_s3)
        self.configs = EventInvokeConfigs()
        self.ship_logs = ship_logs and control_url is not None
        self.requests = 0  # Invoke requests received
        self.accepted: list[tuple[int, int, str]] = []  # (task, attempt, invocation type) of accepted invokes
        self.deliveries: list[Delivery] = []
        self.logs: dict[str, str] = {}  # request id -> what the function's log holds for it
        self.failures: list[str] = []  # the stand-in's own failures to start an environment
        self._lock = threading.Lock()
        self._role_credentials: dict[str, Credentials] = {}
        self._clients: dict[tuple[str, bool], Any] = {}
        self.directory = FunctionDirectory(self._client("lambda")) if control_url else None
        self.pool = EnvironmentPool(
            account_concurrency,
            max_environments,
            make_setup_factory(
                self.code, build_runtime_folder(self.work_dir / "runtime"), self._credentials_for, region, control_url
            ),
        )
        self._log_queue: queue.Queue[tuple[str, str, list[str]]] = queue.Queue()
        if self.ship_logs:
            threading.Thread(target=self._ship_logs, daemon=True, name="lambda-logs").start()
        self.queue = EventQueue(self._deliver_event, self._event_settings, max_environments, retry_delay_scale, event_age_scale)
        self._server: Any = None

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> LambdaService:
        from lambdamr.testing.lambda_service.front import serve

        self._server = serve(self)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.queue.stop()
        self.pool.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> LambdaService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- AWS clients of the stand-in itself -----------------------------------------------
    def _client(self, service: Literal["lambda", "s3", "sts", "logs"], as_lambda: bool = False) -> Any:
        with self._lock:
            if (service, as_lambda) not in self._clients:
                import boto3

                key, secret = (self.lambda_service if as_lambda else self.admin) or (None, None)
                self._clients[(service, as_lambda)] = boto3.client(
                    service,
                    region_name=self.region,
                    endpoint_url=self.control_url,
                    aws_access_key_id=key,
                    aws_secret_access_key=secret,
                    aws_session_token=None,
                )
            return self._clients[(service, as_lambda)]

    def _read_s3(self, bucket: str, key: str) -> bytes:
        return bytes(self._client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())

    def _credentials_for(self, role_arn: str) -> Credentials:
        """The execution role's own session, as Lambda gives each environment."""
        with self._lock:
            known = self._role_credentials.get(role_arn)
        if known is not None:
            return known
        answer = self._client("sts", as_lambda=True).assume_role(
            RoleArn=role_arn, RoleSessionName="lambda-standin", DurationSeconds=3600
        )
        c = answer["Credentials"]
        credentials = Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
        self.verifier.add(credentials.access_key, credentials.secret_key, credentials.session_token)
        with self._lock:
            self._role_credentials[role_arn] = credentials
        return credentials

    # ---- Invoke -------------------------------------------------------------------------
    def resolve(self, name: str, qualifier: str | None) -> FunctionVersion | None:
        """The version an Invoke runs (None when there is no control plane to ask)."""
        return self.directory.resolve(name, qualifier) if self.directory else None

    def invoke(self, name: str, qualifier: str | None, kind: str, payload: bytes, tail: bool) -> Reply:
        """One Invoke request whose signature and size were accepted."""
        with self._lock:
            self.requests += 1
            throttled = self.requests <= self.faults.throttle_first
        if throttled:
            return error_reply(429, "TooManyRequestsException", "Rate Exceeded.", Reason="CallerRateLimitExceeded")
        limit = ASYNC_PAYLOAD_LIMIT if kind == "Event" else SYNC_PAYLOAD_LIMIT
        if len(payload) > limit:
            return error_reply(
                413,
                "RequestEntityTooLargeException",
                f"{len(payload)} byte payload is too large for the {kind} invocation type (limit {limit} bytes)",
            )
        try:
            json.loads(payload or b"{}")
        except ValueError:
            return error_reply(400, "InvalidRequestContentException", "Could not parse request body into json")
        from lambdamr.testing.lambda_service.functions import NotFound

        try:
            function = self.resolve(name, qualifier)
        except NotFound as exc:
            return error_reply(exc.status, exc.code, exc.message)
        pair = task_attempt(payload)
        request_id = str(uuid.uuid4())
        if pair is not None:
            with self._lock:
                self.accepted.append((*pair, kind))
        if not self.run or function is None:
            if kind == "Event":
                return Reply(202, b"", {"x-amzn-RequestId": request_id})
            return Reply(
                200, b'{"ok": true, "result_key": null}', {"x-amzn-RequestId": request_id, "X-Amz-Executed-Version": "$LATEST"}
            )
        if kind == "Event":
            if pair not in self.faults.drop:
                copies = 2 if pair in self.faults.duplicate else 1
                for _ in range(copies):
                    self.queue.put(QueuedEvent(function, payload, request_id))
            return Reply(202, b"", {"x-amzn-RequestId": request_id})
        return self._invoke_sync(function, payload, request_id, tail)

    def _invoke_sync(self, function: FunctionVersion, payload: bytes, request_id: str, tail: bool) -> Reply:
        try:
            environment = self.pool.acquire(function, wait=False)
        except Throttled as exc:
            return error_reply(429, "TooManyRequestsException", "Rate Exceeded.", Reason=exc.reason)
        result = self._run(function, environment, payload, request_id, "RequestResponse")
        headers = {
            "Content-Type": "application/json",
            "x-amzn-RequestId": request_id,
            "X-Amz-Executed-Version": function.version,
        }
        if tail:
            log = self.logs.get(request_id, "").encode()[-LOG_TAIL_BYTES:]
            headers["X-Amz-Log-Result"] = base64.b64encode(log).decode()
        if result.function_error:
            headers["X-Amz-Function-Error"] = "Unhandled"
        return Reply(200, result.payload, headers)

    def _deliver_event(self, event: QueuedEvent) -> bool:
        try:
            environment = self.pool.acquire(event.function, wait=True)
        except Exception as exc:  # e.g. code it never saw: the event fails like a broken function
            with self._lock:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            return True
        result = self._run(event.function, environment, event.payload, event.request_id, "Event")
        return result.function_error

    def _event_settings(self, function: FunctionVersion) -> tuple[int, int]:
        return self.configs.effective(function.name, function.qualifier)

    def _run(
        self, function: FunctionVersion, environment: ExecutionEnvironment, payload: bytes, request_id: str, kind: str
    ) -> InvocationResult:
        pair = task_attempt(payload)
        try:
            result = environment.invoke(payload, request_id=request_id, hang=pair in self.faults.timeout)
        finally:
            self.pool.release(function, environment)
        lines = self._log_lines(function, result)
        with self._lock:
            self.deliveries.append(Delivery(pair, function.qualifier, request_id, kind, result.status))
            self.logs[request_id] = "\n".join(lines)
        if self.ship_logs:
            self._log_queue.put((function.name, environment.log_stream, lines))
        return result

    def _log_lines(self, function: FunctionVersion, result: InvocationResult) -> list[str]:
        rid = result.request_id
        lines = []
        if result.init_ms is not None:
            lines.append(f"INIT_START Runtime Version: {function.config.get('Runtime')}.standin")
        lines += [f"START RequestId: {rid} Version: {function.version}", *result.log_lines, f"END RequestId: {rid}"]
        status = ""
        if result.status == "timeout":
            status = "\tStatus: timeout"
        elif result.error_type in ("Runtime.OutOfMemory", "Runtime.ExitError"):
            status = f"\tStatus: error\tError Type: {result.error_type}"
        init = f"\tInit Duration: {result.init_ms:.2f} ms" if result.init_ms is not None else ""
        memory = int(function.config.get("MemorySize", 128))
        lines.append(
            f"REPORT RequestId: {rid}\tDuration: {result.duration_ms:.2f} ms\tBilled Duration: "
            f"{max(1, int(result.duration_ms + 0.999))} ms\tMemory Size: {memory} MB\t"
            f"Max Memory Used: {min(memory, result.max_memory_mb)} MB{init}{status}"
        )
        return lines

    def wait_logs(self, timeout_s: float = 30.0) -> bool:
        """Wait until every log line so far is in CloudWatch Logs (delivery is asynchronous, as in Lambda)."""
        deadline = time.monotonic() + timeout_s
        with self._log_queue.all_tasks_done:
            while self._log_queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._log_queue.all_tasks_done.wait(left)
        return True

    def _ship_logs(self) -> None:
        """Write log lines to CloudWatch Logs, where Lambda puts a function's output."""
        streams: set[tuple[str, str]] = set()
        while True:
            function_name, stream, lines = self._log_queue.get()
            try:
                logs = self._client("logs")
                group = f"/aws/lambda/{function_name}"
                if (group, stream) not in streams:
                    try:
                        logs.create_log_stream(logGroupName=group, logStreamName=stream)
                    except logs.exceptions.ResourceNotFoundException:
                        logs.create_log_group(logGroupName=group)
                        logs.create_log_stream(logGroupName=group, logStreamName=stream)
                    streams.add((group, stream))
                now = int(time.time() * 1000)
                logs.put_log_events(
                    logGroupName=group, logStreamName=stream, logEvents=[{"timestamp": now, "message": line} for line in lines]
                )
            except Exception as exc:  # lost log lines are the stand-in's failure, not the function's
                with self._lock:
                    self.failures.append(f"log delivery: {type(exc).__name__}: {exc}")
            finally:
                self._log_queue.task_done()
