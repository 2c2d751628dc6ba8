"""``LambdaExecutor.with_options(...)``: the executor's API with other per-job settings."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from lambdamr.config import JobOptions
from lambdamr.futures import LambdaFuture
from lambdamr.map_iterator import MapIterator

if TYPE_CHECKING:
    from lambdamr.executor import LambdaExecutor

T = TypeVar("T")


class BoundExecutor:
    """A view of an executor whose jobs run with other settings (memory, timeout, retries...)."""

    def __init__(self, executor: LambdaExecutor, options: JobOptions) -> None:
        self.executor = executor
        self.options = options

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> LambdaFuture:
        """``LambdaExecutor.submit`` with this view's options."""
        return self.executor.session.submit(fn, args, kwargs, self.options)

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        memory_mb: int | None = None,
        timeout_s: float | None = None,
    ) -> MapIterator[T]:
        """``LambdaExecutor.map`` with this view's options."""
        options = self.options.merged(memory_mb=memory_mb, timeout_s=timeout_s)
        return self.executor.session.map(
            fn, iterables, timeout=timeout, chunksize=chunksize, options=options, buffersize=buffersize
        )

    def map_reduce(self, map_fn: Callable, inputs: Iterable[Any], reduce_fn: Callable, **kwargs: Any) -> dict[Any, Any]:
        """``LambdaExecutor.map_reduce`` with this view's memory and timeout."""
        kwargs.setdefault("memory_mb", self.options.memory_mb)
        kwargs.setdefault("timeout_s", self.options.timeout_s)
        return self.executor.map_reduce(map_fn, inputs, reduce_fn, **kwargs)

    def map_then_reduce(self, map_fn: Callable, inputs: Iterable[Any], reduce_fn: Callable, **kwargs: Any) -> Any:
        """``LambdaExecutor.map_then_reduce`` with this view's memory and timeout."""
        kwargs.setdefault("memory_mb", self.options.memory_mb)
        kwargs.setdefault("timeout_s", self.options.timeout_s)
        return self.executor.map_then_reduce(map_fn, inputs, reduce_fn, **kwargs)
