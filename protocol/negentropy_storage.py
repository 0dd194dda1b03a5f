"""Negentropy v1 items: the sorted storage, its fingerprints and the varint they use.

The data half of the negentropy engine (``protocol/negentropy.py`` is the message
half): the protocol constants, the base-128 varint of every length and timestamp, the
range fingerprint (spec 0005 §Set reconciliation, "Fingerprint"), and
:class:`NegentropyStorage`, the sealed and sorted vector of ``(timestamp, id)`` items
that a session reconciles. Import the public names from ``protocol.negentropy``.
"""

from __future__ import annotations

import hashlib
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from enum import IntEnum
from typing import Final

from protocol.errors import NegentropyError

__all__ = [
    "BUCKETS",
    "FINGERPRINT_SIZE",
    "FRAME_SIZE_SLACK",
    "ID_LIST_THRESHOLD",
    "ID_SIZE",
    "INFINITY_TIMESTAMP",
    "MAX_VARINT_BYTES",
    "MIN_FRAME_SIZE_LIMIT",
    "PROTOCOL_VERSION",
    "VERSION_MAX",
    "VERSION_MIN",
    "ZERO_ID",
    "Mode",
    "NegentropyStorage",
    "decode_varint",
    "encode_varint",
    "fingerprint",
    "split_ids",
]

# -- constants (spec 0005 §Set reconciliation; values are the reference's) ------------

#: Version byte that opens every message; 0x60..0x6F is the negentropy range (§version).
PROTOCOL_VERSION: Final = 0x61
VERSION_MIN: Final = 0x60
VERSION_MAX: Final = 0x6F
#: Ids are exactly 32 bytes (Murmur event ids are SHA-256 digests).
ID_SIZE: Final = 32
#: A fingerprint is the first 16 bytes of a SHA-256 (§fingerprint).
FINGERPRINT_SIZE: Final = 16
#: ``2**64 - 1`` is reserved: the "infinity" timestamp of the last upper bound.
INFINITY_TIMESTAMP: Final = (1 << 64) - 1
#: A mismatched range of ``n >= ID_LIST_THRESHOLD`` items is split into this many
#: fingerprinted buckets; a smaller one is sent whole as an IdList (§splitting).
BUCKETS: Final = 16
ID_LIST_THRESHOLD: Final = 2 * BUCKETS
#: A non-zero frame size limit below this is refused, as the reference refuses it.
MIN_FRAME_SIZE_LIMIT: Final = 4096
#: Output stops growing once it would pass ``limit - FRAME_SIZE_SLACK`` bytes; the slack
#: leaves room for the closing "fingerprint of everything else" range (§frame limits).
FRAME_SIZE_SLACK: Final = 200
#: A varint carries at most 64 bits: 10 base-128 digits.
MAX_VARINT_BYTES: Final = 10

_MAX_U64: Final = (1 << 64) - 1
_MASK_256: Final = (1 << 256) - 1
ZERO_ID: Final = bytes(ID_SIZE)
# Prefix sums of the ids are kept every _STRIDE items only: a fingerprint of any range
# costs at most _STRIDE/2 id conversions per end, for n/16 big ints instead of n
# (memory matters at 1M events, DESIGN.md).
_STRIDE: Final = 16


class Mode(IntEnum):
    """The mode varint that follows each range's upper bound (§modes)."""

    SKIP = 0
    FINGERPRINT = 1
    ID_LIST = 2


# -- varints and fingerprints -------------------------------------------------------


def encode_varint(n: int) -> bytes:
    """Base-128, most significant digit first, high bit set on all but the last byte.

    The shortest form is the only form (§varint); ``n`` must fit in 64 bits.
    """
    if n < 0 or n > _MAX_U64:
        raise NegentropyError(f"varint out of range: {n}")
    if n < 0x80:
        return bytes((n,))
    digits = [n & 0x7F]
    n >>= 7
    while n:
        digits.append(0x80 | (n & 0x7F))
        n >>= 7
    digits.reverse()
    return bytes(digits)


def decode_varint(data: bytes, pos: int = 0) -> tuple[int, int]:
    """Read one varint at ``pos``; return ``(value, next_pos)``.

    Stricter than the reference, which never sends what this refuses: a leading
    ``0x80`` digit (not the shortest form), more than 10 bytes, or a value that does
    not fit in 64 bits are all errors, as is running off the end of ``data``.
    """
    end = len(data)
    if pos >= end:
        raise NegentropyError("truncated varint")
    byte = data[pos]
    pos += 1
    if byte < 0x80:
        return byte, pos
    if byte == 0x80:
        raise NegentropyError("non-minimal varint")
    value = byte & 0x7F
    for _ in range(MAX_VARINT_BYTES - 1):
        if pos >= end:
            raise NegentropyError("truncated varint")
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            if value > _MAX_U64:
                raise NegentropyError("varint exceeds 64 bits")
            return value, pos
    raise NegentropyError("varint longer than 10 bytes")


def _fingerprint_of_sum(total: int, count: int) -> bytes:
    # §fingerprint: SHA-256(sum mod 2^256 as 32 little-endian bytes || varint(count)),
    # truncated to 16 bytes. Addition commutes, so any subset of a range hashes the
    # same whatever order the peer stored it in.
    digest = hashlib.sha256((total & _MASK_256).to_bytes(32, "little") + encode_varint(count))
    return digest.digest()[:FINGERPRINT_SIZE]


def fingerprint(ids: Iterable[bytes]) -> bytes:
    """The 16-byte fingerprint of a collection of 32-byte ids (order does not matter)."""
    total = 0
    count = 0
    for item_id in ids:
        if len(item_id) != ID_SIZE:
            raise NegentropyError("ids must be 32 bytes")
        total += int.from_bytes(item_id, "little")
        count += 1
    return _fingerprint_of_sum(total, count)


# -- storage ------------------------------------------------------------------------


class NegentropyStorage:
    """A sorted vector of ``(timestamp, id)`` items: fill with :meth:`insert`, then :meth:`seal`.

    Items sort by timestamp, then by id bytewise (§items). Sealed storage keeps one
    ``array('Q')`` of timestamps, one ``bytes`` of concatenated ids and a strided
    prefix sum of the ids, so it costs about 44 bytes an item and no Python object
    per item once sealed.
    """

    __slots__ = ("_count", "_ids", "_pending", "_prefix", "_sealed", "_timestamps")

    def __init__(self) -> None:
        self._pending: list[tuple[int, bytes]] | None = []
        self._sealed = False
        self._timestamps: array[int] = array("Q")
        self._ids = b""
        self._prefix: list[int] = [0]
        self._count = 0

    @classmethod
    def from_items(cls, items: Iterable[tuple[int, bytes]]) -> NegentropyStorage:
        """A sealed storage holding ``items`` (any order)."""
        storage = cls()
        for timestamp, item_id in items:
            storage.insert(timestamp, item_id)
        storage.seal()
        return storage

    @classmethod
    def from_sorted(cls, items: Iterable[tuple[int, bytes]]) -> NegentropyStorage:
        """A sealed storage from items already in order (timestamp, then id), streamed.

        No Python object is kept per item, so building costs about the 44 bytes an item
        of the result (a node's database hands its items over in index order). Raises
        :class:`NegentropyError` if an item is out of range, out of order or repeated.
        """
        stamps: array[int] = array("Q")
        ids = bytearray()
        prefix = [0]
        total = count = 0
        last_ts, last_id = -1, b""
        for timestamp, item_id in items:
            if not isinstance(timestamp, int) or not 0 <= timestamp < INFINITY_TIMESTAMP:
                raise NegentropyError(f"timestamp out of range: {timestamp!r}")
            if len(item_id) != ID_SIZE:
                raise NegentropyError("ids must be 32 bytes")
            if timestamp < last_ts or (timestamp == last_ts and item_id <= last_id):
                raise NegentropyError("items are not in strictly increasing order")
            last_ts, last_id = timestamp, item_id
            stamps.append(timestamp)
            ids += item_id
            total += int.from_bytes(item_id, "little")
            count += 1
            if count % _STRIDE == 0:
                prefix.append(total)
        storage = cls()
        storage._pending = None
        storage._timestamps = stamps
        storage._ids = bytes(ids)
        storage._count = count
        storage._prefix = prefix
        storage._sealed = True
        return storage

    def insert(self, timestamp: int, item_id: bytes) -> None:
        """Add one item; ``timestamp`` in ``[0, 2**64 - 2]``, ``item_id`` 32 bytes."""
        if self._pending is None:
            raise NegentropyError("storage already sealed")
        if not isinstance(timestamp, int) or not 0 <= timestamp < INFINITY_TIMESTAMP:
            raise NegentropyError(f"timestamp out of range: {timestamp!r}")
        item_id = bytes(item_id)
        if len(item_id) != ID_SIZE:
            raise NegentropyError("ids must be 32 bytes")
        self._pending.append((timestamp, item_id))

    def seal(self) -> None:
        """Sort, refuse duplicates, and build the compact arrays; no inserts after this."""
        if self._pending is None:
            raise NegentropyError("storage already sealed")
        items = self._pending
        items.sort()
        self._pending = None
        for i in range(1, len(items)):
            if items[i - 1] == items[i]:
                raise NegentropyError("duplicate item inserted")
        self._timestamps = array("Q", [ts for ts, _ in items])
        self._ids = b"".join([item_id for _, item_id in items])
        self._count = len(items)
        prefix = [0]
        total = 0
        ids = self._ids
        for i in range(self._count):
            total += int.from_bytes(ids[i * ID_SIZE : (i + 1) * ID_SIZE], "little")
            if (i + 1) % _STRIDE == 0:
                prefix.append(total)
        self._prefix = prefix
        self._sealed = True

    @property
    def sealed(self) -> bool:
        return self._sealed

    def __len__(self) -> int:
        self._check_sealed()
        return self._count

    def timestamp(self, index: int) -> int:
        return self._timestamps[index]

    def id(self, index: int) -> bytes:
        return self._ids[index * ID_SIZE : (index + 1) * ID_SIZE]

    def ids(self, lower: int, upper: int) -> bytes:
        """The ids of items ``[lower, upper)``, concatenated."""
        return self._ids[lower * ID_SIZE : upper * ID_SIZE]

    def fingerprint(self, lower: int, upper: int) -> bytes:
        """Fingerprint of items ``[lower, upper)`` in O(_STRIDE) time."""
        self._check_sealed()
        return _fingerprint_of_sum(self._sum_to(upper) - self._sum_to(lower), upper - lower)

    def find_lower_bound(self, lower: int, upper: int, timestamp: int, padded_id: bytes) -> int:
        """Index of the first item in ``[lower, upper)`` not below the bound, else ``upper``."""
        stamps = self._timestamps
        first = bisect_left(stamps, timestamp, lower, upper)
        # A zero id sorts first among its timestamp: the common "timestamps differ"
        # bound (§bound, prefix length 0) needs no id comparison at all.
        if padded_id == ZERO_ID or first == upper or stamps[first] != timestamp:
            return first
        last = bisect_right(stamps, timestamp, first, upper)
        return bisect_left(_IdView(self._ids), padded_id, first, last)

    def _sum_to(self, index: int) -> int:
        # Sum of the first `index` ids (not reduced mod 2^256; callers reduce once).
        # Walk from the nearer checkpoint so at most _STRIDE/2 ids are converted.
        quotient, remainder = divmod(index, _STRIDE)
        ids = self._ids
        if remainder * 2 > _STRIDE and quotient + 1 < len(self._prefix):
            total = self._prefix[quotient + 1]
            for i in range(index, (quotient + 1) * _STRIDE):
                total -= int.from_bytes(ids[i * ID_SIZE : (i + 1) * ID_SIZE], "little")
            return total
        total = self._prefix[quotient]
        for i in range(quotient * _STRIDE, index):
            total += int.from_bytes(ids[i * ID_SIZE : (i + 1) * ID_SIZE], "little")
        return total

    def _check_sealed(self) -> None:
        if not self._sealed:
            raise NegentropyError("storage not sealed")


def split_ids(blob: bytes) -> list[bytes]:
    """Concatenated 32-byte ids, as a list."""
    return [blob[i : i + ID_SIZE] for i in range(0, len(blob), ID_SIZE)]


class _IdView:
    """Indexable view of the concatenated ids, so ``bisect`` can search them in place."""

    __slots__ = ("_ids",)

    def __init__(self, ids: bytes) -> None:
        self._ids = ids

    def __len__(self) -> int:
        return len(self._ids) // ID_SIZE

    def __getitem__(self, index: int) -> bytes:
        return self._ids[index * ID_SIZE : (index + 1) * ID_SIZE]
