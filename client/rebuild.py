"""A rotatable identity's own chain rebuilt from the nodes, to recover it on a new home
(spec 0007 #recover-elsewhere; spec 0008 §8.4, §8.7, §8.11).

A home that holds nothing of an identity but its recovery key (the file or the phrase)
and its did has no outbox to sign after. What a recovery needs — its ``kev`` (the key
event whose state it replaces) and its ``prev`` (the owner's last good event) — comes
from what the nodes serve, and no node is trusted:

- :func:`read_chain` reads **every** configured node: the author's key events
  (``POST /v1/keys``, else ``GET /v1/authors/{did}/keys``) and the author's log
  (``GET /v1/authors/{did}/events``, paged, bounded), verifies every event, and
  resolves the union with :mod:`protocol.keystate` (:class:`client.keyview.KeyTracker`).
- :func:`points` lists the events a recovery can follow: any held event, whatever its
  status, under a key event of the valid key-event tree, breaking no rule. Which of
  them is the owner's last is the owner's call: a thief holding S (and N) may have
  posted and rotated, and the client cannot tell his events from hers. It never picks
  one itself (:func:`choose` takes the owner's ``--after``).
- :func:`sign_after` signs the ``recover`` with the recovery key at that point (checked
  against the state there, spec 0008 #recover-prefix), runs §8.5 on it, and resolves
  the held set with it: a recovery that would not be canonical is not signed
  (``recovery-outranked``).
- :func:`adopt` starts this home's outbox (:meth:`client.ownchain.OwnChain.adopt`) with
  the key events of the chosen branch, the chosen event and the recovery, keeps the
  nodes' full copies of the owner's events for the body checks of 0008
  #revoked-delete, and only then creates the identity (the new S and N, sealed): the
  identity file is the commit point.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from client.api import NodeClient
from client.errors import (
    KeystoreError,
    RecoveryOutrankedError,
    RecoveryPointAmbiguousError,
    RecoveryPointUnknownError,
)
from client.keyops import RecoveryKey, fresh_key, recovery_list
from client.keystore import Keystore, StoredIdentity
from client.keyview import KeyHistory
from client.ownchain import MAX_ARCHIVED, OwnChain
from client.reader import PAGE, Reader
from client.textsafety import safe_line
from protocol import kinds
from protocol.errors import NotFoundError, ProtocolError, UnauthorizedKeyError
from protocol.events import Event, sign_event_v2
from protocol.identity import Identity, next_key_commitment
from protocol.keystate import (
    KEY_EVENT_KINDS,
    KeyEvent,
    KeyState,
    Status,
    check_event,
    key_event_of,
    link_of,
    resolve,
)

__all__ = [
    "MAX_LOG_PAGES",
    "MIN_PREFIX",
    "NodeChain",
    "Point",
    "Signed",
    "adopt",
    "check_key_at",
    "choose",
    "look_up",
    "point_doc",
    "points",
    "preview",
    "read_chain",
    "sign_after",
    "snapshot",
    "when",
]

#: Pages of the author's log read from each node (500 events each): the candidates
#: and the copies kept for #revoked-delete. A longer chain is reported ``truncated``;
#: an older point is still reachable by its full id (looked up on every node).
MAX_LOG_PAGES = 40
#: Shortest ``--after`` prefix (hex digits).
MIN_PREFIX = 4
#: Characters of a post's text shown in a candidate's preview.
PREVIEW_CHARS = 60


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    """An event a recovery can follow: its ``prev``, and the key event (``kev``) whose
    state the recovery replaces."""

    event: Event
    key_event: Event
    state: KeyState
    status: Status

    def entitles(self, key: Identity) -> bool:
        """Whether ``key`` is a recovery key of the state at this point."""
        return key.public.raw in self.state.recovery


@dataclass(slots=True, kw_only=True)
class NodeChain:
    """One author's events as every configured node served them, verified and resolved."""

    did: str
    #: Every verified event of the author held, whatever its status.
    events: dict[bytes, Event]
    history: KeyHistory
    #: Every key event that could be built (its kev's state held), valid or not.
    built: dict[bytes, KeyEvent]
    #: The key events of the valid key-event tree (§8.6), by id.
    valid: dict[bytes, KeyEvent]
    #: Nodes that answered, and whether some node's log was longer than was read.
    answered: list[str]
    truncated: bool

    def holds_recovery_key(self, key: Identity) -> bool:
        return any(key.public.raw in k.state.recovery for k in self.valid.values())


async def read_chain(reader: Reader, did: str, *, max_pages: int = MAX_LOG_PAGES) -> NodeChain:
    """Read, verify and resolve ``did``'s key events and log from every node of
    ``reader`` (raises ``not-found`` when no node serves a key event of it)."""
    await reader.keys.settle([did])
    truncated = False

    def accept(e: Event) -> bool:
        return e.author == did

    async def one(node: NodeClient) -> None:
        nonlocal truncated
        start: int | None = 1
        for _ in range(max_pages):
            assert start is not None  # noqa: S101 - loop invariant
            items, start = await node.author_events(did, from_seq=start, limit=PAGE)
            await reader.preverify(items)
            for item in items:
                reader.add(node.url, item, accept)
            if start is None:
                return
        truncated = True

    await reader.each(one)
    return snapshot(reader, did, truncated=truncated)


async def look_up(reader: Reader, chain: NodeChain, event_id: bytes) -> NodeChain:
    """``chain`` with ``event_id`` asked of every node (a point older than was read)."""
    await reader.lookup([event_id])
    await reader.keys.settle([chain.did])
    return snapshot(reader, chain.did, truncated=chain.truncated)


def snapshot(reader: Reader, did: str, *, truncated: bool = False) -> NodeChain:
    """What ``reader`` holds of ``did`` now (after :meth:`KeyTracker.settle`)."""
    history = reader.keys.histories.get(did)
    if history is None or not history.key_events:
        raise NotFoundError(
            f"no configured node serves a key event of {did}: check the did and the "
            "nodes (murmur nodes list), or add a node that holds it"
        )
    events = dict(reader.keys.held.get(did, {}))
    built = _build(history.key_events.values())
    valid = {i: k for i, k in built.items() if _in_tree(history, i)}
    answered = [n.url for n in reader.report.nodes if n.answered]
    return NodeChain(
        did=did,
        events=events,
        history=history,
        built=built,
        valid=valid,
        answered=answered,
        truncated=truncated,
    )


def _build(key_events: Iterable[Event]) -> dict[bytes, KeyEvent]:
    """Every key event whose state can be built (parents first; its kev built)."""
    built: dict[bytes, KeyEvent] = {}
    todo = sorted(key_events, key=lambda e: e.seq)
    progress = True
    while progress and todo:
        progress = False
        for e in list(todo):
            if e.kev is None or e.kev in built:
                todo.remove(e)
                progress = True
                try:
                    built[e.id] = key_event_of(e, built)
                except ProtocolError:
                    continue
    return built


def _in_tree(history: KeyHistory, kid: bytes) -> bool:
    """A key event of the valid tree (§8.6): canonical, disputed, or revoked by a key
    event that won at a branch point (never one revoked by a rule, nor pending)."""
    if kid in history.errors:
        return False
    status = history.status.get(kid)
    return status in (Status.CANONICAL, Status.DISPUTED) or (
        status is Status.REVOKED and kid in history.resolution.revoked_by
    )


def points(chain: NodeChain) -> list[Point]:
    """Every held event a recovery can follow, newest first: under a key event of the
    valid tree, breaking no §8.5 rule (its status may be anything: the thief's events
    are revoked only once the owner says which was her last)."""
    out = []
    for e in chain.events.values():
        if e.id in chain.history.errors:
            continue
        kev = e.id if e.kind in KEY_EVENT_KINDS else e.kev
        k = None if kev is None else chain.valid.get(kev)
        if k is None:
            continue
        if e.kind not in KEY_EVENT_KINDS and (e.seq <= k.seq or e.key != k.state.signing):
            continue
        out.append(
            Point(
                event=e,
                key_event=chain.events[k.id],
                state=k.state,
                status=chain.history.status.get(e.id, Status.PENDING),
            )
        )
    out.sort(key=lambda p: (p.event.seq, p.event.id), reverse=True)
    return out


def choose(chain: NodeChain, after: str, key: Identity) -> Point:
    """The point ``after`` names: a full id or a prefix of at least :data:`MIN_PREFIX`
    hex digits of one held event a recovery can follow."""
    text = after.strip().lower()
    candidates = points(chain)
    choices = [point_doc(p, key) for p in candidates]
    if len(text) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in text):
        raise RecoveryPointUnknownError(
            f"--after takes an event id or a prefix of at least {MIN_PREFIX} hex digits, "
            f"not {safe_line(after)!r}",
            choices=choices,
        )
    matches = [p for p in candidates if p.event.id.hex().startswith(text)]
    if len(matches) > 1:
        raise RecoveryPointAmbiguousError(
            f"--after {text} matches {len(matches)} events: "
            + ", ".join(f"{p.event.id.hex()[:16]} (seq {p.event.seq})" for p in matches)
            + "; give more of the id",
            choices=[point_doc(p, key) for p in matches],
        )
    if not matches:
        if any(e.id.hex().startswith(text) for e in chain.events.values()):
            why = (
                "a recovery cannot follow it: it breaks a rule of spec 0008 §8.5 or relies "
                "on a key event that is not valid"
            )
        else:
            why = "no node served an event with that id"
            if chain.truncated:
                why += " (the chain is longer than was read: give the full id)"
        raise RecoveryPointUnknownError(f"--after {text}: {why}", choices=choices)
    return matches[0]


def check_key_at(chain: NodeChain, point: Point, key: Identity) -> int:
    """The recovery key's position in the state at ``point`` (spec 0008
    #recover-prefix: its rank is 4 − position), else ``unauthorized-key``. Never
    shows the key."""
    if not point.entitles(key):
        at = [
            f"seq {chain.events[i].seq} ({i.hex()[:12]})"
            for i, k in sorted(chain.valid.items(), key=lambda kv: kv[1].seq)
            if key.public.raw in k.state.recovery
        ]
        raise UnauthorizedKeyError(
            f"this recovery key is not in the recovery list of the key state at the chosen "
            f"point (key event {point.key_event.id_hex[:12]}, seq {point.key_event.seq}: "
            f"{len(point.state.recovery)} recovery key(s)); a recovery may have replaced it. "
            + (
                "It is a recovery key at the key event(s) " + ", ".join(at)
                if at
                else "It is a recovery key at no key event the nodes served"
            )
            + " (the key is not shown)"
        )
    return point.state.recovery.index(key.public.raw)


@dataclass(frozen=True, slots=True, kw_only=True)
class Signed:
    """A recovery signed after a chosen point, with its new keys, not saved anywhere."""

    event: Event
    signing: Identity
    next_key: Identity
    point: Point
    #: Events shown as the author's before and revoked with this recovery.
    revokes: list[Event]
    #: The recovery ties with another key event of its rank (§8.6): disputed.
    disputed: bool


def sign_after(
    chain: NodeChain,
    point: Point,
    key: Identity,
    *,
    new_recovery: tuple[RecoveryKey, ...] | None,
    net: str,
) -> Signed:
    """Sign a ``recover`` after ``point`` with ``key`` (fresh S and N), check it as a
    node would (§8.5 steps 2–4 against the state at its kev) and against the fork
    choice over everything held: refused (``recovery-outranked``) if it would not be
    on the canonical path, i.e. revoked by a key event of higher rank."""
    check_key_at(chain, point, key)
    signing, nxt = fresh_key(), fresh_key()
    body = {
        "signing": signing.public.raw,
        "next": next_key_commitment(nxt.public.raw),
        **recovery_list(point.state, key, new_recovery),
    }
    event = sign_event_v2(
        key,
        author=chain.did,
        kind=kinds.RECOVER,
        body=body,
        seq=point.event.seq + 1,
        prev=point.event.id,
        kev=point.key_event.id,
        net=net,
    )
    mine = key_event_of(event, chain.built)
    check_event(mine, chain.valid)
    links = [link_of(e) for e in chain.events.values() if e.kind not in KEY_EVENT_KINDS]
    after = resolve([*chain.built.values(), mine], links)
    if event.id not in after.path and event.id not in after.contenders:
        by = after.revoked_by.get(event.id)
        winner = None if by is None else chain.events.get(by)
        raise RecoveryOutrankedError(
            "a recovery after this point would not be the author's: "
            + (
                f"the {winner.kind} {winner.id_hex[:12]} (seq {winner.seq}) outranks it "
                "(spec 0008 §8.6: a higher-priority recovery key signed it)"
                if winner is not None
                else "it is not on the canonical path of the key events the nodes serve"
            )
            + "; nothing was signed or saved",
            choices=[point_doc(p, key) for p in points(chain)],
        )
    before = chain.history.status
    revokes = [
        e
        for e in chain.events.values()
        if before.get(e.id) is Status.CANONICAL and after.status.get(e.id) is Status.REVOKED
    ]
    revokes.sort(key=lambda e: (e.seq, e.id))
    return Signed(
        event=event,
        signing=signing,
        next_key=nxt,
        point=point,
        revokes=revokes,
        disputed=event.id in after.contenders,
    )


def _ancestry(chain: NodeChain, key_event: Event) -> list[Event]:
    """The key events from the genesis to ``key_event`` by ``kev`` (genesis first)."""
    out = [key_event]
    while out[-1].kev is not None:
        out.append(chain.events[out[-1].kev])
    return out[::-1]


def _copies(chain: NodeChain, head: Event) -> list[Event]:
    """The owner's events with a body, from ``head`` back by ``prev`` (the chain she
    chose), minus those she deleted on it herself (never given back): the copies her
    client gives nodes that lost a body to a delete her recovery revokes (0008
    #revoked-delete). Bounded by :data:`MAX_ARCHIVED`; stops at a gap."""
    walked: list[Event] = []
    current: Event | None = head
    while current is not None and len(walked) < MAX_ARCHIVED:
        walked.append(current)
        current = None if current.prev is None else chain.events.get(current.prev)
    deleted = {
        e.body["target"]
        for e in walked
        if e.kind == kinds.DELETE and e.body is not None and isinstance(e.body.get("target"), bytes)
    }
    return [e for e in walked if e.body_bytes is not None and e.id not in deleted]


def adopt(
    store: Keystore, name: str, chain: NodeChain, signed: Signed, *, passphrase: str | None
) -> StoredIdentity:
    """Save a recovery signed on a new home: the outbox first (the chosen branch's key
    events, the chosen event, the recovery unpublished), the kept copies, then the
    identity ``name`` with the new S and N sealed with ``passphrase``; its creation is
    the commit point (if it fails, the outbox is removed again)."""
    Keystore.check_name(name)
    own = OwnChain(store.home, chain.did)
    if store.exists(name):
        raise KeystoreError(f"an identity named {name!r} already exists in {store.home}")
    if own.exists():
        raise KeystoreError(
            f"{own.path} exists: this home already holds a chain of {chain.did}; recover "
            "the identity that uses it (murmur id list), or move that file away"
        )
    point = signed.point
    head = None if point.event.id == point.key_event.id else point.event
    own.adopt(_ancestry(chain, point.key_event), head, signed.event)
    try:
        for copy in reversed(_copies(chain, point.event)):
            own.archive(copy)
        return store.create_rotatable(
            name,
            did=chain.did,
            signing=signed.signing,
            next_key=signed.next_key,
            passphrase=passphrase,
        )
    except BaseException:
        own.remove()  # no identity uses it: a re-run starts again
        raise


def preview(e: Event) -> str:
    """A short, terminal-safe description of ``e``'s body (served by nodes)."""
    body = e.body
    if body is None:
        return "(no body)"
    if e.kind == kinds.POST:
        text = body.get("text")
        raw = text if isinstance(text, str) else ""
        cut = raw[:PREVIEW_CHARS] + ("…" if len(raw) > PREVIEW_CHARS else "")
        return '"' + safe_line(cut) + '"'
    for field in ("target", "subject"):
        value = body.get(field)
        if isinstance(value, bytes):
            return f"{field} {value.hex()[:12]}"
        if isinstance(value, str):
            return f"{field} {safe_line(value[:40])}"
    if e.kind in KEY_EVENT_KINDS:
        return "new signing key " + (
            body["signing"].hex()[:12] if isinstance(body.get("signing"), bytes) else "?"
        )
    name = body.get("name")
    if isinstance(name, str):
        return "name " + safe_line(name[:40])
    return ""


def when(ts: int) -> str:
    """``ts`` (the author's claim, ms) as UTC, to the second."""
    try:
        return dt.datetime.fromtimestamp(ts / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"ts {ts}"


def point_doc(p: Point, key: Identity | None = None) -> dict[str, Any]:
    """The ``--json`` form of a candidate point (preview terminal-safe, as shown)."""
    e = p.event
    doc: dict[str, Any] = {
        "id": e.id_hex,
        "seq": e.seq,
        "ts": e.ts,
        "kind": e.kind,
        "status": p.status.value,
        "kev": p.key_event.id_hex,
        "preview": preview(e),
    }
    if key is not None:
        doc["recovery_key_entitled"] = p.entitles(key)
    return doc
