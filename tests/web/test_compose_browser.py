"""Compose in Chromium over the real 3-node devnet (issue #17 items 2 and 5; spec 0007
#web-compose).

* A post typed in the browser (as alice, the session's ``murmur web``) is read back
  with the CLI from another machine's home, through a single node.
* A reply from a post's "Reply" link appears in that post's thread, under it.
* Posting works with the keyboard only: Tab to the labelled text box, type, Tab to the
  submit button, Enter; and Ctrl+Enter in the home page's box.
* Like, unlike, unfollow and follow with the keyboard only, each control showing what
  holds afterwards (Like or Unlike, Follow or Unfollow).
"""

from __future__ import annotations

import asyncio
import time

from playwright.async_api import Page, expect

from tests.web.conftest import BROWSER_TEST, SEED_POSTS, Axe, Browsing, Screenshot, WebDevnet
from tests.web.harness import WebProcess, describe_violations, murmur

pytestmark = BROWSER_TEST

#: Tab presses allowed to reach a control from the top of a page.
MAX_TABS = 60


async def _posted_id(page: Page) -> str:
    """The id of the event the done page reports."""
    outcome = page.get_by_test_id("outcome")
    await expect(outcome).to_have_attribute("data-changed", "true")
    eid = await outcome.get_attribute("data-id")
    assert eid is not None and len(eid) == 64, eid
    return eid


async def _tab_to(page: Page, test_id: str) -> None:
    """Press Tab until the element with ``test_id`` has the focus (keyboard only)."""
    for _ in range(MAX_TABS):
        await page.keyboard.press("Tab")
        focused = await page.evaluate("document.activeElement?.dataset?.testid ?? ''")
        if focused == test_id:
            return
    raise AssertionError(f"{test_id} never got the focus in {MAX_TABS} Tab presses")


async def test_a_post_from_the_browser_is_read_by_the_cli_through_another_node(
    browse: Browsing,
    web_app: WebProcess,
    web_devnet: WebDevnet,
    screenshot: Screenshot,
    axe: Axe,
) -> None:
    """spec 0007 #web-compose: signed by the web server as alice, published to every
    node; bob's home (another machine) reads it through one node only."""
    text = f"Typed in Chromium at {time.time_ns()} #webpost"
    page = await browse.open("desktop")
    await page.goto(web_app.url + "/compose")
    await page.get_by_label("What's happening?").fill(text)
    await page.get_by_label("Content warning").fill("spoiler")
    await page.get_by_label("Language").fill("en")
    await screenshot(page, "compose")
    violations = await axe(page)
    assert violations == [], "axe-core:\n" + describe_violations(violations)
    await page.get_by_test_id("compose-submit").click()
    eid = await _posted_id(page)
    await screenshot(page, "posted")
    await asyncio.to_thread(
        web_devnet.cluster.wait_until, lambda: web_devnet.holds([eid]), "the post on every node"
    )
    doc = await asyncio.to_thread(
        murmur, web_devnet.authors, "--node", web_devnet.urls[2], "thread", eid
    )
    root = doc["root"]
    assert root["id"] == eid and root["text"] == text
    assert root["author"] == web_devnet.dids["alice"]
    assert root["warn"] == ["spoiler"] and root["langs"] == ["en"] and root["tags"] == ["webpost"]


async def test_a_reply_appears_in_the_thread(
    browse: Browsing, web_app: WebProcess, web_devnet: WebDevnet, screenshot: Screenshot
) -> None:
    """The Reply link of bob's post opens the compose form for it; the reply is then in
    that post's thread, under it."""
    bob_post = web_devnet.posts[SEED_POSTS[0][2]]
    text = f"Replying from the browser at {time.time_ns()}"
    page = await browse.open("phone")
    await page.goto(f"{web_app.url}/thread/{bob_post}")
    root = page.get_by_test_id("thread-root")
    await root.get_by_test_id("action-reply").click()
    await expect(page.get_by_test_id("replying-to")).to_be_visible()
    await page.get_by_label("Your reply").fill(text)
    await page.get_by_test_id("compose-submit").click()
    reply = await _posted_id(page)
    await page.goto(f"{web_app.url}/thread/{bob_post}")
    await expect(root.locator(f'[data-testid="post"][data-id="{bob_post}"]')).to_be_visible()
    item = page.get_by_test_id("replies").locator(f'[data-testid="post"][data-id="{reply}"]')
    await expect(item).to_be_visible()
    await expect(item.get_by_test_id("post-text")).to_have_text(text)
    await screenshot(page, "thread-with-reply")


async def test_posting_with_the_keyboard_only(
    browse: Browsing, web_app: WebProcess, web_devnet: WebDevnet, screenshot: Screenshot
) -> None:
    """Keyboard only: Tab to the text box (it is labelled), type, Tab to the submit
    button, Enter; then on the home page, Ctrl+Enter in the box posts too."""
    page = await browse.open("desktop")
    await page.goto(web_app.url + "/compose")
    first = f"Keyboard post one {time.time_ns()}"
    await _tab_to(page, "compose-text")
    await page.keyboard.type(first)
    await _tab_to(page, "compose-submit")
    await page.keyboard.press("Enter")
    one = await _posted_id(page)

    await page.goto(web_app.url + "/")
    second = f"Keyboard post two {time.time_ns()}"
    await _tab_to(page, "compose-text")
    await page.keyboard.type(second)
    await page.keyboard.press("Control+Enter")
    two = await _posted_id(page)
    await screenshot(page, "keyboard-posted")

    await asyncio.to_thread(
        web_devnet.cluster.wait_until, lambda: web_devnet.holds([one, two]), "both posts"
    )
    for eid, text in ((one, first), (two, second)):
        doc = await asyncio.to_thread(murmur, web_devnet.reader, "thread", eid)
        root = doc["root"]
        assert root["text"] == text


async def test_like_and_follow_with_the_keyboard_show_what_holds(
    browse: Browsing,
    web_app: WebProcess,
    web_devnet: WebDevnet,
    screenshot: Screenshot,
    axe: Axe,
) -> None:
    """spec 0007 #web-own-state, keyboard only: carol's post offers Like (not Unlike);
    liked, it offers Unlike (not Like), and unliked, Like again. Carol's page, whom
    alice follows, offers Unfollow; unfollowed, Follow; followed again, Unfollow."""
    carol_post = web_devnet.posts[SEED_POSTS[1][2]]
    page = await browse.open("desktop")
    await page.goto(f"{web_app.url}/thread/{carol_post}")
    root = page.get_by_test_id("thread-root")
    for done, undo in (("like", "unlike"), ("unlike", "like")):
        await expect(root.get_by_test_id(f"action-{undo}")).to_have_count(0)
        await _tab_to(page, f"action-{done}")
        await page.keyboard.press("Enter")
        await _posted_id(page)
        await _tab_to(page, "back")
        await page.keyboard.press("Enter")
        await expect(root.get_by_test_id(f"action-{undo}")).to_be_visible()
        await expect(root.get_by_test_id(f"action-{done}")).to_have_count(0)
        if done == "like":
            await screenshot(page, "liked")

    await page.goto(f"{web_app.url}/author/{web_devnet.dids['carol']}")
    form = page.get_by_test_id("follow-form")
    await expect(form).to_have_attribute("data-following", "true")
    for done, now in (("unfollow", "false"), ("follow", "true")):
        await _tab_to(page, done)
        await page.keyboard.press("Enter")
        await expect(page.get_by_test_id("outcome")).to_have_attribute("data-changed", "true")
        await expect(form).to_have_attribute("data-following", now)
        if done == "unfollow":
            await screenshot(page, "unfollowed")
            violations = await axe(page)
            assert violations == [], "axe-core:\n" + describe_violations(violations)
