"""What the reader has seen of their notifications, in
``$MURMUR_HOME/state/notifications/<did>.json`` (spec 0007 #notifications-seen).

::

    {"did": "did:key:z6Mk...", "floor": 1700000000000,
     "seen": {"<64 hex id>": 1700000001234, ...}}

A notification is **unread** until a view showed it (or hid it): its id is not in
``seen`` and its ``ts`` is above ``floor``. ``seen`` keeps the newest
:data:`MAX_SEEN` ids by ``ts``; when older ones are dropped, ``floor`` rises to the
newest ``ts`` dropped, so that everything at or below it counts as read. Ids rather
than one "seen up to" time, because ``ts`` is the author's claim and events arrive
late: a like signed an hour ago that reaches the reader's nodes now is still unread
(Bluesky's ``seenAt`` is the server's arrival time, which no single node has here).
The file is rewritten atomically (mode 0600); a file that does not parse is an error
that names it, never silently reset.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from client.errors import KeystoreError
from client.files import atomic_write, read_json, translate_os_errors
from protocol.events import Event

__all__ = ["MAX_SEEN", "SeenState"]

#: Ids remembered as seen per identity.
MAX_SEEN = 5000


def _path(home: Path, did: str) -> Path:
    return home / "state" / "notifications" / (did.replace(":", "_") + ".json")


@dataclass(slots=True)
class SeenState:
    """The seen notifications of one identity of this home."""

    path: Path
    did: str
    floor: int = 0
    seen: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, home: Path, did: str) -> SeenState:
        path = _path(home, did)
        state = cls(path=path, did=did)
        if not path.exists():
            return state
        doc = read_json(path)
        try:
            if not isinstance(doc, dict) or doc.get("did") != did:
                raise TypeError(f"it is not the notification state of {did}")
            floor, seen = doc.get("floor", 0), doc.get("seen", {})
            if not isinstance(floor, int) or not isinstance(seen, dict):
                raise TypeError("bad floor or seen")
            state.floor = floor
            state.seen = {str(k): int(v) for k, v in seen.items()}
        except (TypeError, ValueError) as exc:
            raise KeystoreError(
                f"{path} is not a notification state file ({exc}); delete it to start again"
            ) from None
        return state

    def unread(self, e: Event) -> bool:
        return e.ts > self.floor and e.id_hex not in self.seen

    def mark(self, events: Iterable[Event]) -> int:
        """Remember ``events`` as seen; returns how many were unread."""
        fresh = 0
        for e in events:
            if self.unread(e):
                fresh += 1
            if e.ts > self.floor:
                self.seen[e.id_hex] = e.ts
        if len(self.seen) > MAX_SEEN:
            ordered = sorted(self.seen.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
            dropped = ordered[MAX_SEEN:]
            self.floor = max(self.floor, max(ts for _, ts in dropped))
            self.seen = {k: ts for k, ts in ordered[:MAX_SEEN] if ts > self.floor}
        return fresh

    def save(self) -> None:
        doc = {"did": self.did, "floor": self.floor, "seen": dict(sorted(self.seen.items()))}
        with translate_os_errors(f"write {self.path}"):
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(self.path, (json.dumps(doc, separators=(",", ":")) + "\n").encode())
