"""Media: what a posted picture costs each node's store, and how fast it reaches node 3.

``murmur bench media [--images N] [--width W] [--height H] [--topologies mesh,line]
[--quick]``

For each topology, three real node processes (SQLite) form a devnet as ``murmur
devnet up`` does (its ``node.toml`` and its anti-entropy period; peer exchange off in
the line, so the line stays a line): ``mesh`` (every node peers with the two others)
and ``line`` 1-2-3 (node 3 gets everything through node 2). Then one author posts
``N`` pictures to node 1, one after the other, as ``murmur post --image`` does it
through the client library: each generated photo (default 2560×1920, a noisy JPEG,
about 0.5-1.2 MB once prepared) goes through ``client.media.prepare_image``, is
uploaded with ``NodeClient.upload_blob``, and a signed post naming it is submitted
with ``NodeClient.submit``. After node 1 accepts the post, this process asks node 3
for the image (``NodeClient.fetch_blob``: ``GET /v1/blobs/{hash}``, the bytes checked
against the post's claim) every 5 ms until it serves it; the next picture is posted
only then (spec 0005 #blob-fetch: node 2 and node 3 fetch it from their peers).

Reported per topology:

* **replication**: from node 1's acceptance of the post to node 3 serving the very
  bytes: p50, p95 and max;
* **storage**: each node's SQLite database growth (pages in use, before and after,
  once every node holds every image), per image, beyond the image's own bytes, and
  that overhead as a share of the mean image (the post event and its indexes are
  in it: one picture is one post);
* **client**: ``prepare_image`` time per picture and the upload's time to node 1,
  p50 and p95.

Nothing here is asserted: the figures are reported (bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import sqlite3
import statistics
import time
import tomllib
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageChops

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
from client.api import NodeClient
from client.devnet.plan import SYNC_INTERVAL_S, Topology, node_config_toml, peer_indices
from client.media import PreparedImage, prepare_image
from node.store.sqlite import DB_FILENAME
from protocol import kinds
from protocol.embeds import EmbedImage
from protocol.errors import RemoteError
from protocol.events import sign_event
from protocol.identity import Identity
from protocol.limits import MAX_BLOB_BYTES

__all__ = ["main", "photo"]

NODES = 3
TOPOLOGIES = ("mesh", "line")
#: Poll interval of the wait for node 3 to serve an image (a deadline loop).
POLL_S = 0.005
#: Longest wait for one image on node 3, for the links, and for every node to hold all.
IMAGE_DEADLINE_S = 120.0
LINK_DEADLINE_S = 60.0
#: Uploads of a long run must not meet the per-address hour budget (64 MiB).
UPLOAD_LIMITS = {"blob_upload_bytes_per_hour": 1 << 40, "blob_pending_bytes": 1 << 32}


def photo(seed: int, width: int, height: int) -> bytes:
    """A photo-like JPEG (quality 92, as a camera writes): smooth gradients, blotches and
    grain whose strength varies with ``seed``, so prepared sizes spread over ~0.5-1.2 MB
    at 2560×1920 (pure noise would not fit in a blob; flat colour would be tiny)."""
    rng = random.Random(seed)
    size = (width, height)
    grain = 2 + seed % 6
    linear = Image.linear_gradient("L").resize(size)
    radial = Image.radial_gradient("L").resize(size)
    channels = []
    for k in range(3):
        base = ImageChops.blend(linear.rotate(rng.randrange(360)), radial, 0.5) if k else radial
        blotch = Image.effect_noise((max(1, width // 32), max(1, height // 32)), 80)
        blotch = blotch.resize(size, Image.Resampling.BICUBIC)
        fine = Image.effect_noise(size, grain)
        channels.append(ImageChops.add(ImageChops.blend(base, blotch, 0.5), fine, 1.0, -128))
    out = io.BytesIO()
    Image.merge("RGB", channels).save(out, "JPEG", quality=92)
    return out.getvalue()


def db_bytes(data_dir: Path) -> int:
    """Bytes of the node's SQLite database in use: (pages - free pages) × page size,
    read through a read-only connection (it sees the WAL's committed pages)."""
    conn = sqlite3.connect(f"file:{data_dir / DB_FILENAME}?mode=ro", uri=True)
    try:
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
        (free,) = conn.execute("PRAGMA freelist_count").fetchone()
    finally:
        conn.close()
    return int((pages - free) * page_size)


def _config(where: Path) -> Path:
    """The devnet's ``node.toml`` (client/devnet/plan.py), uploads opened up."""
    devnet = tomllib.loads(node_config_toml())
    return write_config(
        where / "node.toml",
        node=devnet.get("node"),
        limits={**devnet.get("limits", {}), **UPLOAD_LIMITS},
        federation=devnet.get("federation"),
    )


def start_devnet(stack: ExitStack, where: Path, topology: Topology) -> list[NodeProcess]:
    """Three nodes linked as ``topology``; they stop with ``stack``."""
    ports = free_ports(NODES)
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    config = _config(where)
    nodes: list[NodeProcess] = []
    for i, peers in enumerate(peer_indices(topology, NODES)):
        args = [
            "--config",
            str(config),
            "--allow-private-peers",
            "--sync-interval",
            str(SYNC_INTERVAL_S),
        ]
        for j in peers:
            args += ["--peer", urls[j]]
        if topology is not Topology.MESH:
            args.append("--no-peer-exchange")
        nodes.append(stack.enter_context(NodeProcess(where / f"node{i + 1}", *args, port=ports[i])))
    return nodes


def _wait(what: str, done: Any, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while not done():
        if time.monotonic() > end:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)  # the poll interval of a deadline loop


def _links_live(http: httpx.Client, nodes: list[NodeProcess], topology: Topology) -> bool:
    for node, peers in zip(nodes, peer_indices(topology, NODES), strict=True):
        states = {p["url"]: p["state"] for p in http.get(node.url + "/v1/peers").json()["peers"]}
        if any(states.get(nodes[j].url) != "live" for j in peers):
            return False
    return True


def _metric(http: httpx.Client, url: str, name: str) -> float:
    for line in http.get(url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise RuntimeError(f"no metric {name} at {url}")


async def _served(node3: NodeClient, claim: EmbedImage) -> float:
    """Wait until node 3 serves the bytes ``claim`` names; perf_counter of that answer."""
    end = time.monotonic() + IMAGE_DEADLINE_S
    while True:
        try:
            await node3.fetch_blob(claim)  # checked against the claim
            return time.perf_counter()
        except RemoteError as exc:
            if exc.code != "not-found":
                raise
        if time.monotonic() > end:
            raise RuntimeError(f"node 3 never served image {claim.hash.hex()[:12]}")
        await asyncio.sleep(POLL_S)  # the poll interval of a deadline loop


async def post_images(nodes: list[NodeProcess], raws: list[bytes]) -> dict[str, list[float]]:
    """Prepare, upload and post each picture on node 1, then wait for node 3 to serve
    it; the timings (seconds) and the prepared sizes."""
    identity = Identity.from_seed(random.Random(20).randbytes(32))
    prev: bytes | None = None
    out: dict[str, list[float]] = {"prepare": [], "upload": [], "replicate": [], "bytes": []}
    async with httpx.AsyncClient(timeout=60) as http:
        node1, node3 = NodeClient(nodes[0].url, http), NodeClient(nodes[-1].url, http)
        for seq, raw in enumerate(raws, 1):
            t0 = time.perf_counter()
            prepared: PreparedImage = prepare_image(raw)
            t1 = time.perf_counter()
            await node1.upload_blob(prepared.data, prepared.mime)
            t2 = time.perf_counter()
            claim = prepared.claim(f"a generated photo, number {seq}")
            body = {"text": f"picture {seq}", "embed": {"images": [claim.to_map()]}}
            event = sign_event(identity, kind=kinds.POST, body=body, seq=seq, prev=prev)
            prev = event.id
            (result,) = await node1.submit([event.wire])
            accepted = time.perf_counter()
            if result.status != "accepted":
                raise RuntimeError(f"node 1 did not accept post {seq}: {result}")
            served = await _served(node3, claim)
            out["prepare"].append(t1 - t0)
            out["upload"].append(t2 - t1)
            out["replicate"].append(served - accepted)
            out["bytes"].append(float(prepared.size))
    return out


def _ms(samples: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples]
    return {
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "max_ms": round(max(ms), 2),
    }


def run_topology(topology: Topology, raws: list[bytes], where: Path) -> dict[str, Any]:
    with ExitStack() as stack:
        progress(f"{topology}: starting {NODES} nodes")
        nodes = start_devnet(stack, where, topology)
        with httpx.Client(timeout=10) as http:
            _wait(
                f"the {topology} links", lambda: _links_live(http, nodes, topology), LINK_DEADLINE_S
            )
            before = [db_bytes(n.data_dir) for n in nodes]
            progress(f"{topology}: posting {len(raws)} pictures to node 1")
            timings = asyncio.run(post_images(nodes, raws))
            for node in nodes:  # node 2 of the mesh may still be fetching the last one
                _wait(
                    "every node to hold every image",
                    lambda n=node: _metric(http, n.url, "murmur_blobs_held") == len(raws),
                    IMAGE_DEADLINE_S,
                )
            after = [db_bytes(n.data_dir) for n in nodes]
            held = [int(_metric(http, n.url, "murmur_blob_bytes_held")) for n in nodes]
    mean = statistics.mean(timings["bytes"])
    stores = []
    for k, (b, a) in enumerate(zip(before, after, strict=True), start=1):
        per_image = (a - b) / len(raws)
        stores.append(
            {
                "node": k,
                "growth_bytes": a - b,
                "per_image_bytes": round(per_image),
                "overhead_bytes": round(per_image - mean),
                "overhead_ratio": round((per_image - mean) / mean, 5),
                "blob_bytes_held": held[k - 1],
            }
        )
    return {
        "images": len(raws),
        "mean_image_bytes": round(mean),
        "min_image_bytes": int(min(timings["bytes"])),
        "max_image_bytes": int(max(timings["bytes"])),
        "replicate": _ms(timings["replicate"]),
        "replicate_all_ms": [round(s * 1000, 1) for s in timings["replicate"]],
        "prepare": _ms(timings["prepare"]),
        "upload": _ms(timings["upload"]),
        "stores": stores,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="murmur bench media",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--images", type=int, help="pictures posted (default 20; quick 5)")
    parser.add_argument("--width", type=int, default=2560, help="photo width (2560)")
    parser.add_argument("--height", type=int, default=1920, help="photo height (1920)")
    parser.add_argument(
        "--topologies",
        default=",".join(TOPOLOGIES),
        help="comma-separated, of mesh and line (default mesh,line)",
    )
    add_common_args(parser, "media")
    args = parser.parse_args(argv)
    count = args.images or (5 if args.quick else 20)
    topologies = [Topology(t.strip()) for t in args.topologies.split(",") if t.strip()]
    progress(f"generating {count} photos of {args.width}×{args.height}")
    raws = [photo(seed, args.width, args.height) for seed in range(count)]
    load = [round(x, 2) for x in os.getloadavg()]
    results: dict[str, Any] = {}
    for topology in topologies:
        with scratch_dir(f"media-{topology}") as where:
            results[str(topology)] = run_topology(topology, raws, where)
    first = next(iter(results.values()))
    rows: list[list[Any]] = []
    for name, res in results.items():
        for what, label in (
            ("replicate", "node 1 accepts -> node 3 serves"),
            ("prepare", "client: prepare_image"),
            ("upload", "client: upload to node 1"),
        ):
            t = res[what]
            rows.append([name, label, t["p50_ms"], t["p95_ms"], t["max_ms"], ""])
        for s in res["stores"]:
            rows.append(
                [
                    name,
                    f"node {s['node']} store, per image beyond it",
                    "",
                    "",
                    "",
                    f"{s['overhead_bytes']:,} B = {s['overhead_ratio']:.2%}",
                ]
            )
    print_table(
        f"media: {count} pictures of {args.width}×{args.height} posted on node 1 of 3 nodes "
        f"(prepared: mean {first['mean_image_bytes']:,} B, {first['min_image_bytes']:,}-"
        f"{first['max_image_bytes']:,})",
        rows,
        ["topology", "what", "p50 ms", "p95 ms", "max ms", "bytes"],
    )
    write_result(
        args.out,
        "media",
        {
            "nodes": NODES,
            "images": count,
            "width": args.width,
            "height": args.height,
            "max_blob_bytes": MAX_BLOB_BYTES,
            "loadavg_start": load,
            **results,
        },
    )
    return 0
