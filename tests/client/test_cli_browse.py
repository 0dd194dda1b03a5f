"""``murmur likes|reposts|replies|quotes``, ``search posts``, ``tag``, counts in every
view and paging, against real node processes (spec 0007 #counts, #who, #post-search,
#paging).

One module-scoped pair of real nodes; each test has its own ``--home`` (amy reads and
is the default identity, bob and cat post and react). The CLI runs in-process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.client_fixtures import Cli
from tests.e2e.nodeproc import NodeProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    base = tmp_path_factory.mktemp("browse-nodes")
    one = NodeProcess(base / "one" / "data")
    try:
        two = NodeProcess(base / "two" / "data")
    except BaseException:
        one.stop()
        raise
    try:
        yield one, two
    finally:
        one.stop()
        two.stop()


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path / "home", capsys)


@pytest.fixture
def world(cli: Cli, nodes: tuple[NodeProcess, NodeProcess]) -> dict[str, str]:
    """amy (default), bob, cat; amy follows bob and cat; both nodes configured."""
    dids = {n: cli.json("id", "new", n, "--no-encrypt")["did"] for n in ("amy", "bob", "cat")}
    for node in nodes:
        cli.json("nodes", "add", node.url)
    cli.json("follow", dids["bob"], "--alias", "bob")
    cli.json("follow", dids["cat"], "--alias", "cat")
    return dids


def _post(cli: Cli, who: str, *text: str) -> str:
    doc: dict[str, Any] = cli.json("post", *text, as_name=who)
    return str(doc["id"])


def test_counts_in_every_view_and_who_liked(cli: Cli, world: dict[str, str]) -> None:
    """spec 0007 #counts: the timeline, author, thread and --json carry likes,
    reposts, replies and quotes; #who: `likes` lists who liked, verified."""
    post = _post(cli, "bob", "counting sheep")
    cli.json("like", post, as_name="amy")
    cli.json("like", post, as_name="cat")
    cli.json("repost", post, as_name="cat")
    cli.json("post", "--reply-to", post, "one reply", as_name="cat")

    want = {"likes": 2, "reposts": 1, "replies": 1, "quotes": 0}
    tl = cli.json("timeline")
    counts = {p["id"]: p["counts"] for p in tl["posts"]}
    assert {k: counts[post][k] for k in want} == want
    # The repost item shows the counts of what it reposted.
    repost = next(p for p in tl["posts"] if p["kind"] == "repost")
    assert repost["counts"]["likes"] == 2
    text = cli.ok("timeline")
    assert "♡ 2 likes · ⟳ 1 repost · ↩ 1 reply" in text

    author = cli.json("author", "bob")
    assert author["posts"][0]["counts"]["likes"] == 2
    assert "♡ 2 likes" in cli.ok("author", "bob")
    thread = cli.json("thread", post)
    assert thread["root"]["counts"]["replies"] == 1
    assert "↩ 1 reply" in cli.ok("thread", post)

    likes = cli.json("likes", post[:12])
    assert sorted(p["author"] for p in likes["posts"]) == sorted([world["amy"], world["cat"]])
    assert likes["target"]["id"] == post and likes["cursor"] is None
    assert likes["target_counts"]["likes"] == 2
    shown = cli.ok("likes", post[:12])
    assert "~" not in shown.split("\n", 1)[0] or "likes of" in shown
    reposts = cli.json("reposts", post)
    assert [p["author"] for p in reposts["posts"]] == [world["cat"]]
    replies = cli.json("replies", post)
    assert [p["text"] for p in replies["posts"]] == ["one reply"]


def test_unlike_leaves_the_list(cli: Cli, world: dict[str, str]) -> None:
    """spec 0004 #social-counting, 0007 #who: a deleted like is neither counted nor
    listed."""
    post = _post(cli, "bob", "fleeting")
    cli.json("like", post, as_name="cat")
    assert len(cli.json("likes", post)["posts"]) == 1
    cli.json("unlike", post, as_name="cat")
    assert cli.json("likes", post)["posts"] == []
    assert cli.json("thread", post)["root"]["counts"]["likes"] == 0


def test_search_and_tag_paged(cli: Cli, world: dict[str, str]) -> None:
    """spec 0007 #post-search, #paging: search and tag merge both nodes, newest first,
    and pages of 2 list every match once."""
    ids = [_post(cli, "bob", f"zebra crossing {i} #Stripes") for i in range(5)]
    found = cli.json("search", "posts", "zebra", "crossing")
    assert [p["id"] for p in found["posts"]] == ids[::-1]
    tagged = cli.json("tag", "#stripes")
    assert [p["id"] for p in tagged["posts"]] == ids[::-1]

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(5):
        extra = ["--cursor", cursor] if cursor else []
        page = cli.json("tag", "stripes", "--limit", "2", *extra)
        seen += [p["id"] for p in page["posts"]]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    text = cli.ok("search", "posts", "zebra", "--limit", "2")
    assert text.rstrip().splitlines()[-1].startswith("more: murmur search posts zebra")
    assert "No post on your nodes matches" in cli.ok("search", "posts", "unicorn")
    # People search is still `search NAME`.
    cli.json("profile", "set", "--name", "Bobby", as_name="bob")
    assert [r["did"] for r in cli.json("search", "Bobby")["profiles"]] == [world["bob"]]


def test_timeline_pages_with_cursor(cli: Cli, world: dict[str, str]) -> None:
    """spec 0007 #paging: `timeline --limit 3` then `--cursor` walks every item once."""
    mine = [_post(cli, "bob" if i % 2 else "cat", f"page item {i}") for i in range(7)]
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        extra = ["--cursor", cursor] if cursor else []
        page = cli.json("timeline", "--limit", "3", *extra)
        seen += [p["id"] for p in page["posts"]]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert [i for i in seen if i in mine] == mine[::-1]
    assert len(seen) == len(set(seen))
    text = cli.ok("timeline", "--limit", "3")
    assert text.rstrip().splitlines()[-1].startswith("more: murmur timeline --limit 3 --cursor ")
    # --before a date before everything: nothing, no cursor.
    assert cli.json("timeline", "--before", "2001-01-01")["posts"] == []
    code, err = cli.error("timeline", "--cursor", "garbage")
    assert code == "bad-request" and "--cursor" in err


def test_author_pages(cli: Cli, world: dict[str, str]) -> None:
    """spec 0007 #paging: the author view pages by where the page ended."""
    ids = [_post(cli, "cat", f"cat says {i}") for i in range(4)]
    first = cli.json("author", "cat", "--limit", "3")
    second = cli.json("author", "cat", "--limit", "3", "--cursor", first["cursor"])
    got = [p["id"] for p in first["posts"] + second["posts"]]
    assert got == ids[::-1] and second["cursor"] is None
    # --before takes a cursor too (as notifications do), or a time.
    assert cli.json("author", "cat", "--limit", "3", "--before", first["cursor"]) == second
    assert cli.json("author", "cat", "--before", "2001-01-01")["posts"] == []
    code, _ = cli.error("author", "bob", "--cursor", first["cursor"])
    assert code == "bad-request"  # a cursor of cat's page is not bob's
