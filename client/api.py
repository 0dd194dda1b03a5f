"""One node's HTTP API (spec 0004) over an injected ``httpx.AsyncClient``.

:class:`NodeClient` speaks JSON for reads and canonical msgpack for ingest. It hands
back events as :class:`WireItem` — the exact signed ``wire`` bytes plus the id the node
*claims* (for reports only) — and nothing else from the node's JSON: the reader
verifies the bytes itself (spec 0007 §verify). Errors are translated at this boundary:
an HTTP error answer becomes ``RemoteError(code, message, status=)`` with the node's
own code, a timeout ``NodeTimeoutError``, any other transport failure
``NodeUnreachableError``, and an answer that does not have the documented shape
``BadResponseError``. Nothing else escapes.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import httpx

from client.errors import (
    BadResponseError,
    BlobMismatchError,
    NodeTimeoutError,
    NodeUnreachableError,
)
from client.readcache import Answer, KeptDoc, Key, NodeAnswers, cacheable, count
from protocol import jsontext
from protocol.blobs import blob_hash, verify_blob
from protocol.embeds import EmbedImage
from protocol.encoding import encode
from protocol.errors import BadBlobError, RemoteError
from protocol.feeds import MAX_CURSOR_CHARS, MAX_LIMIT, MAX_TOP, MAX_WHY_CHARS, FeedItem, Reacted
from protocol.limits import MAX_BLOB_BYTES

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "INFO_TTL_S",
    "MAX_KEYS_AUTHORS",
    "MAX_KEY_PAGES",
    "BlobReceipt",
    "FeedInfo",
    "FeedPage",
    "IngestResult",
    "KeysBatch",
    "LogRange",
    "NodeClient",
    "Skeleton",
    "WireItem",
    "skeleton_cap",
]

log = logging.getLogger("murmur.client.api")

#: Per-node timeout for one request (connect, read, write, pool), in seconds.
DEFAULT_TIMEOUT_S = 5.0
#: Largest response body the client reads from a node (a full page of big events).
MAX_RESPONSE_BYTES = 48 * 1024 * 1024
_MSGPACK = "application/msgpack"
#: ``GET /v1/events/{id}``: its 404 ("not held") is an answer worth keeping too.
_BY_ID = re.compile(r"/v1/events/[0-9a-f]{64}\Z")
#: Feeds of more authors than this are asked for with POST /v1/feed (a JSON body).
_FEED_GET_AUTHORS = 20
#: Most dids in one ``POST /v1/keys`` when the node does not say (spec 0004
#: #keys-batch: the default ``max_feed_authors``); a node's ``/v1/info`` limit wins.
MAX_KEYS_AUTHORS = 500
#: How long a node's ``max_feed_authors`` (``/v1/info``) is kept for every client of
#: that node over the same HTTP client (a session; spec 0007 #key-status): a limit
#: changes with the node's configuration, and a stale one costs at most a 400.
INFO_TTL_S = 600.0
#: HTTP client -> url -> (monotonic time read, max_feed_authors as used).
_INFO_KEPT: weakref.WeakKeyDictionary[httpx.AsyncClient, dict[str, tuple[float, int]]] = (
    weakref.WeakKeyDictionary()
)
#: Pages of ``GET /v1/authors/{did}/keys`` read per author per read (spec 0004
#: #author-keys: at most 1000 key events a page).
MAX_KEY_PAGES = 50
#: Most dids a 64 KiB ``POST /v1/keys`` body holds (66 bytes a quoted did:murmur),
#: whatever larger ``max_feed_authors`` a node advertises.
_KEYS_BODY_AUTHORS = 990


@dataclass(frozen=True, slots=True, kw_only=True)
class WireItem:
    """One event as a node served it: its wire bytes (None if unusable) and claimed id."""

    wire: bytes | None
    claimed_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestResult:
    """A node's verdict on one submitted event (spec 0004 §ingest)."""

    status: str  # accepted | duplicate | rejected
    id: str | None
    error: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class KeysBatch:
    """A node's ``POST /v1/keys`` answer (spec 0004 #keys-batch): the key events it
    served per asked author (absent: none held) and the authors it ``deferred`` to the
    single-author form."""

    keys: dict[str, list[WireItem]]
    deferred: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedPage:
    """One feed answer (spec 0004 #feed): its events, ``next`` cursor, and the
    key-event tips it named per did:murmur author of the page (#feed-key-tips; None
    when the node does not send them). Tips are a hint: nothing is decided by them."""

    items: list[WireItem]
    next: str | None
    key_tips: dict[str, frozenset[bytes]] | None


def _key_tips(value: object) -> dict[str, frozenset[bytes]] | None:
    """A feed answer's ``key_tips``; an author whose entry is not a list of 64-hex ids
    is left out (as if the node had named none: the reader then asks ``/keys``)."""
    if not isinstance(value, dict):
        return None
    out: dict[str, frozenset[bytes]] = {}
    for did, tips in value.items():
        if not isinstance(did, str) or not isinstance(tips, list) or not tips:
            continue
        try:
            ids = frozenset(bytes.fromhex(t) for t in tips if isinstance(t, str))
        except ValueError:
            continue
        if len(ids) == len(tips) and all(len(i) == 32 for i in ids):
            out[did] = ids
    return out


def _wire_item(obj: object) -> WireItem:
    if not isinstance(obj, dict):
        return WireItem(wire=None, claimed_id=None)
    claimed = obj.get("id") if isinstance(obj.get("id"), str) else None
    raw = obj.get("wire")
    if not isinstance(raw, str):
        return WireItem(wire=None, claimed_id=claimed)
    try:
        return WireItem(wire=base64.b64decode(raw, validate=True), claimed_id=claimed)
    except (binascii.Error, ValueError):
        return WireItem(wire=None, claimed_id=claimed)


def _count_ok(value: object) -> bool:
    """A count a node may claim: a non-negative integer (no bool), below 2**53."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53


def _figures(stats: dict[str, Any]) -> dict[str, int | None]:
    """The figures of a ``stats`` object (spec 0004 #author-stats) that are a
    non-negative integer or null."""
    figures: dict[str, int | None] = {}
    for key, value in stats.items():
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            figures[str(key)] = value
    return figures


@dataclass(frozen=True, slots=True)
class LogRange:
    """One range of a ``POST /v1/authors/events`` answer: the author asked, the items
    served and where the range goes on (None: it was read to its end)."""

    author: str
    items: list[WireItem]
    next_from_seq: int | None


def _items(doc: dict[str, Any], key: str, url: str) -> list[WireItem]:
    if isinstance(doc, KeptDoc):  # a kept answer: its items decoded once
        kept = doc.parsed.get(key)
        if kept is None:
            kept = doc.parsed[key] = tuple(_parse_items(doc, key, url))
        return list(kept)
    return _parse_items(doc, key, url)


def _parse_items(doc: dict[str, Any], key: str, url: str) -> list[WireItem]:
    value = doc.get(key)
    if not isinstance(value, list):
        raise BadResponseError(f"{url}: the answer has no list {key!r}", url=url)
    return [_wire_item(v) for v in value]


# -- feeds (spec 0004 #feeds; a feed server is untrusted: spec 0007 #feed-bounds) -------

#: A feed's name (spec 0003 #feed): it goes in a URL path, so nothing else is asked for.
_FEED_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
#: Longest ``description`` kept of a ``GET /v1/feeds`` entry (the ``feed`` kind's bound).
MAX_FEED_DESCRIPTION = 300
#: Most entries kept of a ``GET /v1/feeds`` answer, and its largest body.
MAX_FEED_LIST = 200
_FEED_LIST_CAP = 256 * 1024


def skeleton_cap(limit: int) -> int:
    """The most bytes read of a skeleton of ``limit`` items: 4 KiB plus 1 KiB an item
    (an id, a ``why`` of 200 characters even escaped, the JSON around them): 104 KiB
    for 100 items. A server that sends more is abandoned as soon as it passes it."""
    return 4096 + 1024 * max(1, limit)


def _cursor_ok(cursor: str) -> bool:
    """protocol.feeds' cursor rule: 1-512 printable ASCII characters, no space."""
    return 0 < len(cursor) <= MAX_CURSOR_CHARS and all(33 <= ord(c) <= 126 for c in cursor)


def _one_line(text: str, max_chars: int) -> str:
    """``text`` as one line of printable characters, runs of blanks made one space, at
    most ``max_chars`` (escapes for the terminal are the renderer's: this only keeps a
    feed server's words to one short line)."""
    cleaned = "".join(c if c.isprintable() else " " for c in text[: 4 * max_chars])
    return " ".join(cleaned.split())[:max_chars]


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedInfo:
    """One entry of ``GET /v1/feeds``: a feed the node serves."""

    name: str
    description: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Skeleton:
    """A feed server's page, parsed strictly (spec 0007 #feed-bounds): at most the
    ``limit`` asked of ids (``extra``: how many more it sent, not kept), each ``why``
    one line of at most ``MAX_WHY_CHARS``; ``cursor`` None on the last page, and also
    when the server answered the cursor it was asked for again (``endless``: it would
    have the client read the same page forever)."""

    feed: str
    items: list[FeedItem]
    cursor: str | None
    extra: int = 0
    endless: bool = False
    size: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobReceipt:
    """A node's answer to a blob upload: what it found the bytes to be; ``held``:
    a stored post names them already (else they wait for one, spec 0004 #blobs)."""

    hash: bytes
    mime: str
    size: int
    width: int
    height: int
    held: bool


#: Most ids in one ``GET /v1/events?ids=`` a node answers (spec 0004 #events-by-id).
MAX_IDS_REQUEST: Final = 100


class NodeClient:
    """The HTTP API of the node at ``url`` (normalised, no trailing slash)."""

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        answers: NodeAnswers | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = http
        self.timeout = timeout
        #: This node's kept answers (a long-running face, :mod:`client.readcache`),
        #: validated by whoever made this client; None: every read asks the node.
        self.answers = answers
        #: The node's ``max_feed_authors`` from ``/v1/info``, once read.
        self._max_authors: int | None = None

    def __repr__(self) -> str:
        return f"NodeClient({self.url!r})"

    # -- transport ----------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str | int]] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        cap: int | None = None,
    ) -> httpx.Response:
        count(cached=False)
        try:
            async with self._http.stream(
                method,
                self.url + path,
                params=list(params or ()),
                content=content,
                headers=headers,
                timeout=self.timeout,
            ) as streamed:
                body = await self._read_capped(streamed, cap)
        except httpx.TimeoutException as exc:
            raise NodeTimeoutError(
                f"{self.url} did not answer within {self.timeout:g} s", url=self.url
            ) from exc
        except httpx.HTTPError as exc:  # transport errors, bad URLs, protocol errors
            raise NodeUnreachableError(
                f"{self.url} is unreachable: {type(exc).__name__}: {exc}", url=self.url
            ) from exc
        response = httpx.Response(
            streamed.status_code,
            headers=streamed.headers,
            content=body,
            request=streamed.request,
        )
        if response.status_code >= 400:
            raise self._remote_error(response)
        return response

    async def _read_capped(self, response: httpx.Response, cap: int | None = None) -> bytes:
        """The body, read in chunks and abandoned as soon as it passes ``cap`` (None:
        ``MAX_RESPONSE_BYTES``).

        A hostile node must not make the client buffer more than ``MAX_RESPONSE_BYTES``
        (a blob: ``MAX_BLOB_BYTES``), whatever its ``Content-Length`` says or omits.
        """
        if cap is None:
            cap = MAX_RESPONSE_BYTES
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise BadResponseError(f"{self.url}: the answer is too large", url=self.url)
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > cap:
                raise BadResponseError(f"{self.url}: the answer is too large", url=self.url)
        return bytes(body)

    def _remote_error(self, response: httpx.Response) -> RemoteError:
        code, message = f"http-{response.status_code}", response.reason_phrase
        try:
            doc = jsontext.loads(response.content)
        except ValueError:  # bad JSON, bad UTF-8, hostile nesting
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("error"), str):
            code = doc["error"]
            message = str(doc.get("message") or code)
        return RemoteError(
            code,
            f"{self.url} answered {response.status_code} {code}: {message}",
            status=response.status_code,
        )

    async def _get_json(
        self, path: str, params: Sequence[tuple[str, str | int]] | None = None
    ) -> dict[str, Any]:
        return await self._json("GET", path, params=params)

    async def _post_json(self, path: str, doc: dict[str, Any]) -> dict[str, Any]:
        return await self._json(
            "POST", path, content=json.dumps(doc, separators=(",", ":")).encode()
        )

    async def _json(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str | int]] | None = None,
        content: bytes | None = None,
    ) -> dict[str, Any]:
        """The JSON object a read answers; from :attr:`answers` when it holds it (the
        parsed object, shared: never changed by the callers), else asked and kept
        there (a ``200``, or the ``404`` of an event asked by id; spec 0007
        #web-read-cache)."""
        answers = self.answers if self.answers is not None and cacheable(method, path) else None
        key: Key = (method, path, tuple((k, str(v)) for k, v in params or ()), content or b"")
        generation = 0
        if answers is not None:
            kept = answers.get(key)
            if kept is not None:
                count(cached=True)
                if isinstance(kept.doc, RemoteError):
                    err = kept.doc
                    raise RemoteError(err.code, err.message, status=err.status)
                return kept.doc
            generation = answers.generation
        headers = None if content is None else {"Content-Type": "application/json"}
        try:
            response = await self._request(
                method, path, params=params, content=content, headers=headers
            )
        except RemoteError as exc:
            if answers is not None and exc.status == 404 and _BY_ID.match(path):
                answers.put(generation, key, Answer(exc, 0))
            raise
        doc = self._json_object(path, response)
        if answers is not None:
            doc = KeptDoc(doc)
            answers.put(generation, key, Answer(doc, len(response.content)))
        return doc

    def _json_object(self, path: str, response: httpx.Response) -> dict[str, Any]:
        try:
            doc = jsontext.loads(response.content)
        except ValueError as exc:  # bad JSON, bad UTF-8, hostile nesting
            raise BadResponseError(
                f"{self.url}{path}: the answer is not JSON", url=self.url
            ) from exc
        if not isinstance(doc, dict):
            raise BadResponseError(f"{self.url}{path}: the answer is not an object", url=self.url)
        return doc

    # -- endpoints ----------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        return await self._get_json("/health")

    async def info(self) -> dict[str, Any]:
        return await self._get_json("/v1/info")

    async def get_event(self, eid: str) -> WireItem | None:
        """``GET /v1/events/{id}``; None when the node does not hold it (404)."""
        try:
            doc = await self._get_json(f"/v1/events/{eid}")
        except RemoteError as exc:
            if exc.status == 404:
                return None
            raise
        return _wire_item(doc.get("event"))

    async def events_by_prefix(self, prefix: str) -> list[WireItem]:
        """``GET /v1/events?id_prefix=``: the few events whose id starts with ``prefix``
        (spec 0004 #events-by-prefix)."""
        doc = await self._get_json("/v1/events", [("id_prefix", prefix)])
        return _items(doc, "events", self.url)

    async def events_by_ids(self, ids: Sequence[bytes]) -> list[WireItem]:
        """``GET /v1/events?ids=`` (spec 0004 #events-by-id): the events held of at most
        :data:`MAX_IDS_REQUEST` ids in one request (the node lists the others as
        ``missing``); the reader checks that each one served is one asked for."""
        asked = ",".join(i.hex() for i in ids[:MAX_IDS_REQUEST])
        doc = await self._get_json("/v1/events", [("ids", asked)])
        return _items(doc, "events", self.url)

    async def author_events(
        self, did: str, *, from_seq: int = 1, to_seq: int | None = None, limit: int = 500
    ) -> tuple[list[WireItem], int | None]:
        """One page of an author's log; returns the items and ``next_from_seq``."""
        params: list[tuple[str, str | int]] = [("from_seq", from_seq), ("limit", limit)]
        if to_seq is not None:
            params.append(("to_seq", to_seq))
        doc = await self._get_json(f"/v1/authors/{did}/events", params)
        nxt = doc.get("next_from_seq")
        if nxt is not None and (not isinstance(nxt, int) or nxt <= from_seq):
            raise BadResponseError(f"{self.url}: bad next_from_seq {nxt!r}", url=self.url)
        return _items(doc, "events", self.url), nxt

    async def author_head(self, did: str) -> dict[str, Any] | None:
        """The node's chain report for ``did``; None when it holds nothing of them."""
        try:
            return await self._get_json(f"/v1/authors/{did}/head")
        except RemoteError as exc:
            if exc.status == 404:
                return None
            raise

    async def author_keys(self, did: str, *, max_pages: int = MAX_KEY_PAGES) -> list[WireItem]:
        """``GET /v1/authors/{did}/keys`` (spec 0004 #author-keys): every key event of
        ``did`` the node holds, as wire items from the ``events`` of each page,
        following ``next`` (at most ``max_pages`` pages). The node's canonical path and
        disputes are a hint the client recomputes, so they are not read. A node that
        holds nothing of ``did`` (404) serves no key event.
        """
        items: list[WireItem] = []
        after: str | None = None
        for _ in range(max_pages):
            params: list[tuple[str, str | int]] = [] if after is None else [("after", after)]
            try:
                doc = await self._get_json(f"/v1/authors/{did}/keys", params)
            except RemoteError as exc:
                if exc.status == 404 and after is None:
                    return []
                raise
            items += _items(doc, "events", self.url)
            nxt = doc.get("next")
            if nxt is None:
                return items
            if not isinstance(nxt, str) or not nxt or nxt == after:
                raise BadResponseError(f"{self.url}: bad /keys next {nxt!r}", url=self.url)
            after = nxt
        log.warning("key history truncated url=%s author=%s pages=%d", self.url, did, max_pages)
        return items

    async def max_authors(self) -> int:
        """The node's ``max_feed_authors`` (``/v1/info`` limits), read once per client
        and kept for the node's clients over the same HTTP client for :data:`INFO_TTL_S`
        (at most what a ``POST /v1/keys`` body holds); :data:`MAX_KEYS_AUTHORS`, the
        spec default, when the node does not say. A node that cannot be reached now
        raises, and is asked again next time."""
        if self._max_authors is not None:
            return self._max_authors
        kept = _INFO_KEPT.get(self._http, {}).get(self.url)
        if kept is not None and time.monotonic() - kept[0] < INFO_TTL_S:
            self._max_authors = kept[1]
            return kept[1]
        try:
            limits = (await self.info()).get("limits")
        except (RemoteError, BadResponseError):
            limits = None  # an older or stripped-down node: the spec default
        value = limits.get("max_feed_authors") if isinstance(limits, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            self._max_authors = min(value, _KEYS_BODY_AUTHORS)
        else:
            self._max_authors = MAX_KEYS_AUTHORS
        _INFO_KEPT.setdefault(self._http, {})[self.url] = (time.monotonic(), self._max_authors)
        return self._max_authors

    async def keys_batch(self, dids: Sequence[str]) -> KeysBatch | None:
        """``POST /v1/keys`` (spec 0004 #keys-batch) for at most :meth:`max_authors`
        dids; None from a node without the endpoint (404 or
        405: an older node), which is then asked with :meth:`author_keys`. Groups for
        dids that were not asked are ignored; the reader checks every event's author.
        """
        asked = set(dids)
        try:
            doc = await self._post_json("/v1/keys", {"authors": list(dids)})
        except RemoteError as exc:
            if exc.status in (404, 405):
                return None
            raise
        groups, deferred = doc.get("keys"), doc.get("deferred", [])
        if not isinstance(groups, list) or not isinstance(deferred, list):
            raise BadResponseError(
                f"{self.url}: /v1/keys has no lists keys, deferred", url=self.url
            )
        keys: dict[str, list[WireItem]] = {}
        for group in groups:
            if not isinstance(group, dict) or not isinstance(group.get("author"), str):
                raise BadResponseError(f"{self.url}: a /v1/keys group has no author", url=self.url)
            if group["author"] in asked:
                keys.setdefault(group["author"], []).extend(_items(group, "events", self.url))
        return KeysBatch(
            keys=keys, deferred=[d for d in deferred if isinstance(d, str) and d in asked]
        )

    async def feed(
        self,
        *,
        authors: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> tuple[list[WireItem], str | None]:
        """Newest first; returns the items and the ``next`` cursor."""
        page = await self.feed_page(authors=authors, kinds=kinds, limit=limit, before=before)
        return page.items, page.next

    async def feed_page(
        self,
        *,
        authors: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> FeedPage:
        """:meth:`feed`, with the answer's key-event tips (spec 0004 #feed-key-tips)."""
        if authors and len(authors) > _FEED_GET_AUTHORS:
            # A long author list goes in a body (spec 0004 §feed-post): as a query string
            # it would be tens of KiB, slow to build and refused by some intermediaries.
            query: dict[str, Any] = {"authors": list(authors), "limit": limit}
            if kinds:
                query["kinds"] = list(kinds)
            if before is not None:
                query["before"] = before
            doc = await self._post_json("/v1/feed", query)
        else:
            params: list[tuple[str, str | int]] = [("limit", limit)]
            if authors:
                params.append(("authors", ",".join(authors)))
            if kinds:
                params.append(("kinds", ",".join(kinds)))
            if before is not None:
                params.append(("before", before))
            doc = await self._get_json("/v1/feed", params)
        nxt = doc.get("next")
        return FeedPage(
            items=_items(doc, "events", self.url),
            next=nxt if isinstance(nxt, str) else None,
            key_tips=_key_tips(doc.get("key_tips")),
        )

    async def thread(
        self, root: str, *, limit: int = 500, after: str | None = None
    ) -> tuple[WireItem | None, list[WireItem], str | None]:
        """The root (if held) and the replies; a 404 reads as an empty thread."""
        params: list[tuple[str, str | int]] = [("limit", limit)]
        if after is not None:
            params.append(("after", after))
        try:
            doc = await self._get_json(f"/v1/threads/{root}", params)
        except RemoteError as exc:
            if exc.status == 404:
                return None, [], None
            raise
        root_item = _wire_item(doc["root"]) if doc.get("root") is not None else None
        nxt = doc.get("next")
        return root_item, _items(doc, "replies", self.url), nxt if isinstance(nxt, str) else None

    async def labels(
        self, *, subject: str | None = None, labeler: str | None = None, limit: int = 500
    ) -> list[WireItem]:
        """The first page of labels on ``subject`` and/or by ``labeler``."""
        items, _ = await self.labels_page(subject=subject, labeler=labeler, limit=limit)
        return items

    async def labels_page(
        self,
        *,
        subject: str | None = None,
        labeler: str | None = None,
        after: str | None = None,
        limit: int = 500,
    ) -> tuple[list[WireItem], str | None]:
        """``GET /v1/labels`` in storage order; returns the items and the ``next`` cursor."""
        params: list[tuple[str, str | int]] = [("limit", limit)]
        if subject is not None:
            params.append(("subject", subject))
        if labeler is not None:
            params.append(("labeler", labeler))
        if after is not None:
            params.append(("after", after))
        doc = await self._get_json("/v1/labels", params)
        rows = doc.get("labels")
        if not isinstance(rows, list):
            raise BadResponseError(f"{self.url}: the answer has no list 'labels'", url=self.url)
        nxt = doc.get("next")
        if nxt is not None and (not isinstance(nxt, str) or nxt == after):
            raise BadResponseError(f"{self.url}: bad labels cursor {nxt!r}", url=self.url)
        items = [_wire_item(r.get("event") if isinstance(r, dict) else None) for r in rows]
        return items, nxt

    async def profiles(self, q: str, *, limit: int = 20) -> list[WireItem]:
        doc = await self._get_json("/v1/profiles", [("q", q), ("limit", limit)])
        rows = doc.get("profiles")
        if not isinstance(rows, list):
            raise BadResponseError(f"{self.url}: the answer has no list 'profiles'", url=self.url)
        return [_wire_item(r.get("event") if isinstance(r, dict) else None) for r in rows]

    async def counts(self, ids: Sequence[str]) -> dict[str, dict[str, object]]:
        """``POST /v1/counts`` (spec 0004 #counts) for at most 500 hex ids: the node's
        claimed counts by id, as it sent them (the caller checks each value); ids
        that were not asked are dropped."""
        doc = await self._post_json("/v1/counts", {"ids": list(ids)})
        counts = doc.get("counts")
        if not isinstance(counts, dict):
            raise BadResponseError(f"{self.url}: /v1/counts has no object 'counts'", url=self.url)
        asked = set(ids)
        return {k: v for k, v in counts.items() if k in asked and isinstance(v, dict)}

    async def stats_batch(self, dids: Sequence[str]) -> dict[str, dict[str, int | None]] | None:
        """``POST /v1/stats`` (spec 0004 #stats-batch) for at most :meth:`max_authors`
        dids: the figures of each did asked (those that are a non-negative integer or
        null); None from a node without the endpoint (404 or 405: an older node)."""
        try:
            doc = await self._post_json("/v1/stats", {"authors": list(dids)})
        except RemoteError as exc:
            if exc.status in (404, 405):
                return None
            raise
        stats = doc.get("stats")
        if not isinstance(stats, dict):
            raise BadResponseError(f"{self.url}: /v1/stats has no object 'stats'", url=self.url)
        asked = set(dids)
        return {
            did: _figures(value)
            for did, value in stats.items()
            if did in asked and isinstance(value, dict)
        }

    async def author_ranges(
        self, ranges: Sequence[tuple[str, int, int]], *, limit: int = 500
    ) -> list[LogRange] | None:
        """``POST /v1/authors/events`` (spec 0004 #author-ranges): seq ranges
        ``(did, from_seq, to_seq)`` of many logs at once (at most 200); per range asked,
        its items and ``next_from_seq`` (the range was not read to its end). None from a
        node without the endpoint (404 or 405), which is then asked range by range."""
        body = {
            "ranges": [{"author": d, "from_seq": a, "to_seq": b} for d, a, b in ranges],
            "limit": limit,
        }
        try:
            doc = await self._post_json("/v1/authors/events", body)
        except RemoteError as exc:
            if exc.status in (404, 405):
                return None
            raise
        logs = doc.get("logs")
        if not isinstance(logs, list) or len(logs) != len(ranges):
            raise BadResponseError(
                f"{self.url}: /v1/authors/events has not one log per range", url=self.url
            )
        out: list[LogRange] = []
        for (did, first, _), log_doc in zip(ranges, logs, strict=True):
            if not isinstance(log_doc, dict):
                raise BadResponseError(f"{self.url}: a log is not an object", url=self.url)
            nxt = log_doc.get("next_from_seq")
            if nxt is not None and (
                not isinstance(nxt, int) or isinstance(nxt, bool) or nxt < first
            ):
                raise BadResponseError(f"{self.url}: bad next_from_seq {nxt!r}", url=self.url)
            out.append(LogRange(did, _items(log_doc, "events", self.url), nxt))
        return out

    async def reactions(
        self, eid: str, kind: str, *, before: str | None = None, limit: int = 100
    ) -> tuple[list[WireItem], str | None]:
        """``GET /v1/events/{id}/reactions`` (spec 0004 #reactions): one page of the
        ``kind`` events (like, repost, reply, quote) that reference ``eid``."""
        params: list[tuple[str, str | int]] = [("kind", kind), ("limit", limit)]
        if before is not None:
            params.append(("before", before))
        doc = await self._get_json(f"/v1/events/{eid}/reactions", params)
        return _items(doc, "events", self.url), self._next(doc, before)

    async def search(
        self,
        *,
        q: str | None = None,
        tag: str | None = None,
        before: str | None = None,
        limit: int = 50,
    ) -> tuple[list[WireItem], str | None]:
        """``GET /v1/search`` (spec 0004 #search): one page of the posts this node
        holds matching the words ``q`` or the hashtag ``tag``, newest first."""
        params: list[tuple[str, str | int]] = [("limit", limit)]
        params.append(("q", q) if q is not None else ("tag", tag or ""))
        if before is not None:
            params.append(("before", before))
        doc = await self._get_json("/v1/search", params)
        return _items(doc, "events", self.url), self._next(doc, before)

    # -- feeds (spec 0004 #feeds) ---------------------------------------------------------

    async def feeds(self) -> list[FeedInfo]:
        """``GET /v1/feeds``: the feeds this node serves (at most 200 kept; entries
        whose name is not a feed name are left out, descriptions made one line)."""
        response = await self._request("GET", "/v1/feeds", cap=_FEED_LIST_CAP)
        doc = self._json_object("/v1/feeds", response)
        rows = doc.get("feeds")
        if not isinstance(rows, list):
            raise BadResponseError(f"{self.url}: /v1/feeds has no list 'feeds'", url=self.url)
        out: dict[str, FeedInfo] = {}
        for row in rows[:MAX_FEED_LIST]:
            name = row.get("name") if isinstance(row, dict) else None
            if not isinstance(name, str) or not _FEED_NAME.match(name) or name in out:
                continue
            description = row.get("description")
            text = description if isinstance(description, str) else ""
            out[name] = FeedInfo(name=name, description=_one_line(text, MAX_FEED_DESCRIPTION))
        return list(out.values())

    async def feed_skeleton(
        self,
        name: str,
        *,
        limit: int = 50,
        cursor: str | None = None,
        viewer: str | None = None,
    ) -> Skeleton:
        """``GET /v1/feeds/{name}``: one page of ids chosen by the feed, never trusted
        (spec 0007 #feed-bounds). At most :func:`skeleton_cap` bytes are read; the
        answer must be ``{"feed": name, "items": [{"id": 64 hex, "why": str}],
        "cursor": str|null}`` with a cursor of 1-512 printable ASCII characters, else
        ``bad-response``. Items past ``limit`` are counted, not kept; a cursor equal
        to the one asked for ends the paging (``endless``)."""
        if not _FEED_NAME.match(name):
            raise BadResponseError(f"{name!r} is not a feed name", url=self.url)
        limit = max(1, min(limit, MAX_LIMIT))
        params: list[tuple[str, str | int]] = [("limit", limit)]
        if cursor is not None:
            params.append(("cursor", cursor))
        if viewer is not None:
            params.append(("viewer", viewer))
        path = f"/v1/feeds/{name}"
        response = await self._request("GET", path, params=params, cap=skeleton_cap(limit))
        doc = self._json_object(path, response)
        if doc.get("feed") != name:
            raise BadResponseError(f"{self.url}{path}: the answer names another feed", url=self.url)
        rows, nxt = doc.get("items"), doc.get("cursor")
        if not isinstance(rows, list):
            raise BadResponseError(
                f"{self.url}{path}: the answer has no list 'items'", url=self.url
            )
        if nxt is not None and (not isinstance(nxt, str) or not _cursor_ok(nxt)):
            raise BadResponseError(
                f"{self.url}{path}: the cursor is not 1-{MAX_CURSOR_CHARS} printable ASCII "
                "characters",
                url=self.url,
            )
        items: list[FeedItem] = []
        for row in rows[:limit]:
            eid = row.get("id") if isinstance(row, dict) else None
            why = row.get("why", "") if isinstance(row, dict) else None
            if not isinstance(eid, str) or not _HEX64.match(eid) or not isinstance(why, str):
                raise BadResponseError(
                    f"{self.url}{path}: an item is not {{'id': 64 hex, 'why': text}}",
                    url=self.url,
                )
            items.append(FeedItem(bytes.fromhex(eid), _one_line(why, MAX_WHY_CHARS)))
        endless = nxt is not None and nxt == cursor
        return Skeleton(
            feed=name,
            items=items,
            cursor=None if endless else nxt,
            extra=max(0, len(rows) - limit),
            endless=endless,
            size=len(response.content),
        )

    async def reacted(self, *, since: int, until: int, limit: int = 200) -> list[Reacted]:
        """``GET /v1/reacted`` (spec 0004 #reacted): the targets most liked and reposted
        by events with ``since <= ts < until``, as this node counts them (a claim: a
        feed that shows one fetches and verifies it). At most ``limit`` (1-1000) kept;
        an entry that is not ``{"id": 64 hex, "likes": n, "reposts": n}`` fails the
        answer (``bad-response``)."""
        limit = max(1, min(limit, MAX_TOP))
        params: list[tuple[str, str | int]] = [
            ("since", since),
            ("until", until),
            ("limit", limit),
        ]
        response = await self._request("GET", "/v1/reacted", params=params, cap=4096 + 160 * limit)
        doc = self._json_object("/v1/reacted", response)
        rows = doc.get("targets")
        if not isinstance(rows, list):
            raise BadResponseError(f"{self.url}: /v1/reacted has no list 'targets'", url=self.url)
        out: list[Reacted] = []
        for row in rows[:limit]:
            eid = row.get("id") if isinstance(row, dict) else None
            likes = row.get("likes", 0) if isinstance(row, dict) else None
            reposts = row.get("reposts", 0) if isinstance(row, dict) else None
            if (
                not isinstance(eid, str)
                or not _HEX64.match(eid)
                or not _count_ok(likes)
                or not _count_ok(reposts)
            ):
                raise BadResponseError(
                    f"{self.url}: a /v1/reacted target is malformed", url=self.url
                )
            assert isinstance(likes, int) and isinstance(reposts, int)  # noqa: S101 - checked
            out.append(Reacted(bytes.fromhex(eid), likes, reposts))
        return out

    def _next(self, doc: dict[str, Any], before: str | None) -> str | None:
        """A page's ``next`` cursor; a node that names the page it was asked for again
        would have a client read it forever."""
        nxt = doc.get("next")
        if nxt is None:
            return None
        if not isinstance(nxt, str) or not nxt or len(nxt) > 256 or nxt == before:
            raise BadResponseError(f"{self.url}: bad page cursor {nxt!r}", url=self.url)
        return nxt

    async def notifications(
        self,
        did: str,
        *,
        kinds: Sequence[str] | None = None,
        before: str | None = None,
        limit: int = 50,
    ) -> tuple[list[tuple[str, WireItem]], str | None]:
        """``GET /v1/notifications`` (spec 0004 #notifications): one page of the events
        that concern ``did``, newest first, each with the reason the node gives (a
        hint: the reader works out its own, spec 0007 #notifications)."""
        params: list[tuple[str, str | int]] = [("did", did), ("limit", limit)]
        if kinds:
            params.append(("kinds", ",".join(kinds)))
        if before is not None:
            params.append(("before", before))
        doc = await self._get_json("/v1/notifications", params)
        rows = doc.get("notifications")
        if not isinstance(rows, list):
            raise BadResponseError(
                f"{self.url}: the answer has no list 'notifications'", url=self.url
            )
        out: list[tuple[str, WireItem]] = []
        for row in rows:
            row = row if isinstance(row, dict) else {}
            reason = row.get("reason")
            out.append((reason if isinstance(reason, str) else "", _wire_item(row.get("event"))))
        return out, self._next(doc, before)

    async def followers(
        self, did: str, *, before: str | None = None, limit: int = 100
    ) -> tuple[list[WireItem], dict[str, int | None], str | None]:
        """``GET /v1/followers/{did}`` (spec 0004 #followers): one page of the follow
        events of ``did``'s current followers, the node's ``stats`` figures (the ones
        that are a non-negative integer or null), and the ``next`` cursor."""
        params: list[tuple[str, str | int]] = [("limit", limit)]
        if before is not None:
            params.append(("before", before))
        doc = await self._get_json(f"/v1/followers/{did}", params)
        stats = doc.get("stats")
        figures = _figures(stats) if isinstance(stats, dict) else {}
        return _items(doc, "events", self.url), figures, self._next(doc, before)

    async def stream_chunks(
        self, params: Sequence[tuple[str, str | int]], *, idle_s: float
    ) -> AsyncIterator[bytes]:
        """``GET /v1/stream`` (spec 0004 #stream): the raw bytes as they come, until the
        node ends the stream. A stream silent for ``idle_s`` (a live node heartbeats)
        is ``node-timeout``; other failures are translated as for every request."""
        timeout = httpx.Timeout(self.timeout, read=idle_s)
        try:
            async with self._http.stream(
                "GET",
                self.url + "/v1/stream",
                params=list(params),
                headers={"Accept": "text/event-stream"},
                timeout=timeout,
            ) as resp:
                if resp.status_code >= 400:
                    body = await self._read_capped(resp)
                    raise self._remote_error(
                        httpx.Response(resp.status_code, headers=resp.headers, content=body)
                    )
                async for chunk in resp.aiter_bytes():
                    yield chunk
        except httpx.TimeoutException as exc:
            raise NodeTimeoutError(
                f"{self.url}: the stream was silent for {idle_s:g} s", url=self.url
            ) from exc
        except httpx.HTTPError as exc:
            raise NodeUnreachableError(
                f"{self.url} stream failed: {type(exc).__name__}: {exc}", url=self.url
            ) from exc

    # -- blobs (spec 0004 #blobs, spec 0007 #images) -----------------------------------

    async def upload_blob(self, data: bytes, mime: str) -> BlobReceipt:
        """``POST /v1/blobs``: the node keeps ``data`` for a post that names it soon
        (its upload grace period). The node's answer must name these very bytes."""
        response = await self._request(
            "POST",
            "/v1/blobs",
            content=data,
            headers={"Content-Type": mime, "Accept": "application/json"},
        )
        doc = self._json_object("/v1/blobs", response)
        try:
            receipt = BlobReceipt(
                hash=bytes.fromhex(str(doc["hash"])),
                mime=str(doc["mime"]),
                size=int(doc["size"]),
                width=int(doc["width"]),
                height=int(doc["height"]),
                held=bool(doc.get("held", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadResponseError(
                f"{self.url}: the blob upload answer is malformed: {exc}", url=self.url
            ) from exc
        if receipt.hash != blob_hash(data) or receipt.size != len(data):
            raise BadResponseError(
                f"{self.url}: the node names another blob ({receipt.hash.hex()}, "
                f"{receipt.size} bytes) than the one sent",
                url=self.url,
            )
        return receipt

    async def fetch_blob(self, claim: EmbedImage) -> bytes:
        """``GET /v1/blobs/{hash}``: the bytes of the image ``claim`` names, always
        checked against it (spec 0003 #blob-hash): ``blob-mismatch`` naming this node
        when they are not those bytes, ``RemoteError`` (``not-found``) when the node
        does not hold them."""
        response = await self._request("GET", f"/v1/blobs/{claim.hash.hex()}", cap=MAX_BLOB_BYTES)
        try:
            verify_blob(response.content, claim)
        except BadBlobError as exc:
            raise BlobMismatchError(
                f"{self.url} served altered bytes for image {claim.hash.hex()[:12]}: {exc.message}",
                url=self.url,
            ) from exc
        return response.content

    async def submit(self, wires: Sequence[bytes]) -> list[IngestResult]:
        """``POST /v1/events`` as a canonical msgpack batch; one result per event."""
        response = await self._request(
            "POST",
            "/v1/events",
            content=encode(list(wires)),
            headers={"Content-Type": _MSGPACK, "Accept": "application/json"},
        )
        try:
            doc = jsontext.loads(response.content)
            rows = doc["results"]
            if not isinstance(rows, list) or len(rows) != len(wires):
                raise TypeError("results do not match the batch")
            return [
                IngestResult(
                    status=str(r["status"]),
                    id=r.get("id"),
                    error=r.get("error"),
                    message=r.get("message"),
                )
                for r in rows
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise BadResponseError(
                f"{self.url}: the ingest answer is malformed: {exc}", url=self.url
            ) from exc
