"""Regenerate the README's screenshots of ``murmur web`` (docs/screenshots/*.png) from
the real thing, as ``make run`` shows it.

It runs ``murmur devnet up --nodes 3 --seed-demo --web`` (what ``make run`` runs) in a
temporary directory, waits for the web client's token URL, opens it in Debian's
Chromium through Playwright (``/usr/bin/chromium`` via ``executable_path``, the launch
flags of the browser tests: ``make browser-deps`` and ``make dev`` install both), and
saves:

- ``timeline.png``: alice's home timeline (a labeler's badge, a post behind its
  content warning, replies, counts);
- ``why-hidden.png``: after muting the word "consensus" on the Moderation page (typed
  and submitted as a user would), the timeline's row for the post it hides, which
  says why (the word, the filter, who decided) with "Show anyway" and "Change this
  setting";
- ``shown-anyway.png``: that post after "Show anyway", with its why panel.

Then it stops the devnet (SIGTERM, which it takes as Ctrl-C). Run from the repository root:

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

The ports are options (``--base-port``, ``--web-port``) in case ``make run`` is up.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Final

from playwright.async_api import Page, async_playwright, expect

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.web.harness import CHROMIUM, CHROMIUM_ARGS, TokenURLProcess  # noqa: E402

#: How long the devnet may take to seed the demo and print the web URL (a hang guard).
START_DEADLINE_S: Final = 180.0
#: The word muted for the "why hidden" screenshot: it is in one of carol's demo posts.
MUTED_WORD: Final = "consensus"
#: The screen the screenshots are taken at (a laptop's; CSS pixels, scale 1).
VIEWPORT: Final = {"width": 1100, "height": 900}
#: Room kept above and below the hidden row and its neighbours in its screenshot.
MARGIN_PX: Final = 12


async def _why_hidden(page: Page, origin: str, out: Path) -> list[Path]:
    """Mute a word on the Moderation page, then shoot the row that hides its post and
    the post shown anyway."""
    await page.goto(origin + "/moderation")
    await page.locator("#mw-words").fill(MUTED_WORD)
    await page.keyboard.press("Enter")
    await expect(page.get_by_test_id("flash")).to_contain_text("Muted")
    await page.goto(origin + "/")
    row = page.get_by_test_id("hidden-item").filter(has_text=MUTED_WORD)
    await expect(row).to_have_count(1)
    # The row with the whole item above and below it, as it sits in the timeline.
    above = row.locator("xpath=preceding-sibling::*[1]")
    below = row.locator("xpath=following-sibling::*[1]")
    await page.evaluate("window.scrollTo(0, 0)")  # boxes in page coordinates, as the clip
    boxes = [await x.bounding_box() for x in (above, row, below)]
    top = min(b["y"] for b in boxes if b is not None) - MARGIN_PX
    bottom = max(b["y"] + b["height"] for b in boxes if b is not None) + MARGIN_PX
    hidden = out / "why-hidden.png"
    left = min(b["x"] for b in boxes if b is not None) - MARGIN_PX
    right = max(b["x"] + b["width"] for b in boxes if b is not None) + MARGIN_PX
    clip = {"x": left, "y": top, "width": right - left, "height": bottom - top}
    await page.screenshot(path=hidden, clip=clip, full_page=True)  # type: ignore[arg-type]
    await row.get_by_test_id("show-anyway").click()
    revealed = page.locator('[data-testid="post"][data-state="revealed"]')
    await expect(revealed).to_have_count(1)
    shown = out / "shown-anyway.png"
    await revealed.screenshot(path=shown)
    return [hidden, shown]


async def shoot(token_url: str, out: Path) -> list[Path]:
    origin = token_url.split("/?", 1)[0]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS])
        try:
            context = await browser.new_context(viewport=VIEWPORT, device_scale_factor=1)  # type: ignore[arg-type]
            page = await context.new_page()
            await page.goto(token_url)  # the token becomes a session cookie
            await expect(page.locator('[data-testid="post"]').first).to_be_visible()
            timeline = out / "timeline.png"
            await page.screenshot(path=timeline, full_page=True)
            return [timeline, *await _why_hidden(page, origin, out)]
        finally:
            await browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--base-port", type=int, default=18781, help="node1's port")
    parser.add_argument("--web-port", type=int, default=18780, help="the web client's port")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is missing: run make browser-deps", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="murmur-screenshots-") as tmp:
        argv = ["devnet", "up", "--dir", str(Path(tmp) / "devnet"), "--nodes", "3"]
        argv += ["--base-port", str(args.base_port), "--seed-demo"]
        argv += ["--web", "--web-port", str(args.web_port)]
        # SIGTERM at the end stops it as Ctrl-C does (the nodes, then the web client).
        devnet = TokenURLProcess(argv, deadline_s=START_DEADLINE_S, stop_timeout_s=60)
        try:
            paths = asyncio.run(shoot(devnet.token_url, args.out))
        finally:
            devnet.stop()
    for path in paths:
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
