"""The labeler loop: follow a node's stream, apply rules, publish labels (spec 0006).

:class:`Labeler` reads ``GET /v1/stream`` (spec 0004 §stream) through
:class:`~client.labeler.sse.SseParser`, verifies every event with
``protocol.events.decode_event`` (invalid ones are skipped and counted), asks the
:class:`~client.labeler.rules.Rules` which labels apply, and publishes them as signed
``label`` events: everything the rules found in one network read goes out in one
``POST`` (at most :data:`BATCH` events) to every node. Only after a batch is stored
does the cursor saved in :class:`LabelerState` move past the events that produced it,
so a restarted labeler resumes where it left off and never skips an event
(at-least-once). The state also remembers the last :data:`MAX_REMEMBERED` (subject,
value) pairs published, seeded at start with the labels already in effect on the
nodes, so a replay does not label anything twice. The labeler never
looks at its own events, so it cannot label its own labels.

A rotatable labeler (a ``did:murmur``, spec 0006 #labeler-rotatable) signs its labels
as v2 events after its own outbox (:class:`~client.ownchain.OwnChain`), each recorded
with its bytes before the batch is sent, with unsent ones re-sent first, as
:class:`~client.publish.Publisher` signs a post; a did:key labeler signs after the
highest head the nodes serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from client.api import NodeClient
from client.errors import (
    BadResponseError,
    ClientError,
    KeystoreError,
    NodeTimeoutError,
    NodeUnreachableError,
    PublishError,
)
from client.files import atomic_write, translate_os_errors
from client.labeler.rules import Rules, Subject, subject_key
from client.labeler.sse import SseParser, stream_event
from client.moderation.apply import active_labels
from client.publish import NodeOutcome, Publisher
from client.reader import Reader
from client.state import Head
from protocol import jsontext, kinds
from protocol.errors import ProtocolError, RemoteError
from protocol.events import Event, decode_event, sign_event, sign_event_v2

__all__ = ["BATCH", "MAX_REMEMBERED", "Labeler", "LabelerState", "Stats"]

log = logging.getLogger("murmur.client.labeler")

#: Most labels signed and sent in one ``POST /v1/events``.
BATCH = 100
#: (subject, value) pairs remembered to avoid labeling twice after a replay.
MAX_REMEMBERED = 10_000
#: Reconnect backoff after a failed or ended stream, doubling from min to max.
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
#: Without a byte for this long (the node heartbeats every 15 s), the stream is dead.
STREAM_IDLE_S = 60.0
#: With ``once``: an idle stream this long means the node has nothing more to send.
ONCE_IDLE_S = 3.0
#: With ``once``: failed connections before giving up.
ONCE_RETRIES = 3
#: Save the cursor at least this often while events flow without labels.
SAVE_EVERY_S = 2.0


@dataclass(slots=True)
class LabelerState:
    """``$MURMUR_HOME/labelers/<name>.json``: cursor per node, recently published labels."""

    path: Path
    did: str
    cursors: dict[str, int] = field(default_factory=dict)
    labeled: dict[tuple[str, str], None] = field(default_factory=dict)  # ordered set

    @classmethod
    def load(cls, home: Path, name: str, did: str) -> LabelerState:
        path = home / "labelers" / f"{name}.json"
        state = cls(path=path, did=did)
        if not path.exists():
            return state
        with translate_os_errors(f"read {path}"):
            raw = path.read_bytes()
        try:
            doc = json.loads(raw)
            if doc.get("did") not in (None, did):
                raise KeystoreError(f"{path} belongs to {doc['did']}, not {did}")
            state.cursors = {str(u): int(c) for u, c in doc.get("cursors", {}).items()}
            state.labeled = {(str(s), str(v)): None for s, v in doc.get("labeled", [])}
        except (ValueError, TypeError, AttributeError) as exc:
            raise KeystoreError(f"{path} is not a labeler state file: {exc}") from None
        return state

    def seen(self, subject: Subject, val: str) -> bool:
        return (subject_key(subject), val) in self.labeled

    def remember(self, subject: Subject, val: str) -> None:
        self.labeled[(subject_key(subject), val)] = None
        while len(self.labeled) > MAX_REMEMBERED:
            del self.labeled[next(iter(self.labeled))]

    def save(self) -> None:
        doc = {
            "did": self.did,
            "cursors": self.cursors,
            "labeled": [list(k) for k in self.labeled],
        }
        with translate_os_errors(f"write {self.path}"):
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(self.path, (json.dumps(doc, indent=1) + "\n").encode())


@dataclass(slots=True)
class Stats:
    events: int = 0
    invalid: int = 0
    labels: int = 0
    skipped_known: int = 0
    reconnects: int = 0
    cursor: int = 0

    def to_json(self) -> dict[str, int]:
        return {
            "events": self.events,
            "invalid": self.invalid,
            "labels": self.labels,
            "skipped_known": self.skipped_known,
            "reconnects": self.reconnects,
            "cursor": self.cursor,
        }


class Labeler:
    """Follows ``stream_url``'s stream as ``publisher.identity``; publishes to its nodes."""

    def __init__(
        self,
        publisher: Publisher,
        http: httpx.AsyncClient,
        *,
        stream_url: str,
        rules: Rules,
        state: LabelerState,
        on_label: Callable[[Event, Subject, str], None] = lambda e, s, v: None,
    ) -> None:
        self.pub = publisher
        self.http = http
        self.url = stream_url.rstrip("/")
        self.rules = rules
        self.state = state
        self.on_label = on_label
        self.stats = Stats()
        #: The labeler's did: its did:murmur when rotatable (its labels are signed by
        #: the current signing key, after its own outbox), else its did:key.
        self.did = publisher.did
        self._batch: list[tuple[Event, Subject, str]] = []
        #: The last cursor read, and the last one whose labels are all published.
        self._cursor = 0
        self._done = 0
        self._saved_at = time.monotonic()
        self._dirty = False
        #: The node ended the last stream itself (its lifetime, or an eviction).
        self._closed_by_node = False

    async def run(self, *, once: bool = False, from_start: bool = False) -> Stats:
        """Follow the stream until cancelled (or, with ``once``, up to the current head).

        A saved cursor for this node always wins; without one the labeler starts at
        the node's current head, or at the beginning with ``from_start``.
        """
        node = NodeClient(self.url, self.http, timeout=self.pub.timeout)
        saved = self.state.cursors.get(self.url)
        if saved is None:
            saved = 0 if from_start else await _head_cursor(node)
            self.state.cursors[self.url] = saved
            self.state.save()
        self._done = self.stats.cursor = saved
        await self._remember_published()
        head = await _head_cursor(node) if once else None
        delay, failures = BACKOFF_MIN_S, 0
        try:
            while head is None or self._done < head:
                try:
                    progressed = await self._follow(head)
                except (ClientError, RemoteError) as exc:
                    failures += 1
                    if once and failures >= ONCE_RETRIES:
                        raise
                    log.warning("labeler stream %s failed: %s", self.url, exc.message)
                else:
                    if once and not progressed:
                        break  # idle before the head: the node has nothing more to send
                    if progressed or self._closed_by_node:
                        # A node ends every stream after its lifetime (spec 0004
                        # #stream-lifetime): resume at once, by cursor.
                        delay = BACKOFF_MIN_S
                if head is not None and self._done >= head:
                    break
                self.stats.reconnects += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
        finally:
            with contextlib.suppress(ProtocolError):
                self._save()
        return self.stats

    async def _remember_published(self) -> None:
        """Add the labels this labeler already has in effect on its nodes to the memory,
        so a lost state file or a label published by hand is not published again."""
        reader = Reader(self.pub.nodes, net=self.pub.net, timeout=self.pub.timeout)
        await reader.fetch_labels(self.did)  # a failing node is in the report, not raised
        now = int(time.time() * 1000)
        for subject, labels in active_labels(reader.events.values(), now_ms=now).items():
            for label in labels:
                if label.labeler == self.did:
                    self.state.remember(subject, label.val)

    async def _follow(self, head: int | None) -> bool:
        """One connection: read until it ends, goes idle (``once``) or reaches ``head``."""
        self._cursor, self._batch = self._done, []
        self._closed_by_node = False
        idle = ONCE_IDLE_S if head is not None else STREAM_IDLE_S
        timeout = httpx.Timeout(self.pub.timeout, read=idle)
        progressed = False
        parser = SseParser()
        try:
            async with self.http.stream(
                "GET",
                f"{self.url}/v1/stream",
                params={"cursor": self._done},
                headers={"Accept": "text/event-stream"},
                timeout=timeout,
            ) as resp:
                if resp.status_code != 200:
                    raise await _stream_error(resp, self.url)
                async for chunk in resp.aiter_bytes():
                    for message in parser.feed(chunk):
                        if message.event == "event":
                            self._handle(*stream_event(message))
                            progressed = True
                    if parser.comments:  # heartbeats, and a node's ": closing reason=..."
                        self._closed_by_node |= any(
                            c.startswith("closing reason=") for c in parser.comments
                        )
                        parser.comments.clear()
                    await self._flush()
                    if head is not None and self._done >= head:
                        return progressed
        except httpx.ReadTimeout:
            if head is None:
                raise NodeTimeoutError(
                    f"{self.url}: the stream was silent for {idle:g} s", url=self.url
                ) from None
        except httpx.TimeoutException as exc:
            raise NodeTimeoutError(f"{self.url} did not answer: {exc}", url=self.url) from exc
        except httpx.HTTPError as exc:
            raise NodeUnreachableError(
                f"{self.url} stream failed: {type(exc).__name__}: {exc}", url=self.url
            ) from exc
        await self._flush()
        return progressed

    def _handle(self, wire: bytes, cursor: int) -> None:
        if cursor <= self._cursor:
            return  # a replay of what is already done
        try:
            # v2 too (spec 0008): posts of did:murmur authors are labelled like any
            # other; whether one is its author's (canonical) is each reader's check.
            event: Event | None = decode_event(wire, net=self.pub.net, allow_v2=True)
        except ProtocolError as exc:
            self.stats.invalid += 1
            log.info("skipped invalid event at cursor %d: %s", cursor, exc.code)
            event = None
        # Never our own events: a labeler must not label its own labels.
        if event is not None and event.author != self.did and event.body is not None:
            self.stats.events += 1
            for subject, val in self.rules.apply(event):
                pending = any(s == subject and v == val for _, s, v in self._batch)
                if pending or self.state.seen(subject, val):
                    self.stats.skipped_known += 1
                else:
                    self._batch.append((event, subject, val))
        self._cursor = cursor

    async def _flush(self) -> None:
        """Publish the pending labels (in batches), then let the cursor move past them."""
        while self._batch:
            await self._publish(self._batch[:BATCH])
            del self._batch[:BATCH]
        if self._cursor != self._done:
            self._done = self.stats.cursor = self._cursor
            if self._dirty or time.monotonic() - self._saved_at > SAVE_EVERY_S:
                self._save()

    def _save(self) -> None:
        self.state.cursors[self.url] = self._done
        self.state.save()
        self._saved_at = time.monotonic()
        self._dirty = False
        #: The node ended the last stream itself (its lifetime, or an eviction).
        self._closed_by_node = False

    async def _publish(self, chunk: list[tuple[Event, Subject, str]]) -> None:
        if self.pub.chain is not None:
            stored = await self._publish_own_chain(chunk)
        else:
            stored = await self._publish_after_head(chunk)
        for (_, subject, val), label, ok in stored:
            if ok:
                self.state.remember(subject, val)
                self.stats.labels += 1
                self._dirty = True
                self.on_label(label, subject, val)
        if not all(ok for _, _, ok in stored):
            self.state.save()  # remember what went out; the cursor stays where it was
            missing = sum(not ok for _, _, ok in stored)
            raise PublishError(f"{missing} label(s) were stored by no node")

    async def _publish_own_chain(
        self, chunk: list[tuple[Event, Subject, str]]
    ) -> list[tuple[tuple[Event, Subject, str], Event, bool]]:
        """A rotatable labeler (spec 0008, 0007 #own-chain): its labels are v2 events
        signed after its own outbox (``kev`` its latest key event), each recorded with
        its bytes before the batch is sent, with the outbox's unsent events first, as
        :class:`~client.publish.Publisher` signs a post."""
        chain = self.pub.chain
        assert chain is not None  # noqa: S101 - the caller checked
        signer = self.pub.signer()
        with chain.lock():
            pending = chain.unpublished()
            head = chain.head()
            kev = chain.latest_key_event().id
            seq, prev = head.seq, head.id
            signed: list[Event] = []
            for _, subject, val in chunk:
                event = sign_event_v2(
                    signer,
                    author=chain.did,
                    kind=kinds.LABEL,
                    body={"subject": subject, "val": val},
                    seq=seq + 1,
                    prev=prev,
                    kev=kev,
                    net=self.pub.net,
                )
                chain.record(event, published=False)
                seq, prev = event.seq, event.id
                signed.append(event)
        sent = [*pending, *signed]
        rows = await self.pub.submit_many(sent)
        outcomes = [[row[i] for row in rows] for i in range(len(sent))]
        chain.mark_published({e.id for e, o in zip(sent, outcomes, strict=True) if _kept(o)})
        mine = outcomes[len(pending) :]
        # Labels every node answered and refused leave the chain from its end (none
        # holds them); any other unsent one stays, to go out before the next event.
        with chain.lock():
            for event, o in reversed(list(zip(signed, mine, strict=True))):
                if not (o and all(x.status == "rejected" for x in o)) or not chain.forget(
                    event.id
                ):
                    break
        if chain.restore_passes():
            await self.pub.restore_bodies()
        return [
            (item, event, _kept(o)) for item, event, o in zip(chunk, signed, mine, strict=True)
        ]

    async def _publish_after_head(
        self, chunk: list[tuple[Event, Subject, str]]
    ) -> list[tuple[tuple[Event, Subject, str], Event, bool]]:
        head, _ = await self.pub.sync_head()
        signed: list[Event] = []
        for _, subject, val in chunk:
            event = sign_event(
                self.pub.signer(),
                kind=kinds.LABEL,
                body={"subject": subject, "val": val},
                seq=1 if head is None else head.seq + 1,
                prev=None if head is None else head.id,
                net=self.pub.net,
            )
            signed.append(event)
            head = Head(seq=event.seq, id=event.id)
        stored = await _submit(self.pub.nodes, [e.wire for e in signed], self.pub.timeout)
        if not any(stored):
            raise PublishError(f"no node stored the {len(signed)} label(s)")
        # The head moves to the last stored event: a gap is repairable, a fork is not.
        last = max(i for i, ok in enumerate(stored) if ok)
        self.pub.heads.advance(self.did, Head(seq=signed[last].seq, id=signed[last].id))
        return list(zip(chunk, signed, stored, strict=True))


def _kept(outcomes: Sequence[NodeOutcome]) -> bool:
    return any(o.stored for o in outcomes)


async def _submit(nodes: Sequence[NodeClient], wires: list[bytes], per_node_s: float) -> list[bool]:
    """Per event: did at least one node store it?"""
    stored = [False] * len(wires)

    async def one(node: NodeClient) -> None:
        try:
            results = await asyncio.wait_for(node.submit(wires), per_node_s)
        except (TimeoutError, ProtocolError) as exc:
            log.warning("label batch not sent to %s: %s", node.url, exc)
            return
        for i, r in enumerate(results):
            if r.status in ("accepted", "duplicate"):
                stored[i] = True
            else:
                log.warning("%s rejected a label: %s %s", node.url, r.error, r.message)

    await asyncio.gather(*(one(n) for n in nodes))
    return stored


async def _head_cursor(node: NodeClient) -> int:
    info = await node.info()
    cursor = info.get("cursor")
    if not isinstance(cursor, int) or isinstance(cursor, bool) or cursor < 0:
        raise BadResponseError(f"{node.url}/v1/info has no cursor", url=node.url)
    return cursor


async def _stream_error(resp: httpx.Response, url: str) -> ProtocolError:
    body = b""
    async for chunk in resp.aiter_bytes():
        body += chunk
        if len(body) > 4096:
            break
    code, message = f"http-{resp.status_code}", resp.reason_phrase
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        doc = jsontext.loads(body)
        if isinstance(doc, dict) and isinstance(doc.get("error"), str):
            code, message = doc["error"], str(doc.get("message") or code)
    return RemoteError(
        code, f"{url} stream answered {resp.status_code} {code}: {message}", status=resp.status_code
    )
