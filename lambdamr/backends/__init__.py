"""Pluggable backends: a registry from a backend name to its implementation."""

from __future__ import annotations

import importlib

from lambdamr.backends.base import Backend, Invocation, InvocationOutcome, OutcomeCallback
from lambdamr.errors import ConfigurationError

#: name -> "module:Class". A new backend is one module and one line here.
BACKENDS: dict[str, str] = {
    "local": "lambdamr.backends.local:LocalBackend",
    "inline": "lambdamr.backends.inline:InlineBackend",
    "aws": "lambdamr.backends.aws.backend:AwsLambdaBackend",
}


def backend_class(name: str) -> type[Backend]:
    """The class registered under ``name``, with an install hint if its dependency is missing."""
    if name not in BACKENDS:
        raise ConfigurationError(
            f"unknown backend {name!r}; choose one of {', '.join(sorted(BACKENDS))} "
            "(backend=... or LAMBDAMR_BACKEND)"
        )
    module_name, _, class_name = BACKENDS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"backend {name!r} needs {exc.name!r}, which is not installed: pip install {exc.name}"
        ) from exc
    return getattr(module, class_name)


__all__ = ["BACKENDS", "Backend", "Invocation", "InvocationOutcome", "OutcomeCallback", "backend_class"]
