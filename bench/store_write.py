"""Store-level write speed of both backends, side by side (a developer helper).

``python -m bench.store_write [--events N] [--authors A] [--batch B] [--rotatable]
[--pg-url URL]`` signs and verifies a realistic corpus (:func:`bench.dataset.generate`:
posts, replies, likes, follows, profiles...), then times ``Store.apply_batch`` alone
in one process: a fresh SQLite store, then a fresh PostgreSQL database (a throwaway
cluster of :mod:`bench.pgcluster`, unless ``--pg-url`` names a server). That cluster
has the tests' settings (durability off: the write path's own cost) unless
``--durable`` asks for the benchmarks' (fsync and synchronous commit on, as ``murmur
bench ingest --store postgresql`` runs it). No HTTP, no verification in the timed
part: the write path only. ``murmur bench ingest`` measures whole nodes.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.dataset import generate
from node.store.base import Store
from node.store.sqlite import SqliteStore
from protocol.events import Event, decode_event

__all__ = ["main", "measure"]


async def measure(store: Store, events: Sequence[Event], batch: int) -> float:
    """Events per second through ``store.apply_batch`` in batches of ``batch``."""
    await store.open()
    try:
        start = time.perf_counter()
        for i in range(0, len(events), batch):
            results = await store.apply_batch(events[i : i + batch])
            refused = [r for r in results if r.status != "accepted"]
            if refused:
                raise RuntimeError(f"not accepted: {refused[0]}")
        return len(events) / (time.perf_counter() - start)
    finally:
        await store.close()


async def _pg_database(admin_url: str) -> str:
    import asyncpg

    name = f"bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name


async def _run(args: argparse.Namespace) -> None:
    from node.store.postgres import PostgresStore

    data = generate(
        args.events, authors=args.authors, rotatable=args.rotatable, mix=not args.posts_only
    )
    now = 2**62
    events = [decode_event(w, now_ms=now, allow_v2=True) for w in data.wires]
    tmp = Path(tempfile.mkdtemp(prefix="murmur-store-write-"))
    cluster = None
    try:
        admin = args.pg_url
        if admin is None:
            from bench.pgcluster import BENCH_SETTINGS, TEST_SETTINGS, start_cluster

            cluster = start_cluster(BENCH_SETTINGS if args.durable else TEST_SETTINGS)
            admin = cluster.url()
        sqlite = await measure(SqliteStore(tmp, now_ms=lambda: now), events, args.batch)
        pg = await measure(
            PostgresStore(await _pg_database(admin), now_ms=lambda: now), events, args.batch
        )
    finally:
        if cluster is not None:
            cluster.stop()
            shutil.rmtree(cluster.root, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    kind = ("v2 (did:murmur)" if args.rotatable else "v1") + (" posts" if args.posts_only else "")
    print(f"{len(events)} {kind} events, {args.authors} authors, batches of {args.batch}")
    print(f"  sqlite      {sqlite:9.0f} ev/s")
    print(f"  postgresql  {pg:9.0f} ev/s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store_write", description=__doc__)
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--authors", type=int, default=100)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rotatable", action="store_true", help="did:murmur authors (v2)")
    parser.add_argument("--posts-only", action="store_true", help="no likes, follows...")
    parser.add_argument("--pg-url", help="a PostgreSQL server to create a database on")
    parser.add_argument(
        "--durable", action="store_true",
        help="the throwaway cluster with fsync and synchronous commit on (the benchmarks')",
    )  # fmt: skip
    args = parser.parse_args(argv)
    asyncio.run(_run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
