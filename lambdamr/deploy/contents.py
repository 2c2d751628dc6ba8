"""What a bucket holds, by prefix: lambdamr's own prefixes apart from everyone else's.

lambdamr writes under three prefixes only: the temp prefix (``lambdamr/`` by default: task
data, results, shuffle intermediates, leases), the job history beside it (``lambdamr-history/``,
``lambdamr.driver.history``) and ``lambdamr-deploy/`` (layer uploads).
Everything else — ``map_reduce`` output under a ``--write`` grant, a user's inputs — is a
user object: ``teardown`` and ``clean`` list it apart and never delete it unless told to.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from lambdamr.deploy.options import DEPLOY_PREFIX

TOP_LEVEL = ""  # the group of keys with no "/" in them


@dataclass(frozen=True)
class PrefixUsage:
    """Objects under one prefix: how many and how many bytes; ``ours`` when lambdamr wrote them."""

    prefix: str
    count: int
    size: int
    ours: bool

    def describe(self, location: str) -> str:
        """``3 objects (1.2 KB) under s3://bucket/out/``; ``location`` is the store's URL."""
        where = f"{location.rstrip('/')}/{self.prefix}" if self.prefix else f"{location.rstrip('/')}/ (top level)"
        return f"{plural(self.count, 'object')} ({human_size(self.size)}) under {where}"


@dataclass(frozen=True)
class BucketContents:
    """A bucket's objects grouped by prefix (lambdamr's prefixes first)."""

    bucket: str
    usages: tuple[PrefixUsage, ...]

    @property
    def ours(self) -> tuple[PrefixUsage, ...]:
        return tuple(u for u in self.usages if u.ours)

    @property
    def users(self) -> tuple[PrefixUsage, ...]:
        return tuple(u for u in self.usages if not u.ours)

    @property
    def size(self) -> int:
        return sum(u.size for u in self.usages)


def own_prefixes(temp_prefix: str) -> tuple[str, ...]:
    """The prefixes lambdamr writes under, with their trailing ``/``."""
    from lambdamr.driver.history import history_prefix

    return (f"{temp_prefix.strip('/')}/", f"{history_prefix(temp_prefix)}/", f"{DEPLOY_PREFIX}/")


def group_objects(bucket: str, objects: Iterable[tuple[str, int]], temp_prefix: str) -> BucketContents:
    """``(key, size)`` pairs grouped under lambdamr's prefixes, the rest by first folder."""
    ours = own_prefixes(temp_prefix)
    totals: dict[tuple[str, bool], list[int]] = {}
    for key, size in objects:
        mine = next((p for p in ours if key.startswith(p)), None)
        group = (mine, True) if mine else ((key.split("/", 1)[0] + "/") if "/" in key else TOP_LEVEL, False)
        counts = totals.setdefault(group, [0, 0])
        counts[0] += 1
        counts[1] += size
    usages = [PrefixUsage(prefix, count, size, mine) for (prefix, mine), (count, size) in totals.items()]
    usages.sort(key=lambda u: (not u.ours, u.prefix))
    return BucketContents(bucket, tuple(usages))


def bucket_contents(s3: Any, bucket: str, temp_prefix: str) -> BucketContents:
    """List the whole bucket (read only) and group it."""
    return group_objects(bucket, ((o["Key"], int(o.get("Size", 0))) for o in list_objects(s3, bucket, "")), temp_prefix)


#: how many objects ``deploy --plan`` lists to size a bucket (ten LIST requests at most)
SIZE_LISTING_LIMIT = 10_000


def bucket_size(s3: Any, bucket: str, limit: int = SIZE_LISTING_LIMIT) -> tuple[int, bool]:
    """The bytes in the first ``limit`` objects of the bucket, and whether that was all of them
    (a plan must stay quick and cheap on a bucket of millions of objects)."""
    size = count = 0
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"MaxItems": limit + 1})
    for page in pages:
        for item in page.get("Contents", []):
            count += 1
            if count > limit:
                return size, False
            size += int(item.get("Size", 0))
    return size, True


def list_objects(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def human_size(size: float) -> str:
    """Bytes for people: ``512 B``, ``1.5 KB``, ``3.2 GB`` (powers of 1,024)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def group_by_session(bucket: str, objects: Iterable[tuple[str, int]], temp_prefix: str) -> BucketContents:
    """``(key, size)`` pairs under the temp prefix grouped by session folder (``lambdamr.driver.lease``)."""
    from lambdamr.driver.lease import session_of

    totals: dict[str, list[int]] = {}
    base = temp_prefix.strip("/") + "/"
    for key, size in objects:
        group = session_of(key, base)
        counts = totals.setdefault(group + "/" if group else base, [0, 0])
        counts[0] += 1
        counts[1] += size
    return BucketContents(bucket, tuple(PrefixUsage(p, c, s, True) for p, (c, s) in sorted(totals.items())))
