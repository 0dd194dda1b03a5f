"""Posting: find the own head, sign the next event, submit it to every node (spec 0007 §post).

Before signing, :class:`Publisher` asks every node for the author's head (concurrently,
within the per-node timeout) and takes the highest seq for which a node serves a
*verified* event, never going below the head recorded in ``$MURMUR_HOME/state``. So a
new machine with the same key, or a home that lost its state, continues the chain
instead of forking it. The signed event goes to every node at once; publishing
succeeds when at least one node answers ``accepted`` or ``duplicate``, and the per-node
outcomes (rejections with the node's code and message, unreachable nodes) are reported.
Only then does the local head advance.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from client.api import DEFAULT_TIMEOUT_S, NodeClient
from client.errors import NodeTimeoutError, NodeUnreachableError, PublishError
from client.reader import Reader, latest_by_seq
from client.state import Head, HeadStore
from protocol.errors import ProtocolError, RemoteError
from protocol.events import DEFAULT_NETWORK, Event, sign_event
from protocol.identity import Identity

__all__ = ["NodeOutcome", "PublishResult", "Publisher"]

log = logging.getLogger("murmur.client.publish")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeOutcome:
    """What one node did with a submitted event."""

    url: str
    status: str  # accepted | duplicate | rejected | error
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


class Publisher:
    """Signs as ``identity`` and publishes to ``nodes``; tracks the head in ``heads``."""

    def __init__(
        self,
        identity: Identity,
        nodes: Sequence[NodeClient],
        heads: HeadStore,
        *,
        net: str = DEFAULT_NETWORK,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.identity = identity
        self.nodes = list(nodes)
        self.heads = heads
        self.net = net
        self.timeout = timeout

    async def sync_head(self) -> tuple[Head | None, str]:
        """The head to sign after: the best of the local one and the nodes' verified ones."""
        did = self.identity.did
        local = self.heads.get(did)
        reader = Reader(self.nodes, net=self.net, timeout=self.timeout)
        claims: set[int] = set()

        async def ask(node: NodeClient) -> None:
            head = await node.author_head(did)
            if head is not None and isinstance(head.get("max_seq"), int):
                claims.add(int(head["max_seq"]))

        await reader.each(ask)
        if not any(n.ok for n in reader.report.nodes) and local is None:
            errors = "; ".join(n.error.message for n in reader.report.nodes if n.error)
            raise NodeUnreachableError(
                f"cannot learn the head of {did} before signing (no node answered): {errors}"
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

        async def one(node: NodeClient) -> NodeOutcome:
            try:
                (result,) = await asyncio.wait_for(node.submit([event.wire]), self.timeout)
            except TimeoutError:
                err: ProtocolError = NodeTimeoutError(
                    f"{node.url} did not answer within {self.timeout:g} s", url=node.url
                )
                return NodeOutcome(url=node.url, status="error", code=err.code, message=err.message)
            except ProtocolError as exc:
                return NodeOutcome(url=node.url, status="error", code=exc.code, message=exc.message)
            if result.status in ("accepted", "duplicate"):
                return NodeOutcome(url=node.url, status=result.status)
            return NodeOutcome(
                url=node.url,
                status="rejected",
                code=result.error or "rejected",
                message=result.message or result.error or "rejected",
            )

        return tuple(await asyncio.gather(*(one(n) for n in self.nodes)))

    async def publish(self, kind: str, body: Mapping[str, Any]) -> PublishResult:
        """Sign the next event of ``kind`` with ``body`` and publish it; raise if none took it."""
        head, source = await self.sync_head()
        event = sign_event(
            self.identity,
            kind=kind,
            body=body,
            seq=1 if head is None else head.seq + 1,
            prev=None if head is None else head.id,
            net=self.net,
        )
        outcomes = await self.submit(event)
        if any(o.stored for o in outcomes):
            self.heads.advance(self.identity.did, Head(seq=event.seq, id=event.id))
            for o in outcomes:
                if not o.stored:
                    log.info("node did not store event url=%s code=%s", o.url, o.code)
            return PublishResult(event=event, outcomes=outcomes, head_source=source)
        raise _failure(outcomes)


def _failure(outcomes: Sequence[NodeOutcome]) -> ProtocolError:
    """The error for a publish no node stored: a rejection's code wins (it is the node's)."""
    detail = "; ".join(f"{o.url}: {o.code}: {o.message}" for o in outcomes)
    rejected = [o for o in outcomes if o.status == "rejected"]
    if rejected:
        first = rejected[0]
        return RemoteError(
            first.code or "rejected", f"the event was rejected: {detail}", status=400
        )
    if all(o.code in (NodeUnreachableError.code, NodeTimeoutError.code) for o in outcomes):
        return NodeUnreachableError(f"no node could be reached: {detail}")
    return PublishError(f"no node stored the event: {detail}")
