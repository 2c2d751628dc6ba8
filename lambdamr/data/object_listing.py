"""What ``objects()`` names, listed in the driver: every object with its size and how it is read.

One location means what it always meant:

=============================  ==============================================================
``s3://bucket/prefix/``        every object under the prefix (one LIST per 1,000 objects)
``s3://bucket/key``            that object, or else every object under ``key/``
a folder, ``file:///folder``   every file under it
a file, ``file:///a.txt``      that file
``https://host/a.txt``         that URL (a HEAD: its size and whether it serves byte ranges)
=============================  ==============================================================

A list of locations is the concatenation of what each names, in the order given (a prefix in
key order); each must name at least one object, and no object may be named twice (a key that
is also under a listed prefix would be read twice). Locations of a list are listed on a few
threads: a thousand keys are a thousand LISTs or HEADs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from lambdamr.data import http_source
from lambdamr.data.chunk import http_spec
from lambdamr.data.http_source import display_url, is_http_url
from lambdamr.errors import ConfigurationError
from lambdamr.storage import Storage, open_storage, storage_from_url

#: threads that list the locations of a list at once (S3 LISTs, HEADs: each waits on the network)
LIST_THREADS = 16


@dataclass(frozen=True)
class ListedObject:
    """One object to read: where a chunk finds it, its size, whether ranges of it can be read."""

    storage: dict[str, Any]  # the spec a Chunk reads it through (``http_spec`` for a URL)
    key: str  # its key in that store, or its URL
    size: int
    url: str  # where it is, for messages and the grants check (a URL without its query)
    ranged: bool = True

    @property
    def kind(self) -> str:
        """``"s3"``, ``"local"`` or ``"http"``."""
        return str(self.storage.get("kind"))


@dataclass
class Listing:
    """Every object the locations name, in order, and the stores that listed them."""

    objects: list[ListedObject] = field(default_factory=list)
    stores: list[Storage] = field(default_factory=list)  # their requests count as the job's

    def storage_reads(self) -> list[str]:
        """Every object the runtime reads from a store (``Backend.check_access``); an HTTP(S)
        URL needs no grant: the runtime fetches it like any client."""
        return [o.url for o in self.objects if o.kind != "http"]

    def in_local_folders(self) -> list[ListedObject]:
        """The objects in a local folder (a backend in the cloud cannot read them)."""
        return [o for o in self.objects if o.kind == "local"]

    def read_whole(self) -> list[ListedObject]:
        """The objects whose server reads no byte ranges: one chunk each."""
        return [o for o in self.objects if not o.ranged]


def list_locations(locations: Sequence[str], *, region: str | None, endpoint_url: str | None) -> Listing:
    """List every location (``ConfigurationError`` for one that names nothing, or an object named
    twice); S3 stores are opened once per bucket."""
    buckets: dict[str, Storage] = {}

    def one(location: str) -> tuple[list[ListedObject], Storage | None]:
        return _list_one(location, region=region, endpoint_url=endpoint_url, buckets=buckets)

    for location in locations:  # open each bucket's store once, before the threads share them
        if location.startswith("s3://"):
            bucket = location.removeprefix("s3://").partition("/")[0]
            if bucket not in buckets:
                buckets[bucket] = storage_from_url(f"s3://{bucket}", region=region, endpoint_url=endpoint_url)[0]
    if len(locations) > 1:
        with ThreadPoolExecutor(min(LIST_THREADS, len(locations)), thread_name_prefix="lambdamr-list") as pool:
            parts = list(pool.map(one, locations))
    else:
        parts = [one(location) for location in locations]
    listing = Listing()
    seen: dict[tuple[str, str], str] = {}
    stores: dict[int, Storage] = {}
    for location, (listed, store) in zip(locations, parts):
        for item in listed:
            name = (item.kind, item.url)
            if name in seen:
                raise ConfigurationError(
                    f"objects(): {item.url} is named twice (by {seen[name]!r} and {location!r}); name each "
                    "object once, or it would be read twice"
                )
            seen[name] = location
        listing.objects += listed
        if store is not None:
            stores.setdefault(id(store), store)
    listing.stores = list(stores.values())
    return listing


def _list_one(
    location: str, *, region: str | None, endpoint_url: str | None, buckets: dict[str, Storage]
) -> tuple[list[ListedObject], Storage | None]:
    if is_http_url(location):
        found = http_source.probe(location)
        shown = display_url(location)
        return [ListedObject(http_spec(found.ranged), location, found.size, shown, found.ranged)], None
    if location.startswith("s3://"):
        return _list_s3(location, buckets[location.removeprefix("s3://").partition("/")[0]])
    if "://" in location and not location.startswith("file://"):
        raise ConfigurationError(
            f"objects({location!r}): give s3://bucket/prefix, an http(s):// URL, a folder or a file path"
        )
    return _list_local(location)


def _list_s3(location: str, store: Storage) -> tuple[list[ListedObject], Storage]:
    prefix = location.removeprefix("s3://").partition("/")[2].strip("/")
    if prefix and location.endswith("/"):
        prefix += "/"  # "data/" must not match "data-old/..."
    listing = [(i.key, i.size) for i in store.list(prefix) if not i.key.endswith("/")]
    if prefix and not prefix.endswith("/"):
        exact = [(k, s) for k, s in listing if k == prefix]
        listing = exact or [(k, s) for k, s in listing if k.startswith(prefix + "/")]
    if not listing:
        raise ConfigurationError(f"objects({location!r}): no objects under {store.url(prefix)}; check the location")
    spec = store.spec()
    return [ListedObject(spec, key, size, store.url(key)) for key, size in listing], store


def _list_local(location: str) -> tuple[list[ListedObject], Storage]:
    path = os.path.abspath(os.path.expanduser(location.removeprefix("file://")))
    if os.path.isfile(path):
        store = open_storage({"kind": "local", "root": os.path.dirname(path)})
        listing = [(os.path.basename(path), os.path.getsize(path))]
    elif os.path.isdir(path):
        store = open_storage({"kind": "local", "root": path})
        listing = [(i.key, i.size) for i in store.list("")]
    else:
        raise ConfigurationError(f"objects({location!r}): no such file or folder")
    if not listing:
        raise ConfigurationError(f"objects({location!r}): no objects under {path}; check the location")
    spec = store.spec()
    return [ListedObject(spec, key, size, store.url(key)) for key, size in listing], store


__all__ = ["LIST_THREADS", "ListedObject", "Listing", "list_locations"]
