"""``murmur filters|labelers|label|list`` and moderated reads, against a real node (spec 0006).

One real node process serves the module; every test has its own ``--home`` with its
own identities (``amy`` reads and is the default; ``bob`` posts; ``lab`` labels;
``curator`` publishes lists), so tests do not see each other's follows or filters.
The CLI runs in-process through ``client.cli.main``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from client.cli.label_cmds import parse_when
from protocol.errors import BadRequestError
from tests.e2e.client_fixtures import Cli
from tests.e2e.nodeproc import NodeProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path_factory.mktemp("moderation-node") / "data")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path / "home", capsys)


@pytest.fixture
def world(cli: Cli, node: NodeProcess) -> dict[str, str]:
    """Identities amy (the default: first by creation time, then name), bob, lab and
    curator; amy follows bob."""
    dids = {
        name: cli.json("id", "new", name, "--no-encrypt")["did"]
        for name in ("amy", "bob", "lab", "curator")
    }
    cli.json("nodes", "add", node.url)
    cli.json("follow", dids["bob"], "--alias", "bob")
    return dids


def _filters(cli: Cli) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = cli.json("filters", "list")["filters"]
    return rows


# -- filters.toml commands (no node needed) ------------------------------------------


def test_filters_round_trip(cli: Cli) -> None:
    doc = cli.json("filters", "list")
    assert doc["defaults"] is True and [f["name"] for f in doc["filters"]] == ["self-labels"]
    assert not (cli.home / "filters.toml").exists()

    added = cli.json("filters", "add", "mute-words", "--param", "words=spoiler,leak")
    assert added["name"] == "mute-words" and added["position"] == 2
    assert added["params"] == {"words": "spoiler,leak"}
    doc = cli.json("filters", "list")
    assert doc["defaults"] is False  # the first change wrote the defaults out too
    assert [f["name"] for f in doc["filters"]] == ["self-labels", "mute-words"]

    code, err = cli.error("filters", "add", "mute-words", "--param", "words=x")
    assert code == "filter-error" and "--name" in err
    cli.json(
        "filters", "add", "mute-words", "--name", "quiet", "--position", "1",
        "--param", 'words=["a b", "c"]', "--param", "action=warn", "--budget-ms", "50",
        "--disabled",
    )  # fmt: skip
    rows = _filters(cli)
    assert [f["name"] for f in rows] == ["quiet", "self-labels", "mute-words"]
    assert rows[0]["params"] == {"words": ["a b", "c"], "action": "warn"}
    assert rows[0]["enabled"] is False and rows[0]["budget_ms"] == 50

    assert cli.json("filters", "enable", "quiet")["enabled"] is True
    assert _filters(cli)[0]["enabled"] is True
    assert cli.json("filters", "disable", "quiet")["enabled"] is False
    assert cli.json("filters", "remove", "quiet")["removed"] is True
    assert [f["name"] for f in _filters(cli)] == ["self-labels", "mute-words"]
    for verb in ("remove", "enable", "disable"):
        code, err = cli.error("filters", verb, "quiet")
        assert code == "filter-not-found" and "murmur filters list" in err
    text = cli.ok("filters", "list")
    assert "1. self-labels" in text and 'words="spoiler,leak"' in text


@pytest.mark.parametrize(
    ("argv", "code", "needle"),
    [
        (["no-such-type"], "filter-not-found", "unknown filter type"),
        (["entry:surely-not-installed"], "filter-not-found", "murmur.filters"),
        (["mute-words", "--param", "bogus=1"], "filter-load", "bogus"),
        (["mute-words"], "filter-load", "at least one of words"),
        (["mute-authors", "--param", "dids=did:key:nope"], "filter-load", "did"),
        (["./missing.py:Thing"], "filter-load", "no such file"),
        (["mute-words", "--param", "words"], "bad-request", "KEY=VALUE"),
        (["mute-words", "--param", "words=x", "--name", "Bad Name"], "filter-error", "name"),
    ],
)
def test_filters_add_errors(cli: Cli, argv: list[str], code: str, needle: str) -> None:
    got, err = cli.error("filters", "add", *argv)
    assert got == code and needle in err
    assert not (cli.home / "filters.toml").exists()  # nothing saved


def test_custom_filter_path_is_stored_absolute(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mine.py").write_text(
        "class NoCrypto:\n"
        "    name = 'no-crypto'\n"
        "    def __init__(self, limit=1):\n"
        "        self.limit = int(limit)\n"
        "    def check(self, item):\n"
        "        return None\n"
    )
    monkeypatch.chdir(tmp_path)
    doc = cli.json("filters", "add", "mine.py:NoCrypto", "--param", "limit=3")
    assert doc["name"] == "no-crypto" and doc["params"] == {"limit": 3}
    assert doc["type"] == f"{(tmp_path / 'mine.py').resolve()}:NoCrypto"
    code, err = cli.error("filters", "add", "mine.py:NoCrypto", "--name", "x", "--param", "y=1")
    assert code == "filter-load" and "bad parameters" in err
    code, err = cli.error("filters", "add", "mine.py:Nope", "--name", "z")
    assert code == "filter-load" and "no class Nope" in err


def test_parse_when() -> None:
    now = 1_700_000_000_000
    assert parse_when("30m", now) == now + 30 * 60_000
    assert parse_when("7d", now) == now + 7 * 86_400_000
    assert parse_when("2100-01-01T00:00:00Z", now) == 4_102_444_800_000
    for bad in ("yesterday", "2001-01-01", "-5m"):
        with pytest.raises(BadRequestError):
            parse_when(bad, now)


# -- moderated reads ------------------------------------------------------------------


def test_mute_words_hides_a_followed_post(cli: Cli, world: dict[str, str]) -> None:
    muted = cli.post("bob", "big spoiler: the butler did it")
    kept = cli.post("bob", "hello world")
    cli.json("filters", "add", "mute-words", "--param", "words=spoiler")

    text = cli.ok("timeline")
    assert "hello world" in text and "butler" not in text
    assert "1 item(s) hidden by your filters" in text

    explained = cli.ok("timeline", "--explain")
    assert "butler" not in explained
    assert muted in explained and "filter mute-words" in explained
    assert 'muted word "spoiler"' in explained

    doc = cli.json("timeline")
    assert [p["id"] for p in doc["posts"]] == [kept]
    assert doc["posts"][0]["moderation"]["action"] is None
    (hidden,) = doc["moderation"]["hidden"]
    assert hidden["id"] == muted and hidden["text"] == "big spoiler: the butler did it"
    final = hidden["moderation"]["final"]
    assert final["action"] == "hide" and final["filter"] == "mute-words"
    assert final["source"] == "you" and final["source_kind"] == "user"

    unfiltered = cli.json("timeline", "--no-filters")
    assert {p["id"] for p in unfiltered["posts"]} == {muted, kept}
    assert unfiltered["moderation"] == {"enabled": False, "hidden": [], "warnings": []}
    assert "butler" in cli.ok("author", "bob", "--no-filters")
    assert "butler" not in cli.ok("author", "bob")


def test_warned_post_is_collapsed_and_thread_opens_it(cli: Cli, world: dict[str, str]) -> None:
    warned = cli.post("bob", "spoiler: it was a sled")
    cli.json("filters", "add", "mute-words", "--param", "words=spoiler", "--param", "action=warn")
    text = cli.ok("timeline")
    assert "sled" not in text
    assert "hidden behind a warning" in text and f"murmur thread {warned}" in text
    doc = cli.json("timeline")
    assert doc["posts"][0]["moderation"]["action"] == "warn"
    opened = cli.ok("thread", warned)
    assert "sled" in opened and "⚠ warning" in opened


def test_crashing_custom_filter_is_a_visible_warning(
    cli: Cli, world: dict[str, str], tmp_path: Path
) -> None:
    cli.post("bob", "still readable")
    path = tmp_path / "boom.py"
    path.write_text(
        "class Boom:\n"
        "    name = 'boom'\n"
        "    def check(self, item):\n"
        "        raise RuntimeError('kaboom')\n"
    )
    cli.json("filters", "add", f"{path}:Boom")
    code, out, _ = cli.run("timeline")
    assert code == 0 and "still readable" in out
    assert (
        "! moderation: filter boom skipped on 1 item(s): it failed (first: raised "
        "RuntimeError: kaboom)" in out
    )
    doc = cli.json("timeline")
    assert "kaboom" in doc["posts"][0]["moderation"]["warnings"][0]
    # A filter that cannot even be built is left out, also visibly.
    path.write_text("raise ImportError('broken on purpose')\n")
    out = cli.ok("timeline")
    assert "still readable" in out and "filter boom left out" in out


def test_labels_from_a_subscribed_labeler(cli: Cli, world: dict[str, str]) -> None:
    spam = cli.post("bob", "buy my course")
    labeled = cli.json("label", spam, "spam", "--as", "lab")
    assert labeled["author"] == world["lab"] and labeled["subject"] == spam
    # Not subscribed yet: labels do nothing.
    assert "buy my course" in cli.ok("timeline")

    sub = cli.json("labelers", "subscribe", world["lab"], "--set", "spam=warn")
    assert sub["labels"] == {"spam": "warn"}
    assert [s["did"] for s in cli.json("labelers", "list")["labelers"]] == [world["lab"]]
    assert cli.json("filters", "list")["implicit_labelers"] == "labelers"
    text = cli.ok("timeline")
    assert "buy my course" not in text and 'labeled "spam"' in text

    cli.json("labelers", "subscribe", world["lab"], "--set", "spam=hide")
    doc = cli.json("timeline")
    assert spam in [h["id"] for h in doc["moderation"]["hidden"]]
    final = doc["moderation"]["hidden"][0]["moderation"]["final"]
    assert final["source"] == world["lab"] and final["source_kind"] == "labeler"

    retracted = cli.json("label", spam, "spam", "--neg", "--as", "lab")
    assert retracted["neg"] is True
    assert spam in [p["id"] for p in cli.json("timeline")["posts"]]

    # A label on the author's did applies to all their posts.
    cli.json("label", "bob", "parody", "--as", "lab", "--exp", "1d")
    cli.json("labelers", "subscribe", world["lab"], "--set", "parody=badge")
    assert '[badge: author labeled "parody"' in cli.ok("timeline")

    assert cli.json("labelers", "unsubscribe", world["lab"])["unsubscribed"] is True
    assert cli.error("labelers", "unsubscribe", world["lab"])[0] == "filter-not-found"
    code, err = cli.error("labelers", "subscribe", world["lab"], "--set", "spam=delete")
    assert code == "bad-request" and "hide, warn, badge, ignore" in err
    assert cli.error("label", spam, "Not-Valid", "--as", "lab")[0] == "bad-request"


def test_a_label_on_an_image_hides_every_post_using_it(
    cli: Cli, world: dict[str, str], tmp_path: Path
) -> None:
    """spec 0006 #images, #label-blob-cli: ``murmur label HASH VALUE --blob`` labels the
    image; two posts of it are hidden, a post of another image is not."""
    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    Image.new("RGB", (8, 6), (200, 10, 10)).save(red)
    Image.new("RGB", (8, 6), (10, 10, 200)).save(blue)

    def post(text: str, path: Path) -> tuple[str, str]:
        doc = cli.json("post", text, "--image", str(path), "--alt", "a square", as_name="bob")
        return doc["id"], doc["images"][0]["hash"]

    first, red_hash = post("red one", red)
    second, again = post("red again", red)
    other, blue_hash = post("blue one", blue)
    assert again == red_hash != blue_hash
    labeled = cli.json("label", red_hash, "gore", "--blob", "--as", "lab")
    assert (labeled["subject"], labeled["subject_type"]) == (red_hash, "blob")
    assert cli.error("label", red_hash[:12], "gore", "--blob", "--as", "lab")[0] == "bad-request"
    cli.json("labelers", "subscribe", world["lab"], "--set", "gore=hide")
    doc = cli.json("timeline")
    hidden = {h["id"]: h["moderation"]["final"] for h in doc["moderation"]["hidden"]}
    assert set(hidden) == {first, second}
    assert {f["reason"] for f in hidden.values()} == {'image labeled "gore"'}
    assert other in [p["id"] for p in doc["posts"]]
    cli.json("labelers", "subscribe", world["lab"], "--set", "gore=warn")
    assert 'image labeled "gore"' in cli.ok("timeline")


def test_subscribed_list_follows_new_versions(cli: Cli, world: dict[str, str]) -> None:
    post = cli.post("bob", "from a noisy account")
    published = cli.json(
        "list", "publish", "noisy", "--purpose", "mute", "--member", "bob", "--as", "curator"
    )
    ref = f"{world['curator']}/noisy"
    assert published["members"] == [world["bob"]] and published["ref"] == ref
    shown = cli.json("list", "show", world["curator"], "noisy")
    assert shown["members"] == [world["bob"]] and shown["purpose"] == "mute"

    cli.json("filters", "add", "list", "--name", "noisy", "--param", f"ref={ref}")
    doc = cli.json("timeline")
    assert post in [h["id"] for h in doc["moderation"]["hidden"]]
    final = doc["moderation"]["hidden"][0]["moderation"]["final"]
    assert final["source"] == f"list:{ref}" and final["source_kind"] == "list"

    cli.json("list", "publish", "noisy", "--purpose", "mute", "--as", "curator")
    assert cli.json("list", "show", world["curator"], "noisy")["members"] == []
    doc = cli.json("timeline")
    assert post in [p["id"] for p in doc["posts"]] and doc["moderation"]["hidden"] == []


def test_filters_test(cli: Cli, world: dict[str, str]) -> None:
    hit = cli.post("bob", "a spoiler here")
    miss = cli.post("bob", "nothing to see")
    cli.json("filters", "add", "mute-words", "--param", "words=spoiler", "--disabled")
    doc = cli.json("filters", "test", "mute-words", "--event", hit)
    assert doc["decision"]["action"] == "hide" and doc["enabled"] is False
    assert doc["decision"]["reason"] == 'muted word "spoiler"'
    assert "no decision" in cli.ok("filters", "test", "mute-words", "--event", miss)
    assert cli.error("filters", "test", "nope", "--event", hit)[0] == "filter-not-found"
    assert cli.error("filters", "test", "mute-words", "--event", "00" * 32)[0] == "not-found"


def test_filter_from_an_installed_entry_point(cli: Cli, world: dict[str, str]) -> None:
    """The example package is installed in the test venv by `make test` (Makefile:
    EXAMPLE_FILTER); `entry:no-links` loads it by its entry point, no path involved."""
    linked = cli.post("bob", "read https://elsewhere.test/article")
    cli.post("bob", "plain words")
    added = cli.json("filters", "add", "entry:no-links", "--param", "action=hide")
    assert "entry:no-links" in json.dumps(added)
    doc = cli.json("timeline")
    (hidden,) = doc["moderation"]["hidden"]
    assert hidden["id"] == linked
    assert hidden["moderation"]["final"]["reason"] == "links to elsewhere.test"
    assert hidden["moderation"]["final"]["filter"] == "no-links"


def test_hanging_custom_filter_does_not_stall_the_timeline(
    cli: Cli, world: dict[str, str], tmp_path: Path
) -> None:
    cli.post("bob", "still readable")
    (tmp_path / "hang.py").write_text(
        "import time\n\n\nclass Hang:\n    name = 'hang'\n\n"
        "    def check(self, item):\n        time.sleep(60)\n"
    )
    cli.json("filters", "add", f"{tmp_path / 'hang.py'}:Hang", "--budget-ms", "200")
    code, out, _ = cli.run("timeline")
    assert code == 0 and "still readable" in out
    assert "filter hang skipped" in out
