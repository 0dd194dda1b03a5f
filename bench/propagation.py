"""Propagation: from accept on node 1 to appearance in the live stream of node K, on a line.

``murmur bench propagation [--light-events N] [--light-rate R] [--heavy-events N]
[--batch B] [--heavy-rate R] [--quick]``

Five real nodes form a line 1-2-3-4-5: each is configured with its neighbours as
peers (both ways), peer exchange off (so the line stays a line) and anti-entropy
pushed out of the run (once an hour), so events travel only by live replication:
node K sees an event after ``K - 1`` hops of stream, verify and commit. This process
subscribes to ``GET /v1/stream`` of every node and stamps each event's first arrival
with ``time.perf_counter`` (the time its chunk was read, before parsing), in the same
process that posts to node 1 and stamps the ``200`` of each post, so both clocks are
one. Latency is counted from that accept; the send time is kept too.

Two rates are measured, one after the other on the same line:

* **light**: one event per request at a fixed rate (default 20/s), the way people post;
* **heavy**: batches of ``B`` events (default 100) posted back to back, one request in
  flight, as fast as node 1 accepts them; downstream nodes share the machine's CPUs,
  so this shows what saturation does to latency.

Reported for each node: p50, p95 and p99 of the latency, the rate posted, and the rate
the node's stream showed events (shown / time from the first send to the last shown).
A shown rate below the posted one means the line is saturated: a queue builds, and the
latency then grows with the length of the run. Node 1's own stream is shown as hop 0
(it may emit an event before its ``200`` reaches us).
The design target is node 4 (three hops away) at p50 under 50 ms, judged at the
light rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    NodeProcess,
    add_common_args,
    free_ports,
    percentile,
    print_table,
    progress,
    scratch_dir,
    write_config,
    write_result,
)
from bench.dataset import generate
from protocol.encoding import encode_bins
from protocol.sse import SseParser

__all__ = ["free_ports", "main", "start_line"]

NODES = 5
#: The design target: a post is visible three hops away (node 4) at p50 under 50 ms.
TARGET_NODE = 4
TARGET_P50_MS = 50.0
MSGPACK = "application/msgpack"
#: Reconnect fast while the line forms; keep anti-entropy out of the measurement.
FEDERATION = {"backoff_min_ms": 100, "backoff_max_ms": 1000, "sync_interval_ms": 3_600_000}
#: Deadline for the line to form, and poll interval of every deadline loop here.
LINK_DEADLINE_S = 60.0
POLL_S = 0.05
#: After the last post, wait for stragglers until no stream delivered anything new
#: for this long (a saturated line drains slowly but steadily).
STALL_S = 10.0
_STREAM_MESSAGE_BYTES = 1 << 20


def start_line(stack: ExitStack, where: Path, count: int) -> list[NodeProcess]:
    """Start ``count`` nodes linked in a line (both ways); they stop with ``stack``."""
    ports = free_ports(count)
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    config = write_config(where / "node.toml", federation=FEDERATION)
    nodes: list[NodeProcess] = []
    for i, port in enumerate(ports):
        peers = [urls[j] for j in (i - 1, i + 1) if 0 <= j < count]
        args = ["--config", str(config), "--no-peer-exchange", "--allow-private-peers"]
        for url in peers:
            args += ["--peer", url]
        nodes.append(stack.enter_context(NodeProcess(where / f"node{i + 1}", *args, port=port)))
    return nodes


def wait_for_line(nodes: list[NodeProcess]) -> float:
    """Wait until every node's stream to each neighbour is live; seconds it took."""
    start = time.perf_counter()
    end = time.monotonic() + LINK_DEADLINE_S
    pending: list[str] = []
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < end:
            pending = []
            for i, node in enumerate(nodes):
                peers = client.get(node.url + "/v1/peers").json()["peers"]
                states = {p["url"]: p["state"] for p in peers}
                for j in (i - 1, i + 1):
                    if 0 <= j < len(nodes) and states.get(nodes[j].url) != "live":
                        pending.append(f"{i + 1}->{j + 1}: {states.get(nodes[j].url)}")
            if not pending:
                return time.perf_counter() - start
            time.sleep(POLL_S)
    raise RuntimeError("the line did not form: " + ", ".join(pending))


class Subscriber:
    """Follows one node's live stream; the first arrival time of every event id."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.arrivals: dict[str, float] = {}
        self.ready = asyncio.Event()

    async def run(self) -> None:
        parser = SseParser(max_message_bytes=_STREAM_MESSAGE_BYTES)
        timeout = httpx.Timeout(10, read=None)
        async with (
            httpx.AsyncClient(timeout=timeout) as client,
            client.stream("GET", self.url + "/v1/stream") as resp,
        ):
            resp.raise_for_status()
            async for chunk in resp.aiter_bytes():
                now = time.perf_counter()  # stamped before any parsing
                for message in parser.feed(chunk):
                    if message.event == "event":
                        eid = json.loads(message.data)["event"]["id"]
                        self.arrivals.setdefault(eid, now)
                if parser.comments:
                    if any(c.startswith("cursor=") for c in parser.comments):
                        self.ready.set()
                    parser.comments.clear()


async def _post(client: httpx.AsyncClient, url: str, body: bytes, expect: int) -> None:
    resp = await client.post(
        url + "/v1/events",
        content=body,
        headers={"content-type": MSGPACK, "accept": "application/json"},
    )
    resp.raise_for_status()
    accepted = resp.json()["accepted"]
    if accepted != expect:
        raise RuntimeError(f"node 1 accepted {accepted} of {expect} events: {resp.text[:300]}")


async def post_paced(
    url: str, batches: list[tuple[list[str], bytes]], rate_per_s: float
) -> tuple[dict[str, float], dict[str, float], float]:
    """POST each batch, one in flight, at ``rate_per_s`` batches a second (0: back to
    back); (send time by id, accept time by id, seconds from first send to last accept)."""
    sent: dict[str, float] = {}
    accepted: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=60) as client:
        start = time.perf_counter()
        for k, (ids, body) in enumerate(batches):
            if rate_per_s > 0:
                delay = start + k / rate_per_s - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            t_send = time.perf_counter()
            await _post(client, url, body, len(ids))
            t_acc = time.perf_counter()
            for eid in ids:
                sent[eid], accepted[eid] = t_send, t_acc
        elapsed = time.perf_counter() - start
    return sent, accepted, elapsed


async def _drain(subs: list[Subscriber], ids: list[str], tasks: list[asyncio.Task[None]]) -> None:
    """Wait until every stream showed every id, or stalled for ``STALL_S``."""
    seen, last_change = -1, time.monotonic()
    while time.monotonic() - last_change < STALL_S:
        _raise_failed(tasks)
        now_seen = sum(len(s.arrivals) for s in subs)
        if now_seen != seen:
            seen, last_change = now_seen, time.monotonic()
        if all(all(i in s.arrivals for i in ids) for s in subs):
            return
        await asyncio.sleep(POLL_S)


def _raise_failed(tasks: list[asyncio.Task[None]]) -> None:
    """A subscriber that stopped: raise its error (a stream never ends by itself)."""
    for t in tasks:
        if t.done():
            t.result()
            raise RuntimeError(f"the stream {t.get_name()} ended")


def _summary(
    name: str, subs: list[Subscriber], sent: dict[str, float], accepted: dict[str, float],
    elapsed: float,
) -> dict[str, Any]:
    n = len(accepted)
    out: dict[str, Any] = {"events": n, "seconds": round(elapsed, 3),
                           "events_per_s": round(n / elapsed, 1), "nodes": []}
    for k, sub in enumerate(subs, start=1):
        seen = [i for i in accepted if i in sub.arrivals]
        first = min(sent.values())
        last = max((sub.arrivals[i] for i in seen), default=first)
        lat = [(sub.arrivals[i] - accepted[i]) * 1000 for i in seen]
        lat_send = [(sub.arrivals[i] - sent[i]) * 1000 for i in seen]
        out["nodes"].append({
            "node": k,
            "hops": k - 1,
            "received": len(seen),
            "missing": n - len(seen),
            # The rate this node's stream kept up: events shown / (last shown - first sent).
            "delivered_per_s": round(len(seen) / (last - first), 1) if last > first else None,
            "p50_ms": round(percentile(lat, 50), 2),
            "p95_ms": round(percentile(lat, 95), 2),
            "p99_ms": round(percentile(lat, 99), 2),
            "max_ms": round(max(lat), 2) if lat else None,
            "from_send_p50_ms": round(percentile(lat_send, 50), 2),
        })
        if n - len(seen):
            progress(f"{name}: node {k} never showed {n - len(seen)} of {n} events")
    return out


async def measure(
    nodes: list[NodeProcess], phases: list[tuple[str, list[tuple[list[str], bytes]], float]]
) -> dict[str, Any]:
    subs = [Subscriber(node.url) for node in nodes]
    tasks = [asyncio.create_task(s.run(), name=f"stream {s.url}") for s in subs]
    results: dict[str, Any] = {}
    try:
        end = time.monotonic() + 30
        while not all(s.ready.is_set() for s in subs):
            _raise_failed(tasks)
            if time.monotonic() > end:
                raise RuntimeError("the live streams did not open")
            await asyncio.sleep(POLL_S)
        for name, batches, rate in phases:
            progress(f"{name}: posting {sum(len(ids) for ids, _ in batches):,} events to node 1")
            sent, accepted, elapsed = await post_paced(nodes[0].url, batches, rate)
            await _drain(subs, list(accepted), tasks)
            results[name] = _summary(name, subs, sent, accepted, elapsed)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="murmur bench propagation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--light-events", type=int,
                        help="events posted one by one (default 1000; quick 200)")
    parser.add_argument("--light-rate", type=float, default=20.0,
                        help="light rate, events/s (20)")
    parser.add_argument("--heavy-events", type=int,
                        help="events posted in batches (default 10000; quick 3000)")
    parser.add_argument("--batch", type=int, default=100, help="heavy: events per request (100)")
    parser.add_argument("--heavy-rate", type=float, default=0.0,
                        help="heavy rate, events/s (default 0: back to back)")
    add_common_args(parser, "propagation")
    args = parser.parse_args(argv)
    light_n = args.light_events or (200 if args.quick else 1000)
    heavy_n = args.heavy_events or (3000 if args.quick else 10_000)
    total = light_n + heavy_n
    progress(f"signing {total:,} realistic events")
    data = generate(total, authors=100, ts_start=int(time.time() * 1000) - total - 60_000)
    ids = [i.hex() for i in data.ids]
    light = [([ids[k]], encode_bins([data.wires[k]])) for k in range(light_n)]
    heavy = [
        (ids[k : k + args.batch], encode_bins(data.wires[k : k + args.batch]))
        for k in range(light_n, total, args.batch)
    ]
    with scratch_dir("propagation") as where, ExitStack() as stack:
        progress(f"starting {NODES} nodes in a line")
        nodes = start_line(stack, where, NODES)
        formed = wait_for_line(nodes)
        progress(f"line formed in {formed:.1f} s")
        results = asyncio.run(measure(nodes, [
            ("light", light, args.light_rate),
            ("heavy", heavy, args.heavy_rate / args.batch),
        ]))
    heavy_how = f"at {args.heavy_rate:g}/s" if args.heavy_rate > 0 else "back to back"
    rows: list[list[Any]] = []
    for name, res in results.items():
        for node in res["nodes"]:
            rows.append([name, node["node"], node["hops"], res["events_per_s"],
                         node["delivered_per_s"], node["p50_ms"], node["p95_ms"], node["p99_ms"],
                         node["missing"]])
    print_table(
        f"propagation: line of {NODES} nodes, latency from accept on node 1 to node K's "
        f"stream (light: {light_n:,} events at {args.light_rate:g}/s one per request; "
        f"heavy: {heavy_n:,} in batches of {args.batch}, {heavy_how})",
        rows,
        ["rate", "node", "hops", "posted/s", "shown/s", "p50 ms", "p95 ms", "p99 ms", "missing"],
    )
    p50 = results["light"]["nodes"][TARGET_NODE - 1]["p50_ms"]
    heavy_p50 = results["heavy"]["nodes"][TARGET_NODE - 1]["p50_ms"]
    met = p50 < TARGET_P50_MS
    print(f"  target: node {TARGET_NODE} ({TARGET_NODE - 1} hops) p50 < {TARGET_P50_MS:.0f} ms "
          f"at the light rate: {'met' if met else 'NOT met'} ({p50:.1f} ms; heavy "
          f"{heavy_p50:.1f} ms)")
    write_result(args.out, "propagation", {
        "nodes": NODES,
        "light_rate_per_s": args.light_rate,
        "batch": args.batch,
        "heavy_rate_per_s": args.heavy_rate or None,
        "line_formed_s": round(formed, 2),
        **results,
        "target_node": TARGET_NODE,
        "target_p50_ms": TARGET_P50_MS,
        "target_met": met,
    })
    return 0
