"""``--seed-demo``: a small, believable conversation on a fresh devnet.

The demo is a script of the client library's actions (:mod:`client.actions`, the
identities and settings modules) run against the client home ``DIR/client`` — what the
``murmur`` commands the user is told to try next do, with nothing published by a
second code path. Like every face, it never imports the CLI.

Alice, bob and carol publish profiles, follow each other, post and reply, each on a
different node (alice on node 1, bob on node 2, carol on the last); alice likes a post;
carol self-labels a spoiler; the labeler identity ``mod`` labels carol's joke
``satire`` and alice subscribes to it (satire shows as a badge); alice announces the
feed ``hot`` every devnet node serves (a signed ``feed`` event) and her home subscribes
to it (``murmur feed hot``). Before a reply or a
like is signed, the post it points to must have reached the node it is sent to; at the
end every event must be on every node (deadline loops on ``GET /v1/events?ids=``).

The demo identities' keys are stored unencrypted (``--no-encrypt``), as throwaway dev
keys, and the seeding report says so. Alice, bob and carol are rotatable (did:murmur,
the default of ``murmur id new``), with their recovery keys in ``DIR/recovery``; the
labeler ``mod`` is a did:key. Running it again in the same directory reuses the
identities; when the events it
recorded in ``DIR/client/devnet-demo.json`` are still on the nodes it publishes
nothing new.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx

from client import actions
from client.actions import Done, Draft
from client.config import ClientConfig
from client.devnet.plan import DEVNET_FEEDS, DevnetError
from client.feeds.config import FeedsConfig, SubscribedFeed
from client.files import atomic_write
from client.identities import new_rotatable, send_outbox
from client.keyops import write_recovery_files
from client.keystore import Keystore
from client.moderation.settings import subscribe_labeler
from client.session import Session
from protocol import kinds
from protocol.limits import MAX_FEED_NODES

__all__ = [
    "DEMO_PEOPLE",
    "DID_KEY_PEOPLE",
    "FEDERATION_DEADLINE_S",
    "MARKER",
    "SeedReport",
    "recovery_dir",
    "seed_demo",
]

T = TypeVar("T")

log = logging.getLogger("murmur.devnet.seed")

#: (identity name, display name, bio). Alice comes first: she is the home's default.
DEMO_PEOPLE: tuple[tuple[str, str, str], ...] = (
    ("alice", "Alice", "Curious about everything"),
    ("bob", "Bob", "Runs a node on a Raspberry Pi"),
    ("carol", "Carol", "Writes jokes, mostly"),
    ("mod", "Satire Watch", "A labeler: I label satire so that you can choose"),
)
#: Demo identities made as a did:key: the labeler (spec 0008 #clients).
DID_KEY_PEOPLE = frozenset({"mod"})
#: Written in the client home once the demo is on every node.
MARKER = "devnet-demo.json"
#: The feed the demo announces (every devnet node serves it) and alice subscribes to.
DEMO_FEED = DEVNET_FEEDS[0][0]
DEMO_FEED_DESCRIPTION = "What's hot on the devnet: most liked and reposted today"
#: How long an event may take to reach a node (live replication is sub-second).
FEDERATION_DEADLINE_S = 30.0
_POLL_S = 0.1
_IDS_PER_REQUEST = 100  # GET /v1/events?ids= takes at most 100


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedReport:
    """What the seeding did."""

    home: Path
    created: tuple[str, ...]
    reused: tuple[str, ...]
    events: dict[str, str]  # what -> event id (hex)
    already_seeded: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "home": str(self.home),
            "created": list(self.created),
            "reused": list(self.reused),
            "events": dict(self.events),
            "already_seeded": self.already_seeded,
        }


class _Acts:
    """The demo's actions in ``home``: as a demo identity, through one node."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def session(self, *, node: str | None = None, as_name: str | None = None) -> Session:
        return Session(
            home=self.home,
            as_name=as_name,
            nodes=(node,) if node else (),
            settings_once=True,
        )

    def __call__(
        self,
        what: str,
        act: Callable[[Session], Coroutine[Any, Any, T]],
        *,
        node: str,
        as_name: str,
    ) -> T:
        out = asyncio.run(act(self.session(node=node, as_name=as_name)))
        log.info("seed: %s as=%s node=%s", what, as_name, node)
        return out


class _Waiter:
    """Deadline loops until nodes hold events; gives up early when ``cancelled`` is set."""

    def __init__(self, cancelled: threading.Event | None, deadline_s: float) -> None:
        self.cancelled = cancelled or threading.Event()
        self.deadline_s = deadline_s

    @staticmethod
    def missing(http: httpx.Client, url: str, ids: Sequence[str]) -> list[str]:
        """The ``ids`` that ``url`` does not hold (all of them when it does not answer)."""
        out: list[str] = []
        for i in range(0, len(ids), _IDS_PER_REQUEST):
            chunk = list(ids[i : i + _IDS_PER_REQUEST])
            try:
                response = http.get(url + "/v1/events", params={"ids": ",".join(chunk)})
                doc = response.json() if response.status_code == 200 else {}
            except (httpx.HTTPError, ValueError):
                doc = {}
            got = doc.get("missing") if isinstance(doc, dict) else None
            out += [str(x) for x in got] if isinstance(got, list) else chunk
        return out

    def held(self, urls: Sequence[str], ids: Sequence[str], why: str) -> None:
        end = time.monotonic() + self.deadline_s
        with httpx.Client(timeout=2.0, follow_redirects=False) as http:
            while True:
                lacking = {u: m for u in urls if (m := self.missing(http, u, ids))}
                if not lacking:
                    return
                if self.cancelled.is_set():
                    raise DevnetError("demo seeding stopped: the devnet is shutting down")
                if time.monotonic() >= end:
                    detail = "; ".join(f"{u} lacks {len(m)}" for u, m in lacking.items())
                    raise DevnetError(
                        f"{why}: events did not reach every node within {self.deadline_s:g} s "
                        f"({detail}); see murmur devnet status and the node logs"
                    )
                self.cancelled.wait(_POLL_S)  # poll interval of a deadline loop


def _configure_nodes(home: Path, urls: Sequence[str]) -> None:
    """The home's node set becomes exactly the devnet's nodes (``murmur nodes add``)."""
    config = ClientConfig.load(home)
    for url in urls:
        config.add_node(url)
    for stale in [u for u in config.nodes if u not in urls]:
        config.remove_node(stale)
    config.save()


def _new_identity(acts: _Acts, name: str) -> None:
    """``murmur id new NAME --no-encrypt`` (``--did-key`` for the labeler; the people's
    recovery keys written in DIR/recovery), the genesis sent to every node."""
    store = Keystore(acts.home)
    if name in DID_KEY_PEOPLE:
        store.create(name, seed=None, passphrase=None)
        return
    session = acts.session()
    made, _ = new_rotatable(
        store,
        name,
        passphrase=lambda: None,
        show=lambda p: write_recovery_files(p.did, p.recovery, recovery_dir(acts.home)),
        net=session.net(),
    )

    async def send() -> None:
        async with session.nodes_open() as nodes:
            await send_outbox(
                store, made.stored, nodes, net=session.net(), node_timeout=session.timeout()
            )

    asyncio.run(send())
    log.info("seed: id new %s did=%s", name, made.stored.did)


def _recorded(home: Path) -> dict[str, str]:
    try:
        doc = json.loads((home / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    events = doc.get("events") if isinstance(doc, dict) else None
    if not isinstance(events, dict) or not all(isinstance(v, str) for v in events.values()):
        return {}
    return {str(k): v for k, v in events.items()}


def _publish(acts: _Acts, wait: _Waiter, urls: Sequence[str]) -> dict[str, str]:
    n1, n2, last = urls[0], urls[min(1, len(urls) - 1)], urls[-1]
    home_of = {"alice": n1, "bob": n2, "carol": last, "mod": n2}
    ev: dict[str, str] = {}

    def pub(key: str, who: str, act: Callable[[Session], Coroutine[Any, Any, Any]]) -> str:
        done = acts(key, act, node=home_of[who], as_name=who)
        if not isinstance(done, Done):  # pragma: no cover - a fresh devnet holds none
            raise DevnetError(f"demo: {key} stood already ({done.reason})")
        ev[key] = done.event.id_hex
        return ev[key]

    def say(text: str, **draft: Any) -> Callable[[Session], Coroutine[Any, Any, Done]]:
        return lambda s: actions.post(s, Draft.parse(text, **draft))

    for name, display, bio in DEMO_PEOPLE:
        pub(f"profile:{name}", name, partial(actions.set_profile, name=display, bio=bio))
    for who, whom in (("alice", "bob"), ("alice", "carol"), ("bob", "alice"), ("carol", "alice")):
        pub(f"follow:{who}->{whom}", who, partial(actions.follow, who=whom, alias=whom))

    hello = pub("post:alice", "alice", say("Hello from node 1! Is anyone out there?"))
    bob_post = pub("post:bob", "bob", say("Bob here, writing to node 2. Signed, so you can check."))
    joke = pub(
        "post:carol-satire", "carol", say("BREAKING: local node reaches consensus with itself")
    )
    pub("post:carol-spoiler", "carol", say("The butler did it.", warn=["spoiler"]))

    wait.held([n2], [hello], "before bob replies to alice")
    pub("reply:bob", "bob", say("Hi Alice! Your post reached node 2.", reply_to=hello))
    wait.held([last], [hello], "before carol replies to alice")
    pub("reply:carol", "carol", say("And the last node, too.", reply_to=hello))
    wait.held([n1], [bob_post], "before alice likes bob's post")
    pub("like:alice", "alice", lambda s: actions.act_on(s, kinds.LIKE, bytes.fromhex(bob_post)))
    pub("label:mod", "mod", lambda s: actions.label(s, bytes.fromhex(joke), "satire"))
    # Every devnet node serves 'hot' (DEVNET_FEEDS); alice, who runs the devnet, says so.
    pub("feed:hot", "alice", partial(
        actions.announce_feed, name=DEMO_FEED, nodes=urls[:MAX_FEED_NODES],
        description=DEMO_FEED_DESCRIPTION,
    ))  # fmt: skip
    return ev


def _subscribe_feed(home: Path, author: str, event: str, urls: Sequence[str]) -> None:
    """Alice's home subscribes to the demo's announced feed (``murmur feed hot``)."""
    config = FeedsConfig.load(home)
    if any(entry.name == DEMO_FEED for entry in config.feeds):
        return
    config.add(
        SubscribedFeed(
            name=DEMO_FEED, author=author, feed=DEMO_FEED, nodes=list(urls[:MAX_FEED_NODES]),
            description=DEMO_FEED_DESCRIPTION, event=event,
        )
    )  # fmt: skip
    config.save()


def recovery_dir(home: Path) -> Path:
    """Where the demo writes its people's recovery keys: beside the client home, never in
    it (spec 0007 #rotatable-keys); a real user keeps them offline."""
    return home.parent / "recovery"


def seed_demo(
    home: Path,
    urls: Sequence[str],
    *,
    cancelled: threading.Event | None = None,
    deadline_s: float = FEDERATION_DEADLINE_S,
) -> SeedReport:
    """Seed the demo into the devnet at ``urls`` as the identities of ``home``."""
    if not urls:
        raise DevnetError("no node to seed")
    home = home.expanduser().absolute()
    acts = _Acts(home)
    wait = _Waiter(cancelled, deadline_s)
    _configure_nodes(home, urls)

    keystore = Keystore(home)
    created: list[str] = []
    reused: list[str] = []
    for name, _, _ in DEMO_PEOPLE:
        if keystore.exists(name):
            reused.append(name)
        else:
            # Demo identities on a local devnet: unencrypted on purpose, so the demo and
            # the commands it suggests run without a passphrase (spec 0007 #keys-at-rest).
            # People are rotatable (the default), their recovery keys in DIR/recovery so
            # 'murmur id recover' can be tried; the labeler stays a did:key
            # ('labeler run' does not run as a did:murmur yet).
            _new_identity(acts, name)
            created.append(name)

    config = ClientConfig.load(home)
    if config.petnames.get("mod") is None:  # so labels read "@mod", not a did
        config.set_petname("mod", keystore.get("mod").did)
        config.save()

    events = _recorded(home)
    with httpx.Client(timeout=2.0, follow_redirects=False) as http:
        already = bool(events) and not _Waiter.missing(http, urls[0], list(events.values()))
    if not already:
        events = _publish(acts, wait, urls)
    subscribe_labeler(home, keystore.get("mod").did, {"satire": "badge"})  # as alice
    if "feed:hot" in events:
        _subscribe_feed(home, keystore.get("alice").did, events["feed:hot"], urls)
    wait.held(urls, list(events.values()), "the demo")
    doc = {"events": events, "nodes": list(urls), "seeded_ms": time.time_ns() // 1_000_000}
    atomic_write(home / MARKER, json.dumps(doc, indent=2).encode() + b"\n", mode=0o600)
    return SeedReport(
        home=home,
        created=tuple(created),
        reused=tuple(reused),
        events=events,
        already_seeded=already,
    )
