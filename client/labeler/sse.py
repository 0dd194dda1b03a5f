"""A bounded, sans-IO Server-Sent Events parser for a node's live stream (spec 0004 §stream).

Fed raw bytes as they arrive, :class:`SseParser` hands back the messages they complete.
It keeps at most one partial line and one message being built, each capped at
``max_message_bytes``; a node that sends more is refused with ``BadResponseError``
instead of being buffered. Only what Murmur streams use is interpreted (``id``,
``event``, ``data``); comments (heartbeats), ``retry`` and unknown fields are ignored,
as the SSE standard says. No I/O here: :mod:`client.labeler.runner` reads the socket.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from client.errors import BadResponseError
from protocol.limits import MAX_WIRE_BYTES

__all__ = ["MAX_STREAM_MESSAGE", "SseMessage", "SseParser", "stream_event"]

#: Largest SSE line or message accepted: an event's JSON form (base64 wire, decoded
#: body) is at most a few times its wire size.
MAX_STREAM_MESSAGE = 8 * MAX_WIRE_BYTES


@dataclass(frozen=True, slots=True)
class SseMessage:
    event: str
    data: str
    id: str | None


class SseParser:
    """Incremental SSE parser: :meth:`feed` bytes, get the messages they complete.

    Holds at most one partial line and one message, each capped at
    ``max_message_bytes``; beyond that it raises ``BadResponseError`` instead of
    buffering. Comments (heartbeats) and ``retry`` are ignored.
    """

    def __init__(self, *, max_message_bytes: int = MAX_STREAM_MESSAGE) -> None:
        self.max_message_bytes = max_message_bytes
        self._partial = bytearray()
        self._event = ""
        self._data: list[str] = []
        self._size = 0
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SseMessage]:
        out: list[SseMessage] = []
        self._partial += chunk
        buf, start = self._partial, 0
        while (nl := buf.find(b"\n", start)) >= 0:
            line = bytes(buf[start:nl]).removesuffix(b"\r")
            start = nl + 1
            message = self._line(line)
            if message is not None:
                out.append(message)
        del buf[:start]
        if len(buf) > self.max_message_bytes:
            raise BadResponseError(f"stream line longer than {self.max_message_bytes} bytes")
        return out

    def _line(self, raw: bytes) -> SseMessage | None:
        if len(raw) > self.max_message_bytes:
            raise BadResponseError(f"stream line longer than {self.max_message_bytes} bytes")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadResponseError("the stream is not UTF-8") from None
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._size += len(value) + 1
            if self._size > self.max_message_bytes:
                raise BadResponseError(f"stream message larger than {self.max_message_bytes} bytes")
            self._data.append(value)
        elif name == "event":
            self._event = value[:64]
        elif name == "id" and "\0" not in value:
            self._id = value[:64]
        return None

    def _dispatch(self) -> SseMessage | None:
        message = None
        if self._data:
            message = SseMessage(self._event or "message", "\n".join(self._data), self._id)
        self._event, self._data, self._size = "", [], 0
        return message


def stream_event(message: SseMessage) -> tuple[bytes, int]:
    """The wire bytes and cursor of one ``event`` message (spec 0004 §stream)."""
    try:
        doc = json.loads(message.data)
        cursor, wire_b64 = doc["cursor"], doc["event"]["wire"]
        if not isinstance(cursor, int) or isinstance(cursor, bool) or cursor < 0:
            raise TypeError("bad cursor")
        return base64.b64decode(wire_b64, validate=True), cursor
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise BadResponseError("the stream sent a malformed event message") from None
