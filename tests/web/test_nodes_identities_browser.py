"""The nodes, identities and notifications pages in Chromium over the real 3-node
devnet (issue #17 items 2 and 5; spec 0007 #web-nodes, #web-identities,
#web-notifications).

* A node that withholds an event is named on the nodes page: a fourth node URL is a
  real devnet node behind :class:`~tests.web.withholding.WithholdingProxy`, which
  leaves one of bob's posts out of every answer; it is added from the page with the
  keyboard, the timeline is read (the post comes from the other nodes), and the nodes
  page then names the proxy as withholding that post.
* A new identity made in the browser shows its recovery key once, stores it nowhere,
  and the page that listed it does not show it again.
* The notifications page of alice lists bob's reply to her post.

These run on their own home and ``murmur web`` process (``watcher``), except the
notifications test, which reads as alice with the session's ``murmur web``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from playwright.async_api import Browser, expect

from tests.web.conftest import (
    BROWSER_TEST,
    SEED_POSTS,
    Axe,
    Browsing,
    Screenshot,
    WebDevnet,
    _browse,
)
from tests.web.harness import WebProcess, describe_violations, murmur
from tests.web.withholding import WithholdingProxy

pytestmark = BROWSER_TEST

WITHHELD_TEXT = "Bob's post that one node keeps back"


class Watcher:
    def __init__(
        self, app: WebProcess, proxy: WithholdingProxy, post: str, honest: list[str]
    ) -> None:
        self.app, self.proxy, self.post, self.honest = app, proxy, post, honest


@pytest.fixture(scope="module")
def watcher(web_devnet: WebDevnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watcher]:
    """A home that follows bob over nodes 1 and 2, served by its own ``murmur web``, and
    a proxy of node 3 that withholds bob's newest post."""
    root = tmp_path_factory.mktemp("watcher")
    home = root / "home"
    for url in web_devnet.urls[:2]:
        murmur(home, "nodes", "add", url)
    murmur(home, "id", "new", "watcher", "--no-encrypt", "--recovery-out", str(root / "keys"))
    murmur(home, "follow", web_devnet.dids["bob"], "--alias", "bob", as_name="watcher")
    post = web_devnet.post("bob", WITHHELD_TEXT, node=0)
    proxy = WithholdingProxy(web_devnet.urls[2], {post})
    app = WebProcess(home)
    try:
        yield Watcher(app, proxy, post, web_devnet.urls[:2])
    finally:
        app.stop()
        proxy.close()


@pytest_asyncio.fixture(loop_scope="session")
async def browse_watcher(browser: Browser, watcher: Watcher) -> AsyncIterator[Browsing]:
    """Guarded pages of the watcher's ``murmur web``."""
    async for browsing in _browse(browser, watcher.app):
        yield browsing


async def test_a_node_that_withholds_an_event_is_named_on_the_nodes_page(
    browse_watcher: Browsing,
    watcher: Watcher,
    screenshot: Screenshot,
    axe: Axe,
) -> None:
    """spec 0007 #web-nodes, #withheld: the node is added with the keyboard, a timeline
    read sees the post from the other nodes, and the nodes page names the proxy as
    having withheld it (bob's post, by id), while the honest nodes withheld nothing."""
    page = await browse_watcher.open("desktop")
    await page.goto(watcher.app.url + "/nodes")
    field = page.get_by_label("Node URL")
    await field.focus()
    await page.keyboard.type(watcher.proxy.url)
    await page.keyboard.press("Enter")
    await expect(page.get_by_test_id("nodes-done")).to_contain_text(watcher.proxy.url)
    await page.goto(watcher.app.url + "/")
    await expect(page.get_by_text(WITHHELD_TEXT, exact=True)).to_be_visible()
    assert watcher.proxy.dropped > 0, "the proxy withheld nothing: the test proves nothing"
    await page.goto(watcher.app.url + "/nodes")
    proxy = page.locator(f'[data-testid="node"][data-url="{watcher.proxy.url}"]')
    item = proxy.locator(f'[data-testid="withheld-event"][data-id="{watcher.post}"]')
    await expect(item).to_have_count(1)
    await expect(item).to_contain_text("bob")
    await expect(proxy.get_by_test_id("node-health")).to_have_attribute("data-state", "healthy")
    for url in watcher.honest:
        honest = page.locator(f'[data-testid="node"][data-url="{url}"]')
        await expect(honest.get_by_test_id("withheld-event")).to_have_count(0)
    await screenshot(page, "nodes-desktop")
    violations = await axe(page)
    assert violations == [], "axe-core:\n" + describe_violations(violations)
    phone = await browse_watcher.open("phone")
    await phone.goto(watcher.app.url + "/nodes")
    await expect(
        phone.locator(f'[data-testid="withheld-event"][data-id="{watcher.post}"]')
    ).to_have_count(1)
    await screenshot(phone, "nodes-phone")


async def test_a_new_identity_shows_its_recovery_key_once(
    browse_watcher: Browsing,
    watcher: Watcher,
    screenshot: Screenshot,
    axe: Axe,
) -> None:
    """spec 0007 #web-identities, #recovery-shown-first: the phrase and the download are
    on the page that prepares the identity (no-store), the identity is stored only
    once "saved" is ticked, and neither the phrase nor the file is shown again."""
    page = await browse_watcher.open("phone")
    await page.goto(watcher.app.url + "/identities")
    await page.locator("#new-name").fill("spare")
    async with page.expect_response(lambda r: r.url.endswith("/identities/new")) as answer:
        await page.get_by_test_id("new-identity").click()
    response = await answer.value
    assert response.headers["cache-control"] == "no-store"
    phrase = await page.get_by_test_id("recovery-phrase").inner_text()
    assert len(phrase.replace(" ", "")) == 64
    await expect(page.get_by_test_id("recovery-warning")).to_contain_text("OFFLINE")
    await expect(page.get_by_test_id("recovery-download")).to_have_attribute(
        "download", "spare-recovery-0.key"
    )
    await screenshot(page, "identity-recovery-phone")
    violations = await axe(page)
    assert violations == [], "axe-core:\n" + describe_violations(violations)
    await page.get_by_label("store the keys unencrypted", exact=False).check()
    await page.get_by_test_id("saved").check()
    await page.get_by_test_id("confirm-identity").click()
    await expect(page.get_by_test_id("identity-done")).to_have_attribute("data-kind", "genesis")
    await page.goto(watcher.app.url + "/identities")
    await expect(page.locator('[data-testid="identity"][data-name="spare"]')).to_have_count(1)
    assert phrase not in await page.content()
    await screenshot(page, "identities-phone")


async def test_the_notifications_page_lists_a_reply(
    browse: Browsing,
    web_devnet: WebDevnet,
    web_app: WebProcess,
    screenshot: Screenshot,
    axe: Axe,
) -> None:
    """spec 0007 #web-notifications: bob replies (through another node) to alice's
    post; alice's notifications page lists it as a reply, with her post, and passes
    axe with an unread item on it."""
    alice_post = next(text for who, _, text in SEED_POSTS if who == "alice")
    parent = web_devnet.posts[alice_post]
    text = "Bob replies: hello Alice, read you on three nodes"
    # The CLI runs its own event loop: in a thread, beside the test's.
    doc = await asyncio.to_thread(
        murmur,
        web_devnet.authors,
        "--node",
        web_devnet.urls[1],
        "post",
        text,
        "--reply-to",
        parent,
        as_name="bob",
    )
    reply = doc["id"]
    await asyncio.to_thread(
        web_devnet.cluster.wait_until, lambda: web_devnet.holds([reply]), "the reply on every node"
    )
    page = await browse.open("desktop")
    await page.goto(web_app.url + "/notifications")
    item = page.locator(f'[data-testid="notification"][data-id="{reply}"]')
    await expect(item).to_have_attribute("data-reason", "reply")
    await expect(item).to_contain_text(text)
    await expect(item.get_by_test_id("notification-subject")).to_contain_text(alice_post[:40])
    await expect(item).to_have_attribute("data-unread", "true")
    await screenshot(page, "notifications-desktop")
    violations = await axe(page)
    assert violations == [], "axe-core:\n" + describe_violations(violations)
