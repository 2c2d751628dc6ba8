"""Pluggable backends: a registry from a backend name to its implementation and its options.

A backend is one module with a ``Backend`` subclass, an options class (a ``BackendOptions``:
the keywords only it takes, each with its environment variable and its check) and one line
in ``BACKENDS``. ``executor_config`` is how ``LambdaExecutor`` reads its keywords: the shared
ones become the ``ExecutorConfig``, the chosen backend's become its ``backend_options``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from typing import Any

from lambdamr.backends.base import Backend, Invocation, InvocationOutcome, OutcomeCallback
from lambdamr.config import BackendOptions, ExecutorConfig
from lambdamr.errors import ConfigurationError


@dataclass(frozen=True)
class Registration:
    """Where a backend's class and its options class live ("module:Class" each)."""

    backend: str
    options: str


#: name -> its classes. A new backend is one module and one line here.
BACKENDS: dict[str, Registration] = {
    "local": Registration("lambdamr.backends.local:LocalBackend", "lambdamr.backends.local_options:LocalOptions"),
    "inline": Registration("lambdamr.backends.inline:InlineBackend", "lambdamr.backends.inline:InlineOptions"),
    "aws": Registration("lambdamr.backends.aws.backend:AwsLambdaBackend", "lambdamr.backends.aws.options:AwsOptions"),
}


def backend_class(name: str) -> type[Backend]:
    """The class registered under ``name``, with an install hint if its dependency is missing."""
    found: type[Backend] = _load(name, _registration(name).backend)
    return found


def options_class(name: str) -> type[BackendOptions]:
    """The options class of the backend registered under ``name``."""
    found: type[BackendOptions] = _load(name, _registration(name).options)
    return found


def executor_config(**keywords: Any) -> ExecutorConfig:
    """The configuration ``LambdaExecutor(**keywords)`` runs with: shared settings in the
    ``ExecutorConfig``, the chosen backend's own keywords in its ``backend_options``.

    Raises:
        ConfigurationError: a value is out of range, the backend is unknown, or a keyword is
            not an option of the chosen backend (the message names the backends that take it).
    """
    shared = {*ExecutorConfig.setting_names(), "backend_options"}
    own = {k: v for k, v in keywords.items() if k not in shared}
    config = ExecutorConfig.resolve(**{k: v for k, v in keywords.items() if k in shared})
    if config.backend not in BACKENDS and not own:
        return config  # a Backend instance of a name not registered here: no options to route
    cls = options_class(config.backend)
    _refuse_foreign(config.backend, cls, own)
    given = keywords.get("backend_options")
    if given is None:
        options = cls.resolve(**own)
    elif isinstance(given, cls):
        options = replace(given, **own)
    else:
        raise ConfigurationError(
            f"backend_options={type(given).__name__}(...) belongs to another backend; the {config.backend} "
            f"backend takes {cls.__name__}(...)"
        )
    return replace(config, backend_options=options)


def _refuse_foreign(backend: str, cls: type[BackendOptions], own: dict[str, Any]) -> None:
    takes = cls.setting_names()
    foreign = sorted(set(own) - set(takes))
    if not foreign:
        return
    offered = ", ".join(takes) if takes else "no options of its own"
    name = foreign[0]
    owners = [other for other in BACKENDS if other != backend and name in options_class(other).setting_names()]
    if owners:
        whose = " and ".join(owners) + (" backends" if len(owners) > 1 else " backend")
        raise ConfigurationError(
            f"{name}= is an option of the {whose}; the {backend} backend takes: {offered} "
            f"(choose backend={owners[0]!r}, or drop {name}=)"
        )
    known = sorted({*ExecutorConfig.setting_names(), *takes})
    raise ConfigurationError(
        f"unknown executor option(s) {', '.join(foreign)}; known for the {backend} backend: {', '.join(known)}"
    )


def _registration(name: str) -> Registration:
    if name not in BACKENDS:
        raise ConfigurationError(
            f"unknown backend {name!r}; choose one of {', '.join(sorted(BACKENDS))} "
            "(backend=... or LAMBDAMR_BACKEND)"
        )
    return BACKENDS[name]


def _load(name: str, where: str) -> Any:
    module_name, _, class_name = where.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"backend {name!r} needs {exc.name!r}, which is not installed: pip install {exc.name}"
        ) from exc
    return getattr(module, class_name)


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendOptions",
    "Invocation",
    "InvocationOutcome",
    "OutcomeCallback",
    "Registration",
    "backend_class",
    "executor_config",
    "options_class",
]
