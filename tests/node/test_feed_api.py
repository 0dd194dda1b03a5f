"""The feed endpoints of a real node app (spec 0004 #feeds, #reacted, #feeds-config):
``GET /v1/feeds``, ``GET /v1/feeds/{name}``, ``GET /v1/reacted``, their parameters and
error codes (never a 500), ``/v1/info``, the metrics; ``[[feeds]]`` in node.toml."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer

from node import create_app
from node.config import ConfigError, FeedConfig, load_config
from protocol.errors import FeedLoadError
from tests.node.conftest import T0, Clock, Node, make_config, new_author
from tests.node.feed_plugins import PLUGINS


def _feed(name: str, cls: str, **kw: Any) -> FeedConfig:
    return FeedConfig(name=name, type=f"{PLUGINS}:{cls}", **kw)


@pytest.fixture
async def feed_node(tmp_path: Path, clock: Clock) -> AsyncIterator[Node]:
    config = replace(
        make_config(tmp_path / "node", clock),
        feeds=(
            _feed("latest", "Latest", description="Newest posts here"),
            _feed("boom", "Boom"),
            _feed("too-many", "TooMany"),
            FeedConfig(name="python", type="tag", params={"tag": "python"}),
        ),
    )
    app = create_app(config)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    http = httpx.AsyncClient(base_url=url, timeout=10)
    try:
        yield Node(app=app, http=http, clock=clock, config=config, url=url)
    finally:
        await http.aclose()
        await server.close()


async def test_a_served_feed_pages_ids_and_cursors(feed_node: Node, clock: Clock) -> None:
    """spec 0004 #feeds: GET /v1/feeds lists the served feeds with their descriptions;
    a page is ids (64 hex) with why, and a cursor that continues it."""
    a = new_author(clock)
    posts = [a.post(f"p{i}") for i in range(5)]
    await feed_node.ingest(*posts, a.sign("like", {"target": posts[0].id}))
    listing = (await feed_node.http.get("/v1/feeds")).json()
    assert listing["feeds"][1] == {"name": "latest", "description": "Newest posts here"}
    assert [f["name"] for f in listing["feeds"]] == ["boom", "latest", "python", "too-many"]
    assert listing["feeds"][0]["description"] == "Raises in its own code."  # its docstring
    r = await feed_node.http.get("/v1/feeds/latest", params={"limit": 3})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["feed"] == "latest" and set(doc) == {"feed", "items", "cursor"}
    assert [i["id"] for i in doc["items"]] == [p.id.hex() for p in posts[::-1][:3]]
    assert doc["items"][0]["why"].startswith("by ")
    r2 = await feed_node.http.get("/v1/feeds/latest", params={"limit": 3, "cursor": doc["cursor"]})
    assert [i["id"] for i in r2.json()["items"]] == [p.id.hex() for p in posts[::-1][3:]]
    assert r2.json()["cursor"] is None
    info = (await feed_node.http.get("/v1/info")).json()
    assert info["feeds"] == ["boom", "latest", "python", "too-many"]
    metrics = (await feed_node.http.get("/metrics")).text
    assert 'murmur_feed_pages_total{feed="latest",result="computed"} 2' in metrics
    assert 'murmur_feed_pages_total{feed="boom",result="error"} 0' in metrics
    assert "murmur_feed_page_seconds_count{feed=\"latest\"} 2" in metrics
    assert "murmur_feed_cache_entries 2" in metrics


async def test_feed_errors_are_json_with_their_codes(feed_node: Node) -> None:
    """spec 0004 #feeds: unknown or malformed names 404 feed-not-found; bad parameters
    400; a feed's failure 502 feed-error; never a 500."""
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("/v1/feeds/nope", {}, 404, "feed-not-found"),
        ("/v1/feeds/Latest", {}, 404, "feed-not-found"),
        ("/v1/feeds/a%20b", {}, 404, "feed-not-found"),
        ("/v1/feeds/" + "x" * 300, {}, 404, "feed-not-found"),
        ("/v1/feeds/latest", {"limit": "0"}, 400, "bad-request"),
        ("/v1/feeds/latest", {"limit": "-1"}, 400, "bad-request"),
        ("/v1/feeds/latest", {"limit": "ten"}, 400, "bad-request"),
        ("/v1/feeds/latest", {"viewer": "not-a-did"}, 400, "invalid-did"),
        ("/v1/feeds/latest", {"cursor": "two words"}, 400, "bad-cursor"),
        ("/v1/feeds/latest", {"cursor": "x" * 513}, 400, "bad-cursor"),
        ("/v1/feeds/latest", {"cursor": "tnotbase64!"}, 400, "bad-cursor"),
        ("/v1/feeds/latest", {"format": "xml"}, 400, "bad-request"),
        ("/v1/feeds/boom", {}, 502, "feed-error"),
        ("/v1/feeds/too-many", {"limit": "2"}, 502, "feed-error"),
        ("/v1/reacted", {}, 400, "bad-request"),
        ("/v1/reacted", {"since": "5"}, 400, "bad-request"),
        ("/v1/reacted", {"since": "5", "until": "5"}, 400, "bad-request"),
        ("/v1/reacted", {"since": "0", "until": str(7 * 86_400_000 + 1)}, 400, "bad-request"),
        ("/v1/reacted", {"since": "0", "until": "9", "limit": "0"}, 400, "bad-request"),
        ("/v1/reacted", {"since": "-1", "until": "9"}, 400, "bad-request"),
    ]
    for path, params, status, code in cases:
        r = await feed_node.http.get(path, params=params)
        assert (r.status_code, r.json().get("error")) == (status, code), (path, params, r.text)
    boom = (await feed_node.http.get("/v1/feeds/boom")).json()["message"]
    assert "ValueError" in boom and "secret" not in boom
    # limit above 100 is clamped, as every list of the node is.
    assert (await feed_node.http.get("/v1/feeds/latest", params={"limit": 1000})).status_code == 200


async def test_reacted_answers_distinct_likes_and_reposts(feed_node: Node, clock: Clock) -> None:
    """spec 0004 #reacted: targets by distinct likers + reposters in [since, until)."""
    a, b, c = (new_author(clock) for _ in range(3))
    p, q = a.post("p"), a.post("q")
    await feed_node.ingest(
        p, q,
        b.sign("like", {"target": p.id}, ts=T0 + 100),
        b.sign("like", {"target": p.id}, ts=T0 + 101),
        c.sign("repost", {"target": p.id}, ts=T0 + 102),
        c.sign("like", {"target": q.id}, ts=T0 + 103),
    )  # fmt: skip
    r = await feed_node.http.get(
        "/v1/reacted", params={"since": T0 + 100, "until": T0 + 200, "limit": 5}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"targets": [
        {"id": p.id.hex(), "likes": 1, "reposts": 1}, {"id": q.id.hex(), "likes": 1, "reposts": 0},
    ]}  # fmt: skip


async def test_feeds_in_node_toml(tmp_path: Path) -> None:
    """spec 0004 #feeds-config: [[feeds]] entries, a relative PATH.py resolved against
    node.toml's directory, names checked, duplicates and unknown types refused."""
    conf = tmp_path / "conf"
    (conf / "plugins").mkdir(parents=True)
    (conf / "plugins" / "mine.py").write_text(PLUGINS.read_text("utf-8"), "utf-8")
    toml = conf / "node.toml"

    def load(body: str) -> Any:
        toml.write_text(body, "utf-8")
        return load_config(toml)

    config = load(
        '[[feeds]]\nname = "mine"\ntype = "plugins/mine.py:Latest"\ncache_s = 5\n'
        'params = { kinds = ["post", "repost"] }\n'
        '[[feeds]]\nname = "hot.1"\ntype = "whats-hot"\ndescription = "Hot"\n'
    )
    mine, hot = config.feeds
    assert mine.type == f"{conf / 'plugins' / 'mine.py'}:Latest"
    assert (mine.cache_s, dict(mine.params)) == (5, {"kinds": ["post", "repost"]})
    assert hot.description == "Hot"
    bad = {
        '[[feeds]]\nname = "Hot"\ntype = "whats-hot"\n': "name 'Hot'",
        '[[feeds]]\nname = ""\ntype = "whats-hot"\n': "name ''",
        '[[feeds]]\nname = "a"\ntype = "whats-hot"\n[[feeds]]\nname = "a"\ntype = "tag"\n':
            "given twice",
        '[[feeds]]\nname = "a"\ntype = "no-such"\n': "unknown feed type",
        '[[feeds]]\nname = "a"\ntype = "plugins/gone.py:X"\n': "no such file",
        '[[feeds]]\nname = "a"\ntype = "entry:nothing-here"\n': "entry points",
        '[[feeds]]\nname = "a"\ntype = "tag"\ncolour = 1\n': "unknown key 'colour'",
        '[[feeds]]\nname = "a"\ntype = "tag"\ncache_s = -1\n': "cache_s",
        '[[feeds]]\nname = "a"\ntype = "tag"\nparams = 3\n': "params",
        '[[feeds]]\nname = "a"\ntype = 3\n': "type must be a string",
        '[[feeds]]\nname = "a"\ntype = "tag"\ndescription = "' + "x" * 301 + '"\n': "300 bytes",
        'feeds = 3\n': "[[feeds]] tables",
    }  # fmt: skip
    for body, words in bad.items():
        with pytest.raises(ConfigError) as caught:
            load(body)
        assert words in str(caught.value), (body, str(caught.value))


async def test_a_feed_that_does_not_load_stops_the_node(tmp_path: Path, clock: Clock) -> None:
    """spec 0004 #feeds-config: a feed whose code fails to build is FeedLoadError naming
    the entry, before the node opens anything."""
    for feed, words in ((_feed("broken", "BrokenCtor"), "cannot start"),
                        (_feed("x", "Missing"), "has no Missing")):  # fmt: skip
        config = replace(make_config(tmp_path / "node", clock), feeds=(feed,))
        with pytest.raises(FeedLoadError) as caught:
            create_app(config)
        assert f"feeds {feed.name!r}" in caught.value.message and words in caught.value.message
    assert not (tmp_path / "node").exists()
