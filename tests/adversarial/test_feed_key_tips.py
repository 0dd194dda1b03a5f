"""A reader whose home keeps an author's key events resolves them from there when every
node's feed answer names the tips it holds, and asks no ``POST /v1/keys`` (spec 0004
#feed-key-tips, spec 0007 #key-status); tips never decide a status: a node naming
made-up, missing or stale tips only has ``/keys`` asked, where what it lacks is
reported as withheld (0008 #clients).

Against a real node process; the "lying node" is that node's answers rewritten on
their way to the client (an ``httpx`` transport), which also counts the requests.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from client.api import NodeClient
from client.keycache import KeyCache
from client.reader import Reader
from protocol.events import Event
from tests.adversarial.conftest import start_node
from tests.e2e.nodeproc import NodeProcess
from tests.rotatable import Rotatable

Rewrite = Callable[[str, dict[str, Any]], dict[str, Any]]


@pytest.fixture(scope="module")
def tips_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    node = start_node(tmp_path_factory.mktemp("tips-node"))
    yield node
    node.stop()


class Relay(httpx.AsyncBaseTransport):
    """The node's answers, rewritten by ``rewrite`` (a lying node); counts paths."""

    def __init__(self, rewrite: Rewrite | None = None) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.rewrite = rewrite
        self.asked: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.asked[request.url.path] += 1
        response = await self.inner.handle_async_request(request)
        if self.rewrite is None or response.status_code != 200:
            return response
        body = await response.aread()
        doc = self.rewrite(request.url.path, json.loads(body))
        return httpx.Response(200, json=doc)

    async def aclose(self) -> None:
        await self.inner.aclose()


def history(name: str, rotations: int) -> tuple[Rotatable, list[Event]]:
    """A genesis, a post, then ``rotations`` x (rotate, post under it)."""
    a = Rotatable(name)
    events = [a.genesis]
    kev = a.genesis
    events.append(a.sign("S0", "post", {"text": "first"}, after=kev, kev=kev))
    for n in range(rotations):
        kev = a.rotate(f"N{n}", f"S{n + 1}", f"N{n + 1}", after=events[-1], kev=kev)
        events += [kev, a.sign(f"S{n + 1}", "post", {"text": f"after {n}"}, after=kev, kev=kev)]
    return a, events


async def read(
    node: NodeProcess, a: Rotatable, home: Path, relay: Relay
) -> tuple[Reader, set[bytes]]:
    async with httpx.AsyncClient(transport=relay) as http:
        reader = Reader([NodeClient(node.url, http)], keycache=KeyCache(home))
        await reader.fetch_feed(authors=[a.did], kinds_=["post"], limit=50)
    shown = {i for i, e in reader.events.items() if e.kind == "post"}
    return reader, shown


def posts(events: list[Event]) -> set[bytes]:
    return {e.id for e in events if e.kind == "post"}


async def test_a_warm_home_asks_no_keys_while_the_tips_match(
    tips_node: NodeProcess, tmp_path: Path
) -> None:
    """spec 0004 #feed-key-tips, 0007 #key-status: the first read asks /keys; a later
    read by the same home (a new process: a new cache object) asks neither /keys nor
    /v1/info and shows the same; once the author rotates again, the tips name a key
    event the home lacks and /keys is asked."""
    a, events = history("tips-warm", 1)
    tips_node.ingest(*(e.wire for e in events))
    home = tmp_path / "keycache"

    cold = Relay()
    reader, shown = await read(tips_node, a, home, cold)
    assert shown == posts(events) and cold.asked["/v1/keys"] == 1

    warm = Relay()
    reader, shown = await read(tips_node, a, home, warm)
    assert shown == posts(events)
    assert warm.asked["/v1/keys"] == 0 and warm.asked["/v1/info"] == 0
    assert not reader.report.excluded and not reader.report.nodes[0].withheld

    a2, more = history("tips-warm", 2)
    tips_node.ingest(*(e.wire for e in more[len(events) :]))
    again = Relay()
    reader, shown = await read(tips_node, a2, home, again)
    assert shown == posts(more) and again.asked["/v1/keys"] == 1


def made_up(path: str, doc: dict[str, Any]) -> dict[str, Any]:
    if path == "/v1/feed":
        doc["key_tips"] = {d: ["ab" * 32] for d in doc["key_tips"]}
    return doc


def none_named(path: str, doc: dict[str, Any]) -> dict[str, Any]:
    if path == "/v1/feed":
        del doc["key_tips"]  # as an older node answers
    return doc


@pytest.mark.parametrize("lie", [made_up, none_named], ids=["made-up", "none"])
async def test_made_up_or_missing_tips_cost_a_keys_request(
    tips_node: NodeProcess, tmp_path: Path, lie: Rewrite
) -> None:
    """A warm home reading through a node that names a key event nobody holds, or no
    tips at all, asks /keys and shows exactly what an honest read shows."""
    a, events = history(f"tips-{lie.__name__}", 1)
    tips_node.ingest(*(e.wire for e in events))
    home = tmp_path / "keycache"
    await read(tips_node, a, home, Relay())
    liar = Relay(lie)
    reader, shown = await read(tips_node, a, home, liar)
    assert liar.asked["/v1/keys"] == 1
    assert shown == posts(events)
    assert not reader.report.excluded and not reader.report.nodes[0].withheld


async def test_stale_tips_with_a_withheld_rotation_are_reported(
    tips_node: NodeProcess, tmp_path: Path
) -> None:
    """A node that hides the author's latest rotation (from /keys) and names the tip
    before it, to a home that holds that rotation: the tips do not match the home's
    resolution, so /keys is asked, and the node is reported withholding the rotation;
    the post under it, served by the feed, is still shown (the home verified its key
    event)."""
    a, events = history("tips-stale", 2)
    tips_node.ingest(*(e.wire for e in events))
    home = tmp_path / "keycache"
    await read(tips_node, a, home, Relay())
    old, hidden = events[2], events[4]
    assert (old.kind, hidden.kind) == ("rotate", "rotate")

    def stale(path: str, doc: dict[str, Any]) -> dict[str, Any]:
        if path == "/v1/feed":
            doc["key_tips"] = {a.did: [old.id.hex()]}
        if path == "/v1/keys":
            for group in doc["keys"]:
                group["events"] = [e for e in group["events"] if e["id"] != hidden.id.hex()]
        return doc

    liar = Relay(stale)
    reader, shown = await read(tips_node, a, home, liar)
    assert liar.asked["/v1/keys"] == 1
    assert shown == posts(events)
    assert [e.id for e in reader.report.nodes[0].withheld] == [hidden.id]
