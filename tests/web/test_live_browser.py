"""New posts and notifications announced live in Chromium, over the real 3-node devnet
(issue #17 item 2: "new posts announced live (the nodes' streams) without reloading";
spec 0007 #web-live, #web-notifications).

The page is open first; then bob posts (or replies to alice) through another node
with the CLI, and the page's banner says so without a reload — the page's one script
follows the server's Server-Sent Events from the stream cursors the page was read at;
"show" opens the new item. One script function serves both banners, so each page is
checked.
"""

from __future__ import annotations

import asyncio

from playwright.async_api import expect

from tests.web.conftest import BROWSER_TEST, SEED_POSTS, Browsing, Screenshot, WebDevnet
from tests.web.harness import WebProcess, murmur

pytestmark = BROWSER_TEST

#: How long the banner may take: the post crosses the mesh and the watch verifies it
#: (a hang guard; nothing here is timed).
ANNOUNCED_MS = 30_000


async def test_a_new_post_is_announced_live_on_the_timeline(
    browse: Browsing, web_devnet: WebDevnet, screenshot: Screenshot
) -> None:
    """spec 0007 #web-live: a post by someone alice follows, published after her page
    was read, is announced on it ("1 new post — show") and shown by the link."""
    page = await browse.open("desktop")
    banner = page.get_by_test_id("new-posts")
    await expect(page.get_by_test_id("live")).to_be_attached()
    await expect(banner).to_be_hidden()
    text = "Bob, live: this one came while the page was open"
    eid = await asyncio.to_thread(web_devnet.post, "bob", text, node=1)
    await expect(banner).to_be_visible(timeout=ANNOUNCED_MS)
    await expect(banner).to_have_text("1 new post — show")
    await screenshot(page, "timeline-live")
    await banner.click()
    item = page.locator(f'article[data-testid="post"][data-id="{eid}"]')
    await expect(item.get_by_test_id("post-text")).to_have_text(text)


async def test_a_new_reply_is_announced_live_on_the_notifications_page(
    browse: Browsing, web_devnet: WebDevnet, web_app: WebProcess, screenshot: Screenshot
) -> None:
    """spec 0007 #web-notifications: bob's reply to alice, published after her
    notifications page was read, is announced on it ("1 new notification — show")."""
    page = await browse.open("desktop")
    await page.goto(web_app.url + "/notifications")
    banner = page.get_by_test_id("new-notifications")
    await expect(page.get_by_test_id("live")).to_be_attached()
    await expect(banner).to_be_hidden()
    alice_post = next(text for who, _, text in SEED_POSTS if who == "alice")
    text = "Bob answers live: the notification should say so"
    # The CLI runs its own event loop: in a thread, beside the test's.
    doc = await asyncio.to_thread(
        murmur,
        web_devnet.authors,
        "--node",
        web_devnet.urls[2],
        "post",
        text,
        "--reply-to",
        web_devnet.posts[alice_post],
        as_name="bob",
    )
    await expect(banner).to_be_visible(timeout=ANNOUNCED_MS)
    await expect(banner).to_have_text("1 new notification — show")
    await screenshot(page, "notifications-live")
    await banner.click()
    item = page.locator(f'[data-testid="notification"][data-id="{doc["id"]}"]')
    await expect(item).to_have_attribute("data-reason", "reply")
