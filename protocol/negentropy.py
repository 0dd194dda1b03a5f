"""Negentropy protocol v1: range-based set reconciliation, pure and sans-IO.

Two nodes that each hold a set of ``(timestamp, id)`` items find the symmetric
difference of their sets in a few round trips and in bytes proportional to the
difference, not to the sets (spec 0005 §Set reconciliation). The wire format and every
splitting choice follow the public reference implementation (hoytech/negentropy,
protocol version byte ``0x61``), so that for the same inputs our messages are
byte-identical to its messages and to those of its ports (nostr-tools ``nip77``,
strfry, rust-negentropy).

Nothing here does I/O: :class:`NegentropyStorage` is a sealed, sorted vector of items,
:class:`Negentropy` turns messages (bytes) into messages (bytes) plus the ids each
side lacks. The client (the *initiator*) calls :meth:`Negentropy.initiate` and then
:meth:`Negentropy.reconcile_client` on every answer until it returns ``None``; the
server calls :meth:`Negentropy.reconcile` on every query. Everything a peer sends is
hostile until parsed: any malformed message raises :class:`NegentropyError` and
nothing else, and no allocation is sized by a declared length before the bytes that
back it have been seen.
"""

from __future__ import annotations

from protocol.errors import NegentropyError
from protocol.negentropy_storage import (
    BUCKETS,
    FINGERPRINT_SIZE,
    FRAME_SIZE_SLACK,
    ID_LIST_THRESHOLD,
    ID_SIZE,
    INFINITY_TIMESTAMP,
    MAX_VARINT_BYTES,
    MIN_FRAME_SIZE_LIMIT,
    PROTOCOL_VERSION,
    VERSION_MAX,
    VERSION_MIN,
    ZERO_ID,
    Mode,
    NegentropyStorage,
    decode_varint,
    encode_varint,
    fingerprint,
    split_ids,
)

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
    "Mode",
    "Negentropy",
    "NegentropyStorage",
    "decode_varint",
    "encode_varint",
    "fingerprint",
]

# -- the reconciliation engine --------------------------------------------------------


class Negentropy:
    """One side of one reconciliation session over a sealed :class:`NegentropyStorage`.

    ``frame_size_limit`` caps the size of every message this side produces (0 means
    unlimited; otherwise at least 4096). A session is either a client (after
    :meth:`initiate`) or a server (after its first :meth:`reconcile`), never both.
    """

    __slots__ = ("_frame_size_limit", "_is_initiator", "_last_in", "_last_out", "_storage")

    def __init__(self, storage: NegentropyStorage, frame_size_limit: int = 0) -> None:
        if not storage.sealed:
            raise NegentropyError("storage not sealed")
        if frame_size_limit != 0 and frame_size_limit < MIN_FRAME_SIZE_LIMIT:
            raise NegentropyError("frame_size_limit too small")
        self._storage = storage
        self._frame_size_limit = frame_size_limit
        self._is_initiator = False
        # Timestamps are delta-encoded against the previous bound of the same message
        # (§bound); both running values restart at 0 with every message.
        self._last_in = 0
        self._last_out = 0

    @property
    def is_initiator(self) -> bool:
        return self._is_initiator

    def initiate(self) -> bytes:
        """The client's first message: the whole space, split as any mismatched range."""
        if self._is_initiator:
            raise NegentropyError("already initiated")
        self._is_initiator = True
        self._last_out = 0
        out = bytearray((PROTOCOL_VERSION,))
        self._split_range(0, len(self._storage), INFINITY_TIMESTAMP, b"", out)
        return bytes(out)

    def reconcile(self, query: bytes) -> bytes:
        """Server side: answer one client message with the next server message.

        A first byte in 0x60..0x6F other than ours gets the one-byte answer
        ``b"\\x61"`` (§version negotiation) so the client can retry in v1.
        """
        if self._is_initiator:
            raise NegentropyError("the initiator must call reconcile_client")
        return bytes(self._reconcile(query, None, None))

    def reconcile_client(self, query: bytes) -> tuple[bytes | None, list[bytes], list[bytes]]:
        """Client side: process a server message.

        Returns ``(next_message, have_ids, need_ids)``: ids only we hold, ids only the
        server holds (both found in this round), and ``None`` as the message once
        reconciliation is complete.
        """
        if not self._is_initiator:
            raise NegentropyError("reconcile_client before initiate")
        have: list[bytes] = []
        need: list[bytes] = []
        out = self._reconcile(query, have, need)
        # A message that is only the version byte has nothing left to ask (§message).
        return (None if len(out) == 1 else bytes(out)), have, need

    # -- internals ------------------------------------------------------------------

    def _reconcile(
        self, query: bytes, have: list[bytes] | None, need: list[bytes] | None
    ) -> bytearray:
        data = bytes(query)
        if not data:
            raise NegentropyError("empty message")
        version = data[0]
        if not VERSION_MIN <= version <= VERSION_MAX:
            raise NegentropyError(f"invalid protocol version byte 0x{version:02x}")
        if version != PROTOCOL_VERSION:
            if self._is_initiator:
                raise NegentropyError(f"server speaks negentropy version 0x{version:02x} only")
            return bytearray((PROTOCOL_VERSION,))

        storage = self._storage
        size = len(storage)
        limit = self._frame_size_limit
        budget = limit - FRAME_SIZE_SLACK if limit else -1  # -1: unlimited
        self._last_in = self._last_out = 0
        out = bytearray((PROTOCOL_VERSION,))
        end = len(data)
        pos = 1
        prev_ts, prev_prefix, prev_key = 0, b"", (0, ZERO_ID)
        prev_index = 0
        # `skip` records that the ranges since the last output need no answer; they are
        # folded into one Skip range the next time something must be sent (§modes).
        skip = False

        while pos < end:
            chunk = bytearray()
            ts, prefix, pos = self._decode_bound(data, pos)
            padded = prefix + ZERO_ID[len(prefix) :]
            key = (ts, padded)
            # Ranges are adjacent and ascending; a peer that goes backwards is broken or
            # hostile (equal bounds stay legal: the reference can emit them after a
            # frame-limit cut).
            if key < prev_key:
                raise NegentropyError("bounds out of order")
            mode, pos = decode_varint(data, pos)
            lower = prev_index
            upper = storage.find_lower_bound(lower, size, ts, padded)

            if mode == Mode.SKIP:
                skip = True
            elif mode == Mode.FINGERPRINT:
                if end - pos < FINGERPRINT_SIZE:
                    raise NegentropyError("truncated fingerprint")
                theirs = data[pos : pos + FINGERPRINT_SIZE]
                pos += FINGERPRINT_SIZE
                if theirs != storage.fingerprint(lower, upper):
                    if skip:
                        skip = False
                        self._encode_skip(prev_ts, prev_prefix, chunk)
                    self._split_range(lower, upper, ts, prefix, chunk)
                else:
                    skip = True
            elif mode == Mode.ID_LIST:
                count, pos = decode_varint(data, pos)
                # Check the bytes exist before building anything from `count`.
                if count > (end - pos) // ID_SIZE:
                    raise NegentropyError("id list longer than the message")
                their_blob = data[pos : pos + count * ID_SIZE]
                pos += count * ID_SIZE
                if have is not None and need is not None:
                    self._diff_id_list(their_blob, lower, upper, have, need)
                    skip = True
                else:
                    if skip:
                        skip = False
                        self._encode_skip(prev_ts, prev_prefix, chunk)
                    # The server answers an IdList with its own ids for the range, cut
                    # short at the frame budget; the cut point becomes the range's upper
                    # bound (a full 32-byte id) and the rest is fingerprinted below.
                    end_ts, end_prefix = ts, prefix
                    taken = upper - lower
                    if budget >= 0:
                        for index in range(lower, upper):
                            if len(out) + (index - lower) * ID_SIZE > budget:
                                end_ts, end_prefix = storage.timestamp(index), storage.id(index)
                                taken = index - lower
                                upper = index
                                break
                    self._encode_bound(end_ts, end_prefix, chunk)
                    chunk += encode_varint(Mode.ID_LIST)
                    chunk += encode_varint(taken)
                    chunk += storage.ids(lower, lower + taken)
                    out += chunk
                    chunk.clear()
            else:
                raise NegentropyError(f"unknown mode {mode}")

            if budget >= 0 and len(out) + len(chunk) > budget:
                # §frame limits: stop here and cover everything not yet handled with
                # one fingerprint up to infinity; the peer answers it next round.
                self._encode_bound(INFINITY_TIMESTAMP, b"", out)
                out += encode_varint(Mode.FINGERPRINT)
                out += storage.fingerprint(upper, size)
                break
            out += chunk
            prev_index = upper
            prev_ts, prev_prefix, prev_key = ts, prefix, key
        return out

    def _diff_id_list(
        self, their_blob: bytes, lower: int, upper: int, have: list[bytes], need: list[bytes]
    ) -> None:
        # Client side of an IdList: the range is settled here, nothing goes back. `have`
        # keeps our storage order, `need` the server's order, each id once.
        theirs = split_ids(their_blob)
        our_list = split_ids(self._storage.ids(lower, upper))
        their_set = set(theirs)
        have.extend(item_id for item_id in our_list if item_id not in their_set)
        ours = set(our_list)
        for item_id in theirs:
            if item_id not in ours:
                need.append(item_id)
                ours.add(item_id)  # a repeated id in a hostile list is reported once

    def _split_range(
        self, lower: int, upper: int, upper_ts: int, upper_prefix: bytes, out: bytearray
    ) -> None:
        # §splitting: fewer than 2*BUCKETS items go as one IdList; more go as BUCKETS
        # fingerprints of near-equal size, the first (n mod BUCKETS) one item larger,
        # each ending at the minimal bound between its last item and the next.
        storage = self._storage
        count = upper - lower
        if count < ID_LIST_THRESHOLD:
            self._encode_bound(upper_ts, upper_prefix, out)
            out += encode_varint(Mode.ID_LIST)
            out += encode_varint(count)
            out += storage.ids(lower, upper)
            return
        per_bucket, with_extra = divmod(count, BUCKETS)
        current = lower
        for bucket in range(BUCKETS):
            bucket_size = per_bucket + (1 if bucket < with_extra else 0)
            digest = storage.fingerprint(current, current + bucket_size)
            current += bucket_size
            if current == upper:
                self._encode_bound(upper_ts, upper_prefix, out)
            else:
                bound_ts, bound_prefix = self._minimal_bound(current - 1, current)
                self._encode_bound(bound_ts, bound_prefix, out)
            out += encode_varint(Mode.FINGERPRINT)
            out += digest

    def _minimal_bound(self, before: int, at: int) -> tuple[int, bytes]:
        # §bound: the shortest bound above item `before` and not above item `at`: the
        # timestamp alone when they differ, else the id prefix one byte past their
        # common prefix.
        storage = self._storage
        at_ts = storage.timestamp(at)
        if storage.timestamp(before) != at_ts:
            return at_ts, b""
        at_id = storage.id(at)
        before_id = storage.id(before)
        shared = 0
        while shared < ID_SIZE and at_id[shared] == before_id[shared]:
            shared += 1
        return at_ts, at_id[: shared + 1]

    def _encode_skip(self, ts: int, prefix: bytes, out: bytearray) -> None:
        self._encode_bound(ts, prefix, out)
        out += encode_varint(Mode.SKIP)

    def _encode_bound(self, ts: int, prefix: bytes, out: bytearray) -> None:
        # §bound: infinity is 0; any other timestamp is 1 + (ts - previous ts).
        if ts == INFINITY_TIMESTAMP:
            self._last_out = INFINITY_TIMESTAMP
            out += b"\x00"
        else:
            delta = ts - self._last_out
            self._last_out = ts
            out += encode_varint(delta + 1)
        out += encode_varint(len(prefix))
        out += prefix

    def _decode_bound(self, data: bytes, pos: int) -> tuple[int, bytes, int]:
        encoded, pos = decode_varint(data, pos)
        if encoded == 0:
            ts = INFINITY_TIMESTAMP
        else:
            # Saturate at infinity like the reference's unsigned overflow check.
            ts = min(self._last_in + encoded - 1, INFINITY_TIMESTAMP)
        self._last_in = ts
        length, pos = decode_varint(data, pos)
        if length > ID_SIZE:
            raise NegentropyError("bound id prefix longer than 32 bytes")
        if len(data) - pos < length:
            raise NegentropyError("truncated bound id prefix")
        return ts, data[pos : pos + length], pos + length
