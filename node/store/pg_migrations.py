"""PostgreSQL schema and its migrations, versioned in the ``schema_version`` table.

The PostgreSQL twin of :mod:`node.store.migrations` (spec 0004 §store), with its own
version numbers: each migration is a list of statements applied in one transaction
together with the version bump, so a crash mid-migration leaves the previous version
intact, and it runs under a transaction-level advisory lock, so that several node
processes opening one database at once migrate it once. A database newer than this
code refuses to open rather than guess. Add a migration by appending to
:data:`PG_MIGRATIONS`; never edit a published one.

Text that is compared or sorted (``author``, ``kind``, profile names) is ``COLLATE
"C"``: bytewise, as SQLite compares it, whatever the database's locale.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, TypeAlias

from node.store.migrations import SchemaError
from node.store.pg_blobs import SCHEMA as BLOB_SCHEMA
from node.store.pg_search import SCHEMA as SEARCH_SCHEMA
from node.store.pg_search import backfill_search
from node.store.pg_social import SCHEMA as SOCIAL_SCHEMA
from node.store.pg_social_bulk import backfill_social

if TYPE_CHECKING:
    from node.store.pg_write import Conn

__all__ = ["MIGRATION_LOCK", "PG_MIGRATIONS", "PG_SCHEMA_VERSION", "pg_migrate"]

#: Key of the advisory lock that serializes migrations across processes.
MIGRATION_LOCK: Final = 0x6D75726D_0001  # "murm" 1

_V1: Final = [
    # cursor: the node-local stream position, given under the stream_head row lock in
    # commit order (spec 0004 #store-cursor): never reused, strictly increasing.
    """CREATE TABLE events (
        cursor BIGINT PRIMARY KEY,
        id BYTEA NOT NULL UNIQUE,
        author TEXT COLLATE "C" NOT NULL,
        seq BIGINT NOT NULL,
        prev BYTEA,
        ts BIGINT NOT NULL,
        kind TEXT COLLATE "C" NOT NULL,
        header BYTEA NOT NULL,
        sig BYTEA NOT NULL,
        body BYTEA,
        deleted BOOLEAN NOT NULL DEFAULT false,
        reply_root BYTEA,
        reply_parent BYTEA,
        received_ms BIGINT NOT NULL,
        kev BYTEA,
        key BYTEA,
        status TEXT COLLATE "C" NOT NULL DEFAULT 'canonical',
        revoked_by BYTEA
    )""",
    "CREATE INDEX events_author_seq ON events (author, seq)",
    "CREATE INDEX events_author_ts ON events (author, ts)",
    "CREATE INDEX events_ts ON events (ts, cursor)",
    "CREATE INDEX events_ts_id ON events (ts, id)",
    "CREATE INDEX events_reply_root ON events (reply_root, ts, cursor) "
    "WHERE reply_root IS NOT NULL",
    "CREATE INDEX events_reply_parent ON events (reply_parent) WHERE reply_parent IS NOT NULL",
    "CREATE INDEX events_missing_body ON events (id) WHERE body IS NULL AND NOT deleted",
    # The one row whose lock orders the writers, and the highest cursor given.
    """CREATE TABLE stream_head (
        one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
        top BIGINT NOT NULL
    )""",
    "INSERT INTO stream_head (one, top) VALUES (true, 0)",
    # A delete's target, remembered even before the target arrives (never forgotten).
    """CREATE TABLE tombstones (
        target BYTEA NOT NULL,
        author TEXT COLLATE "C" NOT NULL,
        delete_id BYTEA NOT NULL,
        PRIMARY KEY (target, author)
    )""",
    """CREATE TABLE forks (
        author TEXT COLLATE "C" NOT NULL,
        seq BIGINT NOT NULL,
        PRIMARY KEY (author, seq)
    )""",
    """CREATE TABLE labels (
        id BYTEA PRIMARY KEY,
        cursor BIGINT NOT NULL,
        labeler TEXT COLLATE "C" NOT NULL,
        subject TEXT COLLATE "C" NOT NULL,
        val TEXT NOT NULL,
        neg BOOLEAN NOT NULL,
        exp BIGINT
    )""",
    "CREATE INDEX labels_subject ON labels (subject, labeler, cursor)",
    "CREATE INDEX labels_labeler ON labels (labeler, cursor)",
    # The latest profile of each author (highest seq, then greatest id, with a body).
    """CREATE TABLE profiles (
        author TEXT COLLATE "C" PRIMARY KEY,
        id BYTEA NOT NULL,
        seq BIGINT NOT NULL,
        name TEXT NOT NULL,
        name_lower TEXT COLLATE "C" NOT NULL,
        bio TEXT NOT NULL
    )""",
    # LIKE '%x%' on names: a trigram index when pg_trgm is installed is a later step;
    # this one serves the prefix-first ordering.
    "CREATE INDEX profiles_name ON profiles (name_lower)",
    # Node-local facts that survive restarts (the node's random id).
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # Known peers (spec 0005 §peers): where each subscription resumes, and its score.
    """CREATE TABLE peers (
        url TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        node_id TEXT,
        cursor BIGINT,
        score DOUBLE PRECISION NOT NULL,
        failures INTEGER NOT NULL,
        last_ok_ms BIGINT,
        added_ms BIGINT NOT NULL
    )""",
]

#: One step of a migration: a statement, or a coroutine run inside its transaction.
Step: TypeAlias = "str | Callable[[Conn], Awaitable[None]]"

_V2: Final[list[Step]] = [
    # The social indexes (spec 0004 #social, node/store/pg_social.py), then filled from
    # the events already held.
    *SOCIAL_SCHEMA,
    backfill_social,
]

_V3: Final[list[Step]] = [
    # Post search (spec 0004 #search, node/store/pg_search.py), filled from the held posts.
    *SEARCH_SCHEMA,
    backfill_search,
]

_V4: Final[list[Step]] = [
    # Every held key event that passed spec 0008 §8.5 steps 1-4, with the state it
    # establishes: the checks of later events are lookups here, not signatures
    # (#nodes). ``recovery`` is the concatenation of 1-3 keys of 32 bytes. (v2 events
    # were refused before this version: nothing to fill.)
    """CREATE TABLE key_events (
        id BYTEA PRIMARY KEY,
        author TEXT COLLATE "C" NOT NULL,
        seq BIGINT NOT NULL,
        prev BYTEA,
        kev BYTEA,
        kind TEXT COLLATE "C" NOT NULL,
        key BYTEA NOT NULL,
        signing BYTEA NOT NULL,
        next BYTEA NOT NULL,
        recovery BYTEA NOT NULL
    )""",
    "CREATE INDEX key_events_author ON key_events (author, seq, id)",
    # The fork choice of each did:murmur author as last computed (spec 0008 §8.6):
    # concatenated ids of the canonical path, and of the contenders when disputed.
    """CREATE TABLE key_paths (
        author TEXT COLLATE "C" PRIMARY KEY,
        path BYTEA NOT NULL,
        contenders BYTEA NOT NULL
    )""",
    # A settle reads every event of an author with these columns; a child is found by
    # (author, seq) already (events_author_seq).
]

#: Blobs (spec 0004 #blobs, node/store/pg_blobs.py): bytes, the posts' references to
#: them, their totals. (Posts held from before embeds were valid name none.)
_V5: Final[list[Step]] = [*BLOB_SCHEMA]

#: Feeds (spec 0004 #reacted): the likes and reposts of a time window, read as one
#: range of this index (target and author ride along, for an index-only scan) instead
#: of the whole ``refs`` table.
_V6: Final[list[Step]] = ["CREATE INDEX refs_kind_ts ON refs (kind, ts) INCLUDE (target, author)"]

#: Profiles of a page's authors: a partial index of the ``profile`` events alone
#: (spec 0004 #feed-profiles); queries name ``kind = 'profile'`` literally to use it.
_V7: Final[list[Step]] = [
    "CREATE INDEX events_profiles ON events (author, ts, cursor) WHERE kind = 'profile'"
]

#: Index ``i`` holds the steps that bring version ``i`` to ``i + 1``.
PG_MIGRATIONS: Final[list[list[Step]]] = [[*_V1], _V2, _V3, _V4, _V5, _V6, _V7]
PG_SCHEMA_VERSION: Final = len(PG_MIGRATIONS)


async def pg_migrate(conn: Conn) -> int:
    """Bring the database of ``conn`` to :data:`PG_SCHEMA_VERSION`; return the old version.

    Raises :class:`SchemaError` (before changing anything) for a newer database."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (one BOOLEAN PRIMARY KEY "
            "DEFAULT true CHECK (one), version INTEGER NOT NULL)"
        )
        current = await conn.fetchval("SELECT version FROM schema_version")
        old = int(current or 0)
        if old > PG_SCHEMA_VERSION:
            raise SchemaError(
                f"database schema version {old} is newer than this node ({PG_SCHEMA_VERSION})"
            )
        for version in range(old, PG_SCHEMA_VERSION):
            for step in PG_MIGRATIONS[version]:
                if isinstance(step, str):
                    await conn.execute(step)
                else:
                    await step(conn)
        if old < PG_SCHEMA_VERSION:
            await conn.execute(
                "INSERT INTO schema_version (one, version) VALUES (true, $1) "
                "ON CONFLICT (one) DO UPDATE SET version = excluded.version",
                PG_SCHEMA_VERSION,
            )
    return old
