"""Who follows an identity, from verified follow events merged from every node (spec
0007 #followers).

A node's ``GET /v1/followers/{did}`` lists the follow events it holds of ``did``'s
current followers; the client believes none of it. Each event is verified (signature,
key state) and must be a ``follow`` of ``did``; then the follower's own
``follow``/``unfollow`` events are read from every node's feed and the latest of them
about ``did`` (highest ``seq``, then greatest id: spec 0003 §3.6; deleted ones do not
count) must be that very event. A stale follow (unfollowed since, or followed again by
a newer event), a forged one or one of someone else is not a follower, and the node
that listed it is reported. The lists of several nodes are merged and paged with one
cursor (:mod:`client.paging`). The nodes' ``stats`` figures are kept as they said them:
what those nodes hold, not a global truth (spec 0004 #counts-local).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from client.api import NodeClient, WireItem
from client.paging import Judge, MergedCursor, MergedList, Outcome, node_key
from client.reader import MAX_FEED_PAGES, PAGE, Reader, latest_by_seq
from client.views import follow_set
from protocol import kinds
from protocol.errors import RemoteError
from protocol.events import Event

__all__ = [
    "MAX_STATS_FOLLOWERS",
    "FollowCheck",
    "FollowersPage",
    "SocialStats",
    "followers_list",
    "followers_page",
    "social_stats",
]

#: Followers verified one by one for a profile's count; beyond, the nodes' figure.
MAX_STATS_FOLLOWERS = 200
#: Merged pages read for a profile's count (a bound whatever the nodes answer).
_STATS_ROUNDS = 10
#: Followers whose follow events are asked in one feed query.
_FEED_CHUNK = 100


def followers_list(did: str) -> str:
    """The cursor list name of ``did``'s followers (a cursor of one did's followers is
    refused for another's)."""
    return "followers:" + node_key(did)


class FollowCheck:
    """Is a verified follow event its author's current follow of the subject?

    Reads each author's follow/unfollow events once per read (every node's feed, at
    most ``MAX_FEED_PAGES`` pages of ``PAGE``, newest first).
    """

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self._read: set[str] = set()

    async def current(self, follows: Sequence[Event]) -> set[bytes]:
        """The ids of ``follows`` that are their author's latest follow/unfollow of
        their subject."""
        authors = sorted({e.author for e in follows} - self._read)
        for i in range(0, len(authors), _FEED_CHUNK):
            chunk = authors[i : i + _FEED_CHUNK]
            await self.reader.fetch_feed(
                authors=chunk,
                kinds_=[kinds.FOLLOW, kinds.UNFOLLOW],
                limit=PAGE,
                max_pages=MAX_FEED_PAGES,
            )
            self._read.update(chunk)
        deleted = self.reader.deleted_ids()
        out: set[bytes] = set()
        for e in follows:
            if e.kind != kinds.FOLLOW or e.body is None or e.id not in self.reader.events:
                continue
            subject = e.body.get("subject")
            latest = latest_by_seq(
                x
                for x in self.reader.of_author(e.author)
                if x.kind in (kinds.FOLLOW, kinds.UNFOLLOW)
                and x.body is not None
                and x.body.get("subject") == subject
                and x.id not in deleted
            )
            if latest is not None and latest.id == e.id:
                out.add(e.id)
        return out


def report_unexpected(reader: Reader, urls: Iterable[str], e: Event, why: str) -> None:
    """``e`` verified but is not what the node's list claims: listed under each node
    that served it as ``unexpected-event`` (spec 0007 #verify)."""
    for url in sorted(urls):
        reader.report.node(url).invalid.append(
            {"id": e.id_hex, "code": "unexpected-event", "message": why}
        )


@dataclass(slots=True)
class FollowersPage:
    """One merged page of followers: their current follow events, newest first."""

    did: str
    shown: list[Event]
    hidden: list[Event]
    next: MergedCursor | None
    #: Each answering node's ``stats`` figures (spec 0004 #author-stats), by url.
    node_stats: dict[str, dict[str, int | None]] = field(default_factory=dict)

    def node_figure(self, key: str) -> int | None:
        """The largest figure the nodes gave for ``key`` (spec 0004 #counts-local)."""
        values = [v for s in self.node_stats.values() if isinstance(v := s.get(key), int)]
        return max(values) if values else None


async def followers_page(
    reader: Reader,
    did: str,
    *,
    limit: int,
    cursor: MergedCursor | None = None,
    moderate: Judge | None = None,
    check: FollowCheck | None = None,
    missing_ok: bool = False,
) -> FollowersPage:
    """The next ``limit`` verified current followers of ``did`` after ``cursor``.

    ``moderate`` (the reader's filters) is given the verified follow events and says
    which are hidden; a skip there counts as hidden too. ``missing_ok``: a node
    without the endpoint (404, 405: an older node) lists no one instead of failing.
    """
    check = check or FollowCheck(reader)
    node_stats: dict[str, dict[str, int | None]] = {}

    async def fetch(
        node: NodeClient, before: str | None, size: int
    ) -> tuple[list[WireItem], str | None]:
        try:
            items, figures, nxt = await node.followers(did, before=before, limit=size)
        except RemoteError as exc:
            if missing_ok and exc.status in (404, 405):
                return [], None
            raise
        node_stats.setdefault(node.url, figures)
        return items, nxt

    def accept(e: Event) -> bool:
        return e.kind == kinds.FOLLOW

    lst = MergedList(reader, followers_list(did), fetch, accept, cursor=cursor, page=PAGE)
    authors: set[str] = set()

    async def judge(batch: list[Event]) -> list[Outcome]:
        current = await check.current([e for e in batch if _follows(e, did)])
        outcomes: list[Outcome] = []
        good: list[Event] = []
        for e in batch:
            served = lst.served_by.get(e.id, set())
            if not _follows(e, did):
                report_unexpected(reader, served, e, f"not a follow of {did}")
            elif e.id not in current:
                report_unexpected(reader, served, e, "not the follower's current follow")
            elif e.author not in authors and e.author != did:
                authors.add(e.author)
                good.append(e)
        hidden = set()
        if moderate is not None and good:
            verdicts = await moderate(good)
            hidden = {e.id for e, o in zip(good, verdicts, strict=True) if o is not Outcome.SHOW}
        kept = {e.id for e in good}
        for e in batch:
            if e.id not in kept:
                outcomes.append(Outcome.SKIP)
            else:
                outcomes.append(Outcome.HIDE if e.id in hidden else Outcome.SHOW)
        return outcomes

    paged = await lst.page(limit, judge)
    return FollowersPage(
        did=did,
        shown=paged.shown,
        hidden=paged.hidden,
        next=paged.next,
        node_stats=node_stats,
    )


def _follows(e: Event, did: str) -> bool:
    return e.kind == kinds.FOLLOW and e.body is not None and e.body.get("subject") == did


@dataclass(frozen=True, slots=True, kw_only=True)
class SocialStats:
    """A profile's figures: followers verified one by one (``followers_complete``
    when every node's list was read, else at least that many) and the nodes' largest
    figure; following from the did's own verified follow events."""

    followers: int
    followers_complete: bool
    nodes_followers: int | None
    following: int
    first_ts: int | None

    def summary(self) -> str:
        """One line for people: ``followers: 3 · following: 5``."""
        followers = str(self.followers)
        if not self.followers_complete:
            followers = f"{self.followers}+ verified"
            if self.nodes_followers is not None:
                followers += f" (your nodes count {self.nodes_followers})"
        return f"followers: {followers} · following: {self.following}"

    def to_json(self) -> dict[str, object]:
        return {
            "followers": self.followers,
            "followers_complete": self.followers_complete,
            "nodes_followers": self.nodes_followers,
            "following": self.following,
            "first_ts": self.first_ts,
        }


async def social_stats(
    reader: Reader, did: str, *, max_followers: int = MAX_STATS_FOLLOWERS
) -> SocialStats:
    """``did``'s follower and following counts (spec 0007 #followers)."""
    following = await follow_set(reader, did, mark=False)
    check = FollowCheck(reader)
    count, cursor, complete = 0, None, False
    stats: dict[str, dict[str, int | None]] = {}
    for _ in range(_STATS_ROUNDS):
        if count >= max_followers:
            break
        page = await followers_page(
            reader,
            did,
            limit=min(PAGE, max_followers - count),
            cursor=cursor,
            check=check,
            missing_ok=True,
        )
        for url, figures in page.node_stats.items():
            stats.setdefault(url, figures)
        count += len(page.shown)
        cursor = page.next
        if cursor is None:
            complete = True
            break
    merged = FollowersPage(did=did, shown=[], hidden=[], next=None, node_stats=stats)
    first = [v for s in stats.values() if isinstance(v := s.get("first_ts"), int)]
    return SocialStats(
        followers=count,
        followers_complete=complete,
        nodes_followers=merged.node_figure("followers"),
        following=len(following),
        first_ts=min(first) if first else None,
    )
