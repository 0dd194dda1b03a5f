"""The live-stream parser the node uses to follow its peers: :mod:`protocol.sse` with
failures reported as :class:`~node.federation.errors.PeerBadResponseError`."""

from __future__ import annotations

from node.federation.errors import PeerBadResponseError
from protocol import sse
from protocol.sse import SseMessage

__all__ = ["SseMessage", "SseParser", "stream_event"]


class SseParser(sse.SseParser):
    def __init__(self, *, max_message_bytes: int) -> None:
        super().__init__(max_message_bytes=max_message_bytes, error=PeerBadResponseError)


def stream_event(message: SseMessage) -> tuple[bytes, int]:
    return sse.stream_event(message, error=PeerBadResponseError)
