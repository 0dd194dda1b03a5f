"""End-to-end federation: real ``python -m node run`` processes on 127.0.0.1 (spec 0005).

Each test builds a small cluster with fixed ports (:mod:`tests.e2e.fedproc`), makes
the network misbehave the way real ones do — a node killed with ``kill -9``, a late
joiner, a partition through TCP proxies that are cut and healed, a peer shedding load
with 429 — and asserts that every node ends up holding exactly the same set of event
ids: nothing acknowledged lost, nothing else present. Topology checks read
``GET /v1/peers``. Every wait is a deadline loop on an observable condition.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.fedproc import (
    Author,
    Cluster,
    event_id_list,
    event_ids,
    metric,
    peer_entry,
    peers,
    persisted_cursor,
    post_events,
)

pytestmark = pytest.mark.e2e

#: Deadline of every convergence wait; a healthy cluster needs a few seconds at most.
DEADLINE_S = 30


def _live(url: str, *peer_urls: str) -> bool:
    """``url`` has each of ``peer_urls`` in its table with an open stream."""
    states = {p["url"]: p["state"] for p in peers(url)}
    return all(states.get(p) == "live" for p in peer_urls)


def _wait_live(cluster: Cluster, url: str, *peer_urls: str) -> None:
    cluster.wait_until(lambda: _live(url, *peer_urls), f"{url} live to {peer_urls}", DEADLINE_S)


def _wait_converged(cluster: Cluster, urls: list[str], expected: set[str], what: str) -> float:
    """Wait until every node in ``urls`` holds exactly ``expected``; the seconds it took.

    Then compare the sorted id lists (the feed as served, so a duplicate would show).
    """
    start = time.monotonic()

    def done() -> bool:
        return all(event_ids(u) == expected for u in urls)

    cluster.wait_until(done, what, DEADLINE_S)
    took = time.monotonic() - start
    want = sorted(expected)
    for url in urls:
        assert sorted(event_id_list(url)) == want, f"{url} holds a different list"
    return took


def test_line_topology_relays_through_the_middle(cluster: Cluster) -> None:
    """A–B–C, each knowing only its neighbours: posts cross two hops both ways, and A
    never learns of C (peer exchange off). Spec 0005 §replication (multi-hop)."""
    a, b, c = cluster.url("a"), cluster.url("b"), cluster.url("c")
    cluster.start("a", peers=[b])
    cluster.start("b", peers=[a, c])
    cluster.start("c", peers=[b])
    _wait_live(cluster, a, b)
    _wait_live(cluster, b, a, c)
    _wait_live(cluster, c, b)

    acked = post_events(a, Author(1).posts(12, "from a "))
    assert len(acked) == 12

    def a_knows_only_b() -> None:
        urls = [p["url"] for p in peers(a)]
        assert urls == [b], f"A's peers are {urls}, expected only B"

    def c_has(ids: set[str]) -> bool:
        a_knows_only_b()  # checked on every poll: C never shows up in A's table
        return event_ids(c) >= ids

    cluster.wait_until(lambda: c_has(set(acked)), "A's chain on C (via B)", DEADLINE_S)

    back = post_events(c, Author(2).posts(5, "from c "))
    assert len(back) == 5

    def a_has_c_posts() -> bool:
        a_knows_only_b()
        return event_ids(a) >= set(back)

    cluster.wait_until(a_has_c_posts, "C's chain on A (via B)", DEADLINE_S)
    _wait_converged(cluster, [a, b, c], {*acked, *back}, "A, B, C identical")

    a_knows_only_b()
    assert peer_entry(a, b)["state"] == "live"  # type: ignore[index]
    assert [p["url"] for p in peers(c)] == [b]


def test_killed_node_resumes_from_its_cursor_and_converges(cluster: Cluster) -> None:
    """kill -9 C, post on A while it is down, restart C on the same port and data:
    its stream to B resumes from the persisted cursor and it converges.
    Spec 0005 §peers (cursor survives a restart), §replication, §anti-entropy."""
    a, b, c = cluster.url("a"), cluster.url("b"), cluster.url("c")
    cluster.start("a", peers=[b])
    cluster.start("b", peers=[a, c])
    cluster.start("c", peers=[b])
    _wait_live(cluster, c, b)
    _wait_live(cluster, b, a)

    author = Author(3)
    before = post_events(a, author.posts(10, "before "))
    _wait_converged(cluster, [a, b, c], set(before), "first posts everywhere")
    c_data = cluster.data_dir("c")
    cluster.wait_until(
        lambda: persisted_cursor(c_data, b) is not None, "C saved its cursor for B", DEADLINE_S
    )

    cluster.kill("c")
    during: list[str] = []
    for i in range(5):
        during += post_events(a, author.posts(10, f"while C is down {i}/"))
    assert len(during) == 50
    cluster.wait_until(lambda: event_ids(b) >= set(during), "B has the new posts", DEADLINE_S)
    saved = persisted_cursor(c_data, b)  # C is dead: this is exactly what it will load
    assert saved is not None

    restarted = time.monotonic()
    proc = cluster.restart("c")
    entry = peer_entry(c, b)
    assert entry is not None and entry["cursor"] is not None and entry["cursor"] >= saved

    def first_live_line() -> str | None:
        m = re.search(rf"peer live url={re.escape(b)} cursor=(\S+)", proc.more_log())
        return None if m is None else m.group(1)

    resumed = cluster.wait_until(first_live_line, "C's stream to B opened", DEADLINE_S)
    assert resumed == str(saved), f"C resumed B's stream at {resumed}, saved {saved}"

    _wait_converged(cluster, [a, b, c], {*before, *during}, "C caught up after restart")
    took = time.monotonic() - restarted
    print(f"\nkilled node: 60 events identical on 3 nodes {took:.2f} s after restart began")


def test_late_joiner_gets_everything_from_one_peer(cluster: Cluster) -> None:
    """A and B hold 300 events by 6 authors; C joins empty, knowing only A, and gets
    all of them by anti-entropy (its first stream starts "from now").
    Spec 0005 §anti-entropy."""
    a, b, c = cluster.url("a"), cluster.url("b"), cluster.url("c")
    cluster.start("a", peers=[b])
    cluster.start("b", peers=[a])
    acked: list[str] = []
    for seed in range(10, 13):
        acked += post_events(a, Author(seed).posts(50, f"{seed}/"))
    for seed in range(13, 16):
        acked += post_events(b, Author(seed).posts(50, f"{seed}/"))
    assert len(set(acked)) == 300
    _wait_converged(cluster, [a, b], set(acked), "A and B share 300 events")

    start = time.monotonic()
    cluster.start("c", peers=[a])
    _wait_converged(cluster, [a, b, c], set(acked), "late joiner C converged")
    took = time.monotonic() - start  # process start-up included
    entry = peer_entry(c, a)
    assert entry is not None and entry["events_received"] == 300, entry
    print(f"\nlate joiner: 300 events in {took:.2f} s from start, last_sync={entry['last_sync']}")


def test_partition_heals_to_the_union_of_acknowledged_events(cluster: Cluster) -> None:
    """A, B, C in a mesh; every link of C goes through a proxy. Cut them, post on A and
    C at once, heal: every node holds exactly the union of what was acknowledged.
    Spec 0005 §convergence."""
    a, b, c = cluster.url("a"), cluster.url("b"), cluster.url("c")
    to_a, to_b, to_c = cluster.proxy("a"), cluster.proxy("b"), cluster.proxy("c")
    cluster.start("a", peers=[b, to_c.url])
    cluster.start("b", peers=[a, to_c.url])
    cluster.start("c", peers=[to_a.url, to_b.url])
    _wait_live(cluster, a, b, to_c.url)
    _wait_live(cluster, b, a, to_c.url)
    _wait_live(cluster, c, to_a.url, to_b.url)

    pre = post_events(a, Author(20).posts(10, "pre "))
    _wait_converged(cluster, [a, b, c], set(pre), "pre-partition posts everywhere")

    for proxy in (to_a, to_b, to_c):
        proxy.cut()

    def c_isolated() -> bool:
        return not any(p["state"] == "live" for p in peers(c)) and not any(
            (peer_entry(u, to_c.url) or {}).get("state") == "live" for u in (a, b)
        )

    cluster.wait_until(c_isolated, "C's links seen down on all sides", DEADLINE_S)

    author_a, author_c = Author(21), Author(22)

    def post_batches(url: str, author: Author, tag: str) -> list[str]:
        ids: list[str] = []
        for i in range(5):
            ids += post_events(url, author.posts(10, f"{tag} {i}/"))
        return ids

    with ThreadPoolExecutor(max_workers=2) as pool:
        on_a = pool.submit(post_batches, a, author_a, "partitioned a")
        on_c = pool.submit(post_batches, c, author_c, "partitioned c")
        acked_a, acked_c = on_a.result(timeout=60), on_c.result(timeout=60)
    assert len(acked_a) == len(acked_c) == 50

    cluster.wait_until(
        lambda: event_ids(b) == {*pre, *acked_a}, "B has A's partition posts", DEADLINE_S
    )
    # The partition held: nothing crossed it either way.
    assert event_ids(a) == {*pre, *acked_a}
    assert event_ids(c) == {*pre, *acked_c}

    for proxy in (to_a, to_b, to_c):
        proxy.heal()
    union = {*pre, *acked_a, *acked_c}
    took = _wait_converged(cluster, [a, b, c], union, "union everywhere after heal")
    print(f"\npartition: {len(union)} events identical on 3 nodes {took:.2f} s after heal")


def test_load_shedding_peer_still_converges(cluster: Cluster) -> None:
    """A answers at most 3 requests/s (burst 5) per IP and holds 500 events; B joins
    empty and is shed with 429 + Retry-After, yet converges. Spec 0005 §convergence.

    B fetches 50 ids a request (10 fetches after the probe, stream and sync), so it
    makes far more requests than A's burst allows even on a slow machine."""
    a, b = cluster.url("a"), cluster.url("b")
    cluster.start("a", limits={"rate_per_ip": 3, "rate_burst": 5})
    events = [ev for seed in range(30, 35) for ev in Author(seed).posts(100, f"{seed}/")]
    acked = post_events(a, events)  # one request
    assert len(set(acked)) == 500
    # The test shares 127.0.0.1 with B: read A's set once (two feed pages), then poll
    # only B and A's /metrics (which is never rate limited).
    held = event_ids(a)
    assert held == set(acked)
    shed_before = metric(a, "murmur_rate_limited_total")

    start = time.monotonic()
    cluster.start("b", peers=[a], federation={"fetch_batch": 50})
    cluster.wait_until(lambda: event_ids(b) == held, "B converged with a shedding A", 45)
    took = time.monotonic() - start
    assert sorted(event_id_list(b)) == sorted(held)
    shed = metric(a, "murmur_rate_limited_total") - shed_before
    assert shed > 0, "A never shed load: the test did not exercise 429"
    print(f"\nload shedding: 500 events in {took:.2f} s, A answered 429 {shed:g} times")


def test_self_and_duplicate_peers_are_recognised(cluster: Cluster) -> None:
    """X lists itself and Y twice (127.0.0.1 and localhost): one entry is "self", Y is
    subscribed to exactly once, the other spelling is "duplicate". Spec 0005 §peers."""
    x, y = cluster.url("x"), cluster.url("y")
    y_local = f"http://localhost:{cluster.port('y')}"
    cluster.start("y")
    cluster.start("x", peers=[x, y, y_local], peer_exchange=True)

    def table_settled() -> bool:
        states = {p["url"]: p["state"] for p in peers(x)}
        return states.get(x) == "self" and {states.get(y), states.get(y_local)} == {
            "live",
            "duplicate",
        }

    cluster.wait_until(table_settled, "X: self, one live and one duplicate", DEADLINE_S)
    assert len(peers(x)) == 3
    # Y has no peers of its own, so every stream open on it is X's.
    assert metric(y, "murmur_stream_subscribers") == 1

    acked = post_events(y, Author(40).posts(20, "y "))
    assert len(acked) == 20
    cluster.wait_until(lambda: event_ids(x) == set(acked), "Y's posts on X", DEADLINE_S)
    served = event_id_list(x)
    assert len(served) == len(set(served)) == 20
    info = httpx.get(x + "/v1/info", timeout=5).json()
    assert info["counts"]["events"] == 20
    received = sum(p["events_received"] for p in peers(x))
    assert received == 20, f"X accepted {received} events from peers for 20 distinct"
    cluster.wait_until(table_settled, "X's table still self/live/duplicate", DEADLINE_S)
    assert metric(y, "murmur_stream_subscribers") == 1


def test_peer_exchange_completes_the_mesh(cluster: Cluster) -> None:
    """A knows B, B knows C: with peer exchange on, A learns C (and C learns A) and
    subscribes to it directly; so do the others, until the mesh is complete.
    Spec 0005 §peer-exchange."""
    a, b, c = cluster.url("a"), cluster.url("b"), cluster.url("c")
    cluster.start("c", peer_exchange=True)
    cluster.start("b", peers=[c], peer_exchange=True)
    cluster.start("a", peers=[b], peer_exchange=True)

    cluster.wait_until(lambda: _live(a, b, c), "A live to B and to C", DEADLINE_S)
    learnt = peer_entry(a, c)
    assert learnt is not None and learnt["source"] == "gossip", learnt
    cluster.wait_until(lambda: _live(c, a, b), "C live to A and B", DEADLINE_S)
    cluster.wait_until(lambda: _live(b, a, c), "B live to A and C", DEADLINE_S)

    acked = post_events(c, Author(50).posts(5, "c "))
    _wait_converged(cluster, [a, b, c], set(acked), "C's posts everywhere")


@pytest.mark.parametrize(
    ("limits", "subscribers", "deadline_s"),
    [
        # One stream slot: B or C gets it, the other is answered 503 on every attempt.
        ({"max_subscribers": 1}, ["b", "c"], 8),
        # Burst 1: the probe (GET /v1/info) takes the only token, so the stream request
        # that follows it within milliseconds is always 429. One subscriber: it needs
        # about 4 requests (probe, stream, sync, fetch), 1 a second.
        ({"rate_per_ip": 1, "rate_burst": 1}, ["b"], 15),
    ],
    ids=["stream-slots-full", "burst-of-one"],
)
def test_peer_whose_stream_is_shed_still_converges(
    cluster: Cluster, limits: dict[str, int], subscribers: list[str], deadline_s: float
) -> None:
    """A sheds stream requests; its subscribers know only A. Spec 0005 §convergence:
    "Shedding never causes permanent divergence" — a shed subscriber must still get
    A's events by anti-entropy."""
    a = cluster.url("a")
    cluster.start("a", limits=limits)
    acked = set(post_events(a, Author(60).posts(10, "shed ")))  # before any subscriber
    for name in subscribers:
        cluster.start(name, peers=[a])
    cluster.wait_until(
        lambda: all(event_ids(cluster.url(n)) == acked for n in subscribers),
        f"{subscribers} hold A's events",
        deadline_s,
    )
