"""Fixtures of the browser tests (issue #17 item 5): a real 3-node devnet, a real
``murmur web`` process over it, and Debian's Chromium driven by Playwright.

* ``web_devnet`` (session): three federating node processes
  (:class:`tests.e2e.fedproc.Cluster`), and two client homes seeded through the
  ``murmur`` CLI: ``authors`` (bob and carol) and ``reader`` (alice, who follows them
  and is the web app's identity). Each seeded post is sent through a different node
  and the fixture waits until every node holds every one of them.
* ``web_app`` (session): ``murmur web`` on a free 127.0.0.1 port, its home the
  reader's; ``token_url`` is the secret URL it printed.
* ``browser`` (session): one headless Chromium (``/usr/bin/chromium``, new empty
  profile, the closed-network flags of :data:`tests.web.harness.CHROMIUM_ARGS`),
  driven by Playwright's async API on the session's event loop: a browser test is
  ``async`` and marked ``@pytest.mark.asyncio(loop_scope="session")`` (see
  :data:`BROWSER_TEST`). Missing, it *fails* the test with the command that installs
  it; only ``MURMUR_SKIP_BROWSER=1`` (developers, never CI) turns that into a skip.
* ``browse`` (test): opens pages in fresh contexts (``phone`` or ``desktop``),
  logged in through the token URL unless asked not to; every page is watched by a
  :class:`~tests.web.harness.PageGuard` and the test fails if any page opened a
  dialog, logged a console error, threw, or requested another origin, unless the
  test said it expects that (``browse.guard(page).expect("dialogs")``).
* ``screenshot`` (test): ``await screenshot(page, "timeline")`` writes
  ``tests/web/output/<test>/timeline.png`` and prints its path; the run's end lists
  every screenshot taken.
* ``axe`` (test): ``await axe(page)`` is the page's serious/critical axe-core violations.

Every test here that uses one of these fixtures (a process or the browser) is marked
``e2e`` and ``web``; the in-process tests of the folder are not (``make test-fast``
runs them).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import pytest_asyncio

from tests.e2e.fedproc import Cluster
from tests.web.harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    OUTPUT,
    SKIP_ENV,
    VIEWPORTS,
    PageGuard,
    WebProcess,
    axe_violations,
    browser_missing,
    murmur,
)

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page

HERE = Path(__file__).resolve().parent
NODES = ("n1", "n2", "n3")
#: Hang guard of the devnet's propagation waits (nodes sync every second).
DEADLINE_S = 60.0
#: Playwright's default wait for a locator or a navigation (a hang guard).
PAGE_TIMEOUT_MS = 15_000
_SCREENSHOTS = pytest.StashKey[list[Path]]()
#: The mark of a test that drives the browser: it runs on the browser's event loop.
BROWSER_TEST = pytest.mark.asyncio(loop_scope="session")


# -- marks and the run's summary --------------------------------------------------------


#: Fixtures that start processes or the browser: a test using one is ``e2e`` and ``web``.
_REAL_FIXTURES = frozenset(
    {"web_devnet", "web_app", "web_http", "browser", "browse", "browse_offline"}
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        uses = set(getattr(item, "fixturenames", ()))
        if HERE in Path(str(item.path)).parents and uses & _REAL_FIXTURES:
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.web)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    shots = config.stash.get(_SCREENSHOTS, [])
    if shots:
        terminalreporter.write_sep("-", f"browser screenshots: {len(shots)}")
        for path in shots:
            terminalreporter.write_line(str(path))


# -- the devnet -----------------------------------------------------------------------------


@dataclass(slots=True)
class WebDevnet:
    """Three real nodes and the seeded homes; ``posts`` maps each seeded text to its id."""

    cluster: Cluster
    urls: list[str]
    authors: Path
    reader: Path
    dids: dict[str, str] = field(default_factory=dict)
    posts: dict[str, str] = field(default_factory=dict)

    def holds(self, ids: list[str]) -> bool:
        """Whether every node holds every event of ``ids``."""
        for url in self.urls:
            r = httpx.get(f"{url}/v1/events", params={"ids": ",".join(ids)}, timeout=10)
            r.raise_for_status()
            if not {e["id"] for e in r.json()["events"]} >= set(ids):
                return False
        return True

    def post(self, who: str, text: str, *, node: int = 0) -> str:
        """``who`` (bob or carol) posts ``text`` through node ``node``; once on every node.

        Blocking (the CLI runs its own event loop): from an async test, call it as
        ``await asyncio.to_thread(web_devnet.post, ...)``, like :func:`murmur`.
        """
        eid: str = murmur(self.authors, "--node", self.urls[node], "post", text, as_name=who)["id"]
        self.cluster.wait_until(lambda: self.holds([eid]), f"{who}'s post on every node")
        return eid


#: The reader's local feed (examples/feeds/long_posts.py): its page is /feeds/long.
FEED = "long"
LONG_POSTS = HERE.parent.parent / "examples" / "feeds" / "long_posts.py"
#: (who, node index, text) of the seeded posts; alice follows bob and carol.
SEED_POSTS: tuple[tuple[str, int, str], ...] = (
    ("bob", 0, "Bob here: the Raspberry Pi node is up again"),
    ("carol", 1, "Carol's joke of the day: why did the packet cross the network?"),
    ("alice", 2, "Alice says hello to everyone reading from three nodes"),
)


def _new_identity(home: Path, name: str, display: str, offline: Path) -> str:
    murmur(home, "id", "new", name, "--no-encrypt", "--recovery-out", str(offline / name))
    murmur(home, "profile", "set", "--name", display, as_name=name)
    did: str = murmur(home, "id", "show", name)["did"]
    return did


@pytest.fixture(scope="session")
def web_devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDevnet]:
    root = tmp_path_factory.mktemp("web-devnet")
    cluster = Cluster(root)
    try:
        for name in NODES:
            cluster.start(name, peers=[cluster.url(n) for n in NODES if n != name])
        urls = [cluster.url(n) for n in NODES]
        net = WebDevnet(cluster, urls, authors=root / "authors", reader=root / "reader")
        for home in (net.authors, net.reader):
            for url in urls:
                murmur(home, "nodes", "add", url)
        offline = root / "offline"
        net.dids["bob"] = _new_identity(net.authors, "bob", "Bob", offline)
        net.dids["carol"] = _new_identity(net.authors, "carol", "Carol", offline)
        net.dids["alice"] = _new_identity(net.reader, "alice", "Alice", offline)
        for who in ("bob", "carol"):
            murmur(net.reader, "follow", net.dids[who], "--alias", who, as_name="alice")
        # A local feed, a tab of the web client (spec 0007 #web-feeds): every seeded post.
        murmur(
            net.reader, "feeds", "add", FEED, f"{LONG_POSTS}:LongPosts", "--param", "min_chars=10"
        )
        for who, node, text in SEED_POSTS:
            home = net.reader if who == "alice" else net.authors
            doc = murmur(home, "--node", urls[node], "post", text, as_name=who)
            net.posts[text] = doc["id"]
        ids = list(net.posts.values())
        cluster.wait_until(lambda: net.holds(ids), "the seeded posts on every node", DEADLINE_S)
        yield net
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def web_app(web_devnet: WebDevnet) -> Iterator[WebProcess]:
    """``murmur web`` over the devnet, as alice (the reader home's identity)."""
    proc = WebProcess(web_devnet.reader)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def web_http(web_app: WebProcess) -> Iterator[httpx.Client]:
    """An httpx client logged in through the token URL (its session cookie kept)."""
    with httpx.Client(base_url=web_app.url, timeout=15, follow_redirects=True) as client:
        r = client.get(web_app.token_url)
        assert r.status_code == 200, f"token URL answered {r.status_code}: {r.text[:500]}"
        assert client.cookies, "the token URL set no session cookie"
        yield client


# -- the browser ----------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One headless Debian Chromium for the session (on the session's event loop)."""
    why = browser_missing()
    if why is not None:
        if os.environ.get(SKIP_ENV) == "1":
            pytest.skip(f"{SKIP_ENV}=1: {why}")
        pytest.fail(f"browser tests cannot run: {why} (or set {SKIP_ENV}=1 to skip them)")
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield browser
        finally:
            await browser.close()


class Browsing:
    """Pages of one test, each in a fresh context (no cookies shared), each guarded."""

    def __init__(self, browser: Browser, app_origin: str | None, token_url: str | None) -> None:
        self.browser = browser
        self.app_origin = app_origin
        self.token_url = token_url
        self.contexts: list[BrowserContext] = []
        self.guards: dict[Page, PageGuard] = {}

    async def open(self, viewport: str = "desktop", *, login: bool = True) -> Page:
        """A new page at ``viewport`` (phone or desktop), logged in by the token URL."""
        context = await self.browser.new_context(**VIEWPORTS[viewport], service_workers="block")
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        self.contexts.append(context)
        allowed = (self.app_origin,) if self.app_origin else ()
        guard = PageGuard(allowed=allowed)
        context.on("page", lambda p: self._watch(p, guard))
        page = await context.new_page()
        if page not in self.guards:  # the "page" event normally came first
            self._watch(page, guard)
        if login:
            assert self.token_url is not None, "no web app to log in to"
            response = await page.goto(self.token_url)
            assert response is not None and response.ok, f"token URL: {response}"
        return page

    def _watch(self, page: Page, guard: PageGuard) -> None:
        if page not in self.guards:
            guard.watch(page)
            self.guards[page] = guard

    def guard(self, page: Page) -> PageGuard:
        return self.guards[page]

    async def close(self) -> list[str]:
        """Close every context; what any guard saw that the test did not expect."""
        for context in self.contexts:
            await context.close()
        seen: list[str] = []
        for guard in {id(g): g for g in self.guards.values()}.values():
            seen += guard.problems()
        return seen


async def _browse(browser: Browser, app: WebProcess | None) -> AsyncIterator[Browsing]:
    browsing = Browsing(browser, app.url if app else None, app.token_url if app else None)
    yield browsing
    problems = await browsing.close()
    if problems:  # a teardown error, beside the test's own failure if it had one
        pytest.fail("the page misbehaved:\n  " + "\n  ".join(problems))


@pytest_asyncio.fixture(loop_scope="session")
async def browse(browser: Browser, web_app: WebProcess) -> AsyncIterator[Browsing]:
    """Guarded pages of ``murmur web`` (see :class:`Browsing`)."""
    async for browsing in _browse(browser, web_app):
        yield browsing


@pytest_asyncio.fixture(loop_scope="session")
async def browse_offline(browser: Browser) -> AsyncIterator[Browsing]:
    """Guarded pages without the app: for pages a test builds itself (harness tests)."""
    async for browsing in _browse(browser, None):
        yield browsing


# -- screenshots and axe ------------------------------------------------------------------

Screenshot = Callable[["Page", str], Awaitable[Path]]
Axe = Callable[..., Awaitable[list[dict[str, Any]]]]


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Screenshot:
    """``await screenshot(page, name)``: a full-page PNG, tests/web/output/<test>/name.png."""
    test = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{request.node.path.stem}.{request.node.name}")
    folder = OUTPUT / test
    shutil.rmtree(folder, ignore_errors=True)
    shots = request.config.stash.setdefault(_SCREENSHOTS, [])

    async def take(page: Page, name: str) -> Path:
        assert re.fullmatch(r"[A-Za-z0-9_-]+", name), f"bad screenshot name {name!r}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        shots.append(path)
        print(f"screenshot: {path}")  # the test's captured output names it
        return path

    return take


@pytest.fixture
def axe() -> Axe:
    """``await axe(page, include=None)``: serious and critical axe-core violations."""
    return axe_violations
