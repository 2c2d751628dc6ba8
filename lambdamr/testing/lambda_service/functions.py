"""Which function version an Invoke names, and the execution environments that run it.

A (function, qualifier) resolves through the control plane (moto) to one version's
configuration; the answer is kept until a control-plane write passes through the stand-in.
Environments are kept per version: an idle warm one is reused, else a new one starts (cold)
while the concurrency allows, counting every busy environment against the account's limit and
the function's reserved concurrency, as Lambda does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambdamr.testing.lambda_service.code_store import CodeStore
from lambdamr.testing.lambda_service.environment import Credentials, ExecutionEnvironment, FunctionSetup


class NotFound(Exception):
    """The control plane's answer for a function or qualifier that does not exist."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class FunctionVersion:
    """One resolved version: its configuration and the qualifier it was invoked through."""

    name: str
    qualifier: str | None
    config: dict[str, Any]
    reserved_concurrency: int | None

    @property
    def version(self) -> str:
        return str(self.config.get("Version", "$LATEST"))

    @property
    def key(self) -> tuple[str, str, str]:
        return self.name, self.version, str(self.config.get("CodeSha256", ""))

    @property
    def invoked_arn(self) -> str:
        base = str(self.config["FunctionArn"]).rsplit(":" + self.version, 1)[0] if self.version != "$LATEST" else ""
        base = base or str(self.config["FunctionArn"]).removesuffix(":$LATEST")
        return f"{base}:{self.qualifier}" if self.qualifier else base

    @property
    def variables(self) -> dict[str, str]:
        return dict((self.config.get("Environment") or {}).get("Variables") or {})


class FunctionDirectory:
    """Resolves Invoke targets through the control plane, caching until the next write."""

    def __init__(self, lambda_client: Any) -> None:
        self._lam = lambda_client
        self._cache: dict[tuple[str, str | None], FunctionVersion] = {}
        self._lock = threading.Lock()

    def resolve(self, name: str, qualifier: str | None) -> FunctionVersion:
        from botocore.exceptions import ClientError

        with self._lock:
            found = self._cache.get((name, qualifier))
        if found is not None:
            return found
        try:
            kwargs = {"FunctionName": name, **({"Qualifier": qualifier} if qualifier else {})}
            config = self._lam.get_function_configuration(**kwargs)
            reserved = self._lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise NotFound(
                int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 404)),
                str(error.get("Code", "ResourceNotFoundException")),
                str(error.get("Message", f"Function not found: {name}")),
            ) from exc
        config.pop("ResponseMetadata", None)
        found = FunctionVersion(name, qualifier, config, reserved)
        with self._lock:
            self._cache[(name, qualifier)] = found
        return found

    def forget(self) -> None:
        """A control-plane write passed through: resolve everything anew."""
        with self._lock:
            self._cache.clear()


class Throttled(Exception):
    """No environment may start: the function or the account is at its concurrency limit."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


SetupFactory = Callable[[FunctionVersion], FunctionSetup]


class EnvironmentPool:
    """Warm environments per function version, within the concurrency limits."""

    def __init__(self, concurrency: int, max_environments: int, make_setup: SetupFactory) -> None:
        self.concurrency = concurrency  # Lambda's limit: beyond it, synchronous invokes are throttled
        self.max_environments = max_environments  # this machine's: beyond it, invocations wait
        self._make_setup = make_setup
        self._idle: dict[tuple[str, str, str], list[ExecutionEnvironment]] = {}
        self._busy: dict[str, int] = {}  # function name -> busy environments
        self._lock = threading.Condition()
        self.cold_starts = 0
        self._closed = False

    def _busy_total(self) -> int:
        return sum(self._busy.values())

    def _may_run(self, function: FunctionVersion) -> str | None:
        if function.reserved_concurrency is not None and self._busy.get(function.name, 0) >= function.reserved_concurrency:
            return "ReservedFunctionConcurrentInvocationLimitExceeded"
        if self._busy_total() >= self.concurrency:
            return "ConcurrentInvocationLimitExceeded"
        return None

    def acquire(self, function: FunctionVersion, *, wait: bool) -> ExecutionEnvironment:
        """A warm environment of this version, or a new one; ``wait`` for room, or raise
        ``Throttled`` at once (synchronous invokes)."""
        with self._lock:
            while True:
                if self._closed:
                    raise Throttled("the stand-in is stopping")
                reason = self._may_run(function)
                if reason is not None and not wait:
                    raise Throttled(reason)
                if reason is None and self._busy_total() < self.max_environments:
                    break
                self._lock.wait(0.5)
            self._busy[function.name] = self._busy.get(function.name, 0) + 1
            idle = self._idle.get(function.key, [])
            while idle:
                environment = idle.pop()
                if environment.alive:
                    return environment
                environment.close()
            self._evict_idle()
        try:
            environment = ExecutionEnvironment(self._make_setup(function))
        except BaseException:
            self.release(function, None)
            raise
        with self._lock:
            self.cold_starts += 1
        return environment

    def release(self, function: FunctionVersion, environment: ExecutionEnvironment | None) -> None:
        """Give an environment back: kept warm while it lives."""
        with self._lock:
            self._busy[function.name] -= 1
            if environment is not None:
                if environment.alive and not self._closed:
                    self._idle.setdefault(function.key, []).append(environment)
                else:
                    environment.close()
            self._lock.notify_all()

    def _evict_idle(self) -> None:
        """Stop idle environments of other versions when the machine's budget is reached."""
        idle = [(key, env) for key, envs in self._idle.items() for env in envs]
        excess = len(idle) + self._busy_total() - self.max_environments  # busy counts the new one
        for key, environment in idle[: max(0, excess)]:
            self._idle[key].remove(environment)
            environment.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [env for envs in self._idle.values() for env in envs]
            self._idle.clear()
            self._lock.notify_all()
        for environment in idle:
            environment.close()


def make_setup_factory(
    code: CodeStore,
    runtime_root: Path,
    credentials_for: Callable[[str], Credentials],
    region: str,
    endpoint_url: str | None,
) -> SetupFactory:
    """How a resolved version becomes what an environment starts from."""

    def make(function: FunctionVersion) -> FunctionSetup:
        config = function.config
        return FunctionSetup(
            function_name=function.name,
            version=function.version,
            function_arn=function.invoked_arn,
            handler=str(config["Handler"]),
            runtime=str(config.get("Runtime", "")),
            memory_mb=int(config.get("MemorySize", 128)),
            timeout_s=float(config.get("Timeout", 3)),
            region=region,
            variables=function.variables,
            task_root=code.task_root(str(config.get("CodeSha256", ""))),
            opt_root=code.opt_root([layer["Arn"] for layer in config.get("Layers") or []]),
            runtime_root=runtime_root,
            credentials=credentials_for(str(config["Role"])),
            endpoint_url=endpoint_url,
        )

    return make
