"""``murmur web``: the home timeline over HTTP, and the first page in a real browser.

``murmur bench web [--authors 30] [--posts 10] [--runs 200] [--browser-runs 10]
[--changed-runs 10] [--no-browser] [--quick]``

Issue #17 point 6. A real devnet: three federating node processes (a mesh), a corpus
signed here and each author's events sent to one node (the others get them by
federation; the run waits until every node holds every event): ``--authors`` did:key
authors with a profile and ``--posts`` posts each (some replies, quotes, reposts,
hashtags, languages, a content warning), likes between them, and a labeler labelling
some posts. The reader is a home made through the client library (``alice``, a
did:key, following every author, subscribed to the labeler) with **10 filters**:
eight built-ins (muted words that match some posts, muted and blocked accounts, the
labeler, self-labels, languages, replies from non-follows, an allow list) and the two
example custom filters ``bench timeline`` uses (each in its worker process, as a
reader's ``filters.toml`` gets them). ``murmur web`` runs as its own process
(``python -m client.cli.main web``).

Measured:

1. ``GET /`` over HTTP (keep-alive, one client, warm: after ``WARMUP`` reads): p50,
   p95 and max of the whole answer, and the server's own ``Server-Timing`` (``app``,
   the whole handler; ``cpu``, the server's CPU time meanwhile, which a busy machine
   does not inflate; its phases: ``validate`` asking every node's ``/v1/info`` for the
   read cache, ``follows``, ``page`` reading and moderating the page, ``render``),
   with the requests the page made to the nodes and the answers it took from its
   cache (spec 0007 #web-read-cache);
2. ``GET /`` right after an author posted through one node (``--changed-runs``, once
   every node holds the post, which must be on the page): every node's kept answers
   are dropped, so this is a page after a change, read afresh;
3. the first page in Debian's Chromium (``/usr/bin/chromium`` through Playwright, the
   flags of the browser tests), each run a fresh context (no cookie, no cache): from
   navigating to the printed ``?token=`` URL to the timeline being usable
   (``DOMContentLoaded`` fired, so the page's script ran, and the first post visible),
   p50/p95, beside the browser's own navigation timings.

Targets (issue #17 point 6): p95 of ``GET /`` under :data:`TARGET_P95_MS` for a page of
50 items, and the first page usable under :data:`TARGET_FIRST_PAGE_MS`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import queue
import random
import re
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ROOT,
    TOKEN_URL,
    NodeProcess,
    add_common_args,
    free_ports,
    percentile,
    print_table,
    progress,
    scratch_dir,
    write_config,
    write_result,
)
from client import actions
from client.config import ClientConfig
from client.keystore import Keystore
from client.moderation.config import FilterSpec, LabelerSub, ModerationConfig
from client.session import Session
from protocol import kinds
from protocol.events import Event, sign_event
from protocol.identity import Identity

__all__ = ["TARGET_FIRST_PAGE_MS", "TARGET_P95_MS", "main"]

TARGET_P95_MS = 100.0
TARGET_FIRST_PAGE_MS = 1000.0
NODES = 3
#: Reads of ``GET /`` before the timed ones (the app's caches and workers warm).
WARMUP = 5
#: Nodes sync every second and reconnect fast (a devnet's settings).
FEDERATION = {"backoff_min_ms": 100, "backoff_max_ms": 1000, "sync_interval_ms": 1000}
#: Hang guards (nothing is timed by them): federation, the web process, the browser.
DEADLINE_S = 120.0
WEB_START_S = 60.0
PAGE_TIMEOUT_MS = 30_000
POLL_S = 0.1
MUTED_WORD = "giveaway"
WORDS = (
    "the node federation signed post reader filter garden coffee rain train music "
    "river bread window letter morning city lamp book quiet bridge"
).split()
_TIMING = re.compile(r'([a-z-]+)(?:;dur=([0-9.]+))?(?:;desc="([^"]*)")?')


# -- the corpus -------------------------------------------------------------------------


@dataclass(slots=True)
class _Chain:
    identity: Identity
    seq: int = 0
    prev: bytes | None = None
    events: list[Event] = field(default_factory=list)

    def sign(self, kind: str, body: dict[str, Any], ts: int) -> Event:
        self.seq += 1
        ev = sign_event(self.identity, kind=kind, body=body, seq=self.seq, prev=self.prev, ts=ts)
        self.prev = ev.id
        self.events.append(ev)
        return ev


def corpus(authors: int, posts: int, rng: random.Random) -> tuple[list[_Chain], _Chain]:
    """``authors`` chains (profile, posts, likes) and a labeler's labels on some posts."""
    chains = [_Chain(Identity.from_seed(rng.randbytes(32))) for _ in range(authors)]
    labeler = _Chain(Identity.from_seed(rng.randbytes(32)))
    now = int(time.time() * 1000) - 3_600_000
    for i, c in enumerate(chains):
        c.sign(kinds.PROFILE, {"name": f"Author {i}", "bio": "bench web"}, now)
    labeler.sign(kinds.PROFILE, {"name": "Labeler"}, now)
    made: list[Event] = []
    for n in range(authors * posts):
        ts = now + 1000 * (n + 1)
        c = chains[n % authors]
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(6, 30)))
        body: dict[str, Any] = {"text": f"{text} #bench", "tags": ["bench"], "langs": ["en"]}
        if n % 9 == 4:
            body["text"] += f" {MUTED_WORD} inside"
        if n % 13 == 6:
            body["warn"] = ["spoiler"]
        if n % 7 == 3 and made:
            parent = rng.choice(made)
            body["reply"] = {"root": parent.id, "parent": parent.id}
        elif n % 11 == 5 and made:
            body["quote"] = rng.choice(made).id
        if n % 17 == 8 and made:
            made.append(c.sign(kinds.REPOST, {"target": rng.choice(made).id}, ts))
        else:
            made.append(c.sign(kinds.POST, body, ts))
        if made and n % 3 == 0:  # a like by another author: counts, and gaps to repair
            other = chains[(n + 1) % authors]
            other.sign(kinds.LIKE, {"target": rng.choice(made).id}, ts)
        if n % 10 == 2:
            val = "spam" if n % 20 == 2 else "satire"
            labeler.sign(kinds.LABEL, {"subject": made[-1].id, "val": val}, ts)
    return chains, labeler


def _send(http: httpx.Client, url: str, events: list[Event]) -> None:
    for i in range(0, len(events), 200):
        chunk = events[i : i + 200]
        body = {"events": [base64.b64encode(e.wire).decode() for e in chunk]}
        r = http.post(url + "/v1/events", json=body)
        r.raise_for_status()
        bad = [x for x in r.json()["results"] if x["status"] not in ("accepted", "duplicate")]
        if bad:
            raise RuntimeError(f"{url} refused events: {bad[:3]}")


def _wait_held(http: httpx.Client, urls: list[str], total: int) -> float:
    start = time.perf_counter()
    end = time.monotonic() + DEADLINE_S
    counts: dict[str, int] = {}
    while time.monotonic() < end:
        counts = {u: int(http.get(u + "/v1/info").json()["counts"]["events"]) for u in urls}
        if all(c >= total for c in counts.values()):
            return time.perf_counter() - start
        time.sleep(POLL_S)  # the poll interval of a deadline loop
    raise RuntimeError(f"federation did not bring {total} events to every node: {counts}")


# -- the reader's home ------------------------------------------------------------------


def make_reader(home: Path, urls: list[str], authors: list[str], labeler: str) -> str:
    """``alice`` following every author, subscribed to the labeler, with 10 filters."""
    config = ClientConfig.load(home)
    for url in urls:
        config.add_node(url)
    config.save()
    me = Keystore(home).create("alice", passphrase=None).did
    session = Session(home=home, settings_once=True)

    async def follow_all() -> None:
        for did in authors:
            await actions.follow(session, did)

    asyncio.run(follow_all())
    rng = random.Random(5)
    strangers = [Identity.from_seed(rng.randbytes(32)).did for _ in range(40)]
    mod = ModerationConfig.load(home)
    mod.labelers = [LabelerSub(did=labeler, labels={"spam": "hide", "satire": "badge"})]
    builtin: list[tuple[str, str, dict[str, Any]]] = [
        ("words", "mute-words", {"words": [MUTED_WORD, "buy now"], "regexes": ["free .*coins"]}),
        ("muted", "mute-authors", {"dids": strangers[:20]}),
        ("blocked", "block-authors", {"dids": strangers[20:]}),
        ("labels", "labelers", {}),
        ("self-labels", "self-labels", {}),
        ("languages", "languages", {"allow": ["en", "fr", "pt"]}),
        ("replies", "replies-from-non-follows", {}),
        ("allow", "allow", {"dids": strangers[:2]}),
    ]
    examples = ROOT / "examples" / "filters"
    custom: list[tuple[str, str, dict[str, Any]]] = [
        ("shouting", f"{examples / 'keyword.py'}:ShoutingFilter", {}),
        ("label-pile-up", f"{examples / 'labels.py'}:LabelPileUp", {}),
    ]
    for name, type_, params in [*builtin, *custom]:
        mod.add(FilterSpec(name=name, type=type_, params=params))
    mod.save()
    return me


# -- murmur web ---------------------------------------------------------------------------


class WebServer:
    """``murmur --home HOME web`` as a process on a free port; its printed token URL."""

    def __init__(self, home: Path, port: int) -> None:
        cmd = [sys.executable, "-m", "client.cli.main", "--home", str(home), "web"]
        cmd += ["--host", "127.0.0.1", "--port", str(port)]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "MURMUR_HOME": str(home)}
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        end = time.monotonic() + WEB_START_S
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=POLL_S)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.log.append(line)
            if m := TOKEN_URL.search(line):
                self.origin, self.token_url = m.group(1), m.group(0)
                return
        self.stop()
        raise RuntimeError("murmur web printed no token URL:\n" + "".join(self.log))

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> WebServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def server_timing(header: str) -> dict[str, Any]:
    """``Server-Timing`` as {name: ms} and {name: desc} (``name;dur=MS;desc="..."``)."""
    out: dict[str, Any] = {}
    for part in header.split(","):
        m = _TIMING.fullmatch(part.strip())
        if m is None:
            continue
        name, dur, desc = m.groups()
        if dur is not None:
            out[name] = float(dur)
        if desc is not None:
            out[f"{name}_desc"] = desc
    return out


def _counts(desc: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", desc)}


def measure_http(web: WebServer, runs: int) -> dict[str, Any]:
    """``GET /`` ``runs`` times after :data:`WARMUP` reads: client and server figures."""
    with httpx.Client(timeout=60, follow_redirects=True) as http:
        r = http.get(web.token_url)
        r.raise_for_status()
        t0 = time.perf_counter()
        r = http.get(web.origin + "/")
        first_ms = (time.perf_counter() - t0) * 1000
        for _ in range(WARMUP):
            http.get(web.origin + "/").raise_for_status()
        items = len(re.findall(r'data-testid="(?:post|hidden-item)"', r.text))
        hidden = len(re.findall(r'data-testid="hidden-item"', r.text))
        client: list[float] = []
        phases: dict[str, list[float]] = {}
        requests: list[int] = []
        cached: list[int] = []
        for _ in range(runs):
            t0 = time.perf_counter()
            r = http.get(web.origin + "/")
            client.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
            timing = server_timing(r.headers.get("Server-Timing", ""))
            for name, value in timing.items():
                if isinstance(value, float):
                    phases.setdefault(name, []).append(value)
            counts = _counts(str(timing.get("nodes_desc", "")))
            requests.append(counts.get("requests", 0))
            cached.append(counts.get("cached", 0))
    doc: dict[str, Any] = {
        "items": items,
        "hidden_items": hidden,
        "runs": runs,
        "first_get_ms": round(first_ms, 1),
        "get_p50_ms": round(percentile(client, 50), 1),
        "get_p95_ms": round(percentile(client, 95), 1),
        "get_max_ms": round(max(client), 1),
        "node_requests_p50": int(percentile(requests, 50)),
        "cached_answers_p50": int(percentile(cached, 50)),
        "server": {
            name: {"p50_ms": round(percentile(v, 50), 1), "p95_ms": round(percentile(v, 95), 1)}
            for name, v in phases.items()
        },
    }
    return doc


def measure_changed(
    web: WebServer, urls: list[str], chains: list[_Chain], runs: int, held: int
) -> dict[str, Any]:
    """``GET /`` right after an author posted through one node and every node holds
    it: every node's kept answers are dropped (spec 0007 #web-read-cache), so this is
    the page after a change, read afresh."""
    times: list[float] = []
    requests: list[int] = []
    with httpx.Client(timeout=60, follow_redirects=True) as http:
        http.get(web.token_url).raise_for_status()
        for i in range(runs):
            chain = chains[i % len(chains)]
            ev = chain.sign(kinds.POST, {"text": f"a new post {i}"}, int(time.time() * 1000))
            _send(http, urls[i % NODES], [ev])
            held += 1
            _wait_held(http, urls, held)
            t0 = time.perf_counter()
            r = http.get(web.origin + "/")
            times.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
            if ev.id_hex not in r.text:
                raise RuntimeError("the new post is not on the next page")
            timing = server_timing(r.headers.get("Server-Timing", ""))
            requests.append(_counts(str(timing.get("nodes_desc", ""))).get("requests", 0))
    return {
        "runs": runs,
        "get_p50_ms": round(percentile(times, 50), 1),
        "get_p95_ms": round(percentile(times, 95), 1),
        "node_requests_p50": int(percentile(requests, 50)),
    }


async def _first_pages(web: WebServer, runs: int) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    usable: list[float] = []
    dcl: list[float] = []
    response_end: list[float] = []
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            for i in range(runs + 1):  # the first launch of a context warms Chromium itself
                context = await browser.new_context(viewport={"width": 1280, "height": 800})
                context.set_default_timeout(PAGE_TIMEOUT_MS)
                page = await context.new_page()
                t0 = time.perf_counter()
                await page.goto(web.token_url, wait_until="domcontentloaded")
                await page.locator('[data-testid="post"]').first.wait_for(state="visible")
                elapsed = (time.perf_counter() - t0) * 1000
                nav = await page.evaluate(
                    "() => { const n = performance.getEntriesByType('navigation')[0];"
                    " return [n.domContentLoadedEventEnd, n.responseEnd]; }"
                )
                await context.close()
                if i == 0:
                    continue
                usable.append(elapsed)
                dcl.append(float(nav[0]))
                response_end.append(float(nav[1]))
        finally:
            await browser.close()
    return {
        "runs": runs,
        "usable_p50_ms": round(percentile(usable, 50), 1),
        "usable_p95_ms": round(percentile(usable, 95), 1),
        "dom_content_loaded_p50_ms": round(percentile(dcl, 50), 1),
        "response_end_p50_ms": round(percentile(response_end, 50), 1),
    }


def browser_missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (make browser-deps)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (make dev)"
    return None


# -- the run ----------------------------------------------------------------------------


def run(args: argparse.Namespace, where: Path) -> dict[str, Any]:
    rng = random.Random(17)
    chains, labeler = corpus(args.authors, args.posts, rng)
    events = [e for c in [*chains, labeler] for e in c.events]
    with ExitStack() as stack:
        ports = free_ports(NODES)
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        config = write_config(where / "node.toml", federation=FEDERATION)
        progress(f"starting {NODES} federating nodes")
        for i, port in enumerate(ports):
            argv = ["--config", str(config), "--allow-private-peers"]
            for j, url in enumerate(urls):
                if j != i:
                    argv += ["--peer", url]
            stack.enter_context(NodeProcess(where / f"node{i + 1}", *argv, port=port))
        with httpx.Client(timeout=30) as http:
            for i, chain in enumerate([*chains, labeler]):
                _send(http, urls[i % NODES], chain.events)
            progress(f"{len(events):,} events sent, one node each; waiting for federation")
            federated_s = _wait_held(http, urls, len(events))
        home = where / "reader"
        progress("the reader's home: alice follows every author, 10 filters")
        make_reader(home, urls, [c.identity.did for c in chains], labeler.identity.did)
        with httpx.Client(timeout=30) as http:  # alice's follows, on every node
            _wait_held(http, urls, len(events) + args.authors)
        web = stack.enter_context(WebServer(home, free_ports(1)[0]))
        progress(f"murmur web at {web.origin}; GET / x {args.runs}")
        load = os.getloadavg()
        doc: dict[str, Any] = {
            "nodes": NODES,
            "authors": args.authors,
            "events": len(events),
            "federated_s": round(federated_s, 2),
            "filters": len(ModerationConfig.load(home).filters),
            "http": measure_http(web, args.runs),
        }
        if args.no_browser:
            doc["browser"] = None
        elif (why := browser_missing()) is not None:
            progress(f"no browser run: {why}")
            doc["browser"] = {"skipped": why}
        else:
            progress(f"first page in Chromium x {args.browser_runs}")
            doc["browser"] = asyncio.run(_first_pages(web, args.browser_runs))
        progress(f"GET / after a new post x {args.changed_runs}")
        doc["changed"] = measure_changed(web, urls, chains, args.changed_runs, len(events))
        doc["load_average"] = [round(x, 2) for x in (*load, *os.getloadavg())]
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="murmur bench web", description=__doc__.split("\n\n")[0])
    add_common_args(parser, "web")
    parser.add_argument("--authors", type=int, default=30, help="did:key authors followed")
    parser.add_argument("--posts", type=int, default=10, help="posts per author")
    parser.add_argument("--runs", type=int, default=200, help="timed GET / reads")
    parser.add_argument("--browser-runs", type=int, default=10, help="fresh browser contexts")
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium part")
    parser.add_argument("--changed-runs", type=int, default=10, help="pages after a new post")
    args = parser.parse_args(argv)
    if args.quick:
        args.authors, args.posts = min(args.authors, 20), min(args.posts, 6)
        args.runs, args.browser_runs = min(args.runs, 60), min(args.browser_runs, 5)
        args.changed_runs = min(args.changed_runs, 5)
    with scratch_dir("web") as where:
        doc = run(args, where)
    http = doc["http"]
    server = http["server"]
    rows = [("GET / (client)", http["get_p50_ms"], http["get_p95_ms"])]
    rows += [(f"  server {n}", v["p50_ms"], v["p95_ms"]) for n, v in server.items()]
    changed = doc["changed"]
    rows.append(("GET / after a new post", changed["get_p50_ms"], changed["get_p95_ms"]))
    browser = doc["browser"]
    if browser and "usable_p50_ms" in browser:
        rows.append(("first page usable (Chromium)", browser["usable_p50_ms"],
                     browser["usable_p95_ms"]))  # fmt: skip
    print_table(
        f"web: {http['items']} items ({http['hidden_items']} hidden) from {NODES} nodes, "
        f"{doc['filters']} filters, {doc['authors']} authors; {http['node_requests_p50']} "
        f"node requests and {http['cached_answers_p50']} cached answers a page (p50)",
        rows,
        ["what", "p50 ms", "p95 ms"],
    )
    doc["target_p95_ms"] = TARGET_P95_MS
    doc["target_first_page_ms"] = TARGET_FIRST_PAGE_MS
    doc["target_met"] = http["get_p95_ms"] < TARGET_P95_MS and http["items"] >= 50
    doc["target_first_page_met"] = (
        None if not browser or "usable_p95_ms" not in browser
        else browser["usable_p95_ms"] < TARGET_FIRST_PAGE_MS
    )  # fmt: skip
    print(f"  load average (1/5/15 min, before and after): {doc['load_average']}")
    write_result(args.out, "web", doc)
    return 0
