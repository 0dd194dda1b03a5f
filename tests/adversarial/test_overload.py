"""Overload: real node processes driven past their capacity (spec 0004 §limits,
§admission; spec 0005 §convergence).

Three floods of ``POST /v1/events`` against one node each, while a monitor (from its
own loopback address, so with its own rate-limit bucket) samples the node's memory,
its admission gauges and the time of a feed read:

- **many polite clients** (64 loopback addresses, default per-IP limits): no address
  passes its bucket, so only the global admission gate can shed — 503 + Retry-After;
- **one hammering client, limits raised**, with 2 MiB batches: the gate's byte bound
  sheds — 503 + Retry-After — and memory stays bounded;
- **one hammering client, a low per-IP bucket** (one a busy machine surely
  outpaces): the bucket sheds — 429 + Retry-After.

Each time: only 429/503 with ``Retry-After`` are refused, the gate's gauges never
pass its bounds, memory stays bounded, reads are served throughout, and once the
flood stops the gate empties and reads are served again. Then two federated nodes: A is flooded (its
bucket for 127.0.0.1, the address B uses, drained; its gate full) while B, joining,
is shed; after the flood B converges to A's set by anti-entropy.

Set ``MURMUR_SOAK=1`` for a minute-long flood (``@pytest.mark.soak``).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from node.config import NodeLimits
from node.limits import ADMISSION_REQUEST_SHARE
from tests.adversarial.hostile import (
    MONITOR_SOURCE,
    FloodReport,
    Watch,
    client_from,
    flood,
    loopback_sources,
    metric_sum,
    msgpack_batch,
    peak_rss_mib,
    rss_mib,
    until,
    watch,
)
from tests.e2e.fedproc import Author, Cluster, peer_entry

pytestmark = pytest.mark.e2e

DEFAULTS = NodeLimits()
#: The per-IP limits as shipped (the cluster helper raises them unless told).
DEFAULT_RATE: dict[str, Any] = {
    "rate_per_ip": DEFAULTS.rate_per_ip,
    "rate_burst": DEFAULTS.rate_burst,
}
RAISED_RATE: dict[str, Any] = {"rate_per_ip": 1_000_000, "rate_burst": 1_000_000}
FLOOD_S = 3.0
SOAK_S = float(os.environ.get("MURMUR_SOAK_SECONDS", "60"))
#: Peak resident memory allowed under a flood. Without the gate, 24 clients posting
#: 2 MiB batches would hold 48 MiB of bodies and several times that in decoded events.
RSS_BOUND_MIB = 200.0
#: After the flood the gate empties and reads are served again; failing that within
#: RECOVERY_DEADLINE_S counts as a node that never recovered. How quick reads are is
#: printed, not asserted (a busy machine stretches it: issue #14, finding 9). The
#: deadline is a hang guard: the gate drains as soon as the flood's last requests are
#: answered (a second or two), so 20 s is far above it even on a loaded machine.
RECOVERY_DEADLINE_S = 20.0


def _batches(seed: int, count: int, size: int, text_bytes: int = 40) -> list[bytes]:
    """``count`` msgpack batches of ``size`` new events each (one author per batch)."""
    out = []
    for i in range(count):
        author = Author(seed + i)
        out.append(msgpack_batch([author.post("x" * text_bytes) for _ in range(size)]))
    return out


async def _reads_served(url: str, *, rounds: int = 10) -> bool:
    """``rounds`` feed reads in a row, each answered 200 (no 429 or 503 left)."""
    async with client_from(MONITOR_SOURCE) as http:
        for _ in range(rounds):
            r = await http.get(url + "/v1/feed", params={"limit": "50"})
            if r.status_code != 200:
                return False
    return True


async def _inflight_zero(url: str) -> bool:
    async with client_from(MONITOR_SOURCE) as http:
        text = (await http.get(url + "/metrics")).text
    return "\nmurmur_inflight_requests 0\n" in text


@dataclass
class Outcome:
    report: FloodReport
    seen: Watch
    base_rss_mib: float
    recovered_s: float


async def _flood_and_recover(
    url: str, pid: int, batches: list[bytes], **flood_args: Any
) -> Outcome:
    base = rss_mib(pid)
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch(url, pid, stop))
    try:
        report = await flood(url, batches, **flood_args)
    finally:
        stop.set()
        seen = await watcher
    start = time.monotonic()
    await until(lambda: _inflight_zero(url), RECOVERY_DEADLINE_S, "the gate to empty")
    await until(lambda: _reads_served(url), RECOVERY_DEADLINE_S, "reads served again")
    return Outcome(report, seen, base, time.monotonic() - start)


def _check_bounded(out: Outcome, limits: NodeLimits, largest: int) -> None:
    """The refusals, gauges, memory and reads of a flood whose largest body was
    ``largest`` bytes."""
    report, seen = out.report, out.seen
    assert set(report.statuses) <= {200, 429, 503}, report.statuses
    assert report.errors == {}, report.errors
    assert report.statuses[200] > 0, "nothing got through"
    # Every refusal says when to come back.
    assert set(report.retry_after) <= {"1", "2", "3", "4", "5"}, report.retry_after
    assert sum(report.retry_after.values()) == report.shed
    # The gate's bounds hold at every sample (a body alone may pass the byte bound).
    assert seen.max_inflight_requests <= limits.max_inflight_ingest, seen
    assert seen.max_inflight_bytes <= max(limits.max_inflight_bytes, largest), seen
    assert seen.peak_rss_mib < RSS_BOUND_MIB, seen
    # Reads were served all along, if slowly (never refused; a stuck one would have
    # failed the watch at its client's 30 s timeout).
    assert seen.read_failures == {}, seen.read_failures
    assert len(seen.read_s) >= 3, seen.read_s


def _print(name: str, out: Outcome) -> None:
    seen = out.seen
    print(
        f"\n{name}: {out.report.summary()}, 503 by bound {dict(out.report.unavailable)}; "
        f"peak RSS {seen.peak_rss_mib:.0f} MiB "
        f"(from {out.base_rss_mib:.0f}); in flight <= {seen.max_inflight_requests} requests, "
        f"{seen.max_inflight_bytes / 2**20:.1f} MiB; feed read p50 "
        f"{seen.p50() * 1000:.0f} ms, max {max(seen.read_s) * 1000:.0f} ms under flood; "
        f"served again {out.recovered_s:.2f} s after"
    )


async def _stored(url: str) -> int:
    async with client_from(MONITOR_SOURCE) as http:
        count: int = (await http.get(url + "/v1/info")).json()["counts"]["events"]
    return count


async def test_many_polite_clients_are_shed_by_the_gate(cluster: Cluster) -> None:
    """64 addresses, each well within its per-IP bucket (a polite client waits out
    Retry-After): only the global gate can shed, and it does, with 503."""
    proc = await asyncio.to_thread(cluster.start, "a", limits=DEFAULT_RATE)
    batches = await asyncio.to_thread(_batches, 7000, 200, 100)
    out = await _flood_and_recover(
        proc.url,
        proc.proc.pid,
        batches,
        sources=loopback_sources(64),
        per_source=1,
        duration_s=FLOOD_S,
        polite=True,
        repeat=False,
    )
    _print("many polite clients", out)
    _check_bounded(out, DEFAULTS, max(map(len, batches)))
    assert out.report.unavailable["node"] > 0, "the gate never shed"
    assert out.report.unavailable["address"] == 0  # one client per address
    assert out.report.statuses[429] == 0, "a polite client passed its per-IP bucket"
    assert set(out.report.retry_after) == {"1"}
    # Acknowledged means stored; nothing else was stored.
    assert await _stored(proc.url) == len(out.report.acked)


async def test_big_batches_are_shed_by_the_byte_bound(cluster: Cluster) -> None:
    """24 hammering clients, each on its own address (so no address passes its share),
    per-IP limits raised out of the way, 2 MiB batches: the gate's byte bound sheds,
    and the node's memory stays bounded. (The bound is set
    to 6 MiB here: on two shared cores the node cannot even take in 16 MiB of big
    batches at once — verification holds the GIL — so the default would not be
    reached by this flood.)"""
    limits = NodeLimits(max_inflight_bytes=6 * 2**20)
    proc = await asyncio.to_thread(
        cluster.start,
        "a",
        limits={**RAISED_RATE, "max_inflight_bytes": limits.max_inflight_bytes},
    )
    batches = await asyncio.to_thread(_batches, 7300, 4, 1000, 2000)
    assert all(len(b) > 2 * 2**20 for b in batches)
    out = await _flood_and_recover(
        proc.url,
        proc.proc.pid,
        batches,
        sources=loopback_sources(24),
        per_source=1,
        duration_s=FLOOD_S,
        polite=False,
        repeat=True,
    )
    _print("big batches, limits raised", out)
    _check_bounded(out, limits, max(map(len, batches)))
    assert out.report.unavailable["node"] > 0 and out.report.statuses[429] == 0
    assert out.report.unavailable["address"] == 0  # one client per address
    assert set(out.report.retry_after) == {"1"}
    assert out.seen.max_inflight_bytes > limits.max_inflight_bytes // 2  # it was full
    assert await _stored(proc.url) == 4000


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """The status and headers of one HTTP/1.1 answer read off a raw connection."""
    status = int((await reader.readline()).split()[1])
    headers: dict[str, str] = {}
    while (line := (await reader.readline()).strip()) != b"":
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


async def test_dripping_client_cannot_starve_ingest(cluster: Cluster) -> None:
    """One address opens a dozen ingest requests and drips their bodies (each could be
    held up to body_timeout_ms): it gets its share of the gate's slots (a quarter) and
    503 + Retry-After for the rest, at once, while a client on another address is
    served at once. Raw sockets: an HTTP client would not read the early answer
    before it has sent its whole body."""
    proc = await asyncio.to_thread(cluster.start, "a", limits=RAISED_RATE)
    host, port = proc.url.removeprefix("http://").split(":")
    dripper, honest = loopback_sources(2)
    bodies = await asyncio.to_thread(_batches, 7700, 13, 1)
    share = int(DEFAULTS.max_inflight_ingest * ADMISSION_REQUEST_SHARE)
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for body in bodies[:12]:
            reader, writer = await asyncio.open_connection(host, int(port), local_addr=(dripper, 0))
            writer.write(
                b"POST /v1/events HTTP/1.1\r\nHost: node\r\n"
                b"Content-Type: application/msgpack\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[:1]
            )
            await writer.drain()
            conns.append((reader, writer))
        answers = [asyncio.create_task(_answer(r)) for r, _ in conns]

        async def beyond_share_answered() -> bool:
            return sum(t.done() for t in answers) >= 12 - share

        await until(beyond_share_answered, 10, "the dripper's requests beyond its share")
        early = [t.result() for t in answers if t.done()]
        assert len(early) == 12 - share
        assert all(status == 503 and h["retry-after"] == "1" for status, h in early), early
        async with client_from(honest) as http:
            served = await http.post(
                proc.url + "/v1/events",
                content=bodies[12],
                headers={"Content-Type": "application/msgpack"},
            )
        assert served.status_code == 200 and served.json()["accepted"] == 1, served.text
        # The admitted ones were waiting for their bodies all along.
        waiting = [(t, w, b) for t, (_, w), b in zip(answers, conns, bodies[:12], strict=True)]
        waiting = [(t, w, b) for t, w, b in waiting if not t.done()]
        assert len(waiting) == share
        for _, writer, body in waiting:
            writer.write(body[1:])
            await writer.drain()
        late = await asyncio.gather(*(t for t, _, _ in waiting))
        assert [status for status, _ in late] == [200] * share
    finally:
        for _, writer in conns:
            writer.close()
    print(
        f"\ndripping client: {share} of 12 dripped bodies admitted, {12 - share} shed "
        "with 503 at once; another address served meanwhile"
    )


#: A per-IP bucket below what even a busy 2-core machine serves one client (the
#: shipped 50/s with a burst of 200 is not: under load a node answered fewer than
#: 350 requests in 3 s and, rightly, shed none — issue #14, finding 9).
LOW_RATE: dict[str, Any] = {"rate_per_ip": 5, "rate_burst": 20}


async def test_one_hammering_client_is_shed_by_its_bucket(cluster: Cluster) -> None:
    """One address retrying at once with small batches, faster than its per-IP
    bucket (:data:`LOW_RATE`) allows: the bucket sheds with 429 (counted in
    murmur_rate_limited_total), and the node recovers."""
    proc = await asyncio.to_thread(cluster.start, "a", limits=LOW_RATE)
    batches = await asyncio.to_thread(_batches, 7400, 40, 1)
    out = await _flood_and_recover(
        proc.url,
        proc.proc.pid,
        batches,
        sources=["127.0.0.1"],
        per_source=16,
        duration_s=FLOOD_S,
        polite=False,
        repeat=True,
    )
    _print("one hammering client, low bucket", out)
    _check_bounded(out, DEFAULTS, max(map(len, batches)))
    assert out.report.statuses[429] > 0
    assert metric_sum(proc.url, "murmur_rate_limited_total") >= out.report.statuses[429]
    # The bucket: at most burst + rate x time requests got through.
    assert out.report.statuses[200] <= LOW_RATE["rate_burst"] + LOW_RATE["rate_per_ip"] * (
        out.report.seconds + 1
    )


async def test_shed_peer_converges_by_anti_entropy(cluster: Cluster) -> None:
    """A is flooded: one address hammers (draining the bucket of 127.0.0.1, which B
    uses too) and 48 polite clients fill its gate. B, joining A meanwhile, is shed
    (its probe and stream answered 429), so A's events never reach it by the stream;
    once the flood stops, B catches up by anti-entropy to exactly A's set."""
    a = cluster.url("a")
    proc = await asyncio.to_thread(cluster.start, "a", limits=DEFAULT_RATE)
    polite = await asyncio.to_thread(_batches, 7500, 40, 100)
    hammer = await asyncio.to_thread(_batches, 7600, 20, 1)
    stop = asyncio.Event()
    seen_stop = asyncio.Event()
    watcher = asyncio.create_task(watch(a, proc.proc.pid, seen_stop))
    floods = [
        asyncio.create_task(
            flood(a, hammer, sources=["127.0.0.1"], per_source=8, duration_s=60,
                  polite=False, repeat=True, stop=stop)
        ),
        asyncio.create_task(
            flood(a, polite, sources=loopback_sources(48), per_source=1, duration_s=60,
                  polite=True, repeat=False, stop=asyncio.Event())
        ),
    ]
    try:
        # B joins once the flood has drained A's bucket for 127.0.0.1.
        async def drained() -> bool:
            return await asyncio.to_thread(metric_sum, a, "murmur_rate_limited_total") >= 50

        await until(drained, 20, "A's bucket for 127.0.0.1 drained")
        b = await asyncio.to_thread(cluster.start, "b", peers=[a])
        shed_codes: set[str] = set()
        entries: list[dict[str, Any] | None] = []

        async def b_is_shed() -> bool:
            entry = await asyncio.to_thread(peer_entry, b.url, a)
            entries.append(entry)
            if entry is not None:
                for code in (entry["last_error"], (entry["last_sync"] or {}).get("error")):
                    if code in ("rate-limited", "unavailable"):
                        shed_codes.add(code)
            return bool(shed_codes)

        try:
            await until(b_is_shed, 20, "B's subscription to A shed")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; B's entries for A: {entries[-3:]}") from None
        async def crowd_done() -> bool:
            return floods[1].done()

        await until(crowd_done, 30, "every polite client's batches acknowledged")
    finally:
        stop.set()
        reports = await asyncio.gather(*floods)
        seen_stop.set()
        seen = await watcher
    hammered, crowd = reports
    assert crowd.statuses[503] > 0 and hammered.statuses[429] > 0, (crowd, hammered)
    assert seen.peak_rss_mib < RSS_BOUND_MIB

    async with client_from(MONITOR_SOURCE) as http:
        expected = await _all_ids(http, a)
    assert {*crowd.acked, *hammered.acked} == expected
    assert len(expected) >= 4000

    async def b_converged() -> bool:
        async with client_from(MONITOR_SOURCE) as http:
            return await _all_ids(http, b.url) == expected

    took = await until(b_converged, 45, "B holds exactly A's events")
    by_sync = metric_sum(b.url, "murmur_federation_events_total", path="sync", result="accepted")
    by_stream = metric_sum(
        b.url, "murmur_federation_events_total", path="stream", result="accepted"
    )
    assert by_sync + by_stream == len(expected)
    assert by_sync > 0, "nothing came by anti-entropy"
    print(
        f"\nshed peer: A {hammered.summary()} from one address, {crowd.summary()} from 48; "
        f"B shed with {sorted(shed_codes)}; B converged on {len(expected)} events "
        f"{took:.1f} s after the flood ({int(by_sync)} by anti-entropy, "
        f"{int(by_stream)} by stream); A peak RSS {seen.peak_rss_mib:.0f} MiB"
    )


async def _all_ids(http: httpx.AsyncClient, url: str) -> set[str]:
    ids: set[str] = set()
    before: str | None = None
    while True:
        params = {"limit": "500"} | ({"before": before} if before else {})
        doc = (await http.get(url + "/v1/feed", params=params)).json()
        ids.update(ev["id"] for ev in doc["events"])
        before = doc["next"]
        if before is None:
            return ids


@pytest.mark.soak
@pytest.mark.skipif(os.environ.get("MURMUR_SOAK") != "1", reason="soak: set MURMUR_SOAK=1")
async def test_soak_memory_stays_flat_under_a_long_flood(cluster: Cluster) -> None:
    """A minute (MURMUR_SOAK_SECONDS) of big batches from a hammering client and a
    polite crowd: memory stays bounded and does not creep (no leak per request)."""
    proc = await asyncio.to_thread(cluster.start, "a", limits=DEFAULT_RATE)
    big = await asyncio.to_thread(_batches, 8000, 4, 1000, 2000)
    small = await asyncio.to_thread(_batches, 8100, 50, 100)
    halves: list[float] = []
    for _ in range(2):
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(proc.url, proc.proc.pid, stop))
        await asyncio.gather(
            flood(proc.url, big, sources=loopback_sources(8), per_source=2,
                  duration_s=SOAK_S / 2, polite=False, repeat=True),
            flood(proc.url, small, sources=loopback_sources(48, 100), per_source=1,
                  duration_s=SOAK_S / 2, polite=True, repeat=True),
        )
        stop.set()
        seen = await watcher
        assert seen.peak_rss_mib < RSS_BOUND_MIB
        halves.append(rss_mib(proc.proc.pid))
    await until(lambda: _reads_served(proc.url), RECOVERY_DEADLINE_S, "reads served again")
    print(f"\nsoak: RSS after each half {halves} MiB, peak {peak_rss_mib(proc.proc.pid):.0f}")
    assert halves[1] < halves[0] + 32, halves
