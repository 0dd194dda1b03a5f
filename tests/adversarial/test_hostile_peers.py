"""Hostile peers against a real node process, and hostile nodes against the client.

Spec 0005 §peers (scores), §outbound (addresses, time, size, redirects, content) and
§anti-entropy (fetch checks). The in-process tests (``tests/node/test_federation.py``,
``test_outbound.py``) check each rule on its own; here one real ``python -m node run``
process is attacked by a swarm of fake peers at once, each misbehaving on one endpoint
(``/v1/info``, ``/v1/stream``, ``/v1/sync``, ``/v1/events?ids=``, ``/v1/peers``) in one
way: garbage bytes, an HTML page, the wrong content type, an endless body, a body
trickled at a byte a second, a redirect to the metadata service, to CGNAT space or to
an IPv4-mapped loopback listener, forged or unrequested events. Three well-behaved
controls run beside them: a plain peer, one that redirects within its own origin, and
one configured at ``[::ffff:127.0.0.1]`` — which proves that this node (it runs with
``--allow-private-peers``, as it must to reach fakes on loopback) *can* reach such an
address, so that the redirect canary staying silent means the redirect was refused by
the same-origin rule, not that the address was unreachable.

While the swarm attacks, the test keeps reading from the node: it must stay healthy
and quick, its memory bounded, and it must end up holding exactly the controls'
events. Then each attack is checked on the node's ``GET /v1/peers``: the peer's
``last_error`` or ``last_sync.error`` names the failure and its score went down.

The client half: a reader configured with an honest real node and a hostile fake node
(garbage, HTML, trickle, endless body, cross-origin redirect, or a liar serving forged
and foreign events while withholding) still shows the verified chain, within its
timeout, and reports what the hostile node did.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from client.api import NodeClient
from client.reader import Reader
from client.views import author_view
from protocol.events import Event
from tests.adversarial.hostile import (
    MSGPACK,
    SSE,
    Attack,
    Canary,
    HostileNode,
    HostilePeer,
    LoopThread,
    broken_signature,
    endless,
    forged_events,
    garbage,
    html,
    peak_rss_mib,
    posts,
    redirect,
    rss_mib,
    same_origin_redirect,
    trickle,
    wrong_type,
)
from tests.e2e.fedproc import GENEROUS_LIMITS, peers, wait_until, write_config
from tests.e2e.nodeproc import NodeProcess
from tests.node.fed_fixtures import sse_event

pytestmark = pytest.mark.e2e

#: Federation timings of the attacked node: every attempt ends within
#: TOTAL_TIMEOUT_S; reconnects are quick; anti-entropy runs every second and gossip
#: every half second, so each attack is met several times in a few seconds. The
#: read timeout is long: the fakes' honest streams are idle (no heartbeats).
TOTAL_TIMEOUT_S = 2.0
FEDERATION: dict[str, Any] = {
    "backoff_min_ms": 200,
    "backoff_max_ms": 1000,
    "sync_interval_ms": 1000,
    "gossip_interval_ms": 500,
    "connect_timeout_ms": 1000,
    "read_timeout_ms": 20_000,
    "total_timeout_ms": int(TOTAL_TIMEOUT_S * 1000),
}
#: The longest the attack phase may last before the test fails: a hang guard, ~7x the
#: 6 s it takes on an idle machine, and short of the fakes' HOLD_S (60 s), so a node
#: that never cut a trickle fails here rather than waiting the fakes out.
ATTACK_DEADLINE_S = 40.0
#: Reads the node serves during the attack must all be answered. How quick they are
#: is printed, not asserted: a busy machine stretches it (issue #14, finding 9). A read
#: still unanswered after READ_HANG_S fails the test as a hung node: ~100x a read's
#: usual time here (tens of ms), above any plausible scheduling delay.
READ_HANG_S = 10.0
#: Peak resident memory of the attacked node. Unbounded buffering of the endless
#: bodies (which arrive at loopback speed) would pass this within a second or two.
RSS_BOUND_MIB = 200.0

METADATA = "http://169.254.169.254/latest/meta-data/"
CGNAT = "http://100.64.0.1/v1/info"


# -- the swarm ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    """One fake peer: its attacks, what it holds, and what the node should report."""

    name: str
    attacks: Callable[[int], dict[str, Attack]]  # canary port -> attacks
    #: ``last_error`` (probe/stream failures) or ``last_sync.error`` (sync failures).
    error: str | None = None
    error_field: str = "last_error"
    #: Valid events it holds (so anti-entropy would want them), and stream chunks.
    events: int = 0
    forged_stream: int = 0
    #: The endpoint whose attempts must be met ``calls`` times before checking.
    endpoint: str = ""
    calls: int = 2
    #: True when its attacks must lower its score below zero.
    negative: bool = True
    #: The endpoint it trickles (each attempt's duration is checked), if any.
    trickles: str = ""
    #: Its stream opens (status and type fine) before it misbehaves.
    opens: bool = False
    #: Another error that is as good: an endless body is cut at the size cap, or, when
    #: a busy machine cannot send it that fast, at the total timeout; both bound it.
    or_error: str | None = None


def _always(**attacks: Attack) -> Callable[[int], dict[str, Attack]]:
    return lambda port: dict(attacks)


def _to_canary(endpoint: str) -> Callable[[int], dict[str, Attack]]:
    path = {"info": "/v1/info", "stream": "/v1/stream", "sync": "/v1/sync"}.get(
        endpoint, f"/v1/{endpoint}"
    )
    return lambda port: {endpoint: redirect(f"http://[::ffff:127.0.0.1]:{port}{path}")}


BAD = "peer-bad-response"
TIMEOUT = "peer-timeout"
JSON = "application/json"
OCTETS = "application/octet-stream"

CASES: list[Case] = [
    # /v1/info: the probe fails; nothing else is ever asked of the peer.
    Case("info-garbage", _always(info=garbage(JSON)), BAD, endpoint="info"),
    Case("info-html", _always(info=html()), BAD, endpoint="info"),
    Case("info-wrong-type", _always(info=wrong_type()), BAD, endpoint="info"),
    Case("info-endless", _always(info=endless(JSON)), BAD, endpoint="info", or_error=TIMEOUT),
    Case(
        "info-trickle",
        _always(info=trickle(JSON, b'{"network"')),
        TIMEOUT,
        endpoint="info",
        trickles="info",
    ),
    Case("info-redirect-metadata", _always(info=redirect(METADATA)), BAD, endpoint="info"),
    Case("info-redirect-cgnat", _always(info=redirect(CGNAT)), BAD, endpoint="info"),
    Case("info-redirect-mapped", _to_canary("info"), BAD, endpoint="info"),
    # /v1/stream: the probe succeeds, the stream is refused, the peer backs off.
    # Garbage after a good opening: see test_stream_failing_after_opening_backs_off.
    Case("stream-garbage", _always(stream=garbage(SSE)), BAD, endpoint="stream", opens=True),
    Case("stream-html", _always(stream=html()), BAD, endpoint="stream"),
    Case("stream-wrong-type", _always(stream=wrong_type(JSON)), BAD, endpoint="stream"),
    Case("stream-redirect-mapped", _to_canary("stream"), BAD, endpoint="stream"),
    Case("stream-forged", _always(), forged_stream=10),
    Case(
        "stream-trickle",
        _always(stream=trickle(SSE, b"data: ")),
        endpoint="stream",
        calls=1,
        negative=False,
    ),
    # /v1/sync: live stream, every anti-entropy run fails; nothing is fetched.
    Case("sync-garbage", _always(sync=garbage(OCTETS)), BAD, "last_sync", 3, endpoint="sync"),
    Case("sync-html", _always(sync=html()), BAD, "last_sync", 3, endpoint="sync"),
    Case(
        "sync-endless",
        _always(sync=endless(OCTETS)),
        BAD,
        "last_sync",
        3,
        endpoint="sync",
        or_error=TIMEOUT,
    ),
    Case(
        "sync-trickle",
        _always(sync=trickle(OCTETS)),
        TIMEOUT,
        "last_sync",
        3,
        endpoint="sync",
        trickles="sync",
    ),
    Case(
        "sync-redirect-metadata",
        _always(sync=redirect(METADATA)),
        BAD,
        "last_sync",
        3,
        endpoint="sync",
    ),
    # GET /v1/events?ids=: reconciliation works, the fetch answer is refused.
    Case(
        "events-garbage",
        _always(events=garbage(MSGPACK)),
        BAD,
        "last_sync",
        3,
        endpoint="events",
    ),
    Case("events-html", _always(events=html()), BAD, "last_sync", 3, endpoint="events"),
    Case(
        "events-wrong-type",
        _always(events=wrong_type(JSON)),
        BAD,
        "last_sync",
        3,
        endpoint="events",
    ),
    Case(
        "events-trickle",
        _always(events=trickle(MSGPACK)),
        TIMEOUT,
        "last_sync",
        3,
        endpoint="events",
        trickles="events",
    ),
    Case("events-redirect-mapped", _to_canary("events"), BAD, "last_sync", 3, endpoint="events"),
    Case("events-unrequested", _always(), BAD, "last_sync", 3, endpoint="events"),
    # Forgeries of exactly the ids asked for: rejected once, remembered, never refetched.
    Case("events-forged", _always(events=forged_events()), None, "last_sync", 3, negative=False),
    # GET /v1/peers (gossip): the answer is ignored; the peer otherwise works.
    Case("peers-garbage", _always(peers=garbage(JSON)), endpoint="peers"),
    Case("peers-html", _always(peers=html()), endpoint="peers", negative=False),
    Case(
        "peers-trickle",
        _always(peers=trickle(JSON)),
        endpoint="peers",
        negative=False,
        trickles="peers",
    ),
    Case("peers-redirect-mapped", _to_canary("peers"), endpoint="peers", negative=False),
]
#: Well-behaved peers beside the attackers (3 valid events each): a plain one, one
#: redirecting within its origin, one configured at an IPv4-mapped loopback address.
CONTROLS = ("honest", "same-origin-redirect", "mapped-address")


@dataclass
class Swarm:
    """The attacked node, its fakes, and what was observed during the attack."""

    node: NodeProcess
    fakes: dict[str, HostilePeer]
    urls: dict[str, str]
    events: dict[str, list[Event]]
    canary: Canary
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    stored: set[str] = field(default_factory=set)
    read_s: list[float] = field(default_factory=list)
    peak_rss_mib: float = 0.0
    attack_s: float = 0.0
    #: Seconds into the attack at which each condition of :func:`_met` first held.
    met_at: dict[str, float] = field(default_factory=dict)
    #: The highest consecutive-failure count seen in each peer's entry during the attack.
    max_failures: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def entry(self, name: str) -> dict[str, Any]:
        return self.entries[self.urls[name]]


def _working(entry: dict[str, Any]) -> bool:
    """A peer whose stream side works: live, or between two streams (the fakes end
    an idle stream after 15 s and are reconnected to)."""
    return entry["state"] in ("live", "backoff", "connecting") and entry["last_error"] is None


def _read(url: str) -> list[float]:
    """One round of reads a client would make (each must succeed); their seconds."""
    took: list[float] = []
    for path in ("/health", "/v1/info", "/v1/feed?limit=50"):
        start = time.monotonic()
        response = httpx.get(url + path, timeout=READ_HANG_S)
        took.append(time.monotonic() - start)
        assert response.status_code == 200, (path, response.status_code, response.text)
    return took


def _stored_ids(url: str) -> set[str]:
    doc = httpx.get(url + "/v1/feed", params={"limit": "500"}, timeout=10).json()
    return {ev["id"] for ev in doc["events"]}


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:
    root = tmp_path_factory.mktemp("hostile-peers")
    loop = LoopThread()
    fakes: dict[str, HostilePeer] = {}
    node: NodeProcess | None = None
    canary = loop.run(Canary().start())
    try:
        events: dict[str, list[Event]] = {}
        seeds = iter(range(9100, 9200))
        for i, name in enumerate([*CONTROLS, *(c.name for c in CASES)]):
            case = next((c for c in CASES if c.name == name), None)
            held = 3 if name in CONTROLS else (case.events if case else 0)
            evs = posts(next(seeds), held, f"{name} ") if held else []
            events[name] = evs
            kwargs: dict[str, Any] = {"node_id": f"{i + 1:032x}", "wires": [e.wire for e in evs]}
            attacks: dict[str, Attack] = {}
            if name == "same-origin-redirect":
                attacks = {"info": same_origin_redirect(), "sync": same_origin_redirect()}
            elif case is not None:
                attacks = case.attacks(canary.port)
                if case.forged_stream:
                    forged = posts(next(seeds), case.forged_stream, "forged ")
                    kwargs["stream"] = [
                        sse_event(n + 1, _b64(broken_signature(e.wire)))
                        for n, e in enumerate(forged)
                    ]
                    kwargs["gap_s"] = 0.3
                if name == "events-unrequested":
                    kwargs["extra_events"] = [posts(next(seeds), 1, "unasked ")[0].wire]
            fakes[name] = HostilePeer(attacks=attacks, **kwargs)
            loop.run(fakes[name].start())
        urls = {name: fake.url for name, fake in fakes.items()}
        port = urls["mapped-address"].rsplit(":", 1)[1]
        urls["mapped-address"] = f"http://[::ffff:127.0.0.1]:{port}"

        config = write_config(root / "node.toml", limits=GENEROUS_LIMITS, federation=FEDERATION)
        args = ["--allow-private-peers", "--config", str(config), "--log-level", "info"]
        for url in urls.values():
            args += ["--peer", url]
        node = NodeProcess(root / "node", *args)
        swarm = Swarm(node=node, fakes=fakes, urls=urls, events=events, canary=canary)
        _attack(swarm)
        yield swarm
    finally:
        if node is not None:
            node.stop()
        for fake in fakes.values():
            loop.run(fake.close())
        loop.run(canary.close())
        loop.close()


def _b64(wire: bytes) -> str:
    return base64.b64encode(wire).decode()


def _met(swarm: Swarm) -> bool:
    """Every control's events are stored, every attack was met at least twice (each
    trickle cut twice), and the forged stream was taken in."""
    expected = {e.id_hex for name in CONTROLS for e in swarm.events[name]}
    entries = {e["url"]: e for e in peers(swarm.node.url)}
    for name, url in swarm.urls.items():
        failures = entries[url]["failures"]
        swarm.max_failures[name] = max(swarm.max_failures.get(name, 0), failures)
    conditions = {"controls": expected <= _stored_ids(swarm.node.url)}
    for case in CASES:
        fake = swarm.fakes[case.name]
        ok = True
        if case.endpoint:
            ok = fake.calls[case.endpoint] >= case.calls
        if case.trickles:
            ok = ok and len(fake.durations(case.trickles)) >= 2
        if case.forged_stream:
            ok = ok and entries[swarm.urls[case.name]]["events_rejected"] >= 2
        conditions[case.name] = ok
    now = time.monotonic() - swarm.started
    for name, ok in conditions.items():
        if ok:
            swarm.met_at.setdefault(name, now)
    return all(conditions.values())


def _attack(swarm: Swarm) -> None:
    """Let the swarm attack until every attack was met; read from the node all along."""
    url, pid = swarm.node.url, swarm.node.proc.pid
    start = swarm.started = time.monotonic()

    def done() -> bool:
        swarm.read_s += _read(url)
        return _met(swarm)

    wait_until(done, ATTACK_DEADLINE_S, "every attack met", logs=swarm.node.more_log)
    swarm.attack_s = time.monotonic() - start
    swarm.entries = {e["url"]: e for e in peers(url)}
    swarm.stored = _stored_ids(url)
    swarm.peak_rss_mib = peak_rss_mib(pid)
    assert swarm.node.proc.poll() is None, "the node died under attack"
    print(
        f"\nhostile swarm: {len(CASES)} attacks + {len(CONTROLS)} controls met in "
        f"{swarm.attack_s:.1f} s; {len(swarm.read_s)} reads, median "
        f"{_median(swarm.read_s) * 1000:.0f} ms, slowest {max(swarm.read_s) * 1000:.0f} ms; "
        f"peak RSS {swarm.peak_rss_mib:.0f} MiB "
        f"(now {rss_mib(pid):.0f}); slowest to meet: {_slowest(swarm.met_at)}"
    )


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _slowest(met_at: dict[str, float]) -> str:
    last = sorted(met_at.items(), key=lambda item: -item[1])[:3]
    return ", ".join(f"{name} {at:.1f} s" for name, at in last)


# -- the node under attack --------------------------------------------------------------


def test_node_stays_healthy_and_bounded(swarm: Swarm) -> None:
    """Every read during the attack was answered (:func:`_read`, each within the
    READ_HANG_S hang guard), and memory stayed bounded."""
    assert len(swarm.read_s) >= 9
    assert swarm.peak_rss_mib < RSS_BOUND_MIB
    _read(swarm.node.url)
    # The endless bodies were really sent (and abandoned at their caps).
    assert swarm.fakes["info-endless"].bytes_sent["info"] >= 64 * 1024
    assert swarm.fakes["sync-endless"].bytes_sent["sync"] >= 1024 * 1024


def test_node_stores_exactly_the_controls_events(swarm: Swarm) -> None:
    expected = {e.id_hex for name in CONTROLS for e in swarm.events[name]}
    assert swarm.stored == expected
    info = httpx.get(swarm.node.url + "/v1/info", timeout=10).json()
    assert info["counts"]["events"] == len(expected)


def test_controls_are_live_and_synced(swarm: Swarm) -> None:
    """The plain peer, the same-origin redirect (followed) and the IPv4-mapped loopback
    address (reachable with private peers allowed) all work. Their scores are not
    checked: on a busy machine an honest fake's answer can time out (every fake shares
    one Python thread with the attackers), which costs -5 without saying anything about
    hostility (issue #14, finding 9); that attacks lower a score is checked per case."""
    for name in CONTROLS:
        entry = swarm.entry(name)
        assert _working(entry) and entry["events_received"] == 3, entry
        assert entry["events_rejected"] == 0, entry
    # The redirecting control was really redirected, and followed, on both endpoints.
    assert swarm.fakes["same-origin-redirect"].hits["/v1/info"] >= 2
    assert swarm.fakes["same-origin-redirect"].hits["/v1/sync"] >= 2


def test_cross_origin_redirects_are_never_followed(swarm: Swarm) -> None:
    """Spec 0005 §outbound: redirects only within the origin. The canary listens on
    127.0.0.1 behind ``[::ffff:127.0.0.1]``, which this node can reach (the
    mapped-address control is live), yet no redirect to it was ever followed."""
    redirected = [c.name for c in CASES if "redirect" in c.name]
    for name in redirected:
        fake = swarm.fakes[name]
        assert sum(fake.hits.values()) >= 2, name
    assert swarm.canary.connections == 0
    log = swarm.node.more_log()
    for name in redirected:
        assert f"url={swarm.urls[name]}/" in log, name
        reasons = re.findall(rf"url={re.escape(swarm.urls[name])}/\S* reason=(.*)", log)
        assert reasons and all(r.startswith("redirect to another origin") for r in reasons), (
            name,
            reasons[:3],
        )
    # Had the node followed the metadata or CGNAT redirect, with private addresses
    # allowed, the attempt would have ended in a connect timeout, not a bad response.
    for name in ("info-redirect-metadata", "info-redirect-cgnat"):
        assert swarm.entry(name)["last_error"] == BAD


@pytest.mark.parametrize("case", [c for c in CASES if c.error], ids=lambda c: c.name)
def test_each_failure_is_reported_and_scored(swarm: Swarm, case: Case) -> None:
    entry = swarm.entry(case.name)
    errors = {case.error, case.or_error} - {None}
    if case.error_field == "last_error":
        if not case.opens:  # (a stream that opened first: see the xfail below)
            assert entry["last_error"] in errors, entry
            assert entry["state"] in ("backoff", "connecting"), entry
    else:
        assert entry["last_sync"] is not None and entry["last_sync"]["error"] in errors, entry
        assert _working(entry), entry  # its stream side is fine
    if case.negative:
        assert entry["score"] < 0, entry
    assert entry["events_received"] == 0, entry


def test_nothing_is_asked_beyond_the_failing_step(swarm: Swarm) -> None:
    """A peer whose probe fails is never streamed from, synced or fetched from; one
    whose stream is refused at opening is not reconciled with (it is not reachable);
    one whose reconciliation fails is never fetched from (nor offered anything)."""
    for case in CASES:
        fake = swarm.fakes[case.name]
        if case.name.startswith("info-"):
            assert fake.hits["/v1/stream"] == fake.hits["/v1/sync"] == 0, case.name
            assert fake.hits["/v1/events"] == fake.hits["/v1/peers"] == 0, case.name
        elif case.name.startswith("stream-") and case.error and not case.opens:
            assert fake.hits["/v1/stream"] >= 2, case.name
            assert fake.hits["/v1/sync"] == fake.hits["/v1/events"] == 0, case.name
        elif case.name.startswith("sync-"):
            assert fake.hits["/v1/sync"] >= 2, case.name
            assert fake.hits["/v1/events"] == 0, case.name


def test_failing_probes_back_off_exponentially(swarm: Swarm) -> None:
    """Spec 0005 §replication: a failing peer is retried after
    ``min(backoff_max, backoff_min * 2^(failures-1))`` x [0.5, 1.5]: here at least 0.1,
    0.2, 0.4 and then 0.5 s apart. Consecutive failures are counted, and the attempts
    stay within that schedule (a busy loop would make hundreds)."""
    first = FEDERATION["backoff_min_ms"] / 1000 * 0.5
    floor = FEDERATION["backoff_max_ms"] / 1000 * 0.5
    allowed = 4 + max(0.0, swarm.attack_s - 7 * first) / floor + 1
    for case in CASES:
        if not case.name.startswith("info-"):
            continue
        assert swarm.max_failures[case.name] >= 2, (case.name, swarm.max_failures[case.name])
        attempts = swarm.fakes[case.name].hits["/v1/info"]
        assert attempts <= allowed, (case.name, attempts, allowed, swarm.attack_s)


def test_stream_failing_after_opening_backs_off(swarm: Swarm) -> None:
    entry = swarm.entry("stream-garbage")
    assert swarm.fakes["stream-garbage"].hits["/v1/stream"] >= 3
    assert swarm.max_failures["stream-garbage"] >= 3, swarm.max_failures["stream-garbage"]
    assert entry["last_error"] == BAD, entry


@pytest.mark.parametrize(
    ("name", "endpoint"),
    [
        ("info-trickle", "info"),
        ("sync-trickle", "sync"),
        ("events-trickle", "events"),
        ("peers-trickle", "peers"),
    ],
)
def test_trickled_answers_are_cut_at_the_total_timeout(
    swarm: Swarm, name: str, endpoint: str
) -> None:
    """Spec 0005 §outbound (time): a body trickled at a byte a second never trips the
    read timeout (20 s here), only the total timeout. What is checked is that the node
    cut each attempt itself, mid-body, and named the total timeout's failure — not how
    many seconds that took, which a busy machine stretches (issue #14, finding 9)."""
    hits = swarm.fakes[name].finished(endpoint)
    assert len(hits) >= 2, hits
    # The node hung up on every attempt, after the body had begun: no attempt ran to
    # the fake's own end (HOLD_S, 30x the total timeout) or to teardown.
    assert all(h.cut_by_node and h.body_bytes >= 1 for h in hits), hits
    # The cut was a timeout, not an early refusal of the headers or the content type.
    entry = swarm.entry(name)
    if endpoint == "info":
        assert entry["last_error"] == TIMEOUT, entry
    elif endpoint == "peers":  # a failed gossip round is logged, not kept in the entry
        assert f"gossip failed url={swarm.urls[name]} error={TIMEOUT}" in swarm.node.more_log()
    else:
        assert entry["last_sync"]["error"] == TIMEOUT, entry


def test_trickled_stream_holds_one_connection(swarm: Swarm) -> None:
    """A stream trickling a byte a second is indistinguishable from a slow live one:
    it stays open (one connection, no reconnects), costs no memory to speak of, and
    stores nothing."""
    entry = swarm.entry("stream-trickle")
    assert entry["state"] == "live", entry
    assert swarm.fakes["stream-trickle"].hits["/v1/stream"] == 1
    assert entry["events_received"] == 0


def test_forged_stream_events_are_rejected_and_scored(swarm: Swarm) -> None:
    entry = swarm.entry("stream-forged")
    assert entry["events_rejected"] >= 2, entry
    assert entry["events_received"] == 0
    assert entry["score"] < 0, entry


def test_forged_fetch_is_rejected_once_and_not_refetched(swarm: Swarm) -> None:
    """Spec 0005 §anti-entropy: ids rejected from a peer are not fetched from it again
    (for an hour): each forgery was rejected once, however many syncs followed. (A
    fetch cut by the total timeout on a busy machine judged nothing, so it may be
    repeated: the count of rejections, not of fetches, is the rule — issue #14,
    finding 9.) Its score is below an honest peer's."""
    entry = swarm.entry("events-forged")
    assert entry["events_rejected"] == 3, entry
    assert entry["events_received"] == 0
    assert swarm.fakes["events-forged"].calls["events"] >= 1
    assert swarm.fakes["events-forged"].hits["/v1/sync"] >= 2
    assert entry["score"] < swarm.entry("honest")["score"], entry


def test_gossip_garbage_lowers_the_score(swarm: Swarm) -> None:
    entry = swarm.entry("peers-garbage")
    assert _working(entry), entry
    assert entry["score"] < 0, entry
    assert swarm.fakes["peers-garbage"].calls["peers"] >= 2


@pytest.mark.parametrize("name", ["peers-html", "peers-redirect-mapped"])
def test_gossip_wrong_type_or_redirect_lowers_the_score(swarm: Swarm, name: str) -> None:
    entry = swarm.entry(name)
    assert swarm.fakes[name].calls["peers"] >= 2
    assert entry["score"] < 0, entry


# -- hostile nodes against the client ---------------------------------------------------

#: The reader's per-node timeout in these tests (seconds).
CLIENT_TIMEOUT_S = 2.0
#: A read still running after this is stopped as hung, so that a broken reader cannot
#: hold the suite. It asserts nothing about speed: that the reader cut a slow or
#: endless node is shown by the node's report (``node-timeout``, asked once).
CLIENT_HANG_S = 180.0


@dataclass
class ClientWorld:
    honest: NodeProcess
    loop: LoopThread
    canary: Canary
    author: str
    chain: list[Event]
    stranger: Event


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClientWorld]:
    root = tmp_path_factory.mktemp("hostile-nodes")
    loop = LoopThread()
    node: NodeProcess | None = None
    canary = loop.run(Canary().start())
    try:
        node = NodeProcess(root / "honest")
        chain = posts(9300, 3, "verified ")
        assert [r["status"] for r in node.ingest(*(e.wire for e in chain))] == ["accepted"] * 3
        stranger = posts(9301, 1, "stranger ")[0]
        yield ClientWorld(node, loop, canary, chain[0].author, chain, stranger)
    finally:
        if node is not None:
            node.stop()
        loop.run(canary.close())
        loop.close()


def _client_attack(world: ClientWorld, kind: str) -> HostileNode:
    if kind == "liar":
        e1, e2, _ = world.chain
        # e1 as is, e2 forged (same id, broken signature), a stranger's event in this
        # author's log, and e3 withheld.
        return HostileNode(log=[e1.wire, broken_signature(e2.wire), world.stranger.wire])
    canary = f"http://[::ffff:127.0.0.1]:{world.canary.port}/v1/feed"
    attacks: dict[str, Callable[[], Attack]] = {
        "garbage": lambda: garbage(JSON),
        "html": html,
        "trickle": lambda: trickle(JSON, b'{"events": ['),
        "endless": lambda: endless(JSON),
        "redirect": lambda: redirect(canary),
    }
    return HostileNode(attacks[kind]())


@pytest.mark.parametrize(
    ("kind", "codes"),
    [
        ("garbage", {"bad-response"}),
        ("html", {"bad-response"}),
        ("trickle", {"node-timeout"}),
        # 48 MiB (the client's cap) at loopback speed, or the timeout: both bounded.
        ("endless", {"bad-response", "node-timeout"}),
        ("redirect", {"bad-response"}),
        ("liar", set()),
    ],
)
async def test_reader_survives_and_reports_a_hostile_node(
    world: ClientWorld, kind: str, codes: set[str]
) -> None:
    fake = world.loop.run(_client_attack(world, kind).start())
    fake_url = fake.url
    try:
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_S, follow_redirects=False) as http:
            nodes = [
                NodeClient(world.honest.url, http, timeout=CLIENT_TIMEOUT_S),
                NodeClient(fake_url, http, timeout=CLIENT_TIMEOUT_S),
            ]
            reader = Reader(nodes, timeout=CLIENT_TIMEOUT_S)
            start = time.monotonic()
            view = await asyncio.wait_for(
                author_view(reader, world.author, limit=10), CLIENT_HANG_S
            )
            took = time.monotonic() - start
    finally:
        world.loop.run(fake.close())
    fake_requests = fake.requests
    # The verified chain is shown, from the honest node, whatever the other did.
    assert [e.id for e in view.items] == [e.id for e in reversed(world.chain)]
    honest = reader.report.node(world.honest.url)
    assert honest.ok and honest.invalid == [] and honest.withheld == []
    hostile = reader.report.node(fake_url).to_json()
    if kind == "liar":
        assert hostile["ok"], hostile
        invalid = {(i["id"], i["code"]) for i in hostile["invalid"]}
        assert invalid == {
            (world.chain[1].id_hex, "invalid-signature"),
            (world.stranger.id_hex, "unexpected-event"),
        }
        assert [w["seq"] for w in hostile["withheld"]] == [2, 3]
    else:
        assert not hostile["ok"] and hostile["error"]["code"] in codes, hostile
        assert hostile["withheld"] == [] and hostile["invalid"] == []
        # One timeout (or failure) at most: a node that failed is skipped for the rest
        # of the read (spec 0007 §read), so it was asked exactly once.
        assert fake_requests == 1, fake_requests
    if kind == "redirect":
        assert world.canary.connections == 0
    print(f"\nclient vs {kind} node: read in {took:.2f} s, hostile report {hostile['error']}")


def test_without_private_peers_no_private_address_is_contacted(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The other half of spec 0005 §outbound, on a node *without*
    ``--allow-private-peers``: peers on loopback (by IP, by name, IPv4-mapped) and in
    CGNAT space, configured or announced, are refused at connect time — the fake peer
    and the canary behind them never see a connection — and announced ones are
    forgotten (score -100, below the drop line)."""
    root = tmp_path_factory.mktemp("no-private")
    loop = LoopThread()
    fake = HostilePeer(node_id="ee" * 16)
    loop.run(fake.start())
    canary = loop.run(Canary().start())
    node: NodeProcess | None = None
    try:
        config = write_config(root / "node.toml", limits=GENEROUS_LIMITS, federation=FEDERATION)
        configured = [fake.url, f"http://[::ffff:127.0.0.1]:{canary.port}", "http://100.64.0.1"]
        args = ["--config", str(config)]
        for url in configured:
            args += ["--peer", url]
        node = NodeProcess(root / "node", *args)
        announced = [f"http://localhost:{canary.port}", "http://169.254.169.254"]
        for url in announced:
            r = httpx.post(node.url + "/v1/peers", json={"url": url}, timeout=10)
            assert r.status_code == 202 and r.json() == {"status": "added"}, r.text
        url = node.url

        def settled() -> bool:
            entries = {e["url"]: e for e in peers(url)}
            refused = all(
                entries[u]["state"] == "refused"
                and entries[u]["last_error"] == "peer-forbidden-address"
                and entries[u]["score"] <= -100
                for u in configured
            )
            return refused and not any(u in entries for u in announced)

        wait_until(settled, 15, "every private peer refused", logs=node.more_log)
        assert fake.hits == {} and canary.connections == 0
        assert "peer forbidden address" in node.more_log()
    finally:
        if node is not None:
            node.stop()
        loop.run(fake.close())
        loop.run(canary.close())
        loop.close()
