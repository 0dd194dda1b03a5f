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

A second figure (skip it with ``--no-keys``) prices the key histories of rotatable
authors (spec 0008 #clients): the reader follows ``--follows`` ``did:murmur`` authors
(each a genesis, a rotation and a v2 post, ingested into the same node before the
timing) and, per page, fetches their key events with one ``POST /v1/keys`` (spec 0004
#keys-batch) and verifies them; for comparison, a few pages fetch them the older way,
one ``GET /v1/authors/{did}/keys`` per author. Verification goes through the home's
cache of verified key events (:mod:`client.keycache`), timed twice per page: by a home
that never read these authors (every signature checked, the cache file written) and by
one that did (the cache file loaded, no signature checked).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import random
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
from bench.corpus import CACHE, build_corpus, cached_corpus
from bench.moderation import _filters
from client.keycache import KeyCache, verify_cached
from client.moderation.core import Item, ViewContext
from client.moderation.pipeline import Pipeline
from client.verify import verify_many
from protocol.encoding import encode
from protocol.events import Event, sign_event_v2, sign_genesis
from protocol.identity import Identity, next_key_commitment

__all__ = ["main"]

TARGET_P95_MS = 20.0
PAGE = 50


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


def _rotatable_events(rng: random.Random, count: int) -> tuple[list[str], list[bytes]]:
    """``count`` did:murmur authors, each a genesis, a rotation with the pre-committed
    next key, and a post signed with the new key (spec 0008 §8.2–§8.4)."""
    dids: list[str] = []
    wires: list[bytes] = []
    now = int(time.time() * 1000) - 60_000
    for _ in range(count):
        s0, n0, r0, s1, n1 = (Identity.from_seed(rng.randbytes(32)) for _ in range(5))
        g = sign_genesis(
            s0, next_key=n0.public.raw, recovery=[r0.public.raw], ts=now
        )
        rot = sign_event_v2(
            n0,
            author=g.author,
            kind="rotate",
            body={"signing": s1.public.raw, "next": next_key_commitment(n1.public.raw)},
            seq=2,
            prev=g.id,
            kev=g.id,
            ts=now + 1,
        )
        post = sign_event_v2(
            s1, author=g.author, kind="post", body={"text": "rotated"}, seq=3,
            prev=rot.id, kev=rot.id, ts=now + 2,
        )  # fmt: skip
        dids.append(g.author)
        wires += [g.wire, rot.wire, post.wire]
    return dids, wires


def _ingest(client: httpx.Client, url: str, wires: list[bytes]) -> None:
    for i in range(0, len(wires), 300):  # genesis before rotation before post
        resp = client.post(
            url + "/v1/events",
            content=encode(wires[i : i + 300]),
            headers={"Content-Type": "application/msgpack"},
        )
        doc = resp.json()
        if resp.status_code != 200 or doc["accepted"] + doc["duplicate"] != len(doc["results"]):
            raise RuntimeError(f"ingest answered {resp.status_code}: {resp.text[:300]}")


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
        if len(wires) != 2 * len(dids):
            raise RuntimeError(f"the node served {len(wires)} key events, not {2 * len(dids)}")
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
        "--no-keys", action="store_true", help="skip the rotatable authors' key histories"
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
                    progress(f"ingesting {follows} rotatable authors; timing their key events")
                    # New authors each run: the corpus's node is reused between runs, and
                    # the same dids again would pile up key histories (and get deferred).
                    dids, wires = _rotatable_events(random.Random(), follows)
                    _ingest(client, node.url, wires)
                    keys = _time_keys(client, node.url, dids, repeat, where / "homes")
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
    key_rows = []
    for name, key in (
        ("POST /v1/keys (node, HTTP)", "keys_fetch"),
        (f"verify {2 * follows} key events, first read", "keys_verify"),
        (f"verify {2 * follows} key events, later reads (cache)", "keys_cached"),
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
    if key_rows:
        print_table(
            f"key histories of {follows} followed rotatable authors (genesis + rotation "
            f"each; {repeat} pages, old way {SINGLE_REPEAT})",
            key_rows,
            ["step", "p50 ms", "p95 ms"],
        )
    write_result(args.out, "timeline", doc)
    return 0
