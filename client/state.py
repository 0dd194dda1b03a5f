"""The client's own chain heads in ``$MURMUR_HOME/state/heads.json`` (spec 0007 §head).

::

    {"did:key:z6Mk...": {"seq": 7, "id": "<64 hex>"}}

One entry per identity that has posted from this home: the seq and id of the last
event this client signed *and* at least one node acknowledged (or that the nodes showed
it, verified). The next event is ``seq + 1`` with ``prev = id``. The file is rewritten
atomically (temp file, fsync, rename, mode 0600) and never moves a head backwards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from client.errors import KeystoreError
from client.files import atomic_write, read_json, translate_os_errors

__all__ = ["Head", "HeadStore"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Head:
    """The last event of an author's chain as this client knows it."""

    seq: int
    id: bytes


class HeadStore:
    """Read and advance the heads file. Cheap to construct; reads lazily."""

    def __init__(self, home: Path) -> None:
        self.path = home / "state" / "heads.json"

    def _load(self) -> dict[str, dict[str, object]]:
        if not self.path.exists():
            return {}
        doc = read_json(self.path)
        if not isinstance(doc, dict):
            raise KeystoreError(f"{self.path} must hold a JSON object")
        return doc

    def get(self, did: str) -> Head | None:
        return self._head(self._load(), did)

    def _head(self, doc: dict[str, dict[str, object]], did: str) -> Head | None:
        entry = doc.get(did)
        if not isinstance(entry, dict):
            return None
        seq, hexid = entry.get("seq"), entry.get("id")
        if not isinstance(seq, int) or not isinstance(hexid, str) or len(hexid) != 64:
            raise KeystoreError(f"{self.path}: bad head for {did}; delete the entry to re-sync")
        try:
            return Head(seq=seq, id=bytes.fromhex(hexid))
        except ValueError:
            raise KeystoreError(f"{self.path}: bad head id for {did}") from None

    def advance(self, did: str, head: Head) -> bool:
        """Store ``head`` unless the stored one is already at a higher seq."""
        doc = self._load()
        current = self._head(doc, did)
        if current is not None and current.seq > head.seq:
            return False
        doc[did] = {"seq": head.seq, "id": head.id.hex()}
        with translate_os_errors(f"write {self.path}"):
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(self.path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
        return True
