"""The reader's moderation model: items, decisions, filters (spec 0006 §decisions).

A **filter** is any object with a ``name`` and one method, ``check(item)``, sync or
async, that returns a :class:`Decision` or ``None``. It sees an :class:`Item`: the
verified event, its author and profile, its images, the labels that the reader's
subscribed labelers put on it, its author or its images, the items it embeds
(quoted, reposted, the parent it replies to), and the :class:`ViewContext` it is
shown in. Filters never fetch or verify: the client has done both before they run.

Decisions are ``hide`` (dropped from lists), ``warn`` (collapsed behind a warning) and
``badge`` (shown with a note), each with a human ``reason`` and a ``source`` (who
decided: the reader, a labeler's did, a list). ``allow`` is the reader's explicit
allow-rule: it overrides decisions whose source is a labeler or a list.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from protocol.embeds import EmbedImage
from protocol.events import Event
from protocol.kinds import LABEL_SUBJECT_BLOB

__all__ = [
    "Action",
    "Decision",
    "Env",
    "Filter",
    "Item",
    "Label",
    "SourceKind",
    "ViewContext",
]


class Action(enum.StrEnum):
    """What a decision does to an item, by increasing severity (``allow`` aside)."""

    BADGE = "badge"
    WARN = "warn"
    HIDE = "hide"
    ALLOW = "allow"

    @property
    def severity(self) -> int:
        return {"badge": 1, "warn": 2, "hide": 3, "allow": 0}[self.value]


class SourceKind(enum.StrEnum):
    """Who a decision comes from; an ``allow`` by the reader overrides labelers and lists."""

    USER = "user"  # the reader's own rules (mutes, blocks, allow-rules, languages...)
    LABELER = "labeler"  # a subscribed labeler's label
    LIST = "list"  # a subscribed mute/block list
    AUTHOR = "author"  # the author's own self-labels
    FILTER = "filter"  # a custom filter's own judgement


class ViewContext(enum.StrEnum):
    TIMELINE = "timeline"
    THREAD = "thread"
    AUTHOR = "author"
    PROFILE = "profile"
    NOTIFICATIONS = "notifications"
    FEED = "feed"  # a custom feed's page (spec 0007 #feeds)


@dataclass(frozen=True, slots=True)
class Decision:
    """One filter's verdict on one item.

    ``source`` names who decided (``"you"``, a labeler's did, ``"list:<did>/<name>"``,
    the filter's name); ``source_kind`` says which kind of source that is. ``filter``
    (set by the pipeline) is the configured name of the filter that returned it;
    ``via`` (set by the pipeline) says it was found on an embedded item ("quoted",
    "reposted", "parent").
    """

    action: Action
    reason: str
    source: str
    source_kind: SourceKind = SourceKind.FILTER
    filter: str = ""
    via: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "reason": self.reason,
            "source": self.source,
            "source_kind": self.source_kind.value,
            "filter": self.filter,
            "via": self.via,
        }


@dataclass(frozen=True, slots=True)
class Label:
    """One label a subscribed labeler published (spec 0003 §label), already verified.

    ``subject`` is an event id (hex) or a did, or, when ``subject_type`` is
    ``"blob"``, the hex SHA-256 of an image (spec 0003 #label-blob): such a label is
    on every post that embeds that image (spec 0006 #images). ``neg`` retracts an
    earlier label of the same value; ``exp`` (ms) makes it lapse.
    """

    labeler: str
    subject: str
    val: str
    neg: bool = False
    exp: int | None = None
    ts: int = 0
    id: str = ""
    #: None for an event id or a did (as ``subject`` reads), ``"blob"`` for an image.
    subject_type: str | None = None

    @property
    def on_blob(self) -> bool:
        return self.subject_type == LABEL_SUBJECT_BLOB

    def active(self, now_ms: int) -> bool:
        return not self.neg and (self.exp is None or self.exp > now_ms)


@dataclass(slots=True)
class Item:
    """What a filter sees: one verified event and everything known around it."""

    event: Event
    context: ViewContext
    #: The reader's did, and whom the reader follows.
    viewer: str
    follows: frozenset[str] = frozenset()
    #: The author's latest profile body (``name``, ``bio``), if known.
    profile: Mapping[str, Any] | None = None
    #: Active labels from the reader's labelers on this event, its author, or one of
    #: its images (``Label.on_blob``, subject the image's hash in hex).
    labels: tuple[Label, ...] = ()
    #: Embedded items: ``{"quoted": Item, "reposted": Item, "parent": Item}``.
    embeds: dict[str, Item] = field(default_factory=dict)
    #: Current time in ms (the pipeline's clock).
    now_ms: int = 0
    #: When the reader's nodes first stored an event of the author: the earliest of
    #: their ``first_seen_ms`` (spec 0004 #author-stats), None when no node said. Not
    #: the author's to choose, but each node's word (a node that joined late sees
    #: everyone as new); only set when a filter may read it (spec 0006 #account-age).
    author_first_seen_ms: int | None = None
    #: The smallest ``ts`` of the author's events the nodes hold: signed, but chosen by
    #: the author (a new account can claim to be old).
    author_first_ts: int | None = None

    @property
    def author(self) -> str:
        return self.event.author

    @property
    def text(self) -> str:
        body = self.event.body or {}
        text = body.get("text")
        return text if isinstance(text, str) else ""

    @property
    def tags(self) -> tuple[str, ...]:
        body = self.event.body or {}
        return tuple(t for t in body.get("tags", ()) if isinstance(t, str))

    @property
    def langs(self) -> tuple[str, ...]:
        body = self.event.body or {}
        return tuple(t for t in body.get("langs", ()) if isinstance(t, str))

    @property
    def self_labels(self) -> tuple[str, ...]:
        body = self.event.body or {}
        return tuple(t for t in body.get("warn", ()) if isinstance(t, str))

    @property
    def images(self) -> tuple[EmbedImage, ...]:
        """The images a post embeds (spec 0003 #embed), in order: each one's ``hash``
        (32 bytes), ``mime``, ``size``, ``width``, ``height`` and ``alt``, as the author
        signed them; ``()`` for other kinds, posts without images and dropped bodies."""
        return self.event.images

    @property
    def image_hashes(self) -> frozenset[str]:
        """The hex SHA-256 of each image: what a blob label's ``subject`` names."""
        return frozenset(image.hash.hex() for image in self.images)

    @property
    def is_reply(self) -> bool:
        body = self.event.body or {}
        return isinstance(body.get("reply"), dict)

    @property
    def mine(self) -> bool:
        return self.event.author == self.viewer

    @property
    def account_age_ms(self) -> int | None:
        """How long the reader's nodes have known the author (``now_ms`` minus
        ``author_first_seen_ms``, at least 0), or None when unknown: "hide new
        accounts" (spec 0006 #account-age)."""
        if self.author_first_seen_ms is None:
            return None
        return max(0, self.now_ms - self.author_first_seen_ms)


async def _no_list(author: str, name: str) -> Event | None:
    return None


@dataclass(slots=True)
class Env:
    """What a filter's optional ``prepare(env)`` may use, once per view, before checks.

    ``latest_list(author, name)`` returns the newest verified ``list`` event ``name``
    published by ``author`` (or None): how subscribed lists follow new versions.
    """

    viewer: str
    now_ms: int
    context: ViewContext
    follows: frozenset[str] = frozenset()
    home: Path | None = None
    latest_list: Callable[[str, str], Awaitable[Event | None]] = _no_list


@runtime_checkable
class Filter(Protocol):
    """A moderation filter: ``check`` returns a decision or ``None`` (sync or async).

    A filter may also define ``prepare(self, env: Env)`` (sync or async), called once
    per view before any ``check``: the place to load files or fetch a list.
    """

    name: str

    def check(self, item: Item) -> Decision | Awaitable[Decision | None] | None: ...
