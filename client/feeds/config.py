"""The reader's feeds: ``$MURMUR_HOME/feeds.toml`` (spec 0007 #feeds-config).

::

    [[feeds]]                     # a local feed: its code runs in the client
    name = "long"                 # what `murmur feed NAME` takes
    type = "/home/me/long_posts.py:LongPosts"   # a built-in, "PATH.py:Class" or "entry:NAME"
    params = { min_chars = 280 }

    [[feeds]]                     # a subscribed feed: a node runs it, the client checks it
    name = "hot"
    author = "did:key:z6Mk..."    # who announced it (a signed `feed` event)
    feed = "whats-hot"            # its name there: the feed is author/feed
    nodes = ["https://node.example"]   # the nodes serving it, in the order tried
    description = "Liked and reposted today"
    event = "<64 hex>"            # the `feed` event it was subscribed from

The file is rewritten atomically by ``murmur feeds`` and may be edited by hand; a
malformed one fails every feed command with ``feed-load`` naming the entry. A local
``type`` that is a file is stored as an absolute path. Nothing here runs a feed's
code: :func:`protocol.feeds.load.check_feed_type` only looks for it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomli_w

from client.files import atomic_write, read_toml, translate_os_errors
from protocol.addresses import forbidden_reason
from protocol.errors import FeedLoadError, FeedNotFoundError, InvalidDidError
from protocol.identity import did_method
from protocol.kinds import is_feed_name, is_feed_node_url
from protocol.limits import MAX_FEED_DESCRIPTION_BYTES, MAX_FEED_NODES

__all__ = [
    "FILENAME",
    "MAX_FEED_NODES",
    "FeedsConfig",
    "LocalFeed",
    "SubscribedFeed",
    "check_feed_name",
    "check_feed_nodes",
]

FILENAME = "feeds.toml"
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


def check_feed_name(name: object, what: str = "feed name") -> str:
    if not is_feed_name(name):
        raise FeedLoadError(f"{what} {name!r}: use 1-64 of a-z 0-9 _ . - (starting a-z0-9)")
    assert isinstance(name, str)  # noqa: S101 - is_feed_name says so
    return name


def check_feed_nodes(nodes: object, what: str = "nodes") -> list[str]:
    """1-8 distinct node URLs as a ``feed`` event names them (spec 0003 #feed:
    ``http(s)://``, at most 256 bytes, no userinfo, query or fragment), trailing
    slashes dropped."""
    if not isinstance(nodes, list) or not nodes or len(nodes) > MAX_FEED_NODES:
        raise FeedLoadError(f"{what}: 1-{MAX_FEED_NODES} node URLs")
    out: list[str] = []
    for url in nodes:
        if not is_feed_node_url(url):
            raise FeedLoadError(
                f"{what}: {url!r} is not an http:// or https:// URL of at most 256 bytes "
                "without a user, query or fragment"
            )
        assert isinstance(url, str)  # noqa: S101 - is_feed_node_url says so
        clean = url.rstrip("/")
        if clean not in out:
            out.append(clean)
    return out


def non_public_nodes(urls: list[str], own: list[str]) -> list[str]:
    """The URLs of ``urls`` whose host is ``localhost`` (or under ``.localhost``) or
    an IP literal that is not public unicast (:func:`protocol.addresses.forbidden_reason`,
    the rule a node's peer connections follow), and that are not the reader's ``own``
    nodes (spec 0007 #feed-private). A host name is not resolved here: one that
    resolves to a private address is not caught."""
    mine = {u.rstrip("/") for u in own}
    out: list[str] = []
    for url in urls:
        if url.rstrip("/") in mine:
            continue
        host = (urlsplit(url).hostname or "").lower()
        if host == "localhost" or host.endswith(".localhost"):
            out.append(url)
            continue
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            continue  # a name: not judged without resolving it
        if forbidden_reason(ip) is not None:
            out.append(url)
    return out


@dataclass(slots=True)
class LocalFeed:
    """A feed whose code runs in the client over the reader's nodes."""

    name: str
    type: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return self.type

    def to_toml(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "params": self.params}

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "local", **self.to_toml()}


@dataclass(slots=True)
class SubscribedFeed:
    """A feed a node serves, announced by ``author``'s ``feed`` event."""

    name: str
    author: str
    feed: str
    nodes: list[str]
    description: str = ""
    event: str = ""

    @property
    def source(self) -> str:
        return f"{self.author}/{self.feed}"

    def to_toml(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "author": self.author,
            "feed": self.feed,
            "nodes": list(self.nodes),
            "description": self.description,
            "event": self.event,
        }

    def to_json(self) -> dict[str, Any]:
        return {"kind": "subscribed", **self.to_toml()}


FeedEntry = LocalFeed | SubscribedFeed


def _entry_from(raw: object, where: str) -> FeedEntry:
    if not isinstance(raw, dict):
        raise FeedLoadError(f"{where} must be a table")
    name = check_feed_name(raw.get("name"), f"{where}: name")
    if "type" in raw:
        unknown = set(raw) - {"name", "type", "params"}
        type_, params = raw["type"], raw.get("params", {})
        if not isinstance(type_, str) or not type_ or not isinstance(params, dict):
            raise FeedLoadError(f"{where}: 'type' must be a string and 'params' a table")
        entry: FeedEntry = LocalFeed(name=name, type=type_, params=dict(params))
    else:
        unknown = set(raw) - {"name", "author", "feed", "nodes", "description", "event"}
        author, description, event = (
            raw.get("author"),
            raw.get("description", ""),
            raw.get("event", ""),
        )
        if not isinstance(author, str):
            raise FeedLoadError(f"{where}: a feed has a 'type' (local) or an 'author' (subscribed)")
        try:
            did_method(author)
        except InvalidDidError as exc:
            raise FeedLoadError(f"{where}: author: {exc.message}") from None
        if (
            not isinstance(description, str)
            or len(description.encode()) > MAX_FEED_DESCRIPTION_BYTES
        ):
            raise FeedLoadError(f"{where}: 'description' must be text of at most 300 bytes")
        if not isinstance(event, str) or (event and not _HEX64.match(event)):
            raise FeedLoadError(f"{where}: 'event' must be a 64-hex event id")
        entry = SubscribedFeed(
            name=name,
            author=author,
            feed=check_feed_name(raw.get("feed"), f"{where}: feed"),
            nodes=check_feed_nodes(raw.get("nodes"), f"{where}: nodes"),
            description=description,
            event=event,
        )
    if unknown:
        raise FeedLoadError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    return entry


@dataclass(slots=True)
class FeedsConfig:
    """``feeds.toml``: the reader's local and subscribed feeds, by name."""

    path: Path
    feeds: list[FeedEntry] = field(default_factory=list)

    @classmethod
    def load(cls, home: Path) -> FeedsConfig:
        path = home / FILENAME
        if not path.exists():
            return cls(path=path)
        doc = read_toml(path, "valid TOML")
        raw = doc.get("feeds", [])
        if not isinstance(raw, list) or set(doc) - {"feeds"}:
            raise FeedLoadError(f"{path}: only [[feeds]] tables are expected")
        out = cls(
            path=path, feeds=[_entry_from(r, f"{path}: feeds[{i}]") for i, r in enumerate(raw)]
        )
        names = [f.name for f in out.feeds]
        if len(set(names)) != len(names):
            raise FeedLoadError(f"{path}: two feeds have the same name")
        return out

    def save(self) -> None:
        doc = {"feeds": [f.to_toml() for f in self.feeds]}
        header = (
            b"# Murmur feeds: local ones run here, subscribed ones on a node (spec 0007 #feeds).\n"
        )
        with translate_os_errors(f"write {self.path}"):
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(self.path, header + tomli_w.dumps(doc).encode("utf-8"), mode=0o600)

    def find(self, name: str) -> FeedEntry:
        for f in self.feeds:
            if f.name == name:
                return f
        known = ", ".join(f.name for f in self.feeds) or "none added"
        raise FeedNotFoundError(f"no feed named {name!r} ({known}; see: murmur feeds list)")

    def add(self, entry: FeedEntry) -> None:
        check_feed_name(entry.name)
        if any(f.name == entry.name for f in self.feeds):
            raise FeedLoadError(
                f"a feed named {entry.name!r} exists; remove it or pick another name"
            )
        self.feeds.append(entry)

    def remove(self, name: str) -> FeedEntry:
        entry = self.find(name)
        self.feeds.remove(entry)
        return entry
