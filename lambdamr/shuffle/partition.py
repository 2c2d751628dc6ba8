"""Partitioners: which reducer a key goes to.

Every mapper must send a key to the same reducer, and mappers run in different processes
(on Lambda, different machines), where Python's ``hash()`` of a ``str`` differs (it is salted
per process). The default partitioner therefore hashes a canonical byte encoding of the key
with CRC-32 (``zlib``: the same value on every machine and in every version of Python; the
partition needs spread, not secrecy, and CRC-32 costs a fifth of a BLAKE2b call per key — the
difference is most of a word count's routing time). Keys that compare equal encode equally
for the built-in types (``1``, ``1.0`` and ``True`` are one dict key, so they go to one
reducer); other types fall back to their pickle (dataclasses and enums by their fields and
value), which is stable for plain classes. ``stable_hash`` is the 64-bit BLAKE2b of the same
encoding, for users who need a wider stable hash.
"""

from __future__ import annotations

import bisect
import dataclasses
import decimal
import enum
import hashlib
import itertools
import math
import numbers
import operator
import pickle
import struct
import zlib
from collections.abc import Sequence
from typing import Any

import cloudpickle

from lambdamr.errors import ConfigurationError, SerializationError
from lambdamr.shuffle.notes import short_repr

_LEN = struct.Struct("<I")


def _joined(tag: bytes, parts: list[bytes]) -> bytes:
    return tag + b"".join(_LEN.pack(len(p)) + p for p in parts)


def canonical_bytes(key: Any) -> bytes:
    """A byte string that is equal for equal keys, in every process and on every machine."""
    if isinstance(key, str):
        return b"s" + key.encode("utf-8", "surrogatepass")
    if isinstance(key, (bytes, bytearray, memoryview)):
        return b"b" + bytes(key)
    if key is None:
        return b"n"
    if isinstance(key, numbers.Integral):  # bool and numpy integers included: True == 1
        return b"i" + str(int(key)).encode()
    if isinstance(key, (numbers.Real, decimal.Decimal)):  # Decimal is no numbers.Real, yet Decimal(1) == 1
        return _number_bytes(key)
    if isinstance(key, tuple):  # namedtuples too: they equal plain tuples
        return _joined(b"t", [canonical_bytes(item) for item in key])
    if isinstance(key, frozenset):
        return _joined(b"z", sorted(canonical_bytes(item) for item in key))
    kind = type(key)
    if isinstance(key, enum.Enum):
        return _joined(b"e", [kind.__qualname__.encode(), canonical_bytes(key.value)])
    if dataclasses.is_dataclass(key) and kind.__dataclass_params__.eq:
        fields = [canonical_bytes(getattr(key, f.name)) for f in dataclasses.fields(key) if f.compare]
        return _joined(b"d", [kind.__qualname__.encode(), *fields])
    try:
        return b"p" + pickle.dumps(key, protocol=4)
    except Exception:
        pass
    try:  # classes defined in the user's __main__ or modules shipped by value
        pickled: bytes = cloudpickle.dumps(key, protocol=4)
        return b"c" + pickled
    except Exception as exc:
        raise SerializationError(
            f"a key cannot be pickled: {short_repr(key)} (a {kind.__name__}): {type(exc).__name__}: {exc}. "
            "Keys cross the shuffle through storage; use plain data (str, bytes, numbers, tuples, dataclasses)"
        ) from exc


def _number_bytes(key: Any) -> bytes:
    """Equal numbers of any type (int, float, Fraction, Decimal, numpy) encode equally."""
    if key != key:
        raise not_a_groupable_key(key)
    if isinstance(key, float) or not math.isfinite(key):
        value = float(key)
        if math.isfinite(value) and value.is_integer():
            return b"i" + str(int(value)).encode()  # 2.0 == 2
        return b"f" + repr(value).encode()
    if key == int(key):  # Fraction(4, 2), Decimal("2.00")
        return b"i" + str(int(key)).encode()
    as_float = float(key)
    if as_float == key:  # exactly a float: Decimal("0.5") == 0.5
        return b"f" + repr(as_float).encode()
    if isinstance(key, decimal.Decimal):  # equal Decimals differ only by trailing zeros
        return b"D" + str(key.normalize()).encode()
    if isinstance(key, numbers.Rational):  # Fraction(1, 3): no float equals it
        return b"q" + f"{key.numerator}/{key.denominator}".encode()
    return b"f" + repr(as_float).encode()


def not_a_groupable_key(key: Any) -> Exception:
    """The error for a key that is not equal to itself (NaN): its values could not be grouped."""
    return ConfigurationError(
        f"map_fn emitted the key {short_repr(key)}, which is not equal to itself (NaN), so its values cannot be "
        "grouped: replace NaN keys with None or a string before emitting them"
    )


def stable_hash(key: Any) -> int:
    """A 64-bit hash of ``key`` that is the same in every process (unlike ``hash()``)."""
    return int.from_bytes(hashlib.blake2b(canonical_bytes(key), digest_size=8).digest(), "little")


#: the CRC-32 of a str key's tag, b"s": a str's partition continues it with the UTF-8 bytes
_STR_CRC = zlib.crc32(b"s")
_utf8 = operator.methodcaller("encode", "utf-8", "surrogatepass")


def stable_partition(key: Any, reducers: int) -> int:
    """The default partitioner: the CRC-32 of the key's canonical bytes, modulo the number of
    reducers (the same in every process and on every machine)."""
    if isinstance(key, str):  # the common case, without the dispatch of canonical_bytes
        return zlib.crc32(key.encode("utf-8", "surrogatepass"), _STR_CRC) % reducers
    return zlib.crc32(canonical_bytes(key)) % reducers


def stable_partitions(keys: Sequence[Any], reducers: int) -> list[int] | None:
    """``[stable_partition(key, reducers) for key in keys]`` when every key is a ``str``,
    computed in C without a Python call per key (about 5x faster); None when a key is not a
    ``str`` (the caller then partitions key by key)."""
    if not all(map(isinstance, keys, itertools.repeat(str))):
        return None
    crcs = map(zlib.crc32, map(_utf8, keys), itertools.repeat(_STR_CRC))
    return list(map(reducers.__rmod__, crcs))


class RangePartitioner:
    """Send keys to reducers by range: reducer ``i`` gets keys in ``[bounds[i-1], bounds[i])``.

    With ``len(bounds) == reducers - 1`` sorted split points, reducer outputs concatenated in
    reducer order are globally sorted (what a sort job wants).

        partition=RangePartitioner([b"g", b"p"])   # 3 reducers: < g, g..p, >= p
    """

    def __init__(self, bounds: Sequence[Any]) -> None:
        self.bounds = list(bounds)
        if any(b > a for a, b in zip(self.bounds[1:], self.bounds)):
            raise ValueError("RangePartitioner bounds must be sorted ascending")

    def __call__(self, key: Any, reducers: int) -> int:
        if reducers != len(self.bounds) + 1:
            raise ValueError(
                f"RangePartitioner has {len(self.bounds)} bounds, so it needs reducers={len(self.bounds) + 1}, not {reducers}"
            )
        return bisect.bisect_right(self.bounds, key)

    def __repr__(self) -> str:
        return f"RangePartitioner({len(self.bounds)} bounds)"
