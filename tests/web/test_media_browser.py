"""Posts' images in Chromium over the real 3-node devnet (issue #20 point 3; spec 0007
#web-images).

Bob posts a picture with ``murmur post --image --alt`` (re-encoded, uploaded to every
node) and another self-labelled ``nsfw``. On alice's timeline the first shows as an
``<img>`` that really loaded (bytes fetched by ``murmur web`` from the nodes and
verified, served from its own origin: the page guard fails the test on any request
elsewhere or any console error, a CSP refusal included) with its alt text; the
``nsfw`` one, once its warning is opened, is blurred (computed ``filter``) until
"Show images" is clicked.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from PIL import Image
from playwright.async_api import Locator, Page, expect

from tests.web.conftest import BROWSER_TEST, Axe, Browsing, Screenshot, WebDevnet
from tests.web.harness import WebProcess, describe_violations, murmur

pytestmark = BROWSER_TEST

ALT = 'a teal square, "quoted" <b>not bold</b>'


def _picture(path: Path, colour: tuple[int, int, int]) -> Path:
    Image.new("RGB", (64, 48), colour).save(path, format="PNG")
    return path


def _post_image(net: WebDevnet, text: str, image: Path, alt: str, *warn: str) -> str:
    args = ["post", text, "--image", str(image), "--alt", alt]
    for w in warn:
        args += ["--warn", w]
    eid: str = murmur(net.authors, "--node", net.urls[1], *args, as_name="bob")["id"]
    net.cluster.wait_until(lambda: net.holds([eid]), "the image post on every node")
    return eid


async def _wait_loaded(page: Page, img: Locator) -> None:
    """Until the image has loaded and decoded (a broken image never has a width)."""
    await img.scroll_into_view_if_needed()
    handle = await img.element_handle()
    await page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=handle)


async def test_an_image_post_shows_its_image_and_alt_and_nsfw_is_blurred_until_shown(
    browse: Browsing,
    web_app: WebProcess,
    web_devnet: WebDevnet,
    screenshot: Screenshot,
    axe: Axe,
    tmp_path: Path,
) -> None:
    """spec 0007 #web-images, #images-verify."""
    plain = await asyncio.to_thread(
        _post_image, web_devnet, "Bob: a picture", _picture(tmp_path / "a.png", (0, 128, 128)), ALT
    )
    nsfw = await asyncio.to_thread(
        _post_image, web_devnet, "Bob: careful",
        _picture(tmp_path / "b.png", (160, 20, 20)), "a red square", "nsfw",
    )  # fmt: skip
    page = await browse.open("desktop")
    await page.goto(web_app.url + "/")

    item = page.locator(f'[data-testid="post"][data-id="{plain}"]')
    img = item.locator('[data-testid="image"] img')
    await expect(img).to_have_attribute("alt", ALT)
    await expect(img).to_have_attribute("src", re.compile(r"^/media/[0-9a-f]{64}$"))
    await _wait_loaded(page, img)
    await expect(item.get_by_test_id("image-alt")).to_contain_text(ALT)
    await expect(item.locator("b")).to_have_count(0)  # the alt's markup is text
    await expect(img).to_have_css("filter", "none")

    warned = page.locator(f'[data-testid="post"][data-id="{nsfw}"]')
    await expect(warned).to_have_attribute("data-state", "warned")
    await warned.locator("summary").click()
    blurred = warned.locator('[data-testid="image"] img')
    await _wait_loaded(page, blurred)
    await expect(blurred).to_have_css("filter", re.compile(r"^blur\("))
    await expect(warned.get_by_test_id("image-alt")).to_be_hidden()
    await screenshot(page, "timeline-blurred")

    await warned.get_by_test_id("show-images").click()
    await expect(blurred).to_have_css("filter", "none")
    await expect(warned.get_by_test_id("image-alt")).to_be_visible()
    await screenshot(page, "timeline-shown")
    violations = await axe(page)
    assert not violations, describe_violations(violations)
