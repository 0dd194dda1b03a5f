"""Canonical MessagePack: the only encoder and decoder of signed bytes in Murmur.

Signatures cover bytes, so every value must have exactly one encoding (spec 0002,
"Canonical encoding"). :func:`encode` produces it; :func:`decode` accepts nothing
else. The rules:

* types: nil, bool, int (-2**63 .. 2**64-1), str (valid UTF-8), bin, array, and
  map with str keys. No float, no ext (timestamps included);
* ints in their shortest form, str as str (never bin) and bytes as bin, each length
  prefix in its shortest form — exactly what ``msgpack`` emits with
  ``use_bin_type=True``;
* map keys sorted by their UTF-8 bytes, no duplicates;
* bounded total size, nesting depth, string/bin length and collection length;
* exactly one value: trailing bytes are rejected.

The decoder lets ``msgpack`` parse with hard limits, walks the result to check types
(iteratively, so hostile nesting cannot exhaust the Python stack), then re-encodes and
compares with the input: any difference is ``non-canonical``. Nothing else in the code
base imports ``msgpack``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import msgpack

from protocol.errors import (
    MalformedError,
    NonCanonicalError,
    TooDeepError,
    TooLargeError,
)

__all__ = ["DEFAULT_LIMITS", "DecodeLimits", "Value", "decode", "encode", "encode_bins"]

#: A value that canonical MessagePack can carry.
Value: TypeAlias = (
    bool | int | str | bytes | list["Value"] | tuple["Value", ...] | dict[str, "Value"] | None
)

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodeLimits:
    """Bounds applied while decoding untrusted bytes (spec 0002 §limits)."""

    max_bytes: int = 1 << 20
    max_depth: int = 16
    max_str: int = 1 << 16
    max_bin: int = 1 << 20
    max_items: int = 10_000


DEFAULT_LIMITS = DecodeLimits()


class _Dup(Exception):
    """Internal: a map carried the same key twice."""


def _pairs_to_dict(pairs: Sequence[tuple[Any, Any]]) -> dict[Any, Any]:
    """Build a decoded map, insisting on str keys in strictly increasing order.

    Python orders ``str`` by code point, which is the order of their UTF-8 bytes, so
    strictly increasing keys are exactly the canonical order without duplicates. With
    maps checked here, re-encoding the decoded value as it is reproduces canonical
    bytes, and ``decode`` need not rebuild it to compare.
    """
    prev: str | None = None
    for key, _ in pairs:
        if not isinstance(key, str):
            raise NonCanonicalError(f"map key of type {type(key).__name__}; keys must be str")
        if prev is not None and key <= prev:
            if key == prev:
                raise _Dup(key)
            raise NonCanonicalError("map keys are not in canonical (bytewise) order")
        prev = key
    return dict(pairs)


def _reject_ext(code: int, data: bytes) -> Any:
    raise NonCanonicalError(f"ext type {code} is not allowed")


def _sort_key(key: str) -> bytes:
    return key.encode("utf-8")


def _canonicalize(value: Any, depth: int, max_depth: int) -> Any:
    """Return ``value`` with every map rebuilt in canonical key order, or raise."""
    if depth > max_depth:
        raise TooDeepError(f"nesting deeper than {max_depth}")
    if value is None or isinstance(value, bool | str | bytes):
        return value
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise TooLargeError("integer outside the 64-bit range")
        return value
    if isinstance(value, list | tuple):
        return [_canonicalize(v, depth + 1, max_depth) for v in value]
    if isinstance(value, Mapping):
        items: list[tuple[str, Any]] = []
        for k, v in value.items():
            if not isinstance(k, str):
                raise NonCanonicalError(f"map key of type {type(k).__name__}; keys must be str")
            items.append((k, _canonicalize(v, depth + 1, max_depth)))
        items.sort(key=lambda kv: _sort_key(kv[0]))
        return dict(items)
    if isinstance(value, float):
        raise NonCanonicalError("floats are not allowed")
    raise NonCanonicalError(f"type {type(value).__name__} cannot be encoded")


def encode(value: object, *, max_depth: int = DEFAULT_LIMITS.max_depth) -> bytes:
    """Encode ``value`` (a :data:`Value`; tuples and any ``Mapping`` are accepted) canonically.

    Maps may be given in any order; they are written with keys sorted bytewise.
    Raises :class:`~protocol.errors.NonCanonicalError` for values with no canonical
    form (floats, non-str keys, other types), ``TooLargeError`` for out-of-range ints
    and ``TooDeepError`` past ``max_depth``.
    """
    canonical = _canonicalize(value, 0, max_depth)
    return msgpack.packb(canonical, use_bin_type=True)


#: The scalar types msgpack decodes that canonical MessagePack allows.
_SCALARS = frozenset({type(None), bool, int, str, bytes})


def _check_types(root: Any, limits: DecodeLimits) -> None:
    """Walk a decoded value iteratively: allowed types and the depth bound.

    Only containers go on the stack; a container at depth ``d`` holds values at depth
    ``d + 1``, which must not exceed ``max_depth``. (Map keys were checked while the
    maps were built.)
    """
    if type(root) in _SCALARS:
        return
    max_depth = limits.max_depth
    stack: list[tuple[Any, int]] = [(root, 0)]
    while stack:
        value, depth = stack.pop()
        kind = type(value)
        if kind is dict:
            children = value.values()
        elif kind is list:
            children = value
        elif kind is float:
            raise NonCanonicalError("floats are not allowed")
        else:
            raise NonCanonicalError(f"type {kind.__name__} is not allowed")
        if depth >= max_depth and children:
            raise TooDeepError(f"nesting deeper than {max_depth}")
        for child in children:
            if type(child) not in _SCALARS:
                stack.append((child, depth + 1))


def encode_bins(items: Sequence[bytes | None]) -> bytes:
    """The canonical array of ``bin``/``nil`` items: a wire event, or a batch of them.

    The fast path of :func:`encode` for the one shape the hot paths build: nothing in
    it needs sorting or range checks.
    """
    for item in items:
        if item is not None and type(item) is not bytes:
            raise NonCanonicalError("encode_bins takes bytes or None items only")
    return msgpack.packb(list(items), use_bin_type=True)


def decode(data: bytes, *, limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
    """Decode exactly one canonical value from ``data`` or raise an ``EncodingError``.

    The returned object uses ``dict``, ``list``, ``str``, ``bytes``, ``int``, ``bool``
    and ``None`` only.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedError("input is not bytes")
    data = bytes(data)
    if len(data) > limits.max_bytes:
        raise TooLargeError(f"{len(data)} bytes exceeds the limit of {limits.max_bytes}")
    if not data:
        raise MalformedError("empty input")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=False,  # we check key types ourselves, with our own code
            object_pairs_hook=_pairs_to_dict,
            ext_hook=_reject_ext,
            timestamp=0,
            max_str_len=limits.max_str,
            max_bin_len=limits.max_bin,
            max_array_len=limits.max_items,
            max_map_len=limits.max_items,
            max_ext_len=64,  # any ext is rejected by _reject_ext; bound the copy
        )
    except _Dup as exc:
        raise NonCanonicalError(f"duplicate map key {exc.args[0]!r}") from None
    except msgpack.ExtraData:
        raise NonCanonicalError("trailing bytes after the value") from None
    except msgpack.StackError:
        raise TooDeepError("nesting too deep") from None
    except UnicodeDecodeError:
        raise MalformedError("string is not valid UTF-8") from None
    except ValueError as exc:
        # msgpack reports length-limit violations as ValueError("... exceeds max_...").
        # Any ext, whatever its size or type (the timestamp ext -1 is parsed by msgpack
        # itself), is non-canonical — the same code for every form.
        text = str(exc)
        if "max_ext_len" in text or "imestamp" in text or "nanosecond" in text:
            raise NonCanonicalError("ext types are not allowed") from None
        if "exceeds max" in text:
            raise TooLargeError(text) from None
        raise MalformedError(f"not MessagePack: {exc}") from None
    except NonCanonicalError:
        raise
    except TypeError:
        # An unhashable map key (an array or map used as a key): keys must be str.
        raise NonCanonicalError("map keys must be str") from None
    except (msgpack.UnpackException, RecursionError) as exc:
        raise MalformedError(f"not MessagePack: {exc}") from None
    _check_types(value, limits)
    # Types, depth and key order are checked, so packing the value as decoded gives
    # its canonical bytes; any other difference (a longer int or length form) shows.
    if msgpack.packb(value, use_bin_type=True) != data:
        raise NonCanonicalError("bytes differ from the canonical encoding of the same value")
    return value
