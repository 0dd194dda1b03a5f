"""The home timeline of ``murmur web`` in Chromium, over a real 3-node devnet (issue #17
items 2 and 5; spec 0007 #web-client, #web-security).

The token URL printed at start opens the reader's timeline (the token leaves the
address bar for an ``HttpOnly``, ``SameSite=Strict`` session cookie); the seeded
posts of alice and the people she follows, each published through a different node,
are all on it as the very events the CLI signed (their ids), on a phone and on a
laptop screen; a browser without the token sees a 403 and nothing of alice's;
axe-core finds no serious or critical violation on the timeline. Screenshots of both
sizes are saved.
"""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.web.conftest import BROWSER_TEST, SEED_POSTS, Axe, Browsing, Screenshot, WebDevnet
from tests.web.harness import TOKEN_PARAM, WebProcess, describe_violations

pytestmark = BROWSER_TEST


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
async def test_the_token_url_opens_the_timeline_with_the_seeded_posts(
    browse: Browsing,
    web_app: WebProcess,
    web_devnet: WebDevnet,
    screenshot: Screenshot,
    viewport: str,
) -> None:
    """spec 0007 #web-security (token → session cookie), #web-client (every node)."""
    page = await browse.open(viewport)
    assert f"{TOKEN_PARAM}=" not in page.url, f"the token stayed in the address bar: {page.url}"
    assert page.url == web_app.url + "/"
    cookies = await page.context.cookies()
    assert cookies, "no session cookie"
    assert all(c["httpOnly"] and c["sameSite"] == "Strict" for c in cookies), cookies
    assert all(web_app.token not in c["value"] for c in cookies)
    for _who, _node, text in SEED_POSTS:
        eid = web_devnet.posts[text]
        item = page.locator(f'article[data-testid="post"][data-id="{eid}"]')
        await expect(item).to_have_count(1)
        await expect(item.get_by_test_id("post-text")).to_have_text(text)
        await expect(item).to_be_visible()
        await expect(item.locator(f'a[href="/thread/{eid}"]')).to_have_count(1)
    await screenshot(page, f"timeline-{viewport}")


async def test_a_browser_without_the_token_sees_nothing_of_the_reader(
    browse: Browsing, web_app: WebProcess, web_devnet: WebDevnet
) -> None:
    """spec 0007 #web-security: another local user or web page has no session: 403."""
    page = await browse.open(login=False)
    guard = browse.guard(page)
    guard.expect("console_errors")  # Chromium logs the page's own 403
    response = await page.goto(web_app.url + "/")
    assert response is not None and response.status == 403
    body = await page.content()
    assert not any(text in body for text in web_devnet.posts)
    assert web_devnet.dids["alice"] not in body
    assert all("403" in e for e in guard.console_errors), guard.console_errors
    assert await page.context.cookies() == []


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
async def test_axe_finds_no_serious_violation_on_the_timeline(
    browse: Browsing, axe: Axe, web_devnet: WebDevnet, viewport: str
) -> None:
    """Issue #17 item 5: axe-core (WCAG 2.x A/AA and best practices) on the timeline."""
    page = await browse.open(viewport)
    first = web_devnet.posts[SEED_POSTS[0][2]]
    await expect(page.locator(f'[data-testid="post"][data-id="{first}"]')).to_be_visible()
    violations = await axe(page)
    assert violations == [], "axe-core:\n" + describe_violations(violations)
