"""Hostile peers, a hostile node for the client, and probes of a node process.

The attacks of ``test_hostile_peers.py`` and ``test_overload.py`` run against real
``python -m node run`` processes (:mod:`tests.e2e.fedproc`), so the fakes here serve
real sockets from a background event loop (:class:`LoopThread`) while the tests stay
synchronous and use the e2e helpers (``wait_until``, ``peer_entry``, ``metric``).

- :class:`HostilePeer` extends :class:`tests.node.fed_fixtures.FakePeer` (a
  well-behaved peer by default) with one :data:`Attack` per endpoint (``info``,
  ``stream``, ``sync``, ``events``, ``peers``): garbage bytes, an HTML page, the
  right body under the wrong content type, an endless body, a body trickled at one
  byte a second, a redirect elsewhere, forged events. Each attacked request is
  recorded as a :class:`Hit` with how long the node stayed on it.
- :class:`Canary` is a bare TCP listener that counts connections: a redirect target
  that proves, by staying at zero, that a redirect was never followed.
- :class:`HostileNode` is what a reader's client may meet: the same attacks on every
  read endpoint, or a "liar" that serves forged and foreign events and withholds.
- :func:`flood` posts batches from many client addresses at once (all of
  127.0.0.0/8 is loopback, so each address has its own per-IP bucket at the node),
  politely (waiting out ``Retry-After``) or not, and reports every answer;
  :func:`watch` samples a node's memory, admission gauges and read latency meanwhile.
- :func:`rss_mib` / :func:`peak_rss_mib` read ``/proc/<pid>/status``;
  :func:`metric_sum` reads labelled ``/metrics`` samples.

Nothing here sleeps to synchronise: the fakes pace their own output (a trickle is
its attack), flooding clients wait out ``Retry-After`` as clients do, and the tests
wait on observable conditions. The fakes' counters are written on the loop thread
and read from the test thread (single reads and C-level copies under the GIL).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import re
import ssl
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from aiohttp import web
from aiohttp.test_utils import TestServer

from protocol.encoding import decode, encode
from protocol.events import Event, decode_unverified
from tests.e2e.fedproc import Author
from tests.node.fed_fixtures import FakePeer
from tests.node_json import event_json

__all__ = [
    # the loop
    "LoopThread",
    # attacks
    "Attack",
    "AttackTarget",
    "Hit",
    "endless",
    "forged_events",
    "garbage",
    "html",
    "redirect",
    "same_origin_redirect",
    "trickle",
    "wrong_type",
    # fakes
    "Canary",
    "HostileNode",
    "HostilePeer",
    # events
    "broken_signature",
    "posts",
    # floods
    "MONITOR_SOURCE",
    "FloodReport",
    "Watch",
    "client_from",
    "flood",
    "loopback_sources",
    "msgpack_batch",
    "until",
    "watch",
    # probes
    "metric_sum",
    "peak_rss_mib",
    "rss_mib",
]

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MSGPACK = "application/msgpack"
SSE = "text/event-stream"
#: Longest any fake holds a request (trickle, endless body); teardown releases sooner.
HOLD_S = 60.0
#: How often a fake holding a request checks whether the node hung up.
_POLL_S = 0.05
#: Bytes per write of an endless body.
_ENDLESS_CHUNK = 64 * 1024


# -- a background event loop ----------------------------------------------------------


class LoopThread:
    """An asyncio loop in a daemon thread, for servers that synchronous tests drive."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the loop and return its result (from any other thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


# -- attacks --------------------------------------------------------------------------


@dataclass(slots=True)
class Hit:
    """One attacked request: which endpoint, when it came, how long the node stayed,
    whether the node hung up (rather than the fake giving up at :data:`HOLD_S` or
    teardown), and how many body bytes it had been sent by then."""

    endpoint: str
    started: float
    seconds: float | None = None  # None while the node is still on it
    cut_by_node: bool = False
    body_bytes: int = 0


class AttackTarget:
    """What an attack needs from the fake it runs in: a release event (set at
    teardown), the events it holds, and somewhere to record what it did."""

    release: asyncio.Event
    wires: list[bytes]

    def _init_target(self) -> None:
        self.hits_log: list[Hit] = []
        self.bytes_sent: Counter[str] = Counter()

    def record(self, endpoint: str) -> Hit:
        hit = Hit(endpoint=endpoint, started=asyncio.get_running_loop().time())
        self.hits_log.append(hit)
        return hit

    def durations(self, endpoint: str) -> list[float]:
        """How long the node stayed on each finished attacked request to ``endpoint``."""
        return [h.seconds for h in self.finished(endpoint) if h.seconds]

    def finished(self, endpoint: str) -> list[Hit]:
        """The attacked requests to ``endpoint`` that are over (the node left, or the
        fake gave up)."""
        return [h for h in self.hits_log if h.endpoint == endpoint and h.seconds is not None]


#: ``attack(fake, endpoint, request, honest_handler) -> response``.
Attack = Callable[[AttackTarget, str, web.Request, Handler], Awaitable[web.StreamResponse]]


def garbage(content_type: str, size: int = 4096, *, seed: int = 9) -> Attack:
    """Random bytes under ``content_type``."""
    body = random.Random(seed).randbytes(size)

    async def attack(
        peer: AttackTarget, endpoint: str, request: web.Request, honest: Handler
    ) -> web.StreamResponse:
        return web.Response(body=body, headers={"Content-Type": content_type})

    return attack


def html() -> Attack:
    """A web page where an API answer belongs (a captive portal, a misrouted proxy)."""
    page = b"<!doctype html><html><body><h1>Welcome</h1><p>Please log in.</p></body></html>"

    async def attack(
        peer: AttackTarget, endpoint: str, request: web.Request, honest: Handler
    ) -> web.StreamResponse:
        return web.Response(body=page, headers={"Content-Type": "text/html; charset=utf-8"})

    return attack


def wrong_type(content_type: str = "text/plain") -> Attack:
    """The honest answer, byte for byte, under another content type."""

    async def attack(
        peer: AttackTarget, endpoint: str, request: web.Request, honest: Handler
    ) -> web.StreamResponse:
        if endpoint == "stream":
            resp = web.StreamResponse(headers={"Content-Type": content_type})
            await resp.prepare(request)
            await resp.write(b"retry: 1000\n: cursor=0\n\n")
            return resp
        answer = await honest(request)
        assert isinstance(answer, web.Response) and answer.body is not None
        body = answer.body
        assert isinstance(body, bytes)
        return web.Response(body=body, headers={"Content-Type": content_type})

    return attack


async def _hold(
    peer: AttackTarget, request: web.Request, hit: Hit, step: Callable[[], Awaitable[None]]
) -> None:
    """Call ``step`` (one write) until the node hangs up, the fake is released or
    :data:`HOLD_S` passes; record how long the node stayed."""
    loop = asyncio.get_running_loop()
    try:
        while loop.time() - hit.started < HOLD_S and not peer.release.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                hit.cut_by_node = True
                break
            await step()
    except ConnectionError:
        hit.cut_by_node = True  # the node hung up mid-write
    except asyncio.CancelledError:
        # aiohttp cancels a handler whose client went away; teardown sets release first.
        hit.cut_by_node = not peer.release.is_set()
        raise
    finally:
        hit.seconds = loop.time() - hit.started


def trickle(content_type: str, data: bytes = b" ") -> Attack:
    """Headers at once, then ``data`` one byte a second, forever (a slow-loris peer)."""

    async def attack(
        peer: AttackTarget, endpoint: str, request: web.Request, honest: Handler
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        hit = peer.record(endpoint)
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        await resp.prepare(request)
        sent = 0
        next_at = loop.time()

        async def step() -> None:
            nonlocal sent, next_at
            if loop.time() >= next_at:
                await resp.write(data[sent % len(data) : sent % len(data) + 1])
                sent += 1
                hit.body_bytes = sent
                next_at += 1.0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_POLL_S):
                    await peer.release.wait()

        await _hold(peer, request, hit, step)
        return resp

    return attack


def endless(content_type: str) -> Attack:
    """An unbounded body of random bytes, as fast as the node reads it."""
    chunk = random.Random(11).randbytes(_ENDLESS_CHUNK)

    async def attack(
        peer: AttackTarget, endpoint: str, request: web.Request, honest: Handler
    ) -> web.StreamResponse:
        hit = peer.record(endpoint)
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        await resp.prepare(request)

        async def step() -> None:
            await resp.write(chunk)
            peer.bytes_sent[endpoint] += len(chunk)

        await _hold(peer, request, hit, step)
        return resp

    return attack


def redirect(location: str, status: int = 307) -> Attack:
    """A redirect to ``location`` (another origin: metadata service, loopback, CGNAT)."""

    async def attack(
        peer: AttackTarget, endpoint: str, request: web.Request, honest: Handler
    ) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": location})

    return attack


def same_origin_redirect() -> Attack:
    """Redirect once to the same path with ``?hop=1`` (same origin), then answer
    honestly: the control showing that redirects a node may follow are followed."""

    async def attack(
        peer: AttackTarget, endpoint: str, request: web.Request, honest: Handler
    ) -> web.StreamResponse:
        if "hop" in request.query:
            return await honest(request)
        sep = "&" if request.query_string else "?"
        target = f"{request.path_qs}{sep}hop=1"
        return web.Response(status=307, headers={"Location": target})

    return attack


def forged_events() -> Attack:
    """``GET /v1/events?ids=``: exactly the events asked for, each with a broken
    signature (same header, so the same id: only verification can tell)."""

    async def attack(
        peer: AttackTarget, endpoint: str, request: web.Request, honest: Handler
    ) -> web.StreamResponse:
        wanted = [bytes.fromhex(x) for x in request.query.get("ids", "").split(",") if x]
        by_id = {decode_unverified(w).id: w for w in peer.wires}
        events = [{"wire": broken_signature(by_id[i])} for i in wanted if i in by_id]
        body = encode({"events": events, "missing": []})
        return web.Response(body=body, headers={"Content-Type": MSGPACK})

    return attack


# -- fakes ----------------------------------------------------------------------------


class HostilePeer(FakePeer, AttackTarget):
    """A :class:`FakePeer` whose endpoints named in ``attacks`` misbehave.

    Endpoint names: ``info`` (``GET /v1/info``), ``stream``, ``sync``, ``events``
    (``GET /v1/events?ids=``), ``peers`` (``GET /v1/peers``). The others stay honest.
    """

    def __init__(self, *, attacks: Mapping[str, Attack] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._init_target()
        self.attacks = dict(attacks or {})
        #: Requests by endpoint name (``hits`` counts by path, where ``/v1/events``
        #: mixes fetches with offers and ``/v1/peers`` gossip with announcements).
        self.calls: Counter[str] = Counter()

    async def _attacked(
        self, endpoint: str, request: web.Request, honest: Handler
    ) -> web.StreamResponse:
        self.calls[endpoint] += 1
        attack = self.attacks.get(endpoint)
        if attack is None:
            return await honest(request)
        return await attack(self, endpoint, request, honest)

    # FakePeer's handlers, each behind its attack (answers may now be streamed).
    async def _info(self, request: web.Request) -> web.StreamResponse:  # type: ignore[override]
        return await self._attacked("info", request, super()._info)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        return await self._attacked("stream", request, super()._stream)

    async def _sync(self, request: web.Request) -> web.StreamResponse:  # type: ignore[override]
        return await self._attacked("sync", request, super()._sync)

    async def _get_events(self, request: web.Request) -> web.StreamResponse:  # type: ignore[override]
        return await self._attacked("events", request, super()._get_events)

    async def _get_peers(self, request: web.Request) -> web.StreamResponse:  # type: ignore[override]
        return await self._attacked("peers", request, super()._get_peers)


class Canary:
    """A TCP listener on 127.0.0.1 that counts connections and never answers."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> Canary:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self._server = await asyncio.start_server(accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class HostileNode(AttackTarget):
    """A node API as a hostile reader-facing node: one attack on every ``GET``, or,
    with ``attack=None``, a liar serving ``log`` as every author's log (forgeries and
    other authors' events included, whatever it leaves out withheld)."""

    def __init__(self, attack: Attack | None = None, *, log: Sequence[bytes] = ()) -> None:
        self._init_target()
        self.attack = attack
        self.log = list(log)
        self.wires = []
        self.release = asyncio.Event()
        self.requests = 0
        self.server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    async def start(self) -> HostileNode:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._any)
        self.server = TestServer(app, host="127.0.0.1", port=0)
        await self.server.start_server()
        return self

    async def close(self) -> None:
        self.release.set()
        if self.server is not None:
            await self.server.close()

    async def _any(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if self.attack is not None:
            return await self.attack(self, "read", request, self._lie)
        return await self._lie(request)

    async def _lie(self, request: web.Request) -> web.StreamResponse:
        parts = request.path.strip("/").split("/")
        if parts[:2] == ["v1", "authors"] and parts[3:] == ["events"]:
            events = [event_json(w) for w in self.log]
            return web.json_response(
                {"author": parts[2], "events": events, "next_from_seq": None}
            )
        if parts == ["v1", "feed"]:
            return web.json_response({"events": [], "next": None})
        return web.json_response({"error": "not-found", "message": "not here"}, status=404)


# -- events ---------------------------------------------------------------------------


def posts(seed: int, count: int, prefix: str = "") -> list[Event]:
    """``count`` posts of one author's chain (timestamps: now)."""
    return Author(seed).posts(count, prefix)


def broken_signature(wire: bytes) -> bytes:
    """``wire`` with one signature bit flipped: same header and id, invalid signature."""
    header, sig, body = decode(wire)
    assert isinstance(sig, bytes)
    return encode([header, bytes([sig[0] ^ 1]) + sig[1:], body])


# -- probes ---------------------------------------------------------------------------


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def rss_mib(pid: int) -> float:
    """The process's resident set now (``VmRSS``), MiB."""
    return _status_kib(pid, "VmRSS") / 1024


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set so far (``VmHWM``, kept by the kernel), MiB."""
    return _status_kib(pid, "VmHWM") / 1024


def metric_sum(url: str, name: str, **labels: str) -> float:
    """The sum of ``url``'s ``/metrics`` samples of ``name`` whose labels include
    ``labels`` (0 when there is none yet: counters appear on first use)."""
    text = httpx.get(url + "/metrics", timeout=10).text
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", text, re.MULTILINE):
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


# -- floods ---------------------------------------------------------------------------


def loopback_sources(count: int, first: int = 10) -> list[str]:
    """``count`` distinct client addresses: all of 127.0.0.0/8 is loopback on Linux,
    so each is another "IP" to the node's per-address rate limiter."""
    assert first + count <= 250
    return [f"127.0.0.{first + i}" for i in range(count)]


#: The address the tests read from while a flood runs: its own rate-limit bucket.
MONITOR_SOURCE = "127.0.0.254"


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Building one per client costs ~20 ms of CPU (a flood makes dozens); plain HTTP
    # never uses it.
    return ssl.create_default_context()


def client_from(source: str, *, timeout: float = 30.0) -> httpx.AsyncClient:
    """An async HTTP client whose connections leave from ``source``."""
    transport = httpx.AsyncHTTPTransport(local_address=source, retries=0, verify=_tls_context())
    return httpx.AsyncClient(transport=transport, timeout=timeout)


def msgpack_batch(events: Sequence[Event]) -> bytes:
    """An ingest body: a canonical msgpack array of wire events."""
    return encode([e.wire for e in events])


@dataclass
class FloodReport:
    """What the flooding clients were told."""

    statuses: Counter[int]
    #: ``Retry-After`` of each 429/503 answer, by value ("" when it had none).
    retry_after: Counter[str]
    #: Ids the node acknowledged (``accepted`` or ``duplicate`` in a 200 answer).
    acked: set[str]
    #: Requests that got no HTTP answer, by exception type.
    errors: Counter[str]
    seconds: float
    #: 503s by the bound that shed them: "address" (the address's share of the
    #: admission gate) or "node" (the gate's totals, the deadline, ...).
    unavailable: Counter[str] = field(default_factory=Counter)

    @property
    def shed(self) -> int:
        return self.statuses[429] + self.statuses[503]

    def summary(self) -> str:
        codes = " ".join(f"{k}:{v}" for k, v in sorted(self.statuses.items()))
        return f"{sum(self.statuses.values())} answers ({codes}) in {self.seconds:.1f} s"


async def flood(
    url: str,
    batches: Sequence[bytes],
    *,
    sources: Sequence[str],
    per_source: int,
    duration_s: float,
    polite: bool,
    repeat: bool,
    stop: asyncio.Event | None = None,
) -> FloodReport:
    """``per_source`` clients from each of ``sources`` post ``batches`` to ``url``.

    Each client takes the next batch, posts it and records the answer; a shed batch
    goes back in the queue, and so does every batch when ``repeat`` (a flood of
    duplicates, which cost the node as much verification as new events). ``polite``
    clients wait ``Retry-After`` after a 429/503 (a crowd of well-behaved clients);
    the others retry at once (a hostile one). Stops after ``duration_s``, when every
    batch is acknowledged (unless ``repeat``), or when ``stop`` is set.
    """
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(batches)):
        queue.put_nowait(i)
    report = FloodReport(Counter(), Counter(), set(), Counter(), 0.0)
    halt = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    clients = [client_from(s) for s in sources]
    start = loop.time()
    pending = len(batches)
    all_acked = asyncio.Event()

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal pending
        while not halt.is_set() and loop.time() - start < duration_s:
            try:
                async with asyncio.timeout(0.1):
                    index = await queue.get()
            except TimeoutError:
                continue
            retry_s = 0.0
            try:
                r = await http.post(
                    url + "/v1/events",
                    content=batches[index],
                    headers={"Content-Type": MSGPACK, "Accept": "application/json"},
                )
            except httpx.HTTPError as exc:
                report.errors[type(exc).__name__] += 1
                queue.put_nowait(index)
                continue
            report.statuses[r.status_code] += 1
            if r.status_code == 200:
                results = r.json()["results"]
                report.acked.update(
                    x["id"] for x in results if x["status"] in ("accepted", "duplicate")
                )
                if repeat:
                    queue.put_nowait(index)
                else:
                    pending -= 1
                    if pending == 0:
                        all_acked.set()
                        halt.set()
                continue
            queue.put_nowait(index)
            if r.status_code == 503:
                share = "from this address" in r.json().get("message", "")
                report.unavailable["address" if share else "node"] += 1
            if r.status_code in (429, 503):
                value = r.headers.get("Retry-After", "")
                report.retry_after[value] += 1
                if polite and value.isdigit():
                    retry_s = float(value)
            if retry_s:
                with contextlib.suppress(TimeoutError):  # a client's backoff, cut short by halt
                    async with asyncio.timeout(retry_s):
                        await halt.wait()

    try:
        await asyncio.gather(*(worker(c) for c in clients for _ in range(per_source)))
    finally:
        for c in clients:
            await c.aclose()
    report.seconds = loop.time() - start
    return report


@dataclass
class Watch:
    """What a :func:`watch` of a node saw: memory, the admission gauges, read times."""

    peak_rss_mib: float = 0.0
    max_inflight_requests: int = 0
    max_inflight_bytes: int = 0
    read_s: list[float] = field(default_factory=list)
    read_failures: Counter[int] = field(default_factory=Counter)

    def p50(self) -> float:
        values = sorted(self.read_s)
        return values[len(values) // 2] if values else 0.0


def _gauge(text: str, name: str) -> int:
    m = re.search(rf"^{re.escape(name)} (\d+)$", text, re.MULTILINE)
    assert m is not None, f"no gauge {name}"
    return int(m.group(1))


async def watch(url: str, pid: int, stop: asyncio.Event, *, every_s: float = 0.1) -> Watch:
    """Until ``stop``: sample ``pid``'s memory and ``url``'s admission gauges, and time
    a feed read (from :data:`MONITOR_SOURCE`, so never rate limited by the flood)."""
    seen = Watch()
    async with client_from(MONITOR_SOURCE) as http:
        while not stop.is_set():
            seen.peak_rss_mib = max(seen.peak_rss_mib, rss_mib(pid))
            text = (await http.get(url + "/metrics")).text
            seen.max_inflight_requests = max(
                seen.max_inflight_requests, _gauge(text, "murmur_inflight_requests")
            )
            seen.max_inflight_bytes = max(
                seen.max_inflight_bytes, _gauge(text, "murmur_inflight_bytes")
            )
            t0 = time.monotonic()
            r = await http.get(url + "/v1/feed", params={"limit": "50"})
            if r.status_code == 200:
                seen.read_s.append(time.monotonic() - t0)
            else:
                seen.read_failures[r.status_code] += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every_s):
                    await stop.wait()
    seen.peak_rss_mib = max(seen.peak_rss_mib, peak_rss_mib(pid))
    return seen


async def until(
    predicate: Callable[[], Awaitable[bool]], deadline_s: float, what: str
) -> float:
    """Poll ``predicate`` until true; the seconds it took. AssertionError on timeout."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not await predicate():
        if loop.time() - start > deadline_s:
            raise AssertionError(f"timed out after {deadline_s:g} s waiting for {what}")
        await asyncio.sleep(0.05)  # poll interval of a deadline loop
    return loop.time() - start
