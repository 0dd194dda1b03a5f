"""The example filters of ``examples/filters`` (spec 0006 §6.9): load, decide, compose.

Each example is loaded the way ``murmur filters add PATH.py:Class`` loads it
(:func:`client.moderation.config.load_filter_class`) and judged on hand-made items;
the allow-list and label examples also run through the real :class:`Pipeline`, since
what they promise (an allow overriding a labeler-sourced decision, a missing file
being contained) is a property of the composition. The installable package is
imported from its directory, never pip-installed.
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path
from typing import Any

import pytest

from client.moderation import (
    Action,
    Configured,
    Env,
    Filter,
    Item,
    Label,
    Pipeline,
    SourceKind,
    ViewContext,
)
from client.moderation.config import ENTRY_POINT_GROUP, load_filter_class
from protocol.events import Event, sign_event
from protocol.identity import Identity

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "filters"
PACKAGE = EXAMPLES / "murmur-filter-example"
NOW = 1_760_000_000_000

ALICE = Identity.from_seed(bytes([1]) * 32)  # the reader
BOB = Identity.from_seed(bytes([2]) * 32)
CAROL = Identity.from_seed(bytes([3]) * 32)
LABELER_1 = Identity.from_seed(bytes([4]) * 32).did
LABELER_2 = Identity.from_seed(bytes([5]) * 32).did


def load(file: str, cls: str, **params: Any) -> Any:
    return load_filter_class(f"{EXAMPLES / file}:{cls}", {})(**params)


def post(who: Identity, text: str, **body: Any) -> Event:
    return sign_event(who, kind="post", body={"text": text, **body}, seq=1, prev=None, ts=NOW)


def item(
    ev: Event,
    *,
    labels: tuple[Label, ...] = (),
    follows: frozenset[str] = frozenset(),
    embeds: dict[str, Item] | None = None,
) -> Item:
    return Item(
        event=ev,
        context=ViewContext.TIMELINE,
        viewer=ALICE.did,
        follows=follows,
        labels=labels,
        embeds=embeds or {},
        now_ms=NOW,
    )


def label(labeler: str, ev: Event, val: str, **kw: Any) -> Label:
    return Label(labeler=labeler, subject=ev.id_hex, val=val, ts=NOW, **kw)


def env(home: Path) -> Env:
    return Env(viewer=ALICE.did, now_ms=NOW, context=ViewContext.TIMELINE, home=home)


@pytest.mark.parametrize(
    ("file", "cls", "params"),
    [
        ("keyword.py", "KeywordFilter", {"words": "x"}),
        ("keyword.py", "ShoutingFilter", {}),
        ("labels.py", "LabelPileUp", {}),
        ("allowlist.py", "AllowList", {"path": "allow.txt"}),
        ("new_accounts.py", "NewAccounts", {}),
    ],
    ids=["keyword", "shouting", "labels", "allowlist", "new-accounts"],
)
def test_every_example_loads_as_a_filter(file: str, cls: str, params: dict[str, Any]) -> None:
    f = load(file, cls, **params)
    assert isinstance(f, Filter)
    assert isinstance(f.name, str) and f.name


# -- keyword.py -----------------------------------------------------------------------


def test_keyword_badges_whole_words_case_insensitively() -> None:
    f = load("keyword.py", "KeywordFilter", words="rust, Python")
    d = f.check(item(post(BOB, "Learning PYTHON today")))
    assert d is not None
    assert (d.action, d.reason, d.source) == (Action.BADGE, "mentions 'python'", "keyword")
    assert d.source_kind is SourceKind.FILTER
    assert f.check(item(post(BOB, "a rusty bike"))) is None  # not a whole word


def test_keyword_params_as_list_and_action() -> None:
    f = load("keyword.py", "KeywordFilter", words=["rust"], action="hide")
    d = f.check(item(post(BOB, "rust!")))
    assert d is not None and d.action is Action.HIDE


@pytest.mark.parametrize(
    "params",
    [{"words": ""}, {"words": "a", "action": "allow"}, {"words": "a", "action": "nuke"}],
    ids=["no-words", "allow", "unknown-action"],
)
def test_keyword_rejects_bad_params(params: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        load("keyword.py", "KeywordFilter", **params)


def test_shouting_warns_on_mostly_capitals_only() -> None:
    f = load("keyword.py", "ShoutingFilter", percent="80")  # text works as well as 80
    d = f.check(item(post(BOB, "WHY IS NOBODY TALKING ABOUT THIS")))
    assert d is not None
    assert (d.action, d.reason) == (Action.WARN, "mostly capitals (100%)")
    assert f.check(item(post(BOB, "LOL OK"))) is None  # too few letters
    assert f.check(item(post(BOB, "Why is NOBODY talking about this"))) is None
    repost = sign_event(BOB, kind="repost", body={"target": bytes(32)}, seq=1, prev=None, ts=NOW)
    assert f.check(item(repost)) is None  # no text


# -- labels.py ------------------------------------------------------------------------


def test_label_pile_up_needs_distinct_values() -> None:
    f = load("labels.py", "LabelPileUp")
    ev = post(BOB, "hello")
    assert f.check(item(ev)) is None
    same_value_twice = (label(LABELER_1, ev, "spam"), label(LABELER_2, ev, "spam"))
    assert f.check(item(ev, labels=same_value_twice)) is None
    two = (label(LABELER_1, ev, "spam"), label(LABELER_2, ev, "rude"))
    d = f.check(item(ev, labels=two))
    assert d is not None
    assert d.action is Action.HIDE
    assert d.source_kind is SourceKind.LABELER
    assert d.reason == "labeled rude, spam by 2 labeler(s)"
    assert d.source == ",".join(sorted([LABELER_1, LABELER_2]))


def test_label_pile_up_ignores_inactive_and_ignored_values() -> None:
    f = load("labels.py", "LabelPileUp", min_labels="2", ignore="satire", action="warn")
    ev = post(BOB, "hello")
    labels = (
        label(LABELER_1, ev, "spam"),
        label(LABELER_1, ev, "satire"),  # ignored
        label(LABELER_1, ev, "rude", neg=True),  # retracted
        label(LABELER_2, ev, "nsfw", exp=NOW),  # lapsed: exp <= now
    )
    assert f.check(item(ev, labels=labels)) is None
    d = f.check(item(ev, labels=(*labels, label(LABELER_2, ev, "nsfw", exp=NOW + 1))))
    assert d is not None and d.action is Action.WARN
    assert d.reason == "labeled nsfw, spam by 2 labeler(s)"


# -- allowlist.py ---------------------------------------------------------------------


@pytest.fixture
def allow_home(tmp_path: Path) -> Path:
    (tmp_path / "allow.txt").write_text(f"# friends\n\n{BOB.did}   # bob\n", encoding="utf-8")
    return tmp_path


async def test_allowlist_allows_listed_and_badges_others(allow_home: Path) -> None:
    f = load("allowlist.py", "AllowList", path="allow.txt")  # relative to the home
    await f.prepare(env(allow_home))
    d = await f.check(item(post(BOB, "hi")))
    assert d is not None
    assert (d.action, d.source_kind, d.source) == (Action.ALLOW, SourceKind.USER, "you")
    d = await f.check(item(post(CAROL, "hi")))
    assert d is not None
    assert (d.action, d.reason) == (Action.BADGE, "not in your allow-list")
    assert await f.check(item(post(ALICE, "my own"))) is None


async def test_allowlist_options(allow_home: Path) -> None:
    f = load(
        "allowlist.py",
        "AllowList",
        path=str(allow_home / "allow.txt"),
        others="none",
        include_follows="true",
    )
    await f.prepare(env(Path("/nonexistent")))  # an absolute path ignores the home
    assert await f.check(item(post(CAROL, "hi"))) is None
    d = await f.check(item(post(CAROL, "hi"), follows=frozenset({CAROL.did})))
    assert d is not None and d.action is Action.ALLOW


async def test_allowlist_check_before_prepare_fails(allow_home: Path) -> None:
    f = load("allowlist.py", "AllowList", path="allow.txt")
    with pytest.raises(RuntimeError, match="prepare"):
        await f.check(item(post(BOB, "hi")))


async def test_allowlist_rejects_a_line_that_is_not_a_did(tmp_path: Path) -> None:
    (tmp_path / "allow.txt").write_text(f"{BOB.did}\nbob\n", encoding="utf-8")
    f = load("allowlist.py", "AllowList", path="allow.txt")
    with pytest.raises(ValueError, match=r"allow\.txt:2: not a did"):
        await f.prepare(env(tmp_path))


async def test_allowlist_overrides_label_pile_up_in_the_pipeline(allow_home: Path) -> None:
    """The two examples compose as spec 0006 §6.3 rule 3 says (labeler source → overridden)."""
    pipeline = Pipeline(
        [
            Configured("pile-up", load("labels.py", "LabelPileUp")),
            Configured("friends", load("allowlist.py", "AllowList", path="allow.txt")),
        ]
    )
    bob_ev, carol_ev = post(BOB, "hi"), post(CAROL, "hi")

    def two(ev: Event) -> tuple[Label, ...]:
        return (label(LABELER_1, ev, "spam"), label(LABELER_2, ev, "rude"))

    bob, carol = await pipeline.run(
        [item(bob_ev, labels=two(bob_ev)), item(carol_ev, labels=two(carol_ev))],
        env(allow_home),
    )
    assert bob.action is None and [d.filter for d in bob.overridden] == ["pile-up"]
    assert carol.hidden and carol.final is not None and carol.final.filter == "pile-up"
    assert not pipeline.warnings


async def test_allowlist_missing_file_is_contained(tmp_path: Path) -> None:
    pipeline = Pipeline([Configured("friends", load("allowlist.py", "AllowList", path="no.txt"))])
    [verdict] = await pipeline.run([item(post(BOB, "hi"))], env(tmp_path))
    assert verdict.action is None
    assert len(pipeline.warnings) == 1 and "friends" in pipeline.warnings[0]
    assert f"allow-list: no file {tmp_path / 'no.txt'}" in pipeline.warnings[0]


# -- murmur-filter-example (the installable package) ----------------------------------


@pytest.fixture
def package_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(PACKAGE))


def test_package_declares_the_entry_point() -> None:
    doc = tomllib.loads((PACKAGE / "pyproject.toml").read_text(encoding="utf-8"))
    assert doc["project"]["entry-points"][ENTRY_POINT_GROUP] == {
        "no-links": "murmur_filter_example:NoLinks"
    }
    assert doc["build-system"]["build-backend"] == "setuptools.build_meta"
    assert doc["tool"]["setuptools"]["packages"] == ["murmur_filter_example"]


def test_package_filter_decides(package_on_path: None) -> None:
    from murmur_filter_example import NoLinks

    f = NoLinks(allow_domains="example.org")
    assert isinstance(f, Filter)
    d = f.check(item(post(BOB, "see https://evil.test/x and https://docs.example.org/y")))
    assert d is not None
    assert (d.action, d.reason, d.source) == (Action.WARN, "links to evil.test", "no-links")
    assert f.check(item(post(BOB, "see www.example.org"))) is None
    assert f.check(item(post(BOB, "no link here"))) is None


def test_package_loads_through_its_entry_point(
    package_on_path: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``entry:no-links`` resolves as if the package were installed."""
    doc = tomllib.loads((PACKAGE / "pyproject.toml").read_text(encoding="utf-8"))
    declared = [
        importlib.metadata.EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)
        for name, value in doc["project"]["entry-points"][ENTRY_POINT_GROUP].items()
    ]

    def entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
        return declared if group == ENTRY_POINT_GROUP else []

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    cls = load_filter_class("entry:no-links", {})
    f = cls(action="hide")
    d = f.check(item(post(BOB, "http://a.test")))
    assert d is not None and d.action is Action.HIDE


# -- new_accounts.py ------------------------------------------------------------------


def test_new_accounts_hides_by_the_age_the_nodes_know() -> None:
    """spec 0006 #account-age: the age is ``now_ms - author_first_seen_ms``; people
    followed and unknown ages are left alone unless ``unknown`` says otherwise."""
    f = load("new_accounts.py", "NewAccounts", days="2")
    young = item(post(BOB, "hi"))
    young.author_first_seen_ms = NOW - 3_600_000  # an hour
    assert young.account_age_ms == 3_600_000
    d = f.check(young)
    assert d is not None and d.action is Action.HIDE
    assert d.reason == "new account (known for 1.0 hours)"
    old = item(post(CAROL, "hi"))
    old.author_first_seen_ms = NOW - 3 * 86_400_000
    old.author_first_ts = NOW  # what the author claims is not used
    assert f.check(old) is None
    followed = item(post(BOB, "hi"), follows=frozenset({BOB.did}))
    followed.author_first_seen_ms = NOW
    assert f.check(followed) is None
    unknown = item(post(BOB, "hi"))
    assert unknown.account_age_ms is None and f.check(unknown) is None
    strict = load("new_accounts.py", "NewAccounts", days=2, unknown="warn")
    d = strict.check(unknown)
    assert d is not None and (d.action, d.reason) == (Action.WARN, "account age unknown")
    with pytest.raises(ValueError):
        load("new_accounts.py", "NewAccounts", action="allow")
