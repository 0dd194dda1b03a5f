"""The moderation page in Chromium over the real 3-node devnet (issue #17 items 2 and
5; spec 0007 #web-moderation, #web-why).

* Muting a word from the page (typed, submitted with the keyboard) hides carol's post
  on the timeline behind a row whose why names the filter and the word; "show anyway"
  reveals it; "Change this setting" leads to that filter's card, where removing the
  word brings the post back.
* A labeler's label shows as a badge on bob's post; its "change" link leads to that
  label's control on the moderation page, where its action is changed in place from
  badge to hide, and the timeline then hides the post, saying why.

Both run on the session's ``murmur web`` (alice) and undo their settings at the end
(through the CLI if the page could not), so other tests see alice's defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from playwright.async_api import Page, expect

from client.moderation.config import ModerationConfig
from client.moderation.settings import remove_filter, unsubscribe_labeler
from protocol.errors import ProtocolError
from tests.web.conftest import BROWSER_TEST, Axe, Browsing, Screenshot, WebDevnet
from tests.web.harness import WebProcess, describe_violations, murmur

pytestmark = BROWSER_TEST

MUTED_WORD = "zebracorn"
MUTED_TEXT = f"Carol: the {MUTED_WORD} season finale was something else"
LABELED_TEXT = "Bob: a post a labeler will call spam"


async def _flash(page: Page) -> str:
    flash = page.get_by_test_id("flash").first
    await expect(flash).to_be_visible()
    return await flash.inner_text()


def _filters_of(home: Path, type_: str) -> list[str]:
    return [f.name for f in ModerationConfig.load(home).filters if f.type == type_]


async def test_muting_a_word_hides_a_post_says_why_and_show_anyway_reveals_it(
    browse: Browsing,
    web_app: WebProcess,
    web_devnet: WebDevnet,
    screenshot: Screenshot,
    axe: Axe,
) -> None:
    """spec 0007 #web-why, #web-moderation; spec 0006 §builtins mute-words."""
    eid = await asyncio.to_thread(web_devnet.post, "carol", MUTED_TEXT, node=1)
    before = set(_filters_of(web_devnet.reader, "mute-words"))
    page = await browse.open("desktop")
    try:
        await page.goto(web_app.url + "/moderation")
        await page.locator("#mw-words").focus()
        await page.keyboard.type(MUTED_WORD)
        await page.keyboard.press("Enter")  # submits the form: the keyboard is enough
        assert "Muted (hide)" in await _flash(page)
        (name,) = set(_filters_of(web_devnet.reader, "mute-words")) - before
        assert page.url.endswith(f"/moderation#filter-{name}")
        await screenshot(page, "moderation-after-mute")

        await page.goto(web_app.url + "/")
        row = page.locator(f'[data-testid="hidden-item"][data-id="{eid}"]')
        await expect(row.get_by_test_id("why-reason")).to_have_text(f'muted word "{MUTED_WORD}"')
        await expect(row.get_by_test_id("why-filter")).to_have_text(name)
        await expect(page.get_by_text(MUTED_TEXT, exact=True)).to_have_count(0)
        await screenshot(page, "timeline-hidden")

        await row.get_by_test_id("show-anyway").click()
        item = page.locator(f'[data-testid="post"][data-id="{eid}"]')
        await expect(item).to_have_attribute("data-state", "revealed")
        await expect(item.get_by_text(MUTED_TEXT, exact=True)).to_be_visible()
        await expect(item.get_by_test_id("why-reason")).to_contain_text(MUTED_WORD)
        await screenshot(page, "timeline-revealed")

        await item.get_by_test_id("why-setting").click()
        assert page.url.endswith(f"/moderation#filter-{name}")
        card = page.locator(f'[id="filter-{name}"]')
        await expect(card).to_be_visible()
        await expect(card.get_by_test_id("entry")).to_contain_text(MUTED_WORD)
        remove = card.get_by_test_id("entry-remove")
        await remove.focus()
        await page.keyboard.press("Enter")
        assert "was empty, removed" in await _flash(page)
        assert name not in _filters_of(web_devnet.reader, "mute-words")

        await page.goto(web_app.url + "/")
        shown = page.locator(f'[data-testid="post"][data-id="{eid}"]')
        await expect(shown).to_have_attribute("data-state", "shown")
    finally:
        for leftover in set(_filters_of(web_devnet.reader, "mute-words")) - before:
            remove_filter(web_devnet.reader, leftover)


async def test_a_labelers_label_is_a_badge_and_its_action_changes_in_place(
    browse: Browsing,
    web_app: WebProcess,
    web_devnet: WebDevnet,
    screenshot: Screenshot,
    axe: Axe,
    tmp_path: Path,
) -> None:
    """spec 0006 §labels; spec 0007 #web-moderation: badge → hide, in place."""
    await asyncio.to_thread(
        murmur, web_devnet.authors, "id", "new", "spamlab", "--no-encrypt",
        "--recovery-out", str(tmp_path / "spamlab"),
    )  # fmt: skip
    shown = await asyncio.to_thread(murmur, web_devnet.authors, "id", "show", "spamlab")
    lab_did: str = shown["did"]
    eid = await asyncio.to_thread(web_devnet.post, "bob", LABELED_TEXT, node=2)
    label = await asyncio.to_thread(
        murmur, web_devnet.authors, "--node", web_devnet.urls[0], "label", eid, "spam",
        as_name="spamlab",
    )  # fmt: skip
    await asyncio.to_thread(
        web_devnet.cluster.wait_until,
        lambda: web_devnet.holds([label["id"]]),
        "the label on every node",
    )
    anchor = f"label-{lab_did}-spam"
    page = await browse.open("desktop")
    try:
        await page.goto(web_app.url + "/moderation")
        await page.locator("#lb-who").fill(lab_did)
        await page.locator("#lb-labels").fill("spam=badge")
        await page.locator("#lb-labels").press("Enter")
        assert "Subscribed to labeler" in await _flash(page)

        await page.goto(web_app.url + "/")
        item = page.locator(f'[data-testid="post"][data-id="{eid}"]')
        await expect(item).to_have_attribute("data-state", "badged")
        badge = item.get_by_test_id("badge")
        await expect(badge).to_contain_text('labeled "spam"')
        await screenshot(page, "timeline-badge")

        await badge.get_by_test_id("why-setting").click()
        assert page.url.endswith(f"/moderation#{anchor}")
        control = page.locator(f'[id="{anchor}"]')
        await expect(control).to_be_visible()
        select = control.locator("select")
        await expect(select).to_have_value("badge")
        await select.focus()
        await select.select_option("hide")
        await control.get_by_test_id("label-save").focus()
        await page.keyboard.press("Enter")
        assert "now: hide" in await _flash(page)
        await expect(page.locator(f'[id="{anchor}"] select')).to_have_value("hide")
        await screenshot(page, "moderation-labelers")
        violations = await axe(page)
        assert violations == [], "axe-core:\n" + describe_violations(violations)

        await page.goto(web_app.url + "/")
        row = page.locator(f'[data-testid="hidden-item"][data-id="{eid}"]')
        await expect(row.get_by_test_id("why-reason")).to_have_text('labeled "spam"')
        await expect(row.get_by_test_id("why-setting")).to_have_attribute(
            "href", f"/moderation#{anchor}"
        )
        await screenshot(page, "timeline-label-hidden")
    finally:
        with contextlib.suppress(ProtocolError):
            unsubscribe_labeler(web_devnet.reader, lab_did)


async def test_the_moderation_page_on_a_phone(
    browse: Browsing, web_app: WebProcess, screenshot: Screenshot, axe: Axe
) -> None:
    """Issue #17 item 2: usable on a phone-sized screen; no serious axe violation."""
    page = await browse.open("phone")
    await page.goto(web_app.url + "/moderation")
    await expect(page.get_by_test_id("mute-words")).to_be_visible()
    width = await page.evaluate("document.documentElement.scrollWidth")
    viewport = page.viewport_size
    assert viewport is not None and width <= viewport["width"], "the page scrolls sideways"
    await screenshot(page, "moderation-phone")
    violations = await axe(page)
    assert violations == [], "axe-core:\n" + describe_violations(violations)
