"""Pluggable storage: a registry from a kind name to its implementation."""

from __future__ import annotations

import importlib
import json
import os
import threading
from typing import Any
from urllib.parse import urlparse

from lambdamr.errors import ConfigurationError
from lambdamr.storage.base import ObjectInfo, Storage, StorageStats

#: kind name -> "module:Class". A new store is one module and one line here.
STORES: dict[str, str] = {
    "local": "lambdamr.storage.local:LocalStorage",
    "s3": "lambdamr.storage.s3:S3Storage",
}


def open_storage(spec: dict[str, Any]) -> Storage:
    """Build a store from its ``spec()`` (what the runtime receives in every event)."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in STORES:
        raise ConfigurationError(f"unknown storage kind {kind!r}; known: {', '.join(sorted(STORES))}")
    module_name, _, class_name = STORES[kind].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"storage {kind!r} needs a package that is not installed ({exc.name}); "
            f"install it, e.g. pip install {exc.name}"
        ) from exc
    store_class: type[Storage] = getattr(module, class_name)
    return store_class(**spec)


_cached: dict[Any, Storage] = {}  # by the spec as a sorted tuple, or its JSON when nested
_cached_lock = threading.Lock()


def open_cached(spec: dict[str, Any]) -> Storage:
    """The store ``spec`` names, opened once per process and shared after.

    For the remote side (the runtime's handler, ``share()`` handles, ``objects()`` chunks,
    the shuffle's tasks): a warm worker or container reuses its connections across tasks.
    The driver opens its own stores (``open_storage``), whose request counters are its jobs'.
    """
    try:  # a flat spec (a local folder's) keyed without a JSON encoding per call: tasks ask per task
        key: Any = tuple(sorted(spec.items()))
        hash(key)
    except TypeError:  # nested (an S3 spec's options)
        key = json.dumps(spec, sort_keys=True)
    with _cached_lock:
        store = _cached.get(key)
        if store is None:
            store = _cached[key] = open_storage(spec)
        return store


def reopen_storage(store: Storage) -> Storage:
    """A store of its own for a background writer (its own connections, counted apart), rebuilt
    from ``store``'s spec; ``store`` itself when it cannot be rebuilt from a spec."""
    try:
        return open_storage(store.spec())
    except Exception:
        return store


def storage_from_url(url: str, *, region: str | None = None, endpoint_url: str | None = None) -> tuple[Storage, str]:
    """Open the store a URL names and return it with the key prefix the URL carries.

    ``s3://bucket/some/prefix`` is S3 (``endpoint_url`` for S3-compatible servers);
    ``file:///path`` or a plain path is a local folder.
    """
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigurationError(f"S3 storage URL {url!r} has no bucket: write s3://BUCKET/prefix")
        spec: dict[str, Any] = {"kind": "s3", "bucket": parsed.netloc}
        if region:
            spec["region"] = region
        if endpoint_url:
            spec["endpoint_url"] = endpoint_url
        return open_storage(spec), parsed.path.strip("/")
    if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
        raise ConfigurationError(
            f"storage URL {url!r} names the host {parsed.netloc!r}, not a folder: write file:///absolute/path "
            f"(three slashes), or the plain path {url[len('file://'):]!r} for a folder relative to this directory"
        )
    if parsed.scheme in ("file", ""):
        path = parsed.path if parsed.scheme == "file" else url
        return open_storage({"kind": "local", "root": os.path.expanduser(path)}), ""
    raise ConfigurationError(
        f"unsupported storage URL {url!r}: use s3://BUCKET/prefix, file:///folder or a folder path"
    )


__all__ = ["STORES", "ObjectInfo", "Storage", "StorageStats", "open_cached", "open_storage", "reopen_storage", "storage_from_url"]
