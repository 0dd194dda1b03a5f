"""The node's JSON form of an event (spec 0004 §event-json), for the tests' fake nodes."""

from __future__ import annotations

import base64
from typing import Any

from protocol.events import decode_unverified

__all__ = ["event_json"]


def event_json(wire: bytes) -> dict[str, Any]:
    """What a node would serve for ``wire`` (fields read from it without verifying)."""
    ev = decode_unverified(wire)
    return {
        "id": ev.id_hex,
        "author": ev.author,
        "seq": ev.seq,
        "ts": ev.ts,
        "kind": ev.kind,
        "wire": base64.b64encode(wire).decode(),
    }
