"""Timeline: a 50-item page for a reader following 500 authors, over N stored events.

``murmur bench timeline [--events N] [--follows 500] [--repeat R] [--store postgresql]
[--quick]``

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

With ``--store postgresql`` the same corpus is also read from a PostgreSQL node, in the
same run: it is moved there by ``murmur node migrate-store``'s own code and checked
(counts and negentropy fingerprint; :mod:`bench.pgcorpus`, which keeps the migrated
cluster beside the corpus for later runs, verified by counts, unless
``--no-pg-cache``); the migration's time and check are reported. Both nodes run side
by side; each repetition shows the same reader's page from both, in rotating order;
then the whole reads and key steps above, node after node, with the same readers.
Each backend gets its own p50/p95 columns and its own verdict on the target.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import sqlite3
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    NodeProcess,
    add_common_args,
    progress,
    scratch_dir,
    write_config,
    write_result,
)
from bench.corpus import CACHE, Corpus, build_corpus, cached_corpus
from bench.dataset import generate
from bench.ingest import post_all
from bench.moderation import _filters
from bench.pgcorpus import PgCorpus, pg_corpus
from bench.timeline_report import (
    BACKENDS,
    PAGE,
    SINGLE_REPEAT,
    TARGET_MURMUR_RATIO,
    TARGET_P95_MS,
    print_migration,
    print_report,
    summary,
)
from client.api import NodeClient
from client.keycache import KeyCache, verify_cached
from client.moderation.core import Item, ViewContext
from client.moderation.pipeline import Pipeline
from client.reader import Reader
from client.verify import verify_many
from node.store.sqlite import DB_FILENAME
from protocol.encoding import encode_bins
from protocol.events import Event

__all__ = ["TARGET_MURMUR_RATIO", "TARGET_P95_MS", "main"]

KINDS = ("post", "repost")


def _page(client: httpx.Client, url: str, authors: list[str]) -> list[bytes]:
    resp = client.post(
        url + "/v1/feed",
        json={"authors": authors, "kinds": ["post", "repost"], "limit": PAGE},
    )
    if resp.status_code != 200:
        raise RuntimeError(f"feed answered {resp.status_code}: {resp.text[:300]}")
    return [base64.b64decode(item["wire"]) for item in resp.json()["events"]]




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
    if (dids := _rotatable_dids(corpus, count)) is not None:
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


def _time_pages(
    client: httpx.Client, urls: dict[str, str], authors: list[str], follows: int,
    repeat: int, pipeline: Pipeline, rng: random.Random,
) -> dict[str, dict[str, list[float]]]:  # fmt: skip
    """Per repetition, one new reader's page (fetch, verify, filter) from every node in
    turn, the order rotating: the same readers on every backend, at the same moments."""
    steps: dict[str, dict[str, list[float]]] = {
        b: {"fetch": [], "verify": [], "filter": [], "items": []} for b in urls
    }
    warm = rng.sample(authors, follows)
    for url in urls.values():
        _page(client, url, warm)  # warm-up
    names = list(urls)
    for n in range(repeat):
        follow = rng.sample(authors, follows)
        viewer = follow[0]
        follow_set = frozenset(follow)
        for backend in names[n % len(names) :] + names[: n % len(names)]:
            t0 = time.perf_counter()
            wires = _page(client, urls[backend], follow)
            t1 = time.perf_counter()
            checked = asyncio.run(verify_many(wires))
            events = [e for e in checked if isinstance(e, Event)]
            t2 = time.perf_counter()
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
            s = steps[backend]
            s["fetch"].append((t1 - t0) * 1000)
            s["verify"].append((t2 - t1) * 1000)
            s["filter"].append((t3 - t2) * 1000)
            s["items"].append(len(events))
    for s in steps.values():
        s["total"] = [a + b + c for a, b, c in zip(s["fetch"], s["verify"], s["filter"],
                                                   strict=True)]  # fmt: skip
    return steps


def _rotatable_dids(corpus: Corpus, count: int) -> list[str] | None:
    """The dids of the corpus's ``count`` did:murmur authors, if ingested before."""
    meta = corpus.data_dir.parent / f"rotatable-{count}.json"
    if not meta.is_file():
        return None
    dids: list[str] = json.loads(meta.read_text())["dids"]
    return dids


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
    parser.add_argument(
        "--store", choices=("sqlite", "postgresql"), default="sqlite",
        help="postgresql: also read the same corpus from a PostgreSQL node (migrated)",
    )  # fmt: skip
    parser.add_argument(
        "--no-pg-cache", action="store_true",
        help="migrate the corpus into PostgreSQL again even if a verified copy is kept",
    )  # fmt: skip
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
    span = _time_range(corpus)
    samples: dict[str, dict[str, list[float]]] = {}
    with scratch_dir("timeline") as where, ExitStack() as stack:
        config = write_config(where / "node.toml")
        murmur: list[str] = []
        if not args.no_keys:
            # Before any timing (and before a migration reads the corpus): the corpus's
            # did:murmur authors, ingested through its node the first time.
            murmur = _rotatable_dids(corpus, 2 * follows) or []
            if not murmur:
                with NodeProcess(corpus.data_dir, "--config", str(config)) as node:
                    murmur = _ensure_rotatable(corpus, node.url, 2 * follows, span)
        pg: PgCorpus | None = None
        if args.store == "postgresql":
            pg = stack.enter_context(pg_corpus(corpus, reuse=not args.no_pg_cache))
        urls = {
            "sqlite": stack.enter_context(
                NodeProcess(corpus.data_dir, "--config", str(config))
            ).url
        }
        if pg is not None:
            urls["postgresql"] = stack.enter_context(NodeProcess(
                where / "pg-node", "--store", pg.url, "--config", str(config), deadline_s=120
            )).url  # fmt: skip
        progress(f"timing {repeat} timeline pages over {n:,} events"
                 + (" on each node" if pg else ""))  # fmt: skip
        with httpx.Client(timeout=60) as client:
            samples = _time_pages(client, urls, corpus.authors, follows, repeat, pipeline, rng)
            if murmur:
                dids = rng.sample(murmur, follows)
                for backend, url in urls.items():
                    on = f" ({BACKENDS[backend]})" if pg else ""
                    progress(f"timing {repeat} x 3 whole reads: did:key, did:murmur warm, "
                             f"cold{on}")  # fmt: skip
                    samples[backend] |= asyncio.run(_compare_readers(
                        url, corpus.authors, murmur, follows, repeat, pipeline,
                        where / backend / "readers",
                    ))  # fmt: skip
                    progress(f"timing the key-history steps alone{on}")
                    samples[backend] |= _time_keys(
                        client, url, dids, repeat, where / backend / "homes"
                    )
    docs = {backend: summary(s) for backend, s in samples.items()}
    doc: dict[str, Any] = {
        "events": n,
        "authors": args.authors,
        "follows": follows,
        "page": PAGE,
        "filters": len(pipeline.filters),
        "repeat": repeat,
        **docs["sqlite"],
    }
    if murmur:
        doc["rotatable_authors"] = 2 * follows
    print_report(docs, n, follows, len(pipeline.filters), repeat)
    if pg is not None:
        doc["postgresql"] = {**docs["postgresql"], "migration": pg.migration}
        print_migration(pg.migration)
    write_result(args.out, "timeline", doc)
    return 0
