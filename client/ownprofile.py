"""This home's own identities' latest profiles, in ``state/profiles.json``
(spec 0007 #own-name).

::

    {"did:murmur:...": "<base64 wire of the profile event>"}

The reader's own name shows the same everywhere: ``~Alice`` (the name of the latest
profile) in a timeline, and also in what a command prints without reading any
profile — a post's result, a follow's, a key event's. So the profile the client last
published (``murmur profile set``) or last read as the latest of one of its own
identities is kept here, and names fall back on it. It is a copy of the owner's own
signed event, kept in the owner's home: decoded without its signature check, like the
outbox (:mod:`client.ownchain`); a file that cannot be read is ignored, not an error
(it only names things). Rewritten atomically, mode 0600.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from pathlib import Path

from client.files import atomic_write, read_json, translate_os_errors
from protocol import kinds
from protocol.errors import ProtocolError
from protocol.events import Event, decode_unverified

__all__ = ["OwnProfiles"]

log = logging.getLogger("murmur.client.ownprofile")


class OwnProfiles:
    """The kept profiles by did. Cheap to construct; reads lazily."""

    def __init__(self, home: Path) -> None:
        self.path = home / "state" / "profiles.json"

    def _load(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        try:
            doc = read_json(self.path)
        except ProtocolError as exc:
            log.info("own profiles unreadable path=%s code=%s", self.path, exc.code)
            return {}
        if not isinstance(doc, dict):
            return {}
        return {k: v for k, v in doc.items() if isinstance(k, str) and isinstance(v, str)}

    def get(self, did: str) -> Event | None:
        raw = self._load().get(did)
        if raw is None:
            return None
        try:
            event = decode_unverified(base64.b64decode(raw, validate=True), allow_v2=True)
        except (ProtocolError, binascii.Error, ValueError):
            return None
        if event.author != did or event.kind != kinds.PROFILE or event.body is None:
            return None
        return event

    def keep(self, event: Event) -> None:
        """Keep ``event`` as its author's latest profile (a no-op when it is already)."""
        if event.kind != kinds.PROFILE or event.body is None:
            return
        doc = self._load()
        wire = base64.b64encode(event.wire).decode()
        if doc.get(event.author) == wire:
            return
        doc[event.author] = wire
        try:
            with translate_os_errors(f"write {self.path}"):
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                data = (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()
                atomic_write(self.path, data)
        except ProtocolError as exc:  # a read-only home still reads; names only
            log.info("own profile not kept path=%s code=%s", self.path, exc.code)
