"""NodeClient: spec 0004 over an injected transport, errors translated at the boundary."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from client.api import NodeClient
from client.errors import BadResponseError, NodeTimeoutError, NodeUnreachableError
from protocol.errors import RemoteError
from tests.client.conftest import Author, FakeNode


def client_for(handler: httpx.MockTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=handler)


async def test_round_trip_against_a_fake_node() -> None:
    node = FakeNode("http://n.test")
    carol = Author.new()
    e1 = carol.post("one")
    async with httpx.AsyncClient(transport=httpx.MockTransport(node.handle)) as http:
        api = NodeClient(node.url, http)
        (result,) = await api.submit([e1.wire])
        assert result.status == "accepted" and result.id == e1.id_hex
        (again,) = await api.submit([e1.wire])
        assert again.status == "duplicate"
        item = await api.get_event(e1.id_hex)
        assert item is not None and item.wire == e1.wire
        assert await api.get_event("00" * 32) is None
        items, nxt = await api.author_events(carol.did)
        assert [i.wire for i in items] == [e1.wire] and nxt is None
        assert await api.author_head(Author.new().did) is None


async def test_long_author_lists_are_asked_for_in_a_body() -> None:
    node = FakeNode("http://n.test")
    authors = [Author.new() for _ in range(30)]
    posts = [a.post(f"by {i}") for i, a in enumerate(authors)]
    node.add(*posts)
    async with httpx.AsyncClient(transport=httpx.MockTransport(node.handle)) as http:
        api = NodeClient(node.url, http)
        few, _ = await api.feed(authors=[a.did for a in authors[:3]], limit=50)
        many, _ = await api.feed(authors=[a.did for a in authors[:25]], kinds=["post"], limit=50)
    assert node.requests == ["GET /v1/feed", "POST /v1/feed"]
    assert {i.wire for i in few} == {p.wire for p in posts[:3]}
    assert {i.wire for i in many} == {p.wire for p in posts[:25]}


@pytest.mark.parametrize(
    ("response", "error", "code"),
    [
        (
            httpx.Response(400, json={"error": "invalid-did", "message": "bad"}),
            RemoteError,
            "invalid-did",
        ),
        (
            httpx.Response(429, json={"error": "rate-limited", "message": "slow down"}),
            RemoteError,
            "rate-limited",
        ),
        (httpx.Response(502, text="<html>bad gateway</html>"), RemoteError, "http-502"),
        (httpx.Response(200, text="not json"), BadResponseError, "bad-response"),
        (httpx.Response(200, json={"nothing": []}), BadResponseError, "bad-response"),
    ],
    ids=["node-code", "rate-limited", "non-json-error", "non-json-ok", "wrong-shape"],
)
async def test_errors_are_translated(
    response: httpx.Response, error: type[Exception], code: str
) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: response)) as http:
        with pytest.raises(error) as info:
            await NodeClient("http://n.test", http).feed()
    assert getattr(info.value, "code", None) == code


async def test_transport_errors() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        with pytest.raises(NodeUnreachableError) as info:
            await NodeClient("http://n.test", http).info()
        assert info.value.code == "node-unreachable" and info.value.url == "http://n.test"
    async with httpx.AsyncClient(transport=httpx.MockTransport(hang)) as http:
        with pytest.raises(NodeTimeoutError) as tinfo:
            await NodeClient("http://n.test", http).info()
        assert tinfo.value.code == "node-timeout"


async def test_malformed_wire_is_kept_as_unusable_item() -> None:
    doc = {"events": [{"id": "ab", "wire": "!!not base64"}, {"id": "cd"}], "next": None}
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=doc))
    ) as http:
        items, _ = await NodeClient("http://n.test", http).feed()
    assert [(i.wire, i.claimed_id) for i in items] == [(None, "ab"), (None, "cd")]


class _Endless(httpx.AsyncByteStream):
    """A body with no Content-Length that would never end; counts what was pulled."""

    def __init__(self) -> None:
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < 10_000_000:  # bounded: the test fails rather than hangs
            self.pulled += 1024
            yield b"x" * 1024


async def test_oversized_answers_are_refused_without_buffering_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("client.api.MAX_RESPONSE_BYTES", 64 * 1024)
    declared = httpx.MockTransport(
        lambda req: httpx.Response(200, headers={"Content-Length": "999999999"}, content=b"{}")
    )
    async with client_for(declared) as http:
        with pytest.raises(BadResponseError, match="too large"):
            await NodeClient("http://n.test", http).info()
    endless = _Endless()
    undeclared = httpx.MockTransport(lambda req: httpx.Response(200, stream=endless))
    async with client_for(undeclared) as http:
        with pytest.raises(BadResponseError, match="too large"):
            await NodeClient("http://n.test", http).info()
    assert endless.pulled <= 64 * 1024 + 1024  # stopped at the cap, not at the end


def test_public_api_is_exactly_all() -> None:
    """The package's names load on first use (PEP 562): each name in ``__all__``
    resolves, ``dir()`` lists exactly them, and nothing else public is offered."""
    import types

    import client

    assert set(client._LOCATIONS) == set(client.__all__)
    for name in client.__all__:
        assert getattr(client, name).__name__ == name
    public = {
        n
        for n in dir(client)
        if not n.startswith("_")
        and not isinstance(getattr(client, n), types.ModuleType)
        and n != "annotations"
    }
    assert public == set(client.__all__)
    with pytest.raises(AttributeError):
        _ = client.NotAName  # type: ignore[attr-defined]
