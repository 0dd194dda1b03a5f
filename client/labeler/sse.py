"""The live-stream parser the labeler uses: :mod:`protocol.sse` with failures reported
as :class:`~client.errors.BadResponseError`."""

from __future__ import annotations

from client.errors import BadResponseError
from protocol import sse
from protocol.limits import MAX_WIRE_BYTES
from protocol.sse import SseMessage

__all__ = ["MAX_STREAM_MESSAGE", "SseMessage", "SseParser", "stream_event"]

#: Largest SSE line or message accepted: an event's JSON form (base64 wire, decoded
#: body) is at most a few times its wire size.
MAX_STREAM_MESSAGE = 8 * MAX_WIRE_BYTES


class SseParser(sse.SseParser):
    def __init__(self, *, max_message_bytes: int = MAX_STREAM_MESSAGE) -> None:
        super().__init__(max_message_bytes=max_message_bytes, error=BadResponseError)


def stream_event(message: SseMessage) -> tuple[bytes, int]:
    return sse.stream_event(message, error=BadResponseError)
