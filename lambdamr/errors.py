"""Every error lambdamr raises, in one place.

The hierarchy::

    LambdaMRError                      base of everything raised by lambdamr itself
    ├── ConfigurationError             a setting is missing or wrong (bad backend name, bad memory...)
    │   ├── RuntimeMismatchError       the deployed runtime cannot run this driver's tasks: redeploy
    │   ├── ResourceNotOursError       deploy found a resource of that name it did not make
    │   ├── LayerTooLargeError         the runtime layer is over an AWS Lambda size limit
    │   └── LayerPlatformError         the layer holds code the target runtime's OS cannot load
    ├── SerializationError             a function, argument or result cannot be pickled / unpickled
    ├── PayloadTooLargeError           an object exceeds what a backend or store accepts
    ├── ProtocolError                  driver and runtime disagree on the task format or version
    ├── IntegrityError                 a stored object's signature does not verify: refused
    ├── StorageError                   a storage operation failed
    │   ├── ObjectNotFound             the key does not exist
    │   ├── StoragePermissionError     credentials (or folder permissions) do not allow the operation
    │   ├── StorageReadOnlyError       the store (a file system) has turned read-only
    │   ├── StorageFullError           the store has no space left (disk full, quota reached)
    │   └── StorageUnavailable         transient: the store is throttling or failing (retryable)
    ├── BackendError                   the backend could not launch or track an invocation
    │   └── ThrottledError             the backend refused for now: throttling, 5xx (retryable)
    ├── DeployError                    a step of ``lambdamr deploy`` failed
    ├── UpstreamError                  a future among a call's arguments failed or was cancelled: it never ran
    ├── NotInTaskError                 ``task_storage()`` was called outside a running task
    ├── BudgetExceededError            a call not run: its job's ``budget_usd`` would have been passed
    └── TaskError                      a task did not produce a result for an infrastructure reason
        ├── WorkerLostError            the process or container running the task died
        ├── ResultLostError            the result an attempt stored vanished before it was read (retried)
        ├── TaskTimeoutError           the task ran past its timeout
        ├── TaskOutOfMemoryError       the task went past its memory limit
        ├── LambdaRuntimeError         the runtime failed outside the user's code (retryable)
        │   └── RuntimeImportError     the runtime cannot import its handler or a package: redeploy
        ├── InitializerError           the executor's initializer raised where the task was to run
        └── RemoteError                the user's exception could not be sent back as itself

What AWS answers is translated into these by one table, ``lambdamr.aws_errors``.

A user's own exception raised inside a task is re-raised in the driver as itself (same type),
with the remote traceback attached; it is not wrapped in any of these.
"""

from __future__ import annotations

from typing import Any


class LambdaMRError(Exception):
    """Base class of every error raised by lambdamr itself."""


class ConfigurationError(LambdaMRError, ValueError):
    """A setting is missing, malformed or out of range."""


class RuntimeMismatchError(ConfigurationError):
    """The deployed runtime cannot run this driver's tasks (lambdamr or Python version)."""


class ResourceNotOursError(ConfigurationError):
    """A resource with the name deploy wants exists but was not made by lambdamr deploy."""

    @classmethod
    def named(cls, kind: str, name: str) -> ResourceNotOursError:
        """The refusal to touch ``kind`` ``name``, saying what to do instead."""
        return cls(
            f"{kind} {name!r} exists but was not created by lambdamr deploy (it lacks the "
            "lambdamr:managed tag), so lambdamr will not change it; pick another --function-name, "
            "or remove it yourself"
        )


class LayerTooLargeError(ConfigurationError):
    """The runtime layer is over an AWS Lambda size limit."""


class LayerPlatformError(ConfigurationError):
    """The layer holds compiled code that the target runtime's OS cannot load (too new a glibc)."""


class SerializationError(LambdaMRError, TypeError):
    """A function, argument or result could not be pickled or unpickled."""


class PayloadTooLargeError(LambdaMRError, ValueError):
    """An object is larger than the backend or the store can take."""


class ProtocolError(LambdaMRError):
    """The driver and the runtime disagree on the task format or its version."""


class IntegrityError(LambdaMRError):
    """A stored object is unsigned or its signature does not verify; it is not unpickled."""


class StorageError(LambdaMRError):
    """A storage operation failed."""


class ObjectNotFound(StorageError, KeyError):
    """The requested key does not exist in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "object not found"


class StoragePermissionError(StorageError, PermissionError):
    """The credentials in use do not allow this storage operation."""


class StorageReadOnlyError(StorageError):
    """The store refuses writes because it is read-only (a file system remounted read-only)."""


class StorageFullError(StorageError):
    """The store has no room left for the object (disk full, quota exceeded)."""


class StorageUnavailable(StorageError):
    """The store is throttling or failing; retrying later may succeed."""

    retryable = True


class BackendError(LambdaMRError):
    """The backend could not launch or track an invocation."""


class ThrottledError(BackendError):
    """The backend refused an invocation for now (throttling, a 5xx, the function being
    updated); retry with backoff."""

    retryable = True


class DeployError(LambdaMRError):
    """A deployment step failed."""


class UpstreamError(LambdaMRError):
    """A pipelined call never ran: a future among its arguments failed or was cancelled.

    The upstream future's exception (or ``CancelledError``) is the ``__cause__``;
    ``upstream`` is that future.
    """

    def __init__(self, message: str, *, upstream: Any = None) -> None:
        super().__init__(message)
        self.upstream = upstream

    def __copy__(self) -> UpstreamError:  # each failed call its own copy, naming the same future
        return type(self)(str(self), upstream=self.upstream)

    def __reduce__(self) -> tuple[Any, ...]:  # pickled, the future stays behind: it does not pickle
        return (type(self), (str(self),))


class NotInTaskError(LambdaMRError, RuntimeError):
    """``task_storage()`` was called outside a running task (in the driver, or in a thread)."""


class BudgetExceededError(LambdaMRError):
    """The call was not run: launching it could have taken its job past its ``budget_usd``.

    The driver stops launching a job's tasks once its estimate (what finished attempts cost,
    plus every attempt in flight at its timeout) would pass the budget, and fails every call
    not yet launched with this error; calls already running are let finish.
    ``budget_usd`` is the job's budget, ``estimate_usd`` its estimate when it stopped.
    """

    def __init__(self, message: str, *, budget_usd: float = 0.0, estimate_usd: float = 0.0) -> None:
        super().__init__(message)
        self.budget_usd = budget_usd
        self.estimate_usd = estimate_usd

    def __reduce__(self) -> tuple[Any, ...]:  # keep the figures through pickling
        return (_rebuild_budget_error, (self.args[0] if self.args else "", self.budget_usd, self.estimate_usd))


def _rebuild_budget_error(message: str, budget_usd: float, estimate_usd: float) -> BudgetExceededError:
    return BudgetExceededError(message, budget_usd=budget_usd, estimate_usd=estimate_usd)


class TaskError(LambdaMRError):
    """A task ended without a result for a reason that is not the user's exception.

    Carries what is known of the failed attempt so that a message can name it.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        job_id: str | None = None,
        task_id: int | None = None,
        attempt: int | None = None,
        request_id: str | None = None,
        logs: str | None = None,
    ) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.task_id = task_id
        self.attempt = attempt
        self.request_id = request_id
        self.logs = logs

    def __str__(self) -> str:
        text = super().__str__()
        where = []
        if self.task_id is not None:
            where.append(f"task {self.task_id}")
        if self.job_id is not None:
            where.append(f"job {self.job_id}")
        if self.attempt is not None:
            where.append(f"attempt {self.attempt}")
        if self.request_id:
            where.append(f"request {self.request_id}")
        if where:
            text = f"{text} [{', '.join(where)}]"
        for title, body in self._sections():
            if body:
                text = f"{text}\n--- {title} ---\n{body.rstrip()}"
        return text

    def _sections(self) -> list[tuple[str, str | None]]:
        """Titled blocks printed after the message; the log tail always comes last."""
        return [("last log lines", self.logs)]

    def __reduce__(self) -> tuple[Any, ...]:  # keep keyword attributes through pickling
        return (
            _rebuild_task_error,
            (type(self), self.args[0] if self.args else "", self.__dict__.copy()),
        )


def _rebuild_task_error(cls: type[TaskError], message: str, state: dict[str, Any]) -> TaskError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class WorkerLostError(TaskError):
    """The worker process or Lambda container running the task died before answering."""


class ResultLostError(TaskError):
    """The result object an attempt wrote was gone when the driver came to read it (deleted
    by someone else, expired by a lifecycle rule): the task runs again."""


class TaskTimeoutError(TaskError, TimeoutError):
    """The task ran past its timeout and was stopped.

    Not retried by default: a task that ran out of time once will most likely do so again.
    """

    retryable = False


class TaskOutOfMemoryError(TaskError, MemoryError):
    """The task used more memory than its limit and was stopped (not retried by default)."""

    retryable = False


class LambdaRuntimeError(TaskError):
    """The runtime on Lambda failed outside the user's code (an exception escaped the handler,
    the runtime process exited); retrying may help."""


class RuntimeImportError(LambdaRuntimeError):
    """The deployed runtime cannot import its handler or one of its dependencies: retrying
    cannot help, redeploying (with the missing package in the layer) does."""

    retryable = False


class InitializerError(TaskError):
    """The executor's ``initializer`` raised in the worker or container the task went to, so
    the task did not run (the stdlib's ``BrokenProcessPool``). Not retried: it would most
    likely raise again. ``remote_traceback`` holds the initializer's traceback."""

    retryable = False

    def __init__(self, message: str, *, remote_traceback: str = "", **where: Any) -> None:
        super().__init__(message, **where)
        self.remote_traceback = remote_traceback

    def _sections(self) -> list[tuple[str, str | None]]:
        return [("initializer traceback", self.remote_traceback), *super()._sections()]


class RemoteError(TaskError):
    """A user exception that could not be sent back as itself (it does not pickle).

    ``remote_type`` names the original exception type and ``remote_traceback`` holds the
    traceback formatted in the runtime.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        remote_type: str = "",
        remote_traceback: str = "",
        **where: Any,
    ) -> None:
        super().__init__(message, **where)
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback

    def _sections(self) -> list[tuple[str, str | None]]:
        return [("remote traceback", self.remote_traceback), *super()._sections()]
