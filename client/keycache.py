"""Key events this home has verified, kept between reads (spec 0007 #key-status).

A read of ``did:murmur`` authors fetches every author's key events from every node and
would verify all their signatures again each time (``bench timeline``: ~90 ms for the
1,000 key events of 500 authors). A key event never changes: its id is the hash of
its header, and the same wire bytes give the same verification result forever, except
``future-timestamp``, which a clock only moves from invalid to valid. So a home keeps
the SHA-256 of the exact wire bytes of every key event it verified, in
``state/keycache/verified`` (directory 0700, file 0600), and decodes a wire whose hash
is there with :func:`protocol.events.decode_unverified`, skipping only the signature
(structure, body hash and the v2 key binding are still checked; the network is
compared by the caller). Any other byte string, even one differing by one byte, has
another hash and is verified as before.

Beside it, ``state/keycache/events.sqlite3`` (0600) keeps the wires of those key
events by author, so a read whose nodes name, in their feed answer, key-event tips
this home already holds resolves their authors without ``POST /v1/keys`` (spec 0004
#feed-key-tips, 0007 #key-status). A wire read from it is used only if its digest is
in ``verified``, decoded as above: the file adds no trust, only bytes. A process
also keeps the key events it decoded or verified (:data:`MAX_DECODED`, by exact wire
bytes), so a long-running face decodes none of them twice (still only for wires whose
digest its home holds).

File format: :data:`MAGIC`, then 32-byte digests, oldest first. New digests are
appended; past :data:`MAX_ENTRIES` the file is rewritten atomically with the newest
ones (oldest-first eviction). A file that does not parse (wrong magic, a length that
is not whole digests, e.g. a torn append) or that others may write is not trusted at
all: it is ignored and rebuilt. A cache that cannot be read or written costs only
time; reads verify everything as before.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from client.files import atomic_write
from client.verify import verify_many
from protocol.errors import ProtocolError
from protocol.events import DEFAULT_NETWORK, Event, decode_unverified, try_decode_event
from protocol.keystate import KEY_EVENT_KINDS

__all__ = [
    "EVENTS_FILE",
    "MAGIC",
    "MAX_DECODED",
    "MAX_ENTRIES",
    "KeyCache",
    "known_key_event",
    "verify_cached",
    "verify_cached_sync",
]

log = logging.getLogger(__name__)

#: First bytes of the cache file (a format change gets a new one).
MAGIC = b"murmur-keycache-1\n"
#: Digests kept (32 bytes each: 1.6 MB at most); the oldest go first.
MAX_ENTRIES = 50_000
_DIGEST = 32
#: The key events' wires by author, beside ``verified`` (at most ``max_entries`` rows).
EVENTS_FILE = "events.sqlite3"
#: Key events kept decoded by this process (by exact wire bytes), newest last.
MAX_DECODED = 10_000
_DECODED: dict[bytes, Event] = {}
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS key_events (n INTEGER PRIMARY KEY, author TEXT NOT NULL, "
    "id BLOB NOT NULL UNIQUE, wire BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS key_events_author ON key_events (author)",
)
#: Dids or ids per ``IN (...)`` query.
_PER_QUERY = 500
#: The fixstr ``kev``, a key every v2 header holds (and no v1 header).
_KEV = b"\xa3kev"


def wire_digest(wire: bytes) -> bytes:
    return hashlib.sha256(wire).digest()


class KeyCache:
    """The verified key-event wires of one home. Loads lazily; :meth:`flush` saves."""

    def __init__(self, directory: Path, *, max_entries: int = MAX_ENTRIES) -> None:
        self.path = directory / "verified"
        self.max_entries = max_entries
        self._digests: dict[bytes, None] | None = None  # insertion order = age
        self._new: list[bytes] = []
        self._rewrite = False
        self._missing = False
        self.events_path = directory / EVENTS_FILE
        #: Key events to keep in :data:`EVENTS_FILE` unless it holds them: id -> row.
        self._keep: dict[bytes, tuple[str, bytes]] = {}

    @classmethod
    def in_home(cls, home: Path) -> KeyCache:
        return cls(home / "state" / "keycache")

    def _load(self) -> dict[bytes, None]:
        if self._digests is not None:
            return self._digests
        self._digests = {}
        try:
            st = self.path.stat()
            data = self.path.read_bytes()
        except FileNotFoundError:
            self._missing = True  # created by the first flush that has something to keep
            return self._digests
        except OSError as exc:
            log.warning("event=keycache_unreadable path=%s error=%s", self.path, exc)
            self._rewrite = True
            return self._digests
        body = data[len(MAGIC) :]
        if (
            not data.startswith(MAGIC)
            or len(body) % _DIGEST
            or not stat.S_ISREG(st.st_mode)
            or st.st_mode & 0o022  # others could add entries: trust nothing in it
        ):
            log.warning("event=keycache_ignored path=%s reason=unparsable_or_shared", self.path)
            self._rewrite = True
            return self._digests
        for at in range(0, len(body), _DIGEST):
            self._digests[body[at : at + _DIGEST]] = None
        if len(self._digests) > self.max_entries:
            self._evict()
        return self._digests

    def _evict(self) -> None:
        digests = self._load()
        for old in list(digests)[: len(digests) - self.max_entries]:
            del digests[old]
        self._rewrite = True

    def __len__(self) -> int:
        return len(self._load())

    def holds(self, wire: bytes) -> bool:
        """Whether these exact bytes were verified as a key event by this home."""
        return wire_digest(wire) in self._load()

    def add(self, wire: bytes) -> None:
        """Remember ``wire``, which :func:`protocol.events.decode_event` just accepted."""
        digests = self._load()
        d = wire_digest(wire)
        if d in digests:
            return
        digests[d] = None
        self._new.append(d)
        if len(digests) > self.max_entries:
            self._evict()

    def keep(self, event: Event, wire: bytes) -> None:
        """Keep the wire of ``event``, a key event verified now or through the cache,
        in :data:`EVENTS_FILE` at the next :meth:`flush` (unless it holds it)."""
        self._keep[event.id] = (event.author, wire)

    def key_event_wires(self, dids: Iterable[str]) -> dict[str, list[bytes]]:
        """The key-event wires :data:`EVENTS_FILE` holds of each of ``dids`` (to decode
        with :func:`known_key_event`; an unreadable or shared file holds none)."""
        wanted = list(dict.fromkeys(dids))
        out: dict[str, list[bytes]] = {}
        if not wanted or not self._events_trusted():
            return out
        try:
            conn = sqlite3.connect(f"file:{self.events_path}?mode=ro", uri=True)
            try:
                for at in range(0, len(wanted), _PER_QUERY):
                    part = wanted[at : at + _PER_QUERY]
                    marks = ",".join("?" * len(part))
                    for author, wire in conn.execute(
                        f"SELECT author, wire FROM key_events WHERE author IN ({marks})",  # noqa: S608 - placeholders
                        part,
                    ):
                        out.setdefault(author, []).append(bytes(wire))
            finally:
                conn.close()
        except sqlite3.Error as exc:
            log.warning("event=keycache_events_unreadable path=%s error=%s", self.events_path, exc)
            return {}
        return out

    def _events_trusted(self) -> bool:
        try:
            st = self.events_path.lstat()
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o022:
            log.warning("event=keycache_ignored path=%s reason=shared", self.events_path)
            return False
        return True

    def _flush_events(self) -> None:
        """Add the kept key events :data:`EVENTS_FILE` lacks (no write when none);
        a file that cannot be trusted or read is replaced."""
        rows, self._keep = self._keep, {}
        if not rows:
            return
        path = self.events_path
        if path.exists() and not self._events_trusted():
            path.unlink(missing_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        try:
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                # A cache: a write lost in a crash costs time only, and a damaged wire
                # fails its digest check, so no fsync is worth a read's time.
                conn.execute("PRAGMA synchronous=OFF")
                for sql in _SCHEMA:
                    conn.execute(sql)
                ids = list(rows)
                for at in range(0, len(ids), _PER_QUERY):
                    part = ids[at : at + _PER_QUERY]
                    marks = ",".join("?" * len(part))
                    sql = f"SELECT id FROM key_events WHERE id IN ({marks})"  # noqa: S608
                    for (held,) in conn.execute(sql, part):
                        rows.pop(bytes(held), None)
                if not rows:
                    return
                with conn:
                    conn.execute("BEGIN")
                    conn.executemany(
                        "INSERT OR IGNORE INTO key_events (author, id, wire) VALUES (?,?,?)",
                        [(a, i, w) for i, (a, w) in rows.items()],
                    )
                    conn.execute(
                        "DELETE FROM key_events WHERE n <= (SELECT max(n) FROM key_events) - ?",
                        (self.max_entries,),
                    )
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:  # not a database, damaged: start again
            log.warning("event=keycache_events_rebuilt path=%s error=%s", path, exc)
            path.unlink(missing_ok=True)

    def flush(self) -> None:
        """Save what was added; an unwritable home is logged and otherwise ignored."""
        if self._keep:
            try:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._flush_events()
            except OSError as exc:
                log.warning("event=keycache_unwritable path=%s error=%s", self.events_path, exc)
        if self._digests is None or not (self._new or self._rewrite):
            return
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self._rewrite or self._missing:
                atomic_write(self.path, MAGIC + b"".join(self._digests), mode=0o600)
            else:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
                with os.fdopen(fd, "ab") as fh:
                    fh.write(b"".join(self._new))
        except OSError as exc:
            log.warning("event=keycache_unwritable path=%s error=%s", self.path, exc)
            return
        self._new.clear()
        self._rewrite = self._missing = False


def known_key_event(cache: KeyCache | None, wire: bytes, net: str) -> Event | None:
    """``wire`` decoded without its signature check if ``cache`` holds these exact bytes.

    Safe because the cache only holds the hashes of wires that passed the full check
    (:func:`protocol.events.decode_event`) here before: the same bytes give the same
    result, and only the clock check could differ, which never turns valid into invalid.
    Anything unexpected (other network, not a key event) is left to the full check.
    A wire without the bytes of the header key ``kev`` cannot be a v2 event, so not a
    key event (spec 0008 #header-v2): it costs neither a hash nor loading the cache.
    """
    if cache is None or _KEV not in wire or not cache.holds(wire):
        return None
    event = _DECODED.get(wire)  # the same bytes decoded before by this process
    if event is None:
        try:
            event = decode_unverified(wire, allow_v2=True)
        except ProtocolError:
            return None
        if event.kind not in KEY_EVENT_KINDS:
            return None
        _decoded(wire, event)
    if event.header.net != net:
        return None
    return event


def _decoded(wire: bytes, event: Event) -> None:
    _DECODED[wire] = event
    if len(_DECODED) > MAX_DECODED:
        for old in list(_DECODED)[: len(_DECODED) - MAX_DECODED]:
            del _DECODED[old]


def _remember(cache: KeyCache | None, wire: bytes, result: Event | ProtocolError) -> None:
    if cache is not None and isinstance(result, Event) and result.kind in KEY_EVENT_KINDS:
        cache.add(wire)
        cache.keep(result, wire)
        _decoded(wire, result)


def verify_cached_sync(
    wires: Sequence[bytes], cache: KeyCache | None, *, net: str = DEFAULT_NETWORK
) -> list[Event | ProtocolError]:
    """:func:`verify_cached` in this thread (for a few wires)."""
    results: list[Event | ProtocolError] = []
    for wire in wires:
        result = known_key_event(cache, wire, net)
        checked = try_decode_event(wire, net=net, allow_v2=True) if result is None else result
        _remember(cache, wire, checked)
        results.append(checked)
    return results


async def verify_cached(
    wires: Sequence[bytes], cache: KeyCache | None, *, net: str = DEFAULT_NETWORK
) -> list[Event | ProtocolError]:
    """:func:`client.verify.verify_many`, skipping the signatures of key events ``cache``
    holds and adding the key events verified now (call :meth:`KeyCache.flush` after)."""
    results: list[Event | ProtocolError | None] = [known_key_event(cache, w, net) for w in wires]
    todo = [n for n, r in enumerate(results) if r is None]
    checked = await verify_many([wires[n] for n in todo], net=net)
    for n, result in zip(todo, checked, strict=True):
        results[n] = result
    out = [r for r in results if r is not None]
    for wire, result in zip(wires, out, strict=True):
        _remember(cache, wire, result)
    return out
