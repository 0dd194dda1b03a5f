"""Moderating views read from real nodes: labels, lists, blocks, forged labels (spec 0006).

The nodes are real node apps (``node.create_app``) on aiohttp ``TestServer``s on
127.0.0.1, read through the client's own ``NodeClient``/``Reader`` over real HTTP. A
forging node (an ``httpx.MockTransport`` mounted for one host) serves labels with
broken signatures next to them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer

from client.api import NodeClient
from client.errors import FilterLoadError, FilterNotFoundError
from client.moderation.apply import (
    DEFAULT_FILTERS,
    active_labels,
    build_filter,
    build_pipeline,
    moderate,
    try_filter,
)
from client.moderation.config import FilterSpec, LabelerSub, ModerationConfig
from client.moderation.core import Action, Item, SourceKind, ViewContext
from client.moderation.isolation import IsolatedFilter
from client.moderation.pipeline import Pipeline
from client.reader import Reader
from client.views import thread_view, timeline
from node import NodeConfig, NodeLimits, create_app
from protocol.events import Event
from tests.client.conftest import Author, broken_signature
from tests.node_json import event_json

NOW = int(time.time() * 1000)
FORGER = "http://forger.test"

StartNode = Callable[..., Awaitable[str]]


@pytest.fixture
async def start_node(tmp_path: Path) -> AsyncIterator[StartNode]:
    """``await start_node(**limits)`` -> the URL of a real node; all stopped at teardown."""
    servers: list[TestServer] = []

    async def start(**limits: Any) -> str:
        config = NodeConfig(
            data_dir=tmp_path / f"node{len(servers)}",
            port=0,
            verify_workers=1,
            sqlite_synchronous="normal",
            limits=replace(NodeLimits(), **limits),
        )
        server = TestServer(create_app(config), host="127.0.0.1", port=0)
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for server in reversed(servers):
        await server.close()


class Forger:
    """A node that serves whatever label wires it holds for ``?labeler=``, and no feed."""

    def __init__(self) -> None:
        self.wires: list[bytes] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/labels":
            labeler = request.url.params.get("labeler")
            docs = [event_json(w) for w in self.wires]
            rows = [{"event": d} for d in docs if d["author"] == labeler]
            return httpx.Response(200, json={"labels": rows, "next": None})
        if request.url.path == "/v1/feed":
            return httpx.Response(200, json={"events": [], "next": None})
        return httpx.Response(404, json={"error": "not-found", "message": "not here"})


@pytest.fixture
async def http() -> AsyncIterator[tuple[httpx.AsyncClient, Forger]]:
    forger = Forger()
    mounts = {f"all://{FORGER.removeprefix('http://')}": httpx.MockTransport(forger.handle)}
    async with httpx.AsyncClient(mounts=mounts) as client:
        yield client, forger


async def publish(node: NodeClient, *events: Event) -> None:
    results = await node.submit([e.wire for e in events])
    assert [r.status for r in results] == ["accepted"] * len(events), results


def config_of(tmp_path: Path, *specs: FilterSpec, labelers: list[LabelerSub] | None = None) -> Any:
    return ModerationConfig(
        path=tmp_path / "filters.toml", filters=list(specs), labelers=labelers or []
    )


async def test_timeline_with_labels_lists_blocks_and_forgeries(
    start_node: StartNode, http: tuple[httpx.AsyncClient, Forger], tmp_path: Path
) -> None:
    client, forger = http
    node = NodeClient(await start_node(), client)
    me, alice, bob, carol, dave, gina, frank, lab, lister = (Author.new() for _ in range(9))
    follows = [alice, bob, carol, dave, gina, frank]
    await publish(node, *(me.sign("follow", {"subject": a.did}) for a in follows))

    hello = alice.post("hello world")
    spam = bob.post("buy now")
    retracted = alice.post("was labeled, then not")
    lapsed = alice.post("label expired")
    nsfw = alice.post("edgy")
    froggy = frank.post("frank is labeled as a person")
    blocked = carol.post("carol is blocked")
    quote = alice.post("look at this", quote=blocked.id)
    repost = alice.sign("repost", {"target": blocked.id})
    reply = alice.post("answering carol", reply={"root": blocked.id, "parent": blocked.id})
    by_dave, by_gina = dave.post("dave was muted in v1"), gina.post("gina is muted in v2")
    mine = me.post("my own spam")
    spoiler = bob.post("the SPOILER is")
    await publish(node, hello, retracted, lapsed, nsfw, quote, repost, reply, spoiler)
    await publish(node, spam)
    await publish(node, by_dave)
    await publish(node, by_gina)
    await publish(node, froggy)
    await publish(node, blocked)
    await publish(node, mine)

    labels = [
        lab.sign("label", {"subject": spam.id, "val": "spam"}),
        lab.sign("label", {"subject": retracted.id, "val": "spam"}),
        lab.sign("label", {"subject": retracted.id, "val": "spam", "neg": True}),
        lab.sign("label", {"subject": lapsed.id, "val": "spam", "exp": NOW - 1000}),
        lab.sign("label", {"subject": nsfw.id, "val": "nsfw", "exp": NOW + 86_400_000}),
        lab.sign("label", {"subject": frank.did, "val": "troll"}),
        lab.sign("label", {"subject": mine.id, "val": "spam"}),
        lab.sign("label", {"subject": hello.id, "val": "boring"}),  # not in the subscription
    ]
    await publish(node, *labels)
    # The forger tries to retract the spam label and to label hello as spam.
    forged_neg = lab.sign("label", {"subject": spam.id, "val": "spam", "neg": True})
    forged_new = lab.sign("label", {"subject": hello.id, "val": "spam"})
    forger.wires = [broken_signature(forged_neg), broken_signature(forged_new)]

    await publish(
        node,
        lister.sign("list", {"name": "noisy", "purpose": "mute", "members": [dave.did]}),
        lister.sign("list", {"name": "noisy", "purpose": "mute", "members": [gina.did]}),
    )

    config = config_of(
        tmp_path,
        FilterSpec(name="spoilers", type="mute-words", params={"words": "spoiler"}),
        FilterSpec(name="blocks", type="block-authors", params={"dids": [carol.did]}),
        FilterSpec(name="noisy", type="list", params={"ref": f"{lister.did}/noisy"}),
        FilterSpec(name="broken", type="mute-words", params={"words": []}),
        labelers=[LabelerSub(lab.did, {"spam": "hide", "nsfw": "warn", "troll": "hide"})],
    )
    reader = Reader([node, NodeClient(FORGER, client)])
    view = await timeline(reader, me.did, limit=50)
    assert len(view.items) == 14
    result = await moderate(
        view,
        reader,
        viewer=me.did,
        context=ViewContext.TIMELINE,
        config=config,
        follows=frozenset(a.did for a in follows),
        now_ms=NOW,
    )
    hidden = {e.id: v.final for e, v in result.hidden}
    assert set(hidden) == {spam.id, froggy.id, blocked.id, quote.id, repost.id, reply.id,
                           by_gina.id, spoiler.id}  # fmt: skip
    assert hidden[spam.id].source == lab.did and hidden[spam.id].reason == 'labeled "spam"'
    assert hidden[froggy.id].reason == 'author labeled "troll"'
    assert (hidden[quote.id].via, hidden[repost.id].via, hidden[reply.id].via) == (
        "quoted",
        "reposted",
        "parent",
    )
    assert hidden[by_gina.id].source == f"list:{lister.did}/noisy"
    assert hidden[by_gina.id].source_kind is SourceKind.LIST
    assert hidden[spoiler.id].reason == 'muted word "spoiler"'
    shown = {e.id: v for e, v in result.shown}
    assert shown[nsfw.id].action is Action.WARN
    assert shown[mine.id].action is Action.BADGE  # own posts are never hidden
    for quiet in (hello, retracted, lapsed, by_dave):
        assert shown[quiet.id].final is None, quiet
    assert [e.id for e, _ in result.shown] == [e.id for e in view.items if e.id not in hidden]
    assert set(result.verdicts) == {e.id for e in view.items}
    # The forgeries were dropped and said so; the broken filter was left out and said so.
    assert len(reader.report.node(FORGER).invalid) == 2
    assert result.warnings == [
        "filter broken left out: filter broken: mute-words: give at least one of words, "
        "regexes, tags",
        f"labels: {FORGER} served 2 event(s) that failed verification; they were ignored",
    ]
    doc = result.to_json()
    assert {h["id"] for h in doc["hidden"]} == {i.hex() for i in hidden}
    assert {s["id"] for s in doc["shown"]} == {nsfw.id_hex, mine.id_hex}
    assert doc["warnings"] == result.warnings


async def test_thread_replies_from_non_follows(
    start_node: StartNode, http: tuple[httpx.AsyncClient, Forger], tmp_path: Path
) -> None:
    client, _ = http
    node = NodeClient(await start_node(), client)
    me, op, friend, stranger = (Author.new() for _ in range(4))
    root = op.post("root")
    r1 = stranger.post("stranger", reply={"root": root.id, "parent": root.id})
    r2 = op.post("op deep down", reply={"root": root.id, "parent": r1.id})
    r3 = friend.post("friend", reply={"root": root.id, "parent": r2.id})
    r4 = me.post("me", reply={"root": root.id, "parent": r1.id})
    await publish(node, root, r1, r2, r3, r4)
    config = config_of(tmp_path, FilterSpec(name="nf", type="replies-from-non-follows"))
    reader = Reader([node])
    view = await thread_view(reader, root.id)
    result = await moderate(
        view,
        reader,
        viewer=me.did,
        context=ViewContext.THREAD,
        config=config,
        follows=frozenset({friend.did}),
    )
    # The stranger's reply is hidden. r2 (the root's author, found by walking parents)
    # and r3 (followed) would pass on their own, but they answer a hidden reply: the
    # decision on their parent applies to them (via "parent"); mine becomes a badge.
    hidden = {e.id: v.final for e, v in result.hidden}
    assert set(hidden) == {r1.id, r2.id}
    assert hidden[r1.id].via is None and hidden[r2.id].via == "parent"
    assert hidden[r2.id].reason == "reply from someone you do not follow"
    shown = {e.id: v for e, v in result.shown}
    assert shown[r3.id].final is None  # its parent (op) passes as the root's author
    assert shown[r4.id].action is Action.BADGE
    assert result.verdicts[root.id].final is None  # the root is judged too
    assert result.warnings == []


async def test_subscribed_list_missing_and_deleted_versions(
    start_node: StartNode, http: tuple[httpx.AsyncClient, Forger], tmp_path: Path
) -> None:
    client, _ = http
    node = NodeClient(await start_node(), client)
    me, lister, dave = Author.new(), Author.new(), Author.new()
    v1 = lister.sign("list", {"name": "bad", "purpose": "block", "members": [dave.did]})
    v2 = lister.sign("list", {"name": "bad", "purpose": "block", "members": []})
    gone = lister.sign("delete", {"target": v2.id})  # v1 is current again
    post = dave.post("hi")
    await publish(node, me.sign("follow", {"subject": dave.did}), v1, v2, gone, post)
    config = config_of(
        tmp_path,
        FilterSpec(name="bad", type="list", params={"ref": f"{lister.did}/bad"}),
        FilterSpec(name="ghost", type="list", params={"ref": f"{lister.did}/ghost"}),
    )
    reader = Reader([node])
    view = await timeline(reader, me.did, limit=10)
    result = await moderate(
        view, reader, viewer=me.did, context=ViewContext.TIMELINE, config=config
    )
    [(event, verdict)] = result.hidden
    assert event.id == post.id and verdict.final.reason == 'in block list "bad"'
    assert result.warnings == [f"list {lister.did}/ghost: no node served it"]


async def test_labels_are_paged_and_bounded(
    start_node: StartNode, http: tuple[httpx.AsyncClient, Forger]
) -> None:
    client, _ = http
    node = NodeClient(await start_node(max_page=3), client)
    lab, bob = Author.new(), Author.new()
    events = [lab.sign("label", {"subject": bob.did, "val": f"v{i}"}) for i in range(8)]
    await publish(node, *events)
    reader = Reader([node])
    assert await reader.fetch_labels(lab.did) == []
    assert {e.id for e in reader.of_author(lab.did)} == {e.id for e in events}
    bounded = Reader([node])
    assert await bounded.fetch_labels(lab.did, max_labels=5) == [node.url]
    assert len(bounded.of_author(lab.did)) == 5


def test_active_labels_latest_by_seq_wins() -> None:
    lab, bob = Author.new(), Author.new()
    on = lab.sign("label", {"subject": bob.did, "val": "spam"})
    off = lab.sign("label", {"subject": bob.did, "val": "spam", "neg": True})
    again = lab.sign("label", {"subject": bob.did, "val": "spam", "exp": NOW + 5})
    assert active_labels([on], now_ms=NOW)[bob.did][0].id == on.id_hex
    assert active_labels([again, on, off], now_ms=NOW)[bob.did][0].id == again.id_hex
    assert active_labels([on, off], now_ms=NOW) == {}
    assert active_labels([on, off, again], now_ms=NOW + 5) == {}  # exp reached
    # Header-only events (body dropped) do not count.
    assert active_labels([on.without_body()], now_ms=NOW) == {}


# -- building -------------------------------------------------------------------------


def test_build_pipeline_defaults_order_and_labelers(tmp_path: Path) -> None:
    lab = Author.new()
    empty = config_of(tmp_path)
    pipeline, warnings = build_pipeline(empty)
    assert [c.name for c in pipeline.filters] == [s.name for s in DEFAULT_FILTERS]
    (tmp_path / "filters.toml").write_text("")  # an existing file with no filters
    assert build_pipeline(empty)[0].filters == []
    config = config_of(
        tmp_path,
        FilterSpec(name="a", type="self-labels"),
        FilterSpec(name="off", type="self-labels", enabled=False),
        FilterSpec(name="labelers", type="allow", params={"dids": [lab.did]}),
        FilterSpec(name="nope", type="no-such-type"),
        labelers=[LabelerSub(lab.did, {"spam": "hide"})],
    )
    pipeline, warnings = build_pipeline(config)
    assert [c.name for c in pipeline.filters] == ["a", "labelers", "labelers-2"]
    assert len(warnings) == 1 and warnings[0].startswith("filter nope left out: unknown filter")
    # A configured type = "labelers" filter takes the [[labelers]] and its place.
    config.filters.insert(0, FilterSpec(name="my-labels", type="labelers"))
    pipeline, _ = build_pipeline(config)
    assert [c.name for c in pipeline.filters] == ["my-labels", "a", "labelers"]
    assert set(pipeline.filters[0].filter.subs) == {lab.did}  # type: ignore[attr-defined]


def test_build_pipeline_only(tmp_path: Path) -> None:
    lab = Author.new()
    config = config_of(
        tmp_path,
        FilterSpec(name="off", type="self-labels", enabled=False),
        FilterSpec(name="bad", type="languages", params={"allow": "klingon"}),
        labelers=[LabelerSub(lab.did, {"spam": "hide"})],
    )
    assert [c.name for c in build_pipeline(config, only="off")[0].filters] == ["off"]
    assert [c.name for c in build_pipeline(config, only="labelers")[0].filters] == ["labelers"]
    with pytest.raises(FilterLoadError, match="filter bad: languages: 'klingon'"):
        build_pipeline(config, only="bad")
    with pytest.raises(FilterNotFoundError, match="off, bad, labelers"):
        build_pipeline(config, only="missing")


async def test_build_filter_custom_classes(tmp_path: Path) -> None:
    """A custom filter runs none of its code in the reader (spec 0006 #filter-deadline):
    ``build_filter`` only checks that it exists; ``try_filter`` builds it in a worker."""
    path = tmp_path / "custom.py"
    marker = tmp_path / "imported"
    path.write_text(
        f"open({str(marker)!r}, 'a').write('x')\n"
        "from client.moderation.core import Action, Decision\n"
        "class Good:\n"
        "    name = 'good'\n"
        "    def __init__(self, level=1):\n"
        "        self.level = level\n"
        "    def check(self, item):\n"
        "        return Decision(Action.BADGE, f'level {self.level}', self.name)\n"
        "class Crashes:\n"
        "    def __init__(self):\n"
        "        raise ZeroDivisionError('x')\n"
        "class NoCheck:\n"
        "    pass\n"
    )
    good = FilterSpec(name="g", type=f"{path}:Good", params={"level": 2})
    built = build_filter(good)
    assert built.name == "g" and isinstance(built.filter, IsolatedFilter)
    assert not marker.exists()  # nothing of the file ran in this process
    await try_filter(good)
    ev = Author.new().post("x")
    [verdict] = await Pipeline([built]).run(
        [Item(event=ev, context=ViewContext.TIMELINE, viewer="")]
    )
    assert verdict.final is not None and verdict.final.reason == "level 2"  # params reached it
    assert verdict.final.source == "good" and verdict.final.filter == "g"
    with pytest.raises(FilterLoadError, match="bad parameters"):
        await try_filter(FilterSpec(name="g", type=f"{path}:Good", params={"nope": 1}))
    with pytest.raises(FilterLoadError, match="ZeroDivisionError"):
        await try_filter(FilterSpec(name="c", type=f"{path}:Crashes"))
    with pytest.raises(FilterLoadError, match="no check"):
        await try_filter(FilterSpec(name="n", type=f"{path}:NoCheck"))
    with pytest.raises(FilterLoadError, match="no class Missing"):
        await try_filter(FilterSpec(name="m", type=f"{path}:Missing"))
    with pytest.raises(FilterLoadError, match="no such file"):
        build_filter(FilterSpec(name="f", type=f"{tmp_path / 'gone.py'}:Good"))
    with pytest.raises(FilterNotFoundError):
        build_filter(FilterSpec(name="x", type="entry:not-installed"))
