"""Inputs in storage or on the web: ``lambdamr.objects(...)`` splits objects into byte-range chunks.

    for chunk in lambdamr.objects("s3://bucket/logs/", chunk_bytes=64 << 20):   # or a folder
        ...   # each chunk is one mapper's input; chunk.read() fetches only its range

    lambdamr.objects(["s3://b/a.csv", "s3://b/more/", "https://host/c.csv"], chunks_per_object=4)

What a location names (a prefix, a key, a folder, a file, an HTTP(S) URL, or a list of them)
is listed in the driver (``object_listing``); reading happens in the task (``chunk.Chunk``).
Text (``lines=True``, the default) is split on lines the way Hadoop splits it: every line is
read by exactly one chunk, whatever the chunk boundaries. Fixed-size binary records
(``record_bytes=100``) are split on record boundaries instead.
"""

from __future__ import annotations

import logging
import math
import reprlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lambdamr.data.chunk import LINE_OVERSHOOT, Chunk
from lambdamr.errors import ConfigurationError

if TYPE_CHECKING:  # listing runs in the driver: a task unpickling a Chunk does not import it (nor urllib)
    from lambdamr.data.object_listing import Listing

log = logging.getLogger("lambdamr")

#: default chunk size: a comfortable mapper input on Lambda at 1-2 GB of memory
DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024
#: the size options of objects(), at most one of which may be given
_SIZE_OPTIONS = ("chunk_bytes", "chunks", "chunks_per_object")


def objects(
    location: str | Sequence[str],
    *,
    chunk_bytes: int | None = None,
    chunks: int | None = None,
    chunks_per_object: int | None = None,
    lines: bool = True,
    record_bytes: int | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> ObjectSource:
    """Objects as mapper inputs: every object ``location`` names, split into chunks.

    Args:
        location: ``s3://bucket/prefix/`` (every object under it), ``s3://bucket/key`` (that
            object, or the objects under ``key/``), a folder, one file, an ``http(s)://`` URL
            (one object: its size from a HEAD), or a list of any of these (what each names,
            in the order given; no object twice).
        chunk_bytes: target size of a chunk (default 64 MiB). Chunks never span objects.
        chunks: instead: about this many chunks in all, spread over the objects by size (at
            least one per non-empty object).
        chunks_per_object: instead: every object in this many chunks of equal size (Lithops'
            ``obj_chunk_number``); fewer for an object of fewer bytes (records) than that.
        lines: align chunks to lines (text). ``False`` for raw byte ranges.
        record_bytes: align chunks to fixed-size records of this many bytes (binary data).
        region / endpoint_url: for S3; default to the executor's settings.

    An HTTP(S) object whose server does not serve byte ranges is one chunk, whatever the
    options (the driver logs a warning naming it).

    Returns:
        An ``ObjectSource``: pass it as ``inputs`` to ``map_reduce`` / ``map``; iterating it
        lists the objects and yields ``Chunk`` objects.
    """
    return ObjectSource(location, chunk_bytes, chunks, lines, record_bytes, region, endpoint_url, chunks_per_object)


@dataclass(frozen=True)
class ObjectSource:
    """A description of inputs; ``resolve()`` lists them and returns their chunks.

    ``location`` is what was given (a string or a list); ``locations`` is always a tuple.
    """

    location: str | Sequence[str]
    chunk_bytes: int | None = None
    chunks: int | None = None
    lines: bool = True
    record_bytes: int | None = None
    region: str | None = None
    endpoint_url: str | None = None
    chunks_per_object: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "location", _as_locations(self.location))  # a list given is not shared
        for location in self.locations:
            _check_location(location, self.location)
        given = [name for name in _SIZE_OPTIONS if getattr(self, name) is not None]
        if len(given) > 1:
            raise ConfigurationError(f"objects(): give one of chunk_bytes, chunks or chunks_per_object, not both {given}")
        for name in (*_SIZE_OPTIONS, "record_bytes"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigurationError(f"objects(): {name}={value!r}: give a whole number >= 1")
        if self.record_bytes is not None and self.lines:
            object.__setattr__(self, "lines", False)  # records, not lines

    @property
    def locations(self) -> tuple[str, ...]:
        """Every location, in the order given."""
        return (self.location,) if isinstance(self.location, str) else tuple(self.location)

    @property
    def mode(self) -> str:
        """How chunk boundaries are aligned: "lines", "records" or "bytes"."""
        if self.record_bytes:
            return "records"
        return "lines" if self.lines else "bytes"

    def listing(self, *, region: str | None = None, endpoint_url: str | None = None) -> Listing:
        """Every object the locations name, with its size (S3 LISTs, local listings, HEADs)."""
        from lambdamr.data.object_listing import list_locations

        return list_locations(self.locations, region=self.region or region, endpoint_url=self.endpoint_url or endpoint_url)

    def split(self, listing: Listing) -> list[Chunk]:
        """Split listed objects into chunks (in listing order, then offset order)."""
        listed = listing.objects
        ranges = split_objects(
            [o.size for o in listed],
            chunk_bytes=self.chunk_bytes,
            chunks=self.chunks,
            per_object=self.chunks_per_object,
            align=self.record_bytes or 1,
            whole=[not o.ranged for o in listed],
        )
        whole = listing.read_whole()
        if whole:
            shown = ", ".join(o.url for o in whole[:3]) + (f" and {len(whole) - 3} more" if len(whole) > 3 else "")
            log.warning("lambdamr: %s serve(s) no byte ranges: each is read whole, as one chunk", shown)
        out: list[Chunk] = []
        for item, pieces in zip(listed, ranges):
            for start, end in pieces:
                out.append(Chunk(item.storage, item.key, start, end, item.size, self.mode, len(out)))
        return out

    def resolve(self, *, region: str | None = None, endpoint_url: str | None = None) -> list[Chunk]:
        """List the objects and split them into chunks."""
        return self.split(self.listing(region=region, endpoint_url=endpoint_url))

    def __iter__(self) -> Iterator[Chunk]:
        from lambdamr.config import ExecutorConfig

        config = ExecutorConfig.resolve()
        return iter(self.resolve(region=config.region, endpoint_url=config.endpoint_url))


def _as_locations(given: object) -> str | tuple[str, ...]:
    """One location as it is, a list of them as a tuple; anything else refused."""
    if isinstance(given, str):
        return given
    if isinstance(given, Sequence) and not isinstance(given, (bytes, bytearray)) and given:
        return tuple(given)
    raise _not_a_location(given)


def _not_a_location(given: object) -> ConfigurationError:
    return ConfigurationError(
        f"objects({reprlib.repr(given)}): give s3://bucket/prefix/, a folder or file path, an http(s):// URL, or a list of them"
    )


def _check_location(location: Any, given: Any) -> None:
    from lambdamr.data.http_source import is_http_url  # not at import: a task unpickling chunks needs no urllib

    if not isinstance(location, str) or not location:
        raise _not_a_location(given)
    if is_http_url(location) and not location.split("://", 1)[1].split("/", 1)[0]:
        raise ConfigurationError(f"objects({location!r}): the URL names no host")


def split_objects(
    sizes: list[int],
    *,
    chunk_bytes: int | None,
    chunks: int | None,
    per_object: int | None = None,
    align: int = 1,
    whole: list[bool] | None = None,
) -> list[list[tuple[int, int]]]:
    """Byte ranges ``[start, end)`` for each object; boundaries fall on multiples of ``align``.

    ``per_object``: every object in that many ranges (fewer when it has fewer ``align``
    units); ``whole[i]``: object ``i`` is one range, whatever the options.
    """
    if per_object is not None:
        counts = [min(per_object, math.ceil(size / align)) if size else 0 for size in sizes]
    elif chunks is not None:
        counts = _spread_counts(sizes, chunks)
    else:
        step = max(align, (chunk_bytes or DEFAULT_CHUNK_BYTES) // align * align)
        counts = [math.ceil(size / step) if size else 0 for size in sizes]
    if whole is not None:
        counts = [min(count, 1) if one else count for count, one in zip(counts, whole)]
    out = []
    for size, count in zip(sizes, counts):
        units = math.ceil(size / align)  # whole records (the last one may be short)
        cuts = sorted({min(size, round(units * j / count) * align) for j in range(1, count)} - {0}) if count else []
        bounds = [0, *cuts, size] if count else []
        out.append([(a, b) for a, b in zip(bounds, bounds[1:]) if b > a])
    return out


def _spread_counts(sizes: list[int], chunks: int) -> list[int]:
    """Split ``chunks`` over objects in proportion to size; every non-empty object gets one."""
    total = sum(sizes)
    shares = [chunks * size / total if total else 0.0 for size in sizes]
    counts = [max(1, int(share)) if size else 0 for size, share in zip(sizes, shares)]
    leftover = chunks - sum(counts)
    by_remainder = sorted((i for i, s in enumerate(sizes) if s), key=lambda i: shares[i] - int(shares[i]), reverse=True)
    for i in by_remainder[: max(0, leftover)]:
        counts[i] += 1
    return counts


__all__ = ["DEFAULT_CHUNK_BYTES", "LINE_OVERSHOOT", "Chunk", "ObjectSource", "objects", "split_objects"]
