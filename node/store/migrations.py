"""SQLite schema and its migrations, versioned with ``PRAGMA user_version``.

Each migration is a list of steps applied in one transaction together with the
version bump, so a crash mid-migration leaves the previous version intact. A step is
an SQL statement, or a function of the connection for what SQL alone cannot do
(filling a new index from the bodies already held). A database
newer than this code refuses to open rather than guess. Add a migration by appending
to :data:`MIGRATIONS`; never edit a published one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Final

from node.store.sqlite_blobs import SCHEMA as BLOB_SCHEMA
from node.store.sqlite_search import SCHEMA as SEARCH_SCHEMA
from node.store.sqlite_search import backfill_search
from node.store.sqlite_social import backfill_social

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SchemaError", "migrate"]


class SchemaError(RuntimeError):
    """The database was written by a newer version of the node."""


_V1: Final = [
    # cursor: the node-local stream position (AUTOINCREMENT: never reused).
    """CREATE TABLE events (
        cursor INTEGER PRIMARY KEY AUTOINCREMENT,
        id BLOB NOT NULL UNIQUE,
        author TEXT NOT NULL,
        seq INTEGER NOT NULL,
        prev BLOB,
        ts INTEGER NOT NULL,
        kind TEXT NOT NULL,
        header BLOB NOT NULL,
        sig BLOB NOT NULL,
        body BLOB,
        deleted INTEGER NOT NULL DEFAULT 0,
        reply_root BLOB,
        reply_parent BLOB,
        received_ms INTEGER NOT NULL
    )""",
    "CREATE INDEX events_author_seq ON events (author, seq)",
    "CREATE INDEX events_author_ts ON events (author, ts)",
    "CREATE INDEX events_ts ON events (ts)",
    "CREATE INDEX events_reply_root ON events (reply_root) WHERE reply_root IS NOT NULL",
    "CREATE INDEX events_reply_parent ON events (reply_parent) WHERE reply_parent IS NOT NULL",
    # A delete's target, remembered even before the target arrives (never forgotten).
    """CREATE TABLE tombstones (
        target BLOB NOT NULL,
        author TEXT NOT NULL,
        delete_id BLOB NOT NULL,
        PRIMARY KEY (target, author)
    ) WITHOUT ROWID""",
    """CREATE TABLE forks (
        author TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (author, seq)
    ) WITHOUT ROWID""",
    """CREATE TABLE labels (
        id BLOB PRIMARY KEY,
        cursor INTEGER NOT NULL,
        labeler TEXT NOT NULL,
        subject TEXT NOT NULL,
        val TEXT NOT NULL,
        neg INTEGER NOT NULL,
        exp INTEGER
    ) WITHOUT ROWID""",
    "CREATE INDEX labels_subject ON labels (subject, labeler, cursor)",
    "CREATE INDEX labels_labeler ON labels (labeler, cursor)",
    # The latest profile of each author (highest seq with a body).
    """CREATE TABLE profiles (
        author TEXT PRIMARY KEY,
        id BLOB NOT NULL,
        seq INTEGER NOT NULL,
        name TEXT NOT NULL,
        name_lower TEXT NOT NULL,
        bio TEXT NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX profiles_name ON profiles (name_lower)",
]

_V2: Final = [
    # Negentropy items are (ts, id) in this order: a covering index serves them.
    "CREATE INDEX events_ts_id ON events (ts, id)",
    # Node-local facts that survive restarts (the node's random id).
    """CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID""",
    # Known peers (spec 0005 §peers): where each subscription resumes, and its score.
    """CREATE TABLE peers (
        url TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        node_id TEXT,
        cursor INTEGER,
        score REAL NOT NULL,
        failures INTEGER NOT NULL,
        last_ok_ms INTEGER,
        added_ms INTEGER NOT NULL
    ) WITHOUT ROWID""",
]

_V3: Final = [
    # Held events whose body is missing and that no deletion explains: the ones a full
    # copy may complete and the repair step asks peers for (spec 0004 #body-fill).
    # By id, so that the dup-first lookup stays index-only; its rowid is the cursor.
    "CREATE INDEX events_missing_body ON events (id) WHERE body IS NULL AND deleted = 0",
    # Earlier nodes let a delete of a delete drop the first delete's body (spec 0003
    # #delete-of-delete says it has no effect): such deletes become body-less but not
    # deleted, so a peer's copy restores them and their own effect is applied then.
    "UPDATE events SET deleted = 0 WHERE kind = 'delete' AND deleted = 1",
    "DELETE FROM tombstones WHERE target IN (SELECT id FROM events WHERE kind = 'delete')",
]

_V4: Final = [
    # Rotatable identities (spec 0008). A v2 event's signer and the key event it names;
    # both NULL for v1 events (a did:key is its own key). ADD COLUMN with a constant
    # default rewrites nothing: a v1 event is canonical, as it always was.
    "ALTER TABLE events ADD COLUMN kev BLOB",
    "ALTER TABLE events ADD COLUMN key BLOB",
    # canonical | revoked | disputed | pending (spec 0008 #status), and the key event
    # that decided a revocation (#revoked-by).
    "ALTER TABLE events ADD COLUMN status TEXT NOT NULL DEFAULT 'canonical'",
    "ALTER TABLE events ADD COLUMN revoked_by BLOB",
    # Every held key event that passed spec 0008 §8.5 steps 1-4, with the state it
    # establishes: the checks of later events are lookups here, not signatures
    # (#nodes). ``recovery`` is the concatenation of 1-3 keys of 32 bytes.
    """CREATE TABLE key_events (
        id BLOB PRIMARY KEY,
        author TEXT NOT NULL,
        seq INTEGER NOT NULL,
        prev BLOB,
        kev BLOB,
        kind TEXT NOT NULL,
        key BLOB NOT NULL,
        signing BLOB NOT NULL,
        next BLOB NOT NULL,
        recovery BLOB NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX key_events_author ON key_events (author, seq)",
    # The fork choice of each did:murmur author as last computed (spec 0008 §8.6):
    # concatenated ids of the canonical path, and of the contenders when disputed.
    """CREATE TABLE key_paths (
        author TEXT PRIMARY KEY,
        path BLOB NOT NULL,
        contenders BLOB NOT NULL
    ) WITHOUT ROWID""",
]

#: One step of a migration: a statement, or a function run inside its transaction.
Step = str | Callable[[sqlite3.Connection], None]

_V5: Final[list[Step]] = [
    # The social indexes (spec 0004 #social, node/store/sqlite_social.py), filled from
    # the held events at the end of this list. References of counting events to other
    # events: reply (to the parent), root (to the thread's root, when not the parent),
    # quote, like, repost; the target need not be held.
    """CREATE TABLE refs (
        target BLOB NOT NULL,
        kind TEXT NOT NULL,
        ts INTEGER NOT NULL,
        cursor INTEGER NOT NULL,
        src BLOB NOT NULL,
        author TEXT NOT NULL,
        PRIMARY KEY (target, kind, ts, cursor)
    ) WITHOUT ROWID""",
    "CREATE INDEX refs_src ON refs (src)",
    "CREATE INDEX refs_author ON refs (target, kind, author)",
    # Per (target, kind): likes and reposts count once per author.
    """CREATE TABLE ref_counts (
        target BLOB NOT NULL,
        kind TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (target, kind)
    ) WITHOUT ROWID""",
    # One row per (recipient, referencing event), newest first per reason.
    """CREATE TABLE notifications (
        recipient TEXT NOT NULL,
        reason TEXT NOT NULL,
        ts INTEGER NOT NULL,
        cursor INTEGER NOT NULL,
        src BLOB NOT NULL,
        PRIMARY KEY (recipient, reason, ts, cursor)
    ) WITHOUT ROWID""",
    "CREATE INDEX notifications_src ON notifications (src, recipient)",
    # Every counting follow/unfollow, and per pair the follow that is the latest.
    """CREATE TABLE follow_edges (
        follower TEXT NOT NULL,
        subject TEXT NOT NULL,
        seq INTEGER NOT NULL,
        id BLOB NOT NULL,
        follow INTEGER NOT NULL,
        PRIMARY KEY (follower, subject, seq, id)
    ) WITHOUT ROWID""",
    "CREATE INDEX follow_edges_id ON follow_edges (id)",
    """CREATE TABLE followers (
        subject TEXT NOT NULL,
        follower TEXT NOT NULL,
        id BLOB NOT NULL,
        ts INTEGER NOT NULL,
        cursor INTEGER NOT NULL,
        PRIMARY KEY (subject, follower)
    ) WITHOUT ROWID""",
    "CREATE INDEX followers_page ON followers (subject, ts, cursor)",
    """CREATE TABLE follow_counts (
        did TEXT PRIMARY KEY,
        followers INTEGER NOT NULL,
        following INTEGER NOT NULL
    ) WITHOUT ROWID""",
    # When this node first stored an event of each author (spec 0004 #first-seen).
    """CREATE TABLE authors (
        author TEXT PRIMARY KEY,
        first_seen_ms INTEGER NOT NULL
    ) WITHOUT ROWID""",
    # Post search (spec 0004 #search, node/store/sqlite_search.py).
    *SEARCH_SCHEMA,
    # Last: fills the tables above from the held events (other indexes' tables are
    # created before it, their own backfill may follow it).
    backfill_social,
    backfill_search,
]

#: Blobs (spec 0004 #blobs, node/store/sqlite_blobs.py): bytes, the posts' references
#: to them, their totals. (Posts held from before embeds were valid name none.)
_V6: Final[list[Step]] = [*BLOB_SCHEMA]

#: Feeds (spec 0004 #reacted): the likes and reposts of a time window, read as one
#: range of this index (covering: target and author are in it, cursor is the table's
#: key) instead of the whole ``refs`` table.
_V7: Final[list[Step]] = ["CREATE INDEX refs_kind_ts ON refs (kind, ts, target, author)"]

#: Profiles of a page's authors (every view names its authors): a partial index of the
#: ``profile`` events alone, so ``POST /v1/feed`` with ``kinds=[profile]`` reads a few
#: rows an author, not each author's whole history (spec 0004 #feed-profiles).
_V8: Final[list[Step]] = [
    "CREATE INDEX events_profiles ON events (author, ts, cursor) WHERE kind = 'profile'"
]

#: Index ``i`` holds the steps that bring version ``i`` to ``i + 1``.
MIGRATIONS: Final[list[list[Step]]] = [[*_V1], [*_V2], [*_V3], [*_V4], _V5, _V6, _V7, _V8]
SCHEMA_VERSION: Final = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring ``conn`` (autocommit mode) to :data:`SCHEMA_VERSION`; return the old version."""
    (current,) = conn.execute("PRAGMA user_version").fetchone()
    if current > SCHEMA_VERSION:
        raise SchemaError(
            f"database schema version {current} is newer than this node ({SCHEMA_VERSION})"
        )
    for version in range(current, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for step in MIGRATIONS[version]:
                if isinstance(step, str):
                    conn.execute(step)
                else:
                    step(conn)
            conn.execute(f"PRAGMA user_version = {version + 1}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return int(current)
