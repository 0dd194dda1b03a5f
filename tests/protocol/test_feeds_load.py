"""Loading feeds by type: built-ins, files, entry points (spec 0009 #loading)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import pytest

from protocol.errors import FeedLoadError, FeedNotFoundError
from protocol.feeds import FeedContext
from protocol.feeds.builtins import Tag, WhatsHot
from protocol.feeds.load import ENTRY_POINT_GROUP, check_feed_type, is_custom_feed, load_feed

from .conftest import NOW
from .test_feeds import World, run

GOOD = """
from protocol.feeds import Page

class Mine:
    name = "mine"

    def __init__(self, n: int = 1) -> None:
        self.n = n

    async def page(self, ctx, src):
        posts = await src.events(kinds=["post"], limit=self.n)
        return Page.of(posts)
"""


def _file(tmp_path: Path, text: str, name: str = "feed.py") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_builtins_load_with_params() -> None:
    assert isinstance(load_feed("whats-hot"), WhatsHot)
    tag = load_feed("tag", {"tag": "python"})
    assert isinstance(tag, Tag) and tag.name == "tag"
    assert load_feed("whats-hot", {"window_ms": 3_600_000}).window_ms == 3_600_000  # type: ignore[attr-defined]
    assert not is_custom_feed("whats-hot") and not is_custom_feed("tag")
    assert is_custom_feed("./x.py:X") and is_custom_feed("entry:x")
    check_feed_type("friends-of-friends")


def test_a_file_loads_and_runs(tmp_path: Path) -> None:
    """spec 0009 #loading: PATH.py:Class built as Class(**params)."""
    path = _file(tmp_path, GOOD)
    type_ = f"{path}:Mine"
    check_feed_type(type_)
    feed = load_feed(type_, {"n": 2})
    w = World()
    posts = [w.post("ann", str(i), NOW + i) for i in range(3)]
    page = run(feed.page(FeedContext(viewer=None, now_ms=NOW), w.source()))
    assert page.ids == [posts[2].id, posts[1].id]


@pytest.mark.parametrize(
    ("text", "type_suffix", "params", "message"),
    [
        (GOOD, ":Nope", None, "has no Nope"),
        ("raise ValueError('boom')\n", ":Mine", None, "importing .* raised ValueError"),
        ("import no_such_module_here\n", ":Mine", None, "ModuleNotFoundError"),
        ("def Mine(:\n", ":Mine", None, "SyntaxError"),
        (GOOD, ":Mine", {"m": 1}, "bad parameters"),
        (GOOD.replace("self.n = n", "raise RuntimeError('no')"), ":Mine", None,
         "building it raised RuntimeError"),
        (GOOD.replace("async def page", "def page").replace("await ", ""), ":Mine", None,
         "no coroutine page"),
        (GOOD.replace('name = "mine"', "name = 7"), ":Mine", None, "has no name"),
        (GOOD.replace('name = "mine"', ""), ":Mine", None, "has no name"),
        ("Mine = 3\n", ":Mine", None, "not a class"),
        (GOOD, ":Mine", {"not an identifier": 1}, "params"),
    ],
)  # fmt: skip
def test_a_bad_file_is_feed_load_naming_it(
    tmp_path: Path, text: str, type_suffix: str, params: dict[str, Any] | None, message: str
) -> None:
    """spec 0009 #loading: any failure is feed-load with a message saying what to do."""
    path = _file(tmp_path, text)
    with pytest.raises(FeedLoadError, match=message) as info:
        load_feed(f"{path}{type_suffix}", params)
    assert info.value.code == "feed-load"
    assert str(path) in info.value.message


def test_a_missing_file_is_caught_without_running_anything(tmp_path: Path) -> None:
    missing = f"{tmp_path / 'absent.py'}:Feed"
    for call in (check_feed_type, load_feed):
        with pytest.raises(FeedLoadError, match="no such file"):
            call(missing)
    with pytest.raises(FeedLoadError, match=r"PATH\.py:ClassName"):
        check_feed_type("./x.py:not-a-name")


def test_check_feed_type_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = _file(tmp_path, f"open({str(marker)!r}, 'w').close()\n" + GOOD)
    check_feed_type(f"{path}:Mine")
    assert not marker.exists()
    load_feed(f"{path}:Mine")
    assert marker.exists()


def test_unknown_types_and_absent_entry_points_are_not_found() -> None:
    with pytest.raises(FeedNotFoundError, match="whats-hot") as info:
        load_feed("hot-stuff")
    assert info.value.code == "feed-not-found"
    with pytest.raises(FeedNotFoundError, match="whats-hot"):
        check_feed_type("hot-stuff")
    for call in (check_feed_type, load_feed):
        with pytest.raises(FeedNotFoundError, match=ENTRY_POINT_GROUP):
            call("entry:no-such-feed-installed")


def _fake_entry_points(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    ep = importlib.metadata.EntryPoint(name="mine", value=value, group=ENTRY_POINT_GROUP)

    def entry_points(**kw: Any) -> importlib.metadata.EntryPoints:
        assert kw == {"group": ENTRY_POINT_GROUP}
        return importlib.metadata.EntryPoints([ep])

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_an_entry_point_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """spec 0009 #loading: entry:NAME in the murmur.feeds group."""
    _fake_entry_points(monkeypatch, "protocol.feeds.builtins:Tag")
    check_feed_type("entry:mine")
    assert isinstance(load_feed("entry:mine", {"tag": "x"}), Tag)
    with pytest.raises(FeedNotFoundError, match="mine"):
        load_feed("entry:other")


def test_a_broken_entry_point_is_feed_load(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry_points(monkeypatch, "no_such_package_anywhere.feeds:Feed")
    check_feed_type("entry:mine")  # exists: its code is not run here
    with pytest.raises(FeedLoadError, match=r"entry point .* failed"):
        load_feed("entry:mine")


def test_builtin_parameter_errors_are_feed_load() -> None:
    with pytest.raises(FeedLoadError, match="whats-hot: window_ms"):
        load_feed("whats-hot", {"window_ms": 5})
    for bad in (-1, 65, True, "8"):
        with pytest.raises(FeedLoadError, match="whats-hot: keep_rankings"):
            load_feed("whats-hot", {"keep_rankings": bad})
    with pytest.raises(FeedLoadError, match="bad parameters"):
        load_feed("tag", {"hashtag": "x"})
    with pytest.raises(FeedLoadError, match="params"):
        load_feed("tag", ["tag"])  # type: ignore[arg-type]
