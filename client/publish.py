"""Posting: find the own head, sign the next event, submit it to every node (spec 0007 §post).

Before signing, :class:`Publisher` asks every node for the author's head (concurrently,
within the per-node timeout) and takes the highest seq for which a node serves a
*verified* event, never going below the head recorded in ``$MURMUR_HOME/state``. So a
new machine with the same key, or a home that lost its state, continues the chain
instead of forking it. The signed event goes to every node at once; publishing
succeeds when at least one node answers ``accepted`` or ``duplicate``, and the per-node
outcomes (rejections with the node's code and message, unreachable nodes) are reported.
Only then does the local head advance.

One slow node does not hold a publish (spec 0007 #post-quorum): the head query and
the submission share one deadline (the per-node timeout; the head query may use half
of it), and each returns once ``quorum`` nodes answered (the head) or stored the event
(the submission), after giving the others :data:`QUORUM_GRACE_S` more. A node still
silent then is left (its request is cancelled) and reported ``unconfirmed``: the event
reaches it, if at all, through the nodes it syncs with, as for a node that was down.

A rotatable identity (``did:murmur``, spec 0008) is given its :class:`OwnChain`: it
signs v2 events after its own outbox (``prev`` the outbox's last event, ``kev`` its
latest key event), never after a node's head. The signed event is recorded in the
outbox, with its bytes, *before* it is sent (under the outbox's lock: two processes of
one home never sign one seq twice), and every saved event no node has stored yet is
sent again, as the same bytes, in the same request before the new event (spec 0007
#own-chain): a lost acknowledgement never makes the next event fork the chain. After a
rotation or recovery, :meth:`Publisher.restore_bodies` gives nodes back the bodies of
the owner's events they hold without one (spec 0008 #revoked-delete).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from client.api import DEFAULT_TIMEOUT_S, NodeClient
from client.errors import NodeTimeoutError, NodeUnreachableError, PublishError
from client.fanout import QUORUM_GRACE_S, until_quorum
from client.keycache import KeyCache
from client.ownchain import OwnChain
from client.reader import Reader, latest_by_seq
from client.state import Head, HeadStore
from protocol import kinds
from protocol.errors import ProtocolError, RemoteError
from protocol.events import DEFAULT_NETWORK, Event, decode_unverified, sign_event, sign_event_v2
from protocol.identity import Identity

__all__ = ["QUORUM_GRACE_S", "NodeOutcome", "PublishResult", "Publisher"]

log = logging.getLogger("murmur.client.publish")

#: Events per request when giving nodes back lost bodies (nodes take 1000 by default).
RESTORE_BATCH = 100
#: Events per page when reading the own log back from a node.
RESTORE_PAGE = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeOutcome:
    """What one node did with a submitted event."""

    url: str
    #: accepted | duplicate | rejected | error | unconfirmed (no answer yet when the
    #: quorum was met, spec 0007 #post-quorum)
    status: str
    code: str | None = None
    message: str | None = None

    @property
    def stored(self) -> bool:
        return self.status in ("accepted", "duplicate")

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "status": self.status, "code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishResult:
    event: Event
    outcomes: tuple[NodeOutcome, ...]
    #: Where the previous head came from: "local", "nodes" or "none" (first event).
    head_source: str
    #: How many nodes were to store it before the publish returned (spec 0007 #post-quorum).
    quorum: int = 1

    @property
    def stored_anywhere(self) -> bool:
        return any(o.stored for o in self.outcomes)

    @property
    def quorum_met(self) -> bool:
        return sum(o.stored for o in self.outcomes) >= self.quorum


class Publisher:
    """Signs as ``identity`` and publishes to ``nodes``; tracks the head in ``heads``."""

    def __init__(
        self,
        identity: Identity | None,
        nodes: Sequence[NodeClient],
        heads: HeadStore,
        *,
        net: str = DEFAULT_NETWORK,
        timeout: float = DEFAULT_TIMEOUT_S,
        chain: OwnChain | None = None,
        quorum: int = 1,
        keycache: KeyCache | None = None,
    ) -> None:
        #: The signing key; None for a publisher that only re-sends saved key events.
        self.identity = identity
        self.nodes = list(nodes)
        self.heads = heads
        self.net = net
        self.timeout = timeout
        #: Nodes that must store an event before :meth:`publish` returns (at most all).
        self.quorum = max(1, min(quorum, len(self.nodes)))
        #: The owner's outbox when the identity is a did:murmur (spec 0008).
        self.chain = chain
        #: The home's verified key events: every read before signing goes through it
        #: (spec 0007 #key-status), as the home's other reads do.
        self.keycache = keycache

    @property
    def did(self) -> str:
        """The author's did: the did:murmur of a rotatable identity, else its did:key."""
        if self.chain is not None:
            return self.chain.did
        return self.signer().did

    def signer(self) -> Identity:
        """The signing key (``ValueError`` for a publisher that only re-sends)."""
        if self.identity is None:
            raise ValueError("this publisher has no signing key")
        return self.identity

    async def sync_head(self, deadline: float | None = None) -> tuple[Head | None, str]:
        """The head to sign after: the best of the local one and the nodes' verified ones.

        Asks every node until ``deadline`` (loop time; default: the timeout from now),
        or until the quorum answered and then :data:`QUORUM_GRACE_S` more; the claims
        are then checked with the nodes that answered.
        """
        did = self.signer().did
        local = self.heads.get(did)
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + self.timeout
        claims: set[int] = set()

        async def ask(node: NodeClient) -> bool:
            head = await node.author_head(did)
            if head is not None and isinstance(head.get("max_seq"), int):
                claims.add(int(head["max_seq"]))
            return True

        answers, _ = await until_quorum(
            {n.url: ask(n) for n in self.nodes},
            quorum=self.quorum,
            ok=bool,
            deadline=deadline,
        )
        answered = [n for n in self.nodes if answers[n.url] is True]
        if not answered and local is None:
            errors = "; ".join(
                f"{url}: " + (a.message if isinstance(a, ProtocolError) else "no answer in time")
                for url, a in answers.items()
            )
            raise NodeUnreachableError(
                f"cannot learn the head of {did} before signing (no node answered): {errors}"
            )
        if not answered:
            return local, "local"
        left = max(0.1, deadline - loop.time())
        reader = Reader(
            answered, net=self.net, timeout=min(self.timeout, left), keycache=self.keycache
        )
        floor = local.seq if local is not None else 0
        # Highest claim first; a node's claim counts only if some node serves the event.
        for seq in sorted((c for c in claims if c > floor), reverse=True)[: len(self.nodes)]:
            await reader.fetch_log(did, from_seq=seq, to_seq=seq, max_pages=1)
            top = latest_by_seq(e for e in reader.of_author(did) if e.seq == seq)
            if top is not None:
                if len([e for e in reader.of_author(did) if e.seq == seq]) > 1:
                    log.warning(
                        "own chain is forked at seq=%d; continuing after id=%s", seq, top.id_hex
                    )
                head = Head(seq=top.seq, id=top.id)
                self.heads.advance(did, head)
                return head, "nodes"
            log.warning("a node claims seq %d for %s but no node serves it verified", seq, did)
        return local, ("local" if local is not None else "none")

    async def submit(self, event: Event) -> tuple[NodeOutcome, ...]:
        """Send ``event`` to every node at once; one outcome per node, in node order."""
        return tuple(row[0] for row in await self.submit_many([event]))

    async def submit_many(
        self,
        events: Sequence[Event],
        *,
        quorum: int | None = None,
        deadline: float | None = None,
    ) -> list[tuple[NodeOutcome, ...]]:
        """Send ``events`` in one request to every node at once (in this order, so a
        key event comes before the events that name it); per node, one outcome per
        event.

        With ``quorum``, returns once that many nodes stored the last event and the
        others had :data:`QUORUM_GRACE_S` more; the ones still silent are
        ``unconfirmed`` (spec 0007 #post-quorum). Without, waits for every node. No
        node is waited for past ``deadline`` (loop time; default: the timeout from now).
        """
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + self.timeout

        async def one(node: NodeClient) -> tuple[NodeOutcome, ...]:
            try:
                results = await node.submit([e.wire for e in events])
            except ProtocolError as exc:
                return tuple(
                    NodeOutcome(url=node.url, status="error", code=exc.code, message=exc.message)
                    for _ in events
                )
            if len(results) != len(events):
                return tuple(
                    NodeOutcome(
                        url=node.url,
                        status="error",
                        code="bad-response",
                        message=f"{len(results)} results for {len(events)} events",
                    )
                    for _ in events
                )
            return tuple(_outcome(node.url, r.status, r.error, r.message) for r in results)

        rows, met = await until_quorum(
            {n.url: one(n) for n in self.nodes},
            quorum=len(self.nodes) if quorum is None else quorum,
            ok=lambda row: row[-1].stored,
            deadline=deadline,
        )
        out: list[tuple[NodeOutcome, ...]] = []
        for node in self.nodes:
            row = rows[node.url]
            if isinstance(row, tuple):
                out.append(row)
                continue
            if isinstance(row, BaseException):
                raise row
            if met:
                left = NodeOutcome(
                    url=node.url,
                    status="unconfirmed",
                    message=f"no answer yet when {self.quorum} node(s) had stored it; it may "
                    "still store it, or get it from the nodes it syncs with",
                )
            else:
                err = NodeTimeoutError(
                    f"{node.url} did not answer within {self.timeout:g} s", url=node.url
                )
                left = NodeOutcome(url=node.url, status="error", code=err.code, message=err.message)
            out.append(tuple(left for _ in events))
        return out

    async def publish(self, kind: str, body: Mapping[str, Any]) -> PublishResult:
        """Sign the next event of ``kind`` with ``body`` and publish it; raise if none took it."""
        if self.chain is not None:
            return await self._publish_own_chain(kind, body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        # The head may use half the deadline: the event must still have time to go out.
        head, source = await self.sync_head(deadline=loop.time() + self.timeout / 2)
        event = sign_event(
            self.signer(),
            kind=kind,
            body=body,
            seq=1 if head is None else head.seq + 1,
            prev=None if head is None else head.id,
            net=self.net,
        )
        rows = await self.submit_many([event], quorum=self.quorum, deadline=deadline)
        outcomes = tuple(row[0] for row in rows)
        if any(o.stored for o in outcomes):
            self.heads.advance(event.author, Head(seq=event.seq, id=event.id))
            for o in outcomes:
                if not o.stored:
                    log.info("node did not store event url=%s status=%s", o.url, o.status)
            return PublishResult(
                event=event, outcomes=outcomes, head_source=source, quorum=self.quorum
            )
        raise _failure(outcomes)

    async def flush(self) -> list[PublishResult]:
        """Send the saved key events no node stored yet (the same bytes, spec 0008
        §8.7); one result each (``stored_anywhere`` says which went through)."""
        assert self.chain is not None  # noqa: S101 - only rotatable identities have an outbox
        pending = self.chain.unpublished()
        if not pending:
            return []
        return self._settle(pending, await self.submit_many(pending))

    def _settle(
        self, events: Sequence[Event], rows: Sequence[tuple[NodeOutcome, ...]]
    ) -> list[PublishResult]:
        assert self.chain is not None  # noqa: S101
        results = [
            PublishResult(event=e, outcomes=tuple(row[i] for row in rows), head_source="local")
            for i, e in enumerate(events)
        ]
        stored = {r.event.id for r in results if any(o.stored for o in r.outcomes)}
        self.chain.mark_published(stored)
        return results

    async def _publish_own_chain(self, kind: str, body: Mapping[str, Any]) -> PublishResult:
        """A did:murmur's event: v2, after the owner's outbox, recorded (unpublished,
        with its bytes) before it is sent, saved unsent events first."""
        chain = self.chain
        assert chain is not None  # noqa: S101
        with chain.lock():
            pending = chain.unpublished()
            head = chain.head()
            event = sign_event_v2(
                self.signer(),
                author=chain.did,
                kind=kind,
                body=body,
                seq=head.seq + 1,
                prev=head.id,
                kev=chain.latest_key_event().id,
                net=self.net,
            )
            target = body.get("target") if kind == kinds.DELETE else None
            if isinstance(target, bytes):
                chain.unarchive(target)  # the owner deletes it: never given back
            chain.record(event, published=False)
        rows = await self.submit_many([*pending, event], quorum=self.quorum)
        result = self._settle([*pending, event], rows)[-1]
        if any(o.stored for o in result.outcomes):
            if chain.restore_passes():
                await self.restore_bodies()
            return result
        if result.outcomes and all(o.status == "rejected" for o in result.outcomes):
            # Every node answered and refused it: none holds it, so it leaves the chain
            # (if nothing was signed after it meanwhile) instead of blocking it.
            with chain.lock():
                chain.forget(event.id)
            raise _failure(result.outcomes)
        log.info("event saved unsent id=%s: re-sent before the next one", event.id_hex)
        # It is part of the owner's chain now (spec 0007 #own-chain): say so, since it
        # will go out with the next event.
        raise _failure(
            result.outcomes,
            then=(
                f"It is saved (seq {event.seq}) and will be sent, exactly as signed, "
                "before your next event"
            ),
        )

    async def restore_bodies(self) -> dict[str, int]:
        """Give each node back the full copies of the owner's kept events it holds
        without a body (spec 0008 #revoked-delete, 0004 #body-fill); how many were
        re-sent to each node. A check after which every node answered and holds every
        kept event whole (it had them, or filled what it was sent) ends the checks;
        otherwise one fewer remains (the outbox's
        ``restore`` count: a node that has not yet learnt the rotation still holds
        the revoked delete, and is looked at again after the next post)."""
        chain = self.chain
        assert chain is not None  # noqa: S101
        kept = chain.archived()
        if not kept:
            chain.set_restore_passes(0)
            return {}
        lo, hi = min(e.seq for e in kept.values()), max(e.seq for e in kept.values())

        async def one(node: NodeClient) -> tuple[str, int, bool]:
            """(url, copies re-sent, whether the node is whole now: it answered, and
            filled every copy it was sent; 0004 #body-fill reports that ``accepted``)."""
            lacking: dict[bytes, Event] = {}
            filled = 0
            from_seq: int | None = lo
            try:
                while from_seq is not None:
                    items, from_seq = await node.author_events(
                        chain.did, from_seq=from_seq, to_seq=hi, limit=RESTORE_PAGE
                    )
                    for item in items:
                        if item.wire is None:
                            continue
                        try:
                            held = decode_unverified(item.wire, allow_v2=True)
                        except ProtocolError:
                            continue
                        if held.body_bytes is None and held.id in kept:
                            lacking[held.id] = kept[held.id]
                whole = list(lacking.values())
                for i in range(0, len(whole), RESTORE_BATCH):
                    results = await node.submit([e.wire for e in whole[i : i + RESTORE_BATCH]])
                    filled += sum(r.status == "accepted" for r in results)
            except ProtocolError as exc:
                log.info("body check failed url=%s code=%s", node.url, exc.code)
                return node.url, len(lacking), False
            return node.url, len(lacking), filled == len(lacking)

        rows = await asyncio.gather(*(one(n) for n in self.nodes))
        clean = bool(rows) and all(whole for _, _, whole in rows)
        chain.set_restore_passes(0 if clean else chain.restore_passes() - 1)
        for url, n, _ in rows:
            if n:
                log.info("gave back bodies url=%s events=%d", url, n)
        return {url: n for url, n, _ in rows}


def _outcome(url: str, status: str, error: str | None, message: str | None) -> NodeOutcome:
    if status in ("accepted", "duplicate"):
        return NodeOutcome(url=url, status=status)
    return NodeOutcome(
        url=url, status="rejected", code=error or "rejected", message=message or error or "rejected"
    )


def _failure(outcomes: Sequence[NodeOutcome], *, then: str | None = None) -> ProtocolError:
    """The error for a publish no node stored: a rejection's code wins (it is the node's).
    ``then`` says what happens to the event next, after the nodes' answers."""
    detail = "; ".join(f"{o.url}: {o.code}: {o.message}" for o in outcomes)
    if then:
        detail += f". {then}"
    rejected = [o for o in outcomes if o.status == "rejected"]
    if rejected:
        first = rejected[0]
        return RemoteError(
            first.code or "rejected", f"the event was rejected: {detail}", status=400
        )
    if all(o.code in (NodeUnreachableError.code, NodeTimeoutError.code) for o in outcomes):
        return NodeUnreachableError(f"no node could be reached: {detail}")
    return PublishError(f"no node stored the event: {detail}")
