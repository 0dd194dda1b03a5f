"""The README's feed, examples/feeds/long_posts.py, against MemorySource (spec 0009 #testing)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from protocol.errors import BadCursorError
from protocol.feeds import FeedContext
from protocol.feeds.load import load_feed

from .conftest import NOW
from .test_feeds import World, ids_of, read_all, run

EXAMPLES = Path(__file__).parents[2] / "examples" / "feeds"
TYPE = f"{EXAMPLES / 'long_posts.py'}:LongPosts"


def test_the_example_is_under_25_lines() -> None:
    """Issue #21: a feed written from the README alone, in under 25 lines."""
    assert len((EXAMPLES / "long_posts.py").read_text(encoding="utf-8").splitlines()) < 25


def test_the_readme_shows_the_example_as_it_is() -> None:
    """The top README's "Journey 3b" block is examples/feeds/long_posts.py, whole: what
    a new user copies is what the tests (and the devnet end-to-end test) run."""
    readme = (EXAMPLES.parents[1] / "README.md").read_text(encoding="utf-8")
    journey = readme.split("## Journey 3b", 1)[1].split("\n## ", 1)[0]
    block = journey.split("```python\n", 1)[1].split("```", 1)[0]
    assert block == (EXAMPLES / "long_posts.py").read_text(encoding="utf-8")


def _world(n: int) -> tuple[World, list[bytes]]:
    """``n`` posts, every third one long, several sharing a ts; newest-first long ids."""
    w = World()
    long = []
    for i in range(n):
        text = ("é" * 281) if i % 3 == 0 else ("a" * 280)  # 280 characters: not long
        post = w.post(("ann", "bob")[i % 2], text, NOW + i // 3)
        if i % 3 == 0:
            long.append(post)
        w.like("cy", post, NOW + i)  # other kinds are not looked at
    long.sort(key=lambda e: (e.ts, e.id), reverse=True)
    return w, [e.id for e in long]


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 50, 100])
def test_long_posts_pages_every_long_post_once(limit: int) -> None:
    """Loaded as a user's file; each long post once, newest first, for any page size."""
    w, expected = _world(40)
    feed = load_feed(TYPE)
    assert feed.name == "long-posts"
    assert ids_of(run(read_all(feed, w.source(), limit=limit))) == expected


def test_long_posts_reads_past_a_full_batch_of_short_posts() -> None:
    """More than one Source batch (200) of posts: the cursor resumes after the batch."""
    w = World()
    old_long = w.post("ann", "x" * 300, NOW)
    for i in range(450):
        w.post("bob", "short", NOW + 1 + i)
    pages = run(read_all(load_feed(TYPE), w.source(), limit=10))
    assert ids_of(pages) == [old_long.id]
    assert len(pages) == 3  # two batches of 200 shorts, then the last 50 and the long one


def test_long_posts_params_and_bad_cursor() -> None:
    w, _ = _world(9)
    feed = load_feed(TYPE, {"min_chars": 0})
    assert len(ids_of(run(read_all(feed, w.source())))) == 9
    with pytest.raises(BadCursorError):
        run(feed.page(FeedContext(viewer=None, now_ms=NOW, cursor="nope"), w.source()))


def test_the_readme_snippet_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/feeds/README.md "Test it": the code block runs as written."""
    text = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    monkeypatch.syspath_prepend(str(EXAMPLES.parents[1]))
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 (our own README)


def test_spec_0009_shows_the_example_as_it_is_and_its_test_snippet_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """spec 0009 #interface quotes examples/feeds/long_posts.py whole; #testing runs."""
    spec = (EXAMPLES.parents[1] / "specs" / "0009-feeds.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", spec, re.S)
    assert blocks[0] == (EXAMPLES / "long_posts.py").read_text(encoding="utf-8")
    monkeypatch.syspath_prepend(str(EXAMPLES.parents[1]))
    exec(compile(blocks[1], "0009-feeds.md", "exec"), {})  # noqa: S102 (our own spec)
