"""The browser harness can fail (issue #17 item 5): each guard and the axe helper are
shown catching what they exist for, on pages built in the test, so that a browser test
passing means the page did not misbehave, not that nobody was listening.

No devnet and no ``murmur web`` here: only Debian's Chromium.
"""

from __future__ import annotations

from playwright.async_api import Browser, Route

from tests.web.conftest import BROWSER_TEST, Axe, Browsing, Screenshot
from tests.web.harness import CHROMIUM, PageGuard

pytestmark = BROWSER_TEST

PAYLOAD_PAGE = """<!doctype html><html lang="en"><head><title>payloads</title></head><body>
<main><p>1</p><img src="x" alt="" onerror="alert('img onerror ran')">
<script>console.error('a console error'); throw new Error('an uncaught error');</script>
<img src="http://203.0.113.9/tracker.png" alt="">
</main></body></html>"""

CLEAN_PAGE = """<!doctype html><html lang="en"><head><title>clean</title></head><body>
<main><h1>A clean page</h1><p>Nothing to see.</p><a href="#top">top</a></main>
</body></html>"""


async def test_the_browser_is_debians_chromium(browser: Browser) -> None:
    """The harness drives /usr/bin/chromium (``make browser-deps``), not a downloaded one."""
    assert CHROMIUM.exists()
    assert browser.browser_type.name == "chromium"
    assert int(browser.version.split(".")[0]) >= 100, browser.version


async def test_guard_sees_a_dialog_a_console_error_a_page_error_and_a_foreign_request(
    browse_offline: Browsing,
) -> None:
    """Every kind a page guard watches is caught (and an alert does not hang the page)."""
    page = await browse_offline.open(login=False)
    guard = browse_offline.guard(page)
    guard.expect(*PageGuard.KINDS)
    async with page.expect_request("http://203.0.113.9/tracker.png"):
        await page.set_content(PAYLOAD_PAGE)
    await page.wait_for_function("() => document.readyState === 'complete'")
    assert any("img onerror ran" in d for d in guard.dialogs), guard.dialogs
    assert any("a console error" in e for e in guard.console_errors), guard.console_errors
    assert any("an uncaught error" in e for e in guard.page_errors), guard.page_errors
    assert guard.foreign_requests == ["GET http://203.0.113.9/tracker.png"]
    # Unexpected, each kind is a failure.
    fresh = PageGuard(allowed=())
    fresh.dialogs, fresh.page_errors = guard.dialogs, guard.page_errors
    assert {p.split(":")[0] for p in fresh.problems()} == {"dialogs", "page_errors"}


async def test_guard_is_quiet_on_a_clean_page(browse_offline: Browsing) -> None:
    page = await browse_offline.open(login=False)
    await page.set_content(CLEAN_PAGE)
    assert browse_offline.guard(page).problems() == []


async def test_axe_finds_serious_violations_and_none_on_a_clean_page(
    browse_offline: Browsing, axe: Axe
) -> None:
    """The vendored axe-core runs in the page and reports by impact."""
    page = await browse_offline.open(login=False)
    await page.set_content(CLEAN_PAGE)
    assert await axe(page) == []
    await page.set_content(
        "<!doctype html><html><head><title>bad</title></head><body><main>"
        '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">'
        "<button></button></main></body></html>"
    )
    ids = {v["id"] for v in await axe(page)}
    assert {"image-alt", "button-name"} <= ids, ids


async def test_axe_runs_under_a_strict_content_security_policy(
    browse_offline: Browsing, axe: Axe
) -> None:
    """The app's CSP forbids inline scripts; axe is injected through DevTools anyway,
    and the CSP still blocks the page's own inline script (a console error)."""
    page = await browse_offline.open(login=False)
    guard = browse_offline.guard(page)
    guard.expect("console_errors")

    async def serve(route: Route) -> None:
        await route.fulfill(
            status=200,
            content_type="text/html",
            headers={"Content-Security-Policy": "default-src 'self'; script-src 'self'"},
            body=CLEAN_PAGE.replace("</main>", "<script>alert('inline')</script></main>"),
        )

    await page.route("http://app.test/", serve)
    guard.allowed = ("http://app.test",)
    await page.goto("http://app.test/")
    assert await axe(page) == []
    assert guard.dialogs == []
    assert any("Content Security Policy" in e for e in guard.console_errors), guard.console_errors


async def test_screenshots_land_in_the_tests_output_folder(
    browse_offline: Browsing, screenshot: Screenshot
) -> None:
    page = await browse_offline.open("phone", login=False)
    await page.set_content(CLEAN_PAGE)
    path = await screenshot(page, "clean")
    assert path.parent.name == "test_harness.test_screenshots_land_in_the_tests_output_folder"
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
