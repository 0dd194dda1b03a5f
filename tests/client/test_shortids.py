"""Short-id resolution against hostile and old nodes (spec 0007 #short-ids): what a
node serves for a prefix is verified and must start with it, so a node can at worst
make a prefix ambiguous or unknown, never make it name another event."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from client.api import NodeClient
from client.errors import AmbiguousIdError, NoNodeAnsweredError, UnknownIdError
from client.reader import Reader
from client.shortids import parse_event_ref, resolve_event_id
from protocol.errors import BadRequestError
from protocol.events import Event, sign_event
from protocol.identity import Identity
from tests.node_json import event_json

AUTHOR = Identity.from_seed(bytes([0x51]) * 32)


def _post(text: str) -> Event:
    return sign_event(AUTHOR, kind="post", body={"text": text}, seq=1, prev=None)


def _node(url: str, answer: Callable[[str], httpx.Response]) -> NodeClient:
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/events"
        return answer(request.url.params["id_prefix"])

    http = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    return NodeClient(url, http, timeout=5)


def _serving(*events: Event | dict[str, object]) -> Callable[[str], httpx.Response]:
    docs = [e if isinstance(e, dict) else event_json(e.wire) for e in events]
    return lambda prefix: httpx.Response(200, json={"events": docs})


def test_parse_takes_a_full_id_or_a_prefix_of_8_or_more_hex() -> None:
    full = "Ab" * 32
    assert parse_event_ref(full) == bytes.fromhex(full)
    assert parse_event_ref(" 1A2B3C4D5E6F ") == "1a2b3c4d5e6f"
    for bad in ("1a2b3c4", "1a2b3c4g", "", "ab" * 33, "did:key:z6Mk"):
        with pytest.raises(BadRequestError):
            parse_event_ref(bad)


async def test_a_node_cannot_make_a_prefix_name_another_event() -> None:
    real, other = _post("real"), _post("other")
    prefix = real.id_hex[:10]
    forged = event_json(real.wire) | {"wire": event_json(other.wire)["wire"]}
    hostile = _node("http://hostile", _serving(other, forged, {"id": real.id_hex}))
    honest = _node("http://honest", _serving(real))
    reader = Reader([hostile, honest])
    assert await resolve_event_id(reader, prefix) == real.id
    dropped = reader.report.node("http://hostile").invalid
    assert {d["code"] for d in dropped} == {"unexpected-event", "malformed"}
    alone = Reader([_node("http://hostile", _serving(other, forged))])
    with pytest.raises(UnknownIdError):
        await resolve_event_id(alone, prefix)


async def test_union_ambiguity_old_nodes_and_no_answer() -> None:
    one = _post("one")
    prefix = one.id_hex[:8]
    assert await resolve_event_id(Reader([_node("http://a", _serving(one))]), prefix) == one.id
    # This home's own ids count in the union: two ids, ambiguous, both listed.
    local = bytes.fromhex(prefix + "0" * 56)
    with pytest.raises(AmbiguousIdError) as info:
        await resolve_event_id(Reader([_node("http://a", _serving(one))]), prefix, local=[local])
    assert info.value.candidates == sorted([one.id_hex, local.hex()])
    assert info.value.code == "ambiguous-id" and one.id_hex in info.value.message

    old = _node(
        "http://old",
        lambda prefix: httpx.Response(
            400, json={"error": "bad-request", "message": "ids is required"}
        ),
    )
    with pytest.raises(UnknownIdError, match="http://old cannot look up short ids"):
        await resolve_event_id(Reader([old]), prefix)

    def down(prefix: str) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(NoNodeAnsweredError):
        await resolve_event_id(Reader([_node("http://down", down)]), prefix)
    # A full id asks nobody.
    assert await resolve_event_id(Reader([_node("http://down", down)]), one.id) == one.id
