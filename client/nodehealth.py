"""How each configured node is doing, asked now: ``GET /health`` and ``GET /v1/info``
(spec 0004 #info), for any face of the client (``murmur web``'s nodes page).

:func:`check_nodes` asks every node at once, each within the per-node timeout, and
never fails: a node that does not answer is a :class:`NodeHealth` with ``reachable``
False and the error's stable code. The latency is the wall time of the ``/health``
request as this client saw it (a figure for people, never a decision). What a node
says about itself (version, node id, network, counts) is its claim, shown as such;
the one thing checked is the network name, since a node of another network serves
events this client cannot verify (spec 0002 #v-network).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from client.api import NodeClient
from client.textsafety import safe_line
from protocol.errors import ProtocolError

__all__ = ["NodeHealth", "check_node", "check_nodes"]

#: Longest node-given string kept (a version, a node id).
MAX_CLAIM_CHARS = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeHealth:
    """One node's answers to ``/health`` and ``/v1/info`` (its claims, made safe to show)."""

    url: str
    reachable: bool
    #: ``/health`` said ``{"status": "ok"}``.
    healthy: bool = False
    latency_ms: float | None = None
    version: str | None = None
    node_id: str | None = None
    network: str | None = None
    events: int | None = None
    cursor: int | None = None
    #: The first failure's stable code and message (``node-unreachable``, ``http-503``...).
    error_code: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "reachable": self.reachable,
            "healthy": self.healthy,
            "latency_ms": self.latency_ms,
            "version": self.version,
            "node_id": self.node_id,
            "network": self.network,
            "events": self.events,
            "cursor": self.cursor,
            "error": None
            if self.error_code is None
            else {"code": self.error_code, "message": self.error},
        }


def _claim(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return safe_line(value[:MAX_CLAIM_CHARS])


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def check_node(node: NodeClient) -> NodeHealth:
    """``node``'s health now (see the module doc); never raises a ``ProtocolError``."""
    start = time.perf_counter()
    try:
        health = await asyncio.wait_for(node.health(), node.timeout)
    except TimeoutError:
        return NodeHealth(
            url=node.url,
            reachable=False,
            error_code="node-timeout",
            error=f"{node.url} did not answer within {node.timeout:g} s",
        )
    except ProtocolError as exc:
        # A node that answered with an HTTP error is reachable, just not healthy.
        answered = exc.code not in ("node-unreachable", "node-timeout")
        return NodeHealth(
            url=node.url,
            reachable=answered,
            latency_ms=(time.perf_counter() - start) * 1000 if answered else None,
            error_code=exc.code,
            error=safe_line(exc.message),
        )
    latency = (time.perf_counter() - start) * 1000
    healthy = health.get("status") == "ok"
    code: str | None = None
    message: str | None = None
    info: dict[str, Any] = {}
    try:
        info = await asyncio.wait_for(node.info(), node.timeout)
    except TimeoutError:
        code, message = "node-timeout", f"/v1/info: no answer in {node.timeout:g} s"
    except ProtocolError as exc:
        code, message = exc.code, safe_line(exc.message)
    raw_counts = info.get("counts")
    counts: dict[str, Any] = raw_counts if isinstance(raw_counts, dict) else {}
    return NodeHealth(
        url=node.url,
        reachable=True,
        healthy=healthy,
        latency_ms=latency,
        version=_claim(info.get("version")),
        node_id=_claim(info.get("node_id")),
        network=_claim(info.get("network")),
        events=_count(counts.get("events")),
        cursor=_count(info.get("cursor")),
        error_code=code,
        error=message,
    )


async def check_nodes(nodes: Sequence[NodeClient]) -> list[NodeHealth]:
    """Every node of ``nodes`` checked at once, in their order."""
    return list(await asyncio.gather(*(check_node(n) for n in nodes)))
