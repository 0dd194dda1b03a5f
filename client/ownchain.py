"""The owner's outbox of a rotatable identity (spec 0007 #own-chain, 0008 #status).

A ``did:murmur`` identity signs after its *own* chain, never after a node's head: a
node may already hold a thief's events, and an event signed after one of them would
make the thief's events its ancestors, which the owner's next rotation would then
endorse (spec 0008 §8.7: a rotation's ``prev`` is the last event of the owner's own
outbox). So this home keeps, in ``state/outbox/<hash>.json`` (mode 0600, rewritten
atomically)::

    {"did": "did:murmur:...",
     "events": [{"id": "<hex>", "seq": 1, "kind": "genesis", "kev": null,
                 "wire": "<base64>", "published": true}, ...]}

- every key event (``genesis``, ``rotate``, ``recover``) this home signed, with its
  exact wire bytes, saved *before* it is sent: a key event that no node stored yet is
  re-sent as the same bytes, never signed again (two rotations from one next key are
  the owner equivocating, §8.7 last bullet);
- the ordinary events signed since the latest key event (id, seq, kind, kev), which
  is all a next rotation needs: its ``prev`` is the last of them. Each is recorded,
  with its bytes and ``published: false``, *before* it is sent (a lost acknowledgement
  must not make the next event fork the chain, spec 0007 #own-chain); once a node
  stored it only its link stays here. Older ones are dropped when a key event is
  recorded.
- ``"restore"``: how many more times this home checks that the nodes hold its own
  events with their bodies (set after a rotation or recovery, spec 0008
  #revoked-delete).

Beside it, ``state/outbox/<hash>.sent/`` (mode 0700, files 0600) keeps the exact wire
bytes of every event this home signed, the latest :data:`MAX_ARCHIVED` of them, one
file ``<seq>-<id>.wire`` each: a thief's ``delete`` that counted until the owner's
rotation made every node drop a body, and after the rotation revokes it nodes hold the
event without one; only these copies bring it back (:meth:`OwnChain.bodyless`). An
event the owner deletes herself leaves the archive when she signs the delete.

The outbox is linear (one home signs one chain; :meth:`OwnChain.lock` serialises
signing and recording between processes); the latest key event is every new event's
``kev``.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.errors import KeystoreError
from client.files import atomic_write, create_new, read_json, translate_os_errors
from protocol.errors import ProtocolError
from protocol.events import Event, decode_unverified
from protocol.identity import did_murmur_hash
from protocol.keystate import KEY_EVENT_KINDS

__all__ = ["MAX_ARCHIVED", "RESTORE_PASSES", "OwnChain", "OwnEvent"]

#: How many of its latest events a home keeps the bytes of (state/outbox/*.sent/).
MAX_ARCHIVED = 10_000
#: Body checks after a rotation or recovery: that command's, then one per later post
#: until a check finds every node holding every kept event with its body.
RESTORE_PASSES = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnEvent:
    """One event of the outbox: its place in the chain, and its bytes if kept."""

    id: bytes
    seq: int
    kind: str
    kev: bytes | None
    wire: bytes | None
    published: bool

    @property
    def is_key_event(self) -> bool:
        return self.kind in KEY_EVENT_KINDS

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id.hex(),
            "seq": self.seq,
            "kind": self.kind,
            "kev": None if self.kev is None else self.kev.hex(),
            "wire": None if self.wire is None else base64.b64encode(self.wire).decode(),
            "published": self.published,
        }

    @classmethod
    def from_json(cls, doc: object, where: Path) -> OwnEvent:
        try:
            assert isinstance(doc, dict)  # noqa: S101 - turned into KeystoreError below
            wire = doc.get("wire")
            kev = doc.get("kev")
            return cls(
                id=bytes.fromhex(doc["id"]),
                seq=int(doc["seq"]),
                kind=str(doc["kind"]),
                kev=None if kev is None else bytes.fromhex(kev),
                wire=None if wire is None else base64.b64decode(wire, validate=True),
                published=bool(doc["published"]),
            )
        except (AssertionError, KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise KeystoreError(f"{where} holds a malformed outbox entry: {exc}") from exc

    @classmethod
    def of(cls, event: Event, *, published: bool) -> OwnEvent:
        keep = event.kind in KEY_EVENT_KINDS or not published
        return cls(
            id=event.id,
            seq=event.seq,
            kind=event.kind,
            kev=event.kev,
            wire=event.wire if keep else None,
            published=published,
        )


class OwnChain:
    """The outbox of ``did`` under ``home``. Cheap to construct; reads lazily."""

    def __init__(self, home: Path, did: str) -> None:
        self.did = did
        name = base64.b32encode(did_murmur_hash(did)).decode().rstrip("=").lower()
        self.path = home / "state" / "outbox" / f"{name}.json"
        self.archive_dir = home / "state" / "outbox" / f"{name}.sent"
        self.lock_path = home / "state" / "outbox" / f"{name}.lock"

    def exists(self) -> bool:
        return self.path.exists()

    def events(self) -> list[OwnEvent]:
        """The outbox in chain order (seq ascending)."""
        return self._load()[0]

    def _load(self) -> tuple[list[OwnEvent], int]:
        if not self.path.exists():
            raise KeystoreError(
                f"{self.path} is missing: this home holds no chain of {self.did} "
                "(a rotatable identity signs after its own outbox, never a node's head)"
            )
        doc = read_json(self.path)
        if not isinstance(doc, dict) or doc.get("did") != self.did:
            raise KeystoreError(f"{self.path} is not the outbox of {self.did}")
        entries = doc.get("events")
        if not isinstance(entries, list) or not entries:
            raise KeystoreError(f"{self.path} holds no events")
        restore = doc.get("restore", 0)
        events = sorted((OwnEvent.from_json(e, self.path) for e in entries), key=lambda e: e.seq)
        return events, restore if isinstance(restore, int) and restore > 0 else 0

    def _write(
        self, events: list[OwnEvent], *, new: bool = False, restore: int | None = None
    ) -> None:
        if restore is None:
            restore = 0 if new else self._load()[1]
        doc: dict[str, Any] = {"did": self.did, "events": [e.to_json() for e in events]}
        if restore:
            doc["restore"] = restore
        data = json.dumps(doc, indent=1).encode()
        with translate_os_errors(f"write {self.path}"):
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if new:
                create_new(self.path, data)
            else:
                atomic_write(self.path, data)

    def create(self, genesis: Event) -> None:
        """Start the outbox with the (not yet published) genesis; exclusive."""
        if genesis.author != self.did or genesis.kind != "genesis":
            raise ValueError("the outbox starts with the identity's genesis")
        try:
            self._write([OwnEvent.of(genesis, published=False)], new=True)
        except KeystoreError:
            if self.path.exists():
                raise KeystoreError(f"{self.path} exists already: not overwritten") from None
            raise
        self.archive(genesis)

    def adopt(self, key_events: list[Event], head: Event | None, recovery: Event) -> None:
        """Start the outbox of a home that never held it, from a chain the nodes served
        (spec 0007 #recover-elsewhere): ``key_events`` (genesis first, each the ``kev``
        of the next, published), ``head`` the owner's chosen last event when it is not
        the last key event (its link only), and ``recovery`` signed after it, saved
        unpublished with its bytes. Exclusive, like :meth:`create`: an outbox already
        here is never overwritten. The body checks of #revoked-delete are due."""
        chain = [*key_events, *([] if head is None else [head])]
        if not key_events or key_events[0].kind != "genesis" or head in key_events:
            raise ValueError("an adopted outbox starts with the genesis; head is no key event")
        for before, after in zip(chain, [*chain[1:], recovery], strict=True):
            if after.author != self.did or after.seq <= before.seq:
                raise ValueError("the adopted events are not one chain of this did")
        if recovery.prev != chain[-1].id or recovery.kev != key_events[-1].id:
            raise ValueError("the recovery does not follow the adopted chain")
        entries = [OwnEvent.of(e, published=True) for e in chain]
        entries.append(OwnEvent.of(recovery, published=False))
        try:
            self._write(entries, new=True, restore=RESTORE_PASSES)
        except KeystoreError:
            if self.path.exists():
                raise KeystoreError(f"{self.path} exists already: not overwritten") from None
            raise
        self.archive(recovery)

    def remove(self) -> None:
        """Delete the outbox and its archive (only to undo an :meth:`adopt` that no
        identity uses yet)."""
        with translate_os_errors(f"remove {self.path}"):
            self.path.unlink(missing_ok=True)
            shutil.rmtree(self.archive_dir, ignore_errors=True)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold this outbox's lock file (``flock``, blocking): sign-and-record happens
        under it, so two processes of one home never sign two events at one seq."""
        with translate_os_errors(f"lock {self.lock_path}"):
            self.lock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    # -- the archive of sent bytes (spec 0008 #revoked-delete) ----------------------

    def archive(self, event: Event) -> None:
        """Keep ``event``'s exact bytes (mode 0600), then drop the oldest beyond
        :data:`MAX_ARCHIVED`. A body-less event is not kept: it restores nothing."""
        if event.body_bytes is None:
            return
        path = self.archive_dir / f"{event.seq:012d}-{event.id.hex()}.wire"
        with translate_os_errors(f"write {path}"):
            self.archive_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                create_new(path, event.wire)
            except FileExistsError:
                pass  # kept already (a re-send)
            names = sorted(p.name for p in self.archive_dir.glob("*.wire"))
            for name in names[: max(0, len(names) - MAX_ARCHIVED)]:
                (self.archive_dir / name).unlink(missing_ok=True)

    def unarchive(self, event_id: bytes) -> None:
        """Forget the bytes of ``event_id`` (its owner deletes it: never restored)."""
        with translate_os_errors(f"clean {self.archive_dir}"):
            for path in self.archive_dir.glob(f"*-{event_id.hex()}.wire"):
                path.unlink(missing_ok=True)

    def archived(self) -> dict[bytes, Event]:
        """The kept events by id (unreadable files are skipped: a copy, not the chain)."""
        out: dict[bytes, Event] = {}
        if not self.archive_dir.is_dir():
            return out
        with translate_os_errors(f"read {self.archive_dir}"):
            paths = sorted(self.archive_dir.glob("*.wire"))
            for path in paths:
                try:
                    event = decode_unverified(path.read_bytes(), allow_v2=True)
                except ProtocolError:
                    continue
                if event.author == self.did and event.body_bytes is not None:
                    out[event.id] = event
        return out

    def restore_passes(self) -> int:
        """How many more body checks are due (spec 0008 #revoked-delete)."""
        return self._load()[1] if self.path.exists() else 0

    def set_restore_passes(self, n: int) -> None:
        self._write(self.events(), restore=max(0, n))

    def head(self) -> OwnEvent:
        """The last event this home signed: the next event's ``prev``."""
        return self.events()[-1]

    def key_events(self) -> list[Event]:
        """Every key event of the outbox, decoded (structure and body hash checked)."""
        out = []
        for e in self.events():
            if e.is_key_event:
                if e.wire is None:
                    raise KeystoreError(f"{self.path}: key event {e.id.hex()} lost its bytes")
                try:
                    out.append(decode_unverified(e.wire, allow_v2=True))
                except ProtocolError as exc:
                    raise KeystoreError(f"{self.path}: key event {e.id.hex()}: {exc}") from exc
        return out

    def latest_key_event(self) -> Event:
        """The latest key event: every new event's ``kev``."""
        return self.key_events()[-1]

    def unpublished(self) -> list[Event]:
        """Events saved but not stored by any node yet, in chain order (to re-send as is)."""
        out = []
        for e in self.events():
            if not e.published and e.wire is not None:
                out.append(decode_unverified(e.wire, allow_v2=True))
        return out

    def record(self, event: Event, *, published: bool) -> None:
        """Append ``event`` (signed after :meth:`head`); a key event drops the ordinary
        events before it, which it endorses. Recording an id already held only
        updates ``published``."""
        events = self.events()
        for i, held in enumerate(events):
            if held.id == event.id:
                if published and not held.published:
                    events[i] = OwnEvent.of(event, published=True)
                    self._write(events)
                return
        if event.seq != events[-1].seq + 1 or event.prev != events[-1].id:
            raise KeystoreError(
                f"{self.path}: event seq {event.seq} does not follow the outbox head "
                f"(seq {events[-1].seq})"
            )
        restore = None
        if event.kind in KEY_EVENT_KINDS:
            events = [e for e in events if e.is_key_event or not e.published]
            restore = RESTORE_PASSES  # it may revoke a thief's delete of an own event
        self.archive(event)
        events.append(OwnEvent.of(event, published=published))
        self._write(events, restore=restore)

    def forget(self, event_id: bytes) -> bool:
        """Drop the outbox's last event if it is ``event_id`` and unpublished (every node
        that answered refused it, so none holds it); False when it is not the head any
        more (another event was signed after it: it stays, to be re-sent)."""
        events = self.events()
        head = events[-1]
        if head.id != event_id or head.published or len(events) == 1:
            return False
        self._write(events[:-1])
        self.unarchive(event_id)
        return True

    def mark_published(self, ids: set[bytes]) -> None:
        """Note that some node stored these events; an ordinary one loses its bytes."""
        events = self.events()
        changed = False
        for i, e in enumerate(events):
            if e.id in ids and not e.published:
                events[i] = OwnEvent(
                    id=e.id,
                    seq=e.seq,
                    kind=e.kind,
                    kev=e.kev,
                    wire=e.wire if e.is_key_event else None,
                    published=True,
                )
                changed = True
        if changed:
            self._write(events)
