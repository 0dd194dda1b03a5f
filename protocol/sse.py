"""A bounded, sans-IO parser for a node's live stream (Server-Sent Events, spec 0004 §stream).

Fed raw bytes as they arrive, :class:`SseParser` returns the messages they complete. It
keeps at most one partial line and one message being built, each capped at
``max_message_bytes`` (counted in bytes as received): a stream that sends more is
refused with an error rather than buffered. Only what Murmur streams use is interpreted
(``id``, ``event``, ``data``, comments such as ``: cursor=N`` and heartbeats);
``retry`` and unknown fields are ignored, as the SSE standard says.
:func:`stream_event` reads one event message. Both the node (following its peers) and
the client (the labeler) use these, each passing its own error class.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass

from protocol import jsontext
from protocol.errors import MalformedError

__all__ = ["SseMessage", "SseParser", "stream_event"]


#: Comment lines kept between two reads of :attr:`SseParser.comments`.
_MAX_COMMENTS = 16


@dataclass(frozen=True, slots=True)
class SseMessage:
    """One dispatched message; ``comments`` are the ``:`` lines seen before it."""

    event: str
    data: str
    id: str | None


class SseParser:
    """Incremental SSE parser: :meth:`feed` bytes, get the messages they complete.

    ``error`` is the exception class raised (with a message) for a stream that breaks
    the bounds or is not UTF-8: each side maps it into its own error tree.
    """

    def __init__(
        self, *, max_message_bytes: int, error: Callable[[str], Exception] = MalformedError
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self._error = error
        self._partial = bytearray()
        self._event = ""
        self._data: list[str] = []
        self._size = 0
        self._id: str | None = None
        #: Comment lines (without the colon), newest last; the caller may clear it.
        self.comments: list[str] = []

    def feed(self, chunk: bytes) -> list[SseMessage]:
        out: list[SseMessage] = []
        self._partial += chunk
        start = 0
        buf = self._partial
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            if nl - start > self.max_message_bytes:
                raise self._error(f"stream line longer than {self.max_message_bytes} bytes")
            line = bytes(buf[start:nl])
            start = nl + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            message = self._line(line)
            if message is not None:
                out.append(message)
        del buf[:start]
        if len(buf) > self.max_message_bytes:
            raise self._error(f"stream line longer than {self.max_message_bytes} bytes")
        return out

    def _line(self, raw: bytes) -> SseMessage | None:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self._error("stream is not UTF-8") from None
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            # Bounded, keeping the newest: a stream's last words (": closing
            # reason=...") must not be lost behind a run of heartbeats.
            self.comments.append(line[1:].strip())
            if len(self.comments) > _MAX_COMMENTS:
                del self.comments[0]
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            # Bytes as received, not characters ("data:" and the space are ASCII).
            self._size += len(raw) - (len(line) - len(value)) + 1
            if self._size > self.max_message_bytes:
                raise self._error(f"stream message larger than {self.max_message_bytes} bytes")
            self._data.append(value)
        elif name == "event":
            self._event = value[:64]
        elif name == "id" and "\0" not in value:
            self._id = value[:64]
        return None

    def _dispatch(self) -> SseMessage | None:
        if not self._data:
            self._event = ""
            return None
        message = SseMessage(self._event or "message", "\n".join(self._data), self._id)
        self._event, self._data, self._size = "", [], 0
        return message


def stream_event(
    message: SseMessage, *, error: Callable[[str], Exception] = MalformedError
) -> tuple[bytes, int]:
    """The wire bytes and cursor of one ``event`` message of a node's live stream
    (spec 0004 §stream: ``data: {"cursor": N, "event": {..., "wire": base64}}``)."""
    try:
        doc = jsontext.loads(message.data)
        cursor, wire_b64 = doc["cursor"], doc["event"]["wire"]
    except (ValueError, KeyError, TypeError):
        raise error("the stream sent a malformed event message") from None
    if not isinstance(cursor, int) or isinstance(cursor, bool) or cursor < 0:
        raise error("the stream sent a bad cursor")
    if not isinstance(wire_b64, str):
        raise error("the stream sent an event without wire bytes")
    try:
        return base64.b64decode(wire_b64, validate=True), cursor
    except (binascii.Error, ValueError):
        raise error("the stream sent bad base64") from None
