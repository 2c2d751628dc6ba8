"""``LambdaExecutor.with_options(...)``: the executor's API with other per-job settings."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from lambdamr.config import JobOptions
from lambdamr.driver.session import Session
from lambdamr.futures import LambdaFuture, MapIterator
from lambdamr.protocol import check_extra_env

T = TypeVar("T")


class BoundExecutor:
    """A view of an executor whose jobs run with other settings (memory, timeout, retries...).

    Args:
        session: the executor's session, which runs the view's ``submit`` and ``map``.
        options: the view's per-job settings.
        map_reduce / map_then_reduce: the executor's own methods (the view sets their
            memory and timeout), handed in so that nothing here imports the executor.
    """

    def __init__(
        self,
        session: Session,
        options: JobOptions,
        *,
        map_reduce: Callable[..., dict[Any, Any]],
        map_then_reduce: Callable[..., Any],
    ) -> None:
        self.session = session
        self.options = options
        self._map_reduce = map_reduce
        self._map_then_reduce = map_then_reduce

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> LambdaFuture:
        """``LambdaExecutor.submit`` with this view's options."""
        return self.session.submit(fn, args, kwargs, self.options)

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        memory_mb: int | None = None,
        timeout_s: float | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> MapIterator[T]:
        """``LambdaExecutor.map`` with this view's options (``extra_env`` adds to the view's)."""
        added = None if extra_env is None else check_extra_env(self.options.extra_env).merged(check_extra_env(extra_env))
        options = self.options.merged(memory_mb=memory_mb, timeout_s=timeout_s, extra_env=added)
        return self.session.map(
            fn, iterables, timeout=timeout, chunksize=chunksize, options=options, buffersize=buffersize
        )

    def map_reduce(
        self, map_fn: Callable[..., Any], inputs: Iterable[Any], reduce_fn: Callable[..., Any], **kwargs: Any
    ) -> dict[Any, Any]:
        """``LambdaExecutor.map_reduce`` with this view's memory and timeout."""
        kwargs.setdefault("memory_mb", self.options.memory_mb)
        kwargs.setdefault("timeout_s", self.options.timeout_s)
        return self._map_reduce(map_fn, inputs, reduce_fn, **kwargs)

    def map_then_reduce(
        self, map_fn: Callable[..., Any], inputs: Iterable[Any], reduce_fn: Callable[..., Any], **kwargs: Any
    ) -> Any:
        """``LambdaExecutor.map_then_reduce`` with this view's memory and timeout."""
        kwargs.setdefault("memory_mb", self.options.memory_mb)
        kwargs.setdefault("timeout_s", self.options.timeout_s)
        return self._map_then_reduce(map_fn, inputs, reduce_fn, **kwargs)
