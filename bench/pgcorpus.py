"""A benchmark corpus moved into PostgreSQL by ``murmur node migrate-store``, kept for reuse.

``murmur bench timeline --store postgresql`` reads the same stored events from a
PostgreSQL node as from the SQLite one. They get there the way an operator's would:
:func:`node.migrate.migrate_store` from the corpus's SQLite data directory (every event
through the PostgreSQL write path, then its check: counts and the negentropy
fingerprint of both sets, spec 0004 #store-migrate). At a million events that takes
minutes, so the cluster's data directory is kept beside the corpus
(``bench/results/cache/corpus-N-A/pg-v<schema>-<events>-<top cursor>/``) with a
``migrated.json`` written only once the migration and its check passed. A later run
reuses it only when all of these hold, else it migrates again into a fresh database:

* the directory's name: this code's PostgreSQL schema version, and the source's event
  count and highest cursor (a corpus that grew, e.g. by its rotatable authors, or was
  rebuilt, gets another directory; other ``pg-*`` directories of the corpus are removed);
* ``migrated.json`` names the source node and the same counts;
* the database, opened as a node opens it, holds that node id and exactly those counts
  (events, authors, deleted, forked authors).

``--no-pg-cache`` migrates every run (and says how long it took).
"""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import progress
from bench.corpus import Corpus
from bench.pgcluster import BENCH_SETTINGS, PgCluster, running_cluster
from node.store.sqlite import DB_FILENAME

__all__ = ["DATABASE", "PgCorpus", "pg_corpus"]

#: The database of the kept cluster that holds the corpus.
DATABASE = "corpus"
#: Migration progress lines passed on to stderr: one in this many (and the last).
_PROGRESS_EVERY = 25


@dataclass(frozen=True, slots=True)
class _Source:
    node_id: str
    events: int
    top: int


@dataclass(frozen=True, slots=True)
class PgCorpus:
    """The corpus in a running cluster: ``url`` for ``--store``, how it got there."""

    cluster: PgCluster
    url: str
    #: ``migrated.json``: the migration's report and check, ``cached`` when reused.
    migration: dict[str, Any]


def _source(corpus: Corpus) -> _Source:
    """The SQLite corpus's node id, event count and highest cursor (read-only)."""
    uri = f"file:{corpus.data_dir / DB_FILENAME}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        node_id = conn.execute("SELECT value FROM meta WHERE key = 'node_id'").fetchone()
        events, top = conn.execute("SELECT count(*), max(cursor) FROM events").fetchone()
    finally:
        conn.close()
    return _Source(str(node_id[0]) if node_id else "", int(events), int(top or 0))


class _Throttled(io.StringIO):
    """migrate-store's output, one progress line in :data:`_PROGRESS_EVERY` to stderr."""

    def __init__(self) -> None:
        super().__init__()
        self._lines = 0

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if not line.strip():
                continue
            if not line.startswith("  ") or self._lines % _PROGRESS_EVERY == 0:
                progress(f"migrate-store: {line.strip()}")
            self._lines += line.startswith("  ")
        return len(text)


async def _counts(url: str) -> dict[str, Any]:
    """What a node opening ``url`` sees: its node id and counts."""
    from node.config import system_now_ms
    from node.store.postgres import PostgresStore

    store = PostgresStore(url, now_ms=system_now_ms)
    await store.open()
    try:
        c = store.counts()
        return {
            "node_id": await store.node_id(),
            "events": c.events,
            "authors": c.authors,
            "deleted": c.deleted,
            "forked_authors": c.forked_authors,
        }
    finally:
        await store.close()


def _reusable(cluster: PgCluster, marker: Path, source: _Source) -> dict[str, Any] | None:
    """The kept migration's record if the database still matches it, else None."""
    if not marker.is_file():
        return None
    info: dict[str, Any] = json.loads(marker.read_text())
    if info.get("source") != asdict(source):
        progress("the kept PostgreSQL corpus is of another source: migrating again")
        return None
    import asyncpg

    try:
        found = asyncio.run(_counts(cluster.url(DATABASE)))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        progress(f"the kept PostgreSQL corpus cannot be read ({exc!r}): migrating again")
        return None
    if found != info["counts"]:
        progress(f"the kept PostgreSQL corpus holds {found}, not {info['counts']}: "
                 "migrating again")  # fmt: skip
        return None
    return info


def _migrate(corpus: Corpus, cluster: PgCluster, source: _Source) -> dict[str, Any]:
    from node.migrate import migrate_store

    asyncio.run(cluster.drop_database(DATABASE))
    url = asyncio.run(cluster.create_database(DATABASE))
    progress(f"migrate-store: {source.events:,} events into PostgreSQL (node/migrate.py)")
    start = time.perf_counter()
    report = asyncio.run(migrate_store(corpus.data_dir, url, out=_Throttled()))
    seconds = time.perf_counter() - start
    counts = asyncio.run(_counts(url))
    if counts["node_id"] != source.node_id:
        raise RuntimeError(f"migrated node id {counts['node_id']} != {source.node_id}")
    return {
        "source": asdict(source),
        "counts": counts,
        "events": report.events,
        "renumbered": report.renumbered,
        "fingerprint": report.fingerprint,
        # migrate_store returns only once its check passed (it raises otherwise).
        "check": "passed: events, authors, deleted and forked-author counts and the "
        "negentropy fingerprint of both sets are equal",
        "seconds": round(seconds, 1),
        "events_per_s": round(report.events / seconds, 1),
        "settings": dict(BENCH_SETTINGS),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


@contextmanager
def pg_corpus(corpus: Corpus, *, reuse: bool = True) -> Iterator[PgCorpus]:
    """The corpus in a running PostgreSQL cluster (kept beside it), migrated from its
    SQLite data directory unless a kept, verified migration is there; the cluster is
    stopped at the end. No node may be running on the SQLite corpus meanwhile."""
    source = _source(corpus)
    from node.store.pg_migrations import PG_SCHEMA_VERSION

    root = corpus.data_dir.parent / f"pg-v{PG_SCHEMA_VERSION}-{source.events}-{source.top}"
    for other in corpus.data_dir.parent.glob("pg-*"):
        if other != root:
            shutil.rmtree(other, ignore_errors=True)
    marker = root / "migrated.json"
    if not reuse:
        marker.unlink(missing_ok=True)
    with running_cluster(BENCH_SETTINGS, root=root) as cluster:
        info = _reusable(cluster, marker, source)
        if info is None:
            marker.unlink(missing_ok=True)
            info = _migrate(corpus, cluster, source)
            marker.write_text(json.dumps(info, indent=2) + "\n")
            info["cached"] = False
        else:
            progress(f"reusing the PostgreSQL corpus migrated {info['date']} "
                     f"({info['seconds']:.0f} s, check {info['check'].split(':')[0]})")  # fmt: skip
            info["cached"] = True
        yield PgCorpus(cluster=cluster, url=cluster.url(DATABASE), migration=info)
