"""Timeline: a 50-item page for a reader following 500 authors, over N stored events.

``murmur bench timeline [--events N] [--follows 500] [--repeat R] [--quick]``

The node holds the corpus of :mod:`bench.corpus` (1,000,000 events by 10,000 authors
by default; quick: 50,000, built if missing). Each repetition takes another reader
(500 random followed authors) and times the three steps of showing a page:

1. **fetch**: ``POST /v1/feed`` with 500 dids, kinds post and repost, limit 50, over
   HTTP (keep-alive): the node's indexed query and its JSON answer, as the reference
   client asks for a long author list;
2. **verify**: decoding and verifying the 50 events' signatures, as the client does
   (spread over the CPUs, :mod:`client.verify`);
3. **filter**: the moderation pipeline with 10 filters active (eight built-ins and
   two of the example custom filters, as in ``bench moderation``).

Reported: p50 and p95 of each step and of the whole, and the filtering share.

Then (skip it with ``--no-keys``) the same page for a reader of rotatable authors
(spec 0008 #clients). The store also holds ``2 x --follows`` ``did:murmur`` authors
with as many events each as the corpus's authors (v2 events from a genesis, about 1%
rotations; :mod:`bench.dataset`), spread over the corpus's time range: ingested once
per corpus and kept in it (``rotatable-N.json`` beside the data records their dids).
Per repetition, three whole reads through the client's :class:`client.reader.Reader`,
as ``murmur`` does them (a new node client and a new home key cache each, over HTTP),
each of another random ``--follows`` authors, then the same 10 filters:

* **did:key**: 500 did:key authors (their page needs no key history);
* **did:murmur, warm**: 500 did:murmur authors, by a home whose key cache
  (:mod:`client.keycache`, spec 0007 #key-status) holds the key events of all 1,000
  (read once before): the feed, whose key-event tips (spec 0004 #feed-key-tips) the
  home holds, so no ``POST /v1/keys``; the key events read from the home, the key
  state resolved, only canonical events shown;
* **did:murmur, cold**: the same by a home that never read them (every key event's
  signature checked, the cache file written).

Target (issue #15): the warm did:murmur read within :data:`TARGET_MURMUR_RATIO` of the
did:key read at p50. Last, the key-history steps alone per page (``POST /v1/keys``;
verifying the key events first and later through the cache; 500 single-author ``GET
/v1/authors/{did}/keys``, the way before the batch).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    NodeProcess,
    add_common_args,
    percentile,
    print_table,
    progress,
    scratch_dir,
    write_config,
    write_result,
)
from bench.corpus import CACHE, Corpus, build_corpus, cached_corpus
from bench.dataset import generate
from bench.ingest import post_all
from bench.moderation import _filters
from client.api import NodeClient
from client.keycache import KeyCache, verify_cached
from client.moderation.core import Item, ViewContext
from client.moderation.pipeline import Pipeline
from client.reader import Reader
from client.verify import verify_many
from node.store.sqlite import DB_FILENAME
from protocol.encoding import encode_bins
from protocol.events import Event

__all__ = ["TARGET_MURMUR_RATIO", "main"]

TARGET_P95_MS = 20.0
#: A did:murmur reader's whole read, key cache warm, over a did:key reader's (p50).
TARGET_MURMUR_RATIO = 1.10
PAGE = 50
KINDS = ("post", "repost")


def _page(client: httpx.Client, url: str, authors: list[str]) -> list[bytes]:
    resp = client.post(
        url + "/v1/feed",
        json={"authors": authors, "kinds": ["post", "repost"], "limit": PAGE},
    )
    if resp.status_code != 200:
        raise RuntimeError(f"feed answered {resp.status_code}: {resp.text[:300]}")
    return [base64.b64decode(item["wire"]) for item in resp.json()["events"]]


#: Pages timed the older way (one GET per author): 500 requests each.
SINGLE_REPEAT = 5


def _time_range(corpus: Corpus) -> tuple[int, int]:
    """The oldest and newest ``ts`` the corpus holds (read before its node starts)."""
    uri = f"file:{corpus.data_dir / DB_FILENAME}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        low, high = conn.execute("SELECT min(ts), max(ts) FROM events").fetchone()
    finally:
        conn.close()
    return int(low), int(high)


def _ensure_rotatable(corpus: Corpus, url: str, count: int, span: tuple[int, int]) -> list[str]:
    """The dids of the corpus's ``count`` did:murmur authors, with as many events each
    as its authors have, spread over its time range ``span`` like theirs; ingested into
    its node the first time (the same corpus always gets the same events)."""
    meta = corpus.data_dir.parent / f"rotatable-{count}.json"
    events = count * max(2, corpus.events // max(1, len(corpus.authors)))
    if meta.is_file():
        dids: list[str] = json.loads(meta.read_text())["dids"]
        return dids
    progress(f"signing and ingesting {events:,} events of {count} did:murmur authors (once)")
    step = max(1, (span[1] - span[0]) // events)
    data = generate(events, authors=count, seed=7, ts_start=span[0], ts_step=step, rotatable=True)
    bodies = [encode_bins(data.wires[i : i + 500]) for i in range(0, events, 500)]
    posted = asyncio.run(post_all(url, bodies, 4, expect=events))
    meta.write_text(json.dumps({
        "dids": data.authors, "events": events, "rotations": data.kinds.count("rotate"),
        "ingest_s": round(posted.seconds, 1),
    }) + "\n")  # fmt: skip
    return data.authors


async def _read(
    url: str, http: httpx.AsyncClient, authors: list[str], cache: KeyCache, pipeline: Pipeline
) -> int:
    """One whole read of a page as the client does it: a node client, the feed, key
    histories of the did:murmur authors (through the home's key cache), the filters."""
    reader = Reader([NodeClient(url, http)], timeout=60, keycache=cache)
    await reader.fetch_feed(authors=authors, kinds_=KINDS, limit=PAGE)
    cache.flush()
    shown = sorted(
        (e for e in reader.events.values() if e.kind in KINDS), key=lambda e: (e.ts, e.id)
    )[-PAGE:]
    if not reader.report.nodes[0].ok:
        raise RuntimeError(f"the read failed: {reader.report.nodes[0].error}")
    follows = frozenset(authors)
    now = int(time.time() * 1000)
    await pipeline.run([
        Item(event=e, context=ViewContext.TIMELINE, viewer=authors[0], follows=follows,
             now_ms=now)
        for e in shown
    ])  # fmt: skip
    return len(shown)


async def _compare_readers(
    url: str, key_dids: list[str], murmur_dids: list[str], follows: int, repeat: int,
    pipeline: Pipeline, where: Path,
) -> dict[str, list[float]]:  # fmt: skip
    """Per repetition, a did:key read, a warm and a cold did:murmur read (in turn
    first), each of other random authors; the whole read's ms each."""
    rng = random.Random(11)
    samples: dict[str, list[float]] = {"read_key": [], "read_warm": [], "read_cold": []}
    shown: list[int] = []
    warm = where / "warm-home"
    async with httpx.AsyncClient(timeout=60) as http:
        # The warm home read every rotatable author's key history once (that is what
        # warm means; a read of a page resolves only the authors on it).
        for at in range(0, len(murmur_dids), follows):
            reader = Reader([NodeClient(url, http)], timeout=60, keycache=KeyCache(warm))
            await reader.keys.settle(murmur_dids[at : at + follows])
        for n in range(repeat):
            order = ["read_key", "read_warm", "read_cold"]
            rng.shuffle(order)
            for what in order:
                dids = key_dids if what == "read_key" else murmur_dids
                cache = KeyCache(where / f"cold-{n}" if what == "read_cold" else warm)
                authors = rng.sample(dids, follows)
                t0 = time.perf_counter()
                shown.append(await _read(url, http, authors, cache, pipeline))
                samples[what].append((time.perf_counter() - t0) * 1000)
    if min(shown) == 0:
        raise RuntimeError("a read showed no event")
    return samples


def _keys_batch(client: httpx.Client, url: str, dids: list[str]) -> list[bytes]:
    resp = client.post(url + "/v1/keys", json={"authors": dids})
    if resp.status_code != 200:
        raise RuntimeError(f"keys answered {resp.status_code}: {resp.text[:300]}")
    doc = resp.json()
    if doc["deferred"]:
        raise RuntimeError(f"keys deferred {len(doc['deferred'])} authors")
    return [base64.b64decode(e["wire"]) for g in doc["keys"] for e in g["events"]]


def _keys_single(client: httpx.Client, url: str, dids: list[str]) -> list[bytes]:
    wires: list[bytes] = []
    for did in dids:
        resp = client.get(url + f"/v1/authors/{did}/keys")
        if resp.status_code != 200:
            raise RuntimeError(f"keys answered {resp.status_code}: {resp.text[:300]}")
        wires += [base64.b64decode(e["wire"]) for e in resp.json()["events"]]
    return wires


def _verify_keys(wires: list[bytes], cache: KeyCache) -> None:
    """What a reader does with a page's key events: verify through the home's cache
    of verified key events (spec 0007 #key-status), loaded from and saved to disk."""
    checked = asyncio.run(verify_cached(wires, cache))
    cache.flush()
    if not all(isinstance(e, Event) for e in checked):
        raise RuntimeError("the key events did not all come back verified")


def _time_keys(
    client: httpx.Client, url: str, dids: list[str], repeat: int, where: Path
) -> dict[str, list[float]]:
    """Per page: the key events of every followed author, fetched and verified, by a
    home that never read them (cold cache) and by one that did (a later read)."""
    samples: dict[str, list[float]] = {
        "keys_fetch": [],
        "keys_verify": [],
        "keys_cached": [],
        "keys_single": [],
    }
    _verify_keys(_keys_batch(client, url, dids), KeyCache(where / "warm"))  # warm-up
    for n in range(repeat):
        t0 = time.perf_counter()
        wires = _keys_batch(client, url, dids)
        t1 = time.perf_counter()
        _verify_keys(wires, KeyCache(where / f"cold-{n}"))
        t2 = time.perf_counter()
        _verify_keys(wires, KeyCache(where / "warm"))  # a new read: the file, not memory
        t3 = time.perf_counter()
        if len(wires) < len(dids):  # a genesis each at least
            raise RuntimeError(f"the node served {len(wires)} key events for {len(dids)}")
        samples["keys_fetch"].append((t1 - t0) * 1000)
        samples["keys_verify"].append((t2 - t1) * 1000)
        samples["keys_cached"].append((t3 - t2) * 1000)
    for _ in range(SINGLE_REPEAT):
        t0 = time.perf_counter()
        _keys_single(client, url, dids)
        samples["keys_single"].append((time.perf_counter() - t0) * 1000)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="murmur bench timeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, help="stored events (default 1000000; quick 50000)")
    parser.add_argument("--authors", type=int, default=10_000, help="authors in the corpus")
    parser.add_argument("--follows", type=int, default=500, help="authors the reader follows")
    parser.add_argument("--repeat", type=int, help="pages timed (default 200; quick 40)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where corpora are kept")
    parser.add_argument(
        "--no-keys", action="store_true", help="skip the readers of rotatable authors"
    )
    add_common_args(parser, "timeline")
    args = parser.parse_args(argv)
    n = args.events or (50_000 if args.quick else 1_000_000)
    repeat = args.repeat or (40 if args.quick else 200)
    corpus = cached_corpus(n, args.authors, args.cache)
    if corpus is None:
        progress(f"no corpus of {n:,} events yet: building it (bench memory does too)")
        corpus = build_corpus(n, args.authors, cache=args.cache)
    rng = random.Random(5)
    follows = min(args.follows, len(corpus.authors))
    pipeline = Pipeline(_filters(rng, corpus.authors[:2]))
    fetch_ms: list[float] = []
    verify_ms: list[float] = []
    filter_ms: list[float] = []
    sizes: list[int] = []
    span = _time_range(corpus)
    with scratch_dir("timeline") as where:
        config = write_config(where / "node.toml")
        with NodeProcess(corpus.data_dir, "--config", str(config)) as node:
            progress(f"timing {repeat} timeline pages over {n:,} events")
            with httpx.Client(timeout=60) as client:
                _page(client, node.url, rng.sample(corpus.authors, follows))  # warm-up
                for _ in range(repeat):
                    authors = rng.sample(corpus.authors, follows)
                    viewer = authors[0]
                    t0 = time.perf_counter()
                    wires = _page(client, node.url, authors)
                    t1 = time.perf_counter()
                    checked = asyncio.run(verify_many(wires))
                    events = [e for e in checked if isinstance(e, Event)]
                    t2 = time.perf_counter()
                    follow_set = frozenset(authors)
                    items = [
                        Item(
                            event=e,
                            context=ViewContext.TIMELINE,
                            viewer=viewer,
                            follows=follow_set,
                            now_ms=int(time.time() * 1000),
                        )
                        for e in events
                    ]
                    asyncio.run(pipeline.run(items))
                    t3 = time.perf_counter()
                    fetch_ms.append((t1 - t0) * 1000)
                    verify_ms.append((t2 - t1) * 1000)
                    filter_ms.append((t3 - t2) * 1000)
                    sizes.append(len(events))
                keys: dict[str, list[float]] = {}
                if not args.no_keys:
                    murmur = _ensure_rotatable(corpus, node.url, 2 * follows, span)
                    progress(f"timing {repeat} x 3 whole reads: did:key, did:murmur warm, cold")
                    keys = asyncio.run(_compare_readers(
                        node.url, corpus.authors, murmur, follows, repeat, pipeline,
                        where / "readers",
                    ))  # fmt: skip
                    progress("timing the key-history steps alone")
                    dids = rng.sample(murmur, follows)
                    keys |= _time_keys(client, node.url, dids, repeat, where / "homes")
    total = [a + b + c for a, b, c in zip(fetch_ms, verify_ms, filter_ms, strict=True)]
    share = statistics.median(filter_ms) / statistics.median(total)
    doc: dict[str, Any] = {
        "events": n,
        "authors": args.authors,
        "follows": follows,
        "page": PAGE,
        "filters": len(pipeline.filters),
        "repeat": repeat,
        "items_per_page_min": min(sizes),
    }
    rows = []
    for name, samples in (
        ("fetch (node, HTTP)", fetch_ms),
        ("verify 50 events", verify_ms),
        ("filter (10 filters)", filter_ms),
        ("total", total),
    ):
        p50, p95 = percentile(samples, 50), percentile(samples, 95)
        key = name.split()[0]
        doc[f"{key}_p50_ms"], doc[f"{key}_p95_ms"] = round(p50, 2), round(p95, 2)
        rows.append([name, p50, p95])
    read_rows = []
    for name, key in (
        (f"{follows} did:key authors", "read_key"),
        (f"{follows} did:murmur authors, key cache warm", "read_warm"),
        (f"{follows} did:murmur authors, key cache cold", "read_cold"),
    ):
        if keys.get(key):
            p50, p95 = percentile(keys[key], 50), percentile(keys[key], 95)
            doc[f"{key}_p50_ms"], doc[f"{key}_p95_ms"] = round(p50, 2), round(p95, 2)
            base = doc.get("read_key_p50_ms") or p50
            read_rows.append([name, p50, p95, p50 / base])
    if read_rows:
        doc["murmur_warm_ratio"] = round(doc["read_warm_p50_ms"] / doc["read_key_p50_ms"], 3)
        doc["murmur_cold_ratio"] = round(doc["read_cold_p50_ms"] / doc["read_key_p50_ms"], 3)
        doc["target_murmur_ratio"] = TARGET_MURMUR_RATIO
        doc["target_murmur_met"] = doc["murmur_warm_ratio"] <= TARGET_MURMUR_RATIO
        doc["rotatable_authors"] = 2 * follows
    key_rows = []
    for name, key in (
        ("POST /v1/keys (node, HTTP)", "keys_fetch"),
        ("verify their key events, first read", "keys_verify"),
        ("verify their key events, later reads (cache)", "keys_cached"),
        (f"{follows} x GET .../keys (old way)", "keys_single"),
    ):
        if keys.get(key):
            p50, p95 = percentile(keys[key], 50), percentile(keys[key], 95)
            doc[f"{key}_p50_ms"], doc[f"{key}_p95_ms"] = round(p50, 2), round(p95, 2)
            key_rows.append([name, p50, p95])
    doc["filtering_share"] = round(share, 3)
    doc["target_p95_ms"] = TARGET_P95_MS
    doc["target_met"] = doc["total_p95_ms"] < TARGET_P95_MS
    print_table(
        f"timeline: {PAGE} items, {follows} followed authors, {n:,} stored events, "
        f"{len(pipeline.filters)} filters ({repeat} pages)",
        rows,
        ["step", "p50 ms", "p95 ms"],
    )
    print(f"  filtering share of the median page: {share:.0%}")
    print(
        f"  target: p95 < {TARGET_P95_MS:.0f} ms: {'met' if doc['target_met'] else 'NOT met'} "
        f"({doc['total_p95_ms']:.1f} ms)"
    )
    if read_rows:
        print_table(
            f"whole reads, {follows} followed authors of one kind each ({repeat} reads each; "
            f"the store also holds {2 * follows} did:murmur authors)",
            read_rows,
            ["reader", "p50 ms", "p95 ms", "x did:key p50"],
        )
        print(
            f"  target: did:murmur read, warm key cache, <= {TARGET_MURMUR_RATIO:.2f}x the "
            f"did:key read (p50): {'met' if doc['target_murmur_met'] else 'NOT met'} "
            f"({doc['murmur_warm_ratio']:.2f}x)"
        )
    if key_rows:
        print_table(
            f"key histories of {follows} followed rotatable authors alone ({repeat} pages, "
            f"old way {SINGLE_REPEAT})",
            key_rows,
            ["step", "p50 ms", "p95 ms"],
        )
    write_result(args.out, "timeline", doc)
    return 0
