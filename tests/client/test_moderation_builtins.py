"""The built-in filters (spec 0006 §builtins), each on hand-built items."""

from __future__ import annotations

from typing import Any

import pytest

from client.errors import FilterLoadError
from client.moderation.builtins import (
    BUILTINS,
    MAX_REGEXES,
    Allow,
    BlockAuthors,
    Labelers,
    Languages,
    MuteAuthors,
    MuteWords,
    RepliesFromNonFollows,
    SelfLabels,
    SubscribedList,
)
from client.moderation.config import LabelerSub
from client.moderation.core import Action, Decision, Env, Item, Label, SourceKind, ViewContext
from protocol.events import Event
from tests.client.conftest import Author

NOW = 1_750_000_000_000
ME = Author.new()
ALICE, BOB, CAROL, LAB = Author.new(), Author.new(), Author.new(), Author.new()


def item(ev: Event, **kw: Any) -> Item:
    kw.setdefault("context", ViewContext.TIMELINE)
    kw.setdefault("viewer", ME.did)
    kw.setdefault("now_ms", NOW)
    return Item(event=ev, **kw)


def check(f: Any, it: Item) -> Decision | None:
    result = f.check(it)
    assert result is None or isinstance(result, Decision)
    return result  # type: ignore[no-any-return]


def test_builtins_registry_names_every_type() -> None:
    assert sorted(BUILTINS) == sorted(
        [
            "mute-words",
            "mute-authors",
            "block-authors",
            "list",
            "labelers",
            "self-labels",
            "languages",
            "replies-from-non-follows",
            "allow",
        ]
    )
    assert all(cls.name == name for name, cls in BUILTINS.items())


MINIMAL: dict[str, dict[str, Any]] = {
    "mute-words": {"words": ["x"]},
    "mute-authors": {"dids": [BOB.did]},
    "block-authors": {"dids": [BOB.did]},
    "list": {"ref": f"{BOB.did}/noisy"},
    "labelers": {},
    "self-labels": {},
    "languages": {"allow": ["en"]},
    "replies-from-non-follows": {},
    "allow": {"dids": [BOB.did]},
}


@pytest.mark.parametrize("type_", sorted(MINIMAL))
def test_every_builtin_builds_and_rejects_unknown_params(type_: str) -> None:
    cls = BUILTINS[type_]
    assert callable(cls(**MINIMAL[type_]).check)
    with pytest.raises(FilterLoadError, match=r"unknown parameter.*bogus"):
        cls(**MINIMAL[type_], bogus=1)


# -- mute-words -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "text", "hit"),
    [
        ("spoiler", "Big SPOILER ahead!", True),
        ("spoiler", "no spoilers here", False),
        ("spoiler", "#spoiler", True),
        ("café", "un CAFÉ noir", True),
        ("café", "deux cafés", False),
        ("game of thrones", "watching Game  of\nThrones tonight", True),
        ("game of thrones", "game of throne", False),
        ("c++", "I write C++.", True),
        ("东京", "我在东京", False),  # no word boundary inside CJK runs: whole words only
    ],
    ids=["case", "plural", "hashtag", "unicode", "unicode-plural", "phrase", "phrase-miss",
         "punctuation", "cjk"],
)  # fmt: skip
def test_mute_words_match_whole_words(word: str, text: str, hit: bool) -> None:
    f = MuteWords(words=[word])
    d = check(f, item(ALICE.post(text)))
    if not hit:
        assert d is None
        return
    assert d == Decision(Action.HIDE, f'muted word "{word}"', "you", SourceKind.USER)


def test_mute_words_tags_and_regexes() -> None:
    f = MuteWords(words="spoiler", tags="#News, sports", regexes=r"b[a4]d\s*word, x{1,3}yz")
    assert f.regexes == [r"b[a4]d\s*word", "x{1,3}yz"]  # commas in {} do not split
    d = check(f, item(ALICE.post("plain", tags=["SPOILER"])))
    assert d is not None and d.reason == 'muted word "spoiler"'
    d = check(f, item(ALICE.post("plain", tags=["#news"])))
    assert d is not None and d.reason == 'muted tag "#News"'
    d = check(f, item(ALICE.post("a B4D   Word here")))
    assert d is not None and d.reason == r"muted pattern /b[a4]d\s*word/"
    d = check(f, item(ALICE.post("plain", tags=["xxyz"])))
    assert d is not None and d.reason == "muted pattern /x{1,3}yz/"
    assert check(f, item(ALICE.post("nothing to see", tags=["weather"]))) is None


@pytest.mark.parametrize(
    ("expires", "active"),
    [
        (NOW + 1, True),
        (NOW, False),
        (str(NOW - 1), False),
        ("2999-01-01", True),
        ("2020-01-01", False),
        ("2999-01-01T12:00:00Z", True),
        ("2020-01-01T12:00:00+02:00", False),
    ],
)
def test_mute_words_expiry(expires: object, active: bool) -> None:
    f = MuteWords(words=["spoiler"], expires=expires)
    assert (check(f, item(ALICE.post("spoiler"))) is not None) is active


def test_mute_words_exclude_follows_and_warn() -> None:
    f = MuteWords(words=["spoiler"], exclude_follows="true", action="warn")
    assert check(f, item(ALICE.post("spoiler"), follows=frozenset({ALICE.did}))) is None
    d = check(f, item(ALICE.post("spoiler")))
    assert d is not None and d.action is Action.WARN


def test_mute_words_badge() -> None:
    """spec 0006 #mute-words-badge: a muted word may badge (shown, the term named), not only
    hide or warn (Bluesky's "muted words can't warn, only hide")."""
    f = MuteWords(words=["spoiler"], tags=["finale"], action="badge")
    d = check(f, item(ALICE.post("a spoiler here")))
    assert d == Decision(Action.BADGE, 'muted word "spoiler"', "you", SourceKind.USER)
    d = check(f, item(ALICE.post("tonight", tags=["Finale"])))
    assert d is not None and d.action is Action.BADGE and d.reason == 'muted tag "#finale"'


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "at least one of words"),
        ({"words": 3}, "words must be a list of strings"),
        ({"regexes": ["("]}, "does not compile"),
        ({"regexes": ["a" * 501]}, "over 500 chars"),
        ({"regexes": [f"r{i}" for i in range(MAX_REGEXES + 1)]}, "at most 200"),
        ({"words": ["x"], "action": "allow"}, "action must be one of hide, warn, badge"),
        ({"words": ["x"], "expires": "next tuesday"}, "expires must be"),
        ({"words": ["x"], "expires": True}, "expires must be"),
        ({"words": ["x"], "exclude_follows": "maybe"}, "true or false"),
    ],
)
def test_mute_words_bad_params(params: dict[str, Any], message: str) -> None:
    with pytest.raises(FilterLoadError, match=message):
        MuteWords(**params)


# -- authors --------------------------------------------------------------------------


def test_mute_and_block_authors() -> None:
    mute = MuteAuthors(dids=f"{BOB.did}, {CAROL.did}", action="warn", expires=NOW + 10)
    block = BlockAuthors(dids=[BOB.did])
    bob_post = item(BOB.post("hi"))
    assert check(mute, bob_post) == Decision(Action.WARN, "muted author", "you", SourceKind.USER)
    assert check(block, bob_post) == Decision(Action.HIDE, "blocked author", "you", SourceKind.USER)
    assert check(mute, item(ALICE.post("hi"))) is None
    assert check(block, item(CAROL.post("hi"))) is None
    later = item(CAROL.post("hi"), now_ms=NOW + 10)
    assert check(mute, later) is None  # expired
    with pytest.raises(FilterLoadError, match="not a did "):
        MuteAuthors(dids=["did:key:nope"])
    with pytest.raises(FilterLoadError, match="at least one"):
        BlockAuthors(dids=[])


# -- list -----------------------------------------------------------------------------


def env_with(lists: dict[tuple[str, str], Event]) -> Env:
    async def latest(author: str, name: str) -> Event | None:
        return lists.get((author, name))

    return Env(viewer=ME.did, now_ms=NOW, context=ViewContext.TIMELINE, latest_list=latest)


@pytest.mark.parametrize(
    ("purpose", "reason"),
    [("mute", 'in mute list "noisy"'), ("block", 'in block list "noisy"'), ("curate", None)],
)
async def test_list_by_purpose(purpose: str, reason: str | None) -> None:
    lister = Author.new()
    ev = lister.sign("list", {"name": "noisy", "purpose": purpose, "members": [BOB.did]})
    f = SubscribedList(ref=f"{lister.did}/noisy")
    await f.prepare(env_with({(lister.did, "noisy"): ev}))
    d = check(f, item(BOB.post("hi")))
    if reason is None:
        assert d is None
    else:
        assert d == Decision(Action.HIDE, reason, f"list:{lister.did}/noisy", SourceKind.LIST)
    assert check(f, item(ALICE.post("hi"))) is None


async def test_list_missing_wrong_or_overridden() -> None:
    lister = Author.new()
    f = SubscribedList(ref=f"{lister.did}/noisy", action="warn")
    await f.prepare(env_with({}))
    assert check(f, item(BOB.post("hi"))) is None
    # An env that hands back someone else's list (or another name) is not trusted.
    other = ALICE.sign("list", {"name": "noisy", "purpose": "mute", "members": [BOB.did]})
    await f.prepare(env_with({(lister.did, "noisy"): other}))
    assert check(f, item(BOB.post("hi"))) is None
    mine = lister.sign("list", {"name": "noisy", "purpose": "mute", "members": [BOB.did]})
    await f.prepare(env_with({(lister.did, "noisy"): mine}))
    d = check(f, item(BOB.post("hi")))
    assert d is not None and d.action is Action.WARN
    for bad in (None, "no-slash", f"{lister.did}/", "did:key:zzz/x"):
        with pytest.raises(FilterLoadError, match="ref"):
            SubscribedList(ref=bad)


# -- labelers -------------------------------------------------------------------------


def label(subject: str, val: str, labeler: str = LAB.did, **kw: Any) -> Label:
    return Label(labeler=labeler, subject=subject, val=val, **kw)


def test_labelers_map_values_to_actions() -> None:
    f = Labelers(
        subs=[
            {"did": LAB.did, "labels": {"spam": "hide", "nsfw": "warn", "meh": "ignore"}},
            LabelerSub(did=ALICE.did, labels={"satire": "badge"}),
        ]
    )
    post = BOB.post("hi")
    d = check(f, item(post, labels=(label(post.id_hex, "nsfw"),)))
    assert d == Decision(Action.WARN, 'labeled "nsfw"', LAB.did, SourceKind.LABELER)
    d = check(f, item(post, labels=(label(BOB.did, "spam"),)))
    assert d == Decision(Action.HIDE, 'author labeled "spam"', LAB.did, SourceKind.LABELER)
    # The most severe of several labels wins.
    several = (
        label(post.id_hex, "satire", ALICE.did),
        label(post.id_hex, "spam"),
        label(post.id_hex, "nsfw"),
    )
    d = check(f, item(post, labels=several))
    assert d is not None and d.action is Action.HIDE and d.reason == 'labeled "spam"'
    for nothing in (
        label(post.id_hex, "meh"),  # ignore
        label(post.id_hex, "unknown"),  # a value the subscription does not name
        label(post.id_hex, "spam", CAROL.did),  # a labeler not subscribed
        label(post.id_hex, "spam", neg=True),  # inactive (resolved by the client anyway)
        label(post.id_hex, "spam", exp=NOW),
        label(ALICE.did, "spam"),  # someone else
    ):
        assert check(f, item(post, labels=(nothing,))) is None, nothing


def test_labelers_bad_subs() -> None:
    with pytest.raises(FilterLoadError, match="action must be one of"):
        Labelers(subs=[{"did": LAB.did, "labels": {"spam": "explode"}}])
    with pytest.raises(FilterLoadError, match="labeler did:key:x"):
        Labelers(subs=[{"did": "did:key:x", "labels": {}}])
    with pytest.raises(FilterLoadError, match="subs must be a list"):
        Labelers(subs="nope")


# -- self-labels, languages -----------------------------------------------------------


def test_self_labels() -> None:
    post = ALICE.post("the ending", warn=["spoiler", "sad"])
    d = check(SelfLabels(), item(post))
    assert d == Decision(
        Action.WARN, 'author marked it "spoiler", "sad"', "author", SourceKind.AUTHOR
    )
    d = check(SelfLabels(action="badge"), item(post))
    assert d is not None and d.action is Action.BADGE
    assert check(SelfLabels(), item(ALICE.post("plain"))) is None
    with pytest.raises(FilterLoadError, match="action"):
        SelfLabels(action="allow")


@pytest.mark.parametrize(
    ("langs", "hidden"),
    [(["en-GB"], False), (["en-us"], False), (["eng"], True), (["fr"], True), (["fr", "pt-BR"],
     False), (None, False)],
)  # fmt: skip
def test_languages(langs: list[str] | None, hidden: bool) -> None:
    f = Languages(allow="EN, pt")
    body = {} if langs is None else {"langs": langs}
    d = check(f, item(ALICE.post("text", **body)))
    assert (d is not None) is hidden
    if d is not None:
        assert d.action is Action.HIDE and d.source_kind is SourceKind.USER
    with pytest.raises(FilterLoadError, match="BCP 47"):
        Languages(allow=["english"])
    with pytest.raises(FilterLoadError, match="at least one"):
        Languages(allow=[])


# -- replies from non-follows -----------------------------------------------------------


def test_replies_from_non_follows_in_threads() -> None:
    f = RepliesFromNonFollows()
    root = CAROL.post("root")  # CAROL is not followed
    r1 = BOB.post("first", reply={"root": root.id, "parent": root.id})
    r2 = CAROL.post("op answers", reply={"root": root.id, "parent": r1.id})
    r3 = ALICE.post("followed", reply={"root": root.id, "parent": r2.id})
    mine = ME.post("me", reply={"root": root.id, "parent": r1.id})
    follows = frozenset({ALICE.did})

    def thread_item(ev: Event, parent: Item | None) -> Item:
        embeds = {} if parent is None else {"parent": parent}
        return item(ev, context=ViewContext.THREAD, follows=follows, embeds=embeds)

    i_root = thread_item(root, None)
    i1 = thread_item(r1, i_root)
    i2 = thread_item(r2, i1)
    i3 = thread_item(r3, i2)
    assert check(f, i_root) is None  # not a reply
    d = check(f, i1)
    assert d == Decision(
        Action.HIDE, "reply from someone you do not follow", "you", SourceKind.USER
    )
    assert check(f, i2) is None  # the root's author, found two parents up
    assert check(f, i3) is None  # followed
    assert check(f, thread_item(mine, i1)) is None  # the reader
    # Root not held: only follows and the reader pass.
    assert check(f, thread_item(r2, None)) is not None
    # Other views are left alone.
    assert check(f, item(r1, follows=follows)) is None


# -- allow ----------------------------------------------------------------------------


def test_allow() -> None:
    post = CAROL.post("hi")
    f = Allow(dids=[BOB.did], events=post.id_hex.upper())
    expected = Decision(Action.ALLOW, "allowed by you", "you", SourceKind.USER)
    assert check(f, item(BOB.post("x"))) == expected
    assert check(f, item(post)) == expected
    assert check(f, item(CAROL.post("other"))) is None
    with pytest.raises(FilterLoadError, match="64-hex"):
        Allow(events=["abc"])
    with pytest.raises(FilterLoadError, match="give dids, events"):
        Allow()
