"""A bounded Server-Sent Events parser for reading a peer's live stream.

Fed raw bytes as they arrive, it yields complete messages. It keeps at most one
partial line and one message being built, each capped: a peer that sends a line or a
message larger than ``max_message_bytes`` is refused with
:class:`~node.federation.errors.PeerBadResponseError` rather than buffered. Only the
parts of SSE that Murmur streams use are interpreted (``id``, ``event``, ``data``,
comments); ``retry`` and unknown fields are ignored, as the SSE standard says.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.federation.errors import PeerBadResponseError

__all__ = ["SseMessage", "SseParser"]


@dataclass(frozen=True, slots=True)
class SseMessage:
    """One dispatched message; ``comments`` are the ``:`` lines seen before it."""

    event: str
    data: str
    id: str | None


class SseParser:
    """Incremental SSE parser: :meth:`feed` bytes, get the messages they complete."""

    def __init__(self, *, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes
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
                raise PeerBadResponseError(
                    f"stream line longer than {self.max_message_bytes} bytes"
                )
            line = bytes(buf[start:nl])
            start = nl + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            message = self._line(line)
            if message is not None:
                out.append(message)
        del buf[:start]
        if len(buf) > self.max_message_bytes:
            raise PeerBadResponseError(f"stream line longer than {self.max_message_bytes} bytes")
        return out

    def _line(self, raw: bytes) -> SseMessage | None:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PeerBadResponseError("stream is not UTF-8") from None
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            if len(self.comments) < 16:
                self.comments.append(line[1:].strip())
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            # Bytes as received, not characters ("data:" and the space are ASCII).
            self._size += len(raw) - (len(line) - len(value)) + 1
            if self._size > self.max_message_bytes:
                raise PeerBadResponseError(
                    f"stream message larger than {self.max_message_bytes} bytes"
                )
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
