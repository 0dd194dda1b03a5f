"""Every page of ``murmur web`` in Chromium, on a phone and on a laptop screen (issue
#17 items 2 and 5): each page the nav bar links to (the app lists the page groups it
has, so a new page is visited as soon as it is in the nav), plus a thread, an author
page, a people search, the following list, the feeds and the reader's local feed of the
seeded devnet.

Each page must answer 200, fit the screen's width (no sideways scrolling), run
without a dialog, console error, page error or request to another origin (the page
guards), have no serious or critical axe-core violation, and be saved as a screenshot
(tests/web/output/<test>/<page>-<viewport>.png). The test fails listing every page
that broke, not only the first.
"""

from __future__ import annotations

import re
from collections import Counter
from urllib.parse import quote

import pytest

from tests.web.conftest import BROWSER_TEST, FEED, SEED_POSTS, Axe, Browsing, Screenshot, WebDevnet
from tests.web.harness import WebProcess, describe_violations

pytestmark = BROWSER_TEST


def _shot_name(path: str) -> str:
    """``/author/did:...`` → ``author``, ``/`` → ``home``, ``/search?q=x`` → ``search``."""
    first = path.split("?", 1)[0].strip("/").split("/", 1)[0]
    return re.sub(r"[^A-Za-z0-9_-]+", "-", first) or "home"


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
async def test_every_page_answers_runs_clean_and_passes_axe(
    browse: Browsing,
    web_app: WebProcess,
    web_devnet: WebDevnet,
    axe: Axe,
    screenshot: Screenshot,
    viewport: str,
) -> None:
    """spec 0007 #web-client: the pages; #web-security: the CSP holds on each (a
    refused inline script or style is a console error)."""
    page = await browse.open(viewport)
    nav = await page.locator('[data-testid^="nav-"]').evaluate_all(
        "links => links.map(a => a.getAttribute('href'))"
    )
    assert "/" in nav, f"no Home in the nav: {nav}"
    bob_post = web_devnet.posts[SEED_POSTS[0][2]]
    paths = list(
        dict.fromkeys(
            [
                *nav,
                f"/thread/{bob_post}",
                f"/author/{quote(web_devnet.dids['bob'])}",
                f"/author/{quote(web_devnet.dids['alice'])}",
                "/search?q=Bob",
                "/following",
                "/feeds",
                f"/feeds/{FEED}",
            ]
        )
    )
    broken: list[str] = []
    seen: Counter[str] = Counter()
    for path in paths:
        response = await page.goto(web_app.url + path)
        status = None if response is None else response.status
        if status != 200:
            broken.append(f"{path}: status {status}")
            continue
        # Usable on a phone: nothing wider than the screen (no sideways scrolling).
        overflow = await page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        if overflow > 0:
            broken.append(f"{path}: {overflow}px wider than the {viewport} screen")
        violations = await axe(page)
        if violations:
            broken.append(f"{path}: axe-core\n{describe_violations(violations)}")
        name = _shot_name(path)
        seen[name] += 1
        suffix = "" if seen[name] == 1 else f"-{seen[name]}"
        await screenshot(page, f"{name}{suffix}-{viewport}")
    assert not broken, "pages that broke:\n" + "\n".join(broken)
