"""What keeps ``murmur web`` the reader's own, against the real process over a real
3-node devnet, and in Chromium (issue #17 items 4-5; spec 0007 #web-security,
#web-inert). tests/web/test_security.py checks the same guard in-process; here it is
the served program, as a browser or another program on the machine meets it.

* DNS rebinding: a request whose ``Host`` is not the ``127.0.0.1:PORT`` served is
  refused (421), even with a valid session cookie, and shows nothing of the reader.
* Cross-site requests: a state-changing request (``POST /logout``: it ends the
  session, so its effect is observable) with a valid session and CSRF token but a
  foreign ``Origin`` (another site, another local port, ``localhost`` for
  ``127.0.0.1``, ``null``), a foreign ``Referer`` without ``Origin``, or neither, is
  refused (403) and changes nothing; the same request from the app's own origin
  works, so the refusal is the origin's doing. A wrong or missing CSRF token is
  refused from the app's own origin too. A forged ``POST /compose`` signs nothing on
  any node, while the same form from the app's origin is published everywhere.
* Hostile text: posts whose text is ``<script>``, ``<img onerror>``, ``<svg onload>``
  and ``javascript:`` payloads, by an author whose display name is one too, render
  as text in Chromium: no dialog, no console error (a CSP refusal would be one), no
  page error, no request elsewhere, no ``javascript:`` URL and no element the
  payloads tried to make.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.async_api import expect

from protocol.events import decode_unverified
from tests.web.conftest import BROWSER_TEST, Browsing, Screenshot, WebDevnet
from tests.web.harness import WebProcess, murmur

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def _csrf(client: httpx.Client) -> str:
    page = client.get("/")
    assert page.status_code == 200, page.text[:500]
    match = CSRF_META.search(page.text)
    assert match is not None, "no <meta name=csrf-token> on the timeline"
    return match.group(1)


# -- Host -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["evil.example:{port}", "evil.example", "127.0.0.1.nip.io:{port}", "127.0.0.1:{other}"],
    ids=["foreign-name", "foreign-name-no-port", "rebinding-name", "other-port"],
)
def test_a_foreign_host_header_is_refused(
    web_http: httpx.Client, web_app: WebProcess, web_devnet: WebDevnet, host: str
) -> None:
    """spec 0007 #web-security (DNS rebinding): only the Host served is answered."""
    ids = web_devnet.posts.values()
    ours = web_http.get("/")
    assert ours.status_code == 200 and all(f'data-id="{eid}"' in ours.text for eid in ids)
    foreign = host.format(port=web_app.port, other=web_app.port + 1)
    r = web_http.get("/", headers={"Host": foreign})
    assert r.status_code == 421, (r.status_code, r.text[:300])
    assert not any(eid in r.text for eid in ids)
    assert web_devnet.dids["alice"] not in r.text
    assert "set-cookie" not in r.headers


# -- Origin and CSRF --------------------------------------------------------------------

#: Headers of a state-changing request that does not come from the app's own page
#: ({port}: the app's port; {other}: another local port, same site, other origin).
FOREIGN_ORIGINS: dict[str, dict[str, str]] = {
    "other-site": {"Origin": "http://evil.example"},
    "other-local-port": {"Origin": "http://127.0.0.1:{other}"},
    "localhost-name": {"Origin": "http://localhost:{port}"},
    "null": {"Origin": "null"},
    "foreign-referer": {"Referer": "http://evil.example/page"},
    "neither": {},
}


@pytest.mark.parametrize("case", list(FOREIGN_ORIGINS))
def test_a_state_changing_request_from_another_origin_is_refused(
    web_http: httpx.Client, web_app: WebProcess, case: str
) -> None:
    """spec 0007 #web-security: state changes need a same-origin Origin (or Referer)."""
    headers = {
        k: v.format(port=web_app.port, other=web_app.port + 1)
        for k, v in FOREIGN_ORIGINS[case].items()
    }
    csrf = _csrf(web_http)
    r = web_http.post("/logout", data={"csrf": csrf}, headers=headers)
    assert r.status_code == 403, (case, r.status_code, r.text[:300])
    assert web_http.get("/").status_code == 200, f"{case}: the session ended anyway"
    # The same request from the app's own origin does end the session.
    ok = web_http.post("/logout", data={"csrf": csrf}, headers={"Origin": web_app.url})
    assert ok.status_code == 200, (ok.status_code, ok.text[:300])
    assert web_http.get("/").status_code == 403


def test_a_same_origin_request_without_the_csrf_token_is_refused(
    web_http: httpx.Client, web_app: WebProcess
) -> None:
    """spec 0007 #web-security: the Origin alone is not enough."""
    csrf = _csrf(web_http)
    wrong = csrf[:-1] + ("A" if csrf[-1] != "A" else "B")
    for data in ({}, {"csrf": wrong}, {"csrf": ""}):
        r = web_http.post("/logout", data=data, headers={"Origin": web_app.url})
        assert r.status_code == 403, (data, r.status_code)
        assert web_http.get("/").status_code == 200


def _texts_by(web_devnet: WebDevnet, who: str) -> list[set[str]]:
    """Per node, the post texts of ``who``'s events it holds (read from the wire)."""
    did = web_devnet.dids[who]
    out: list[set[str]] = []
    for url in web_devnet.urls:
        r = httpx.get(f"{url}/v1/authors/{did}/events", params={"limit": "1000"}, timeout=10)
        r.raise_for_status()
        events = [
            decode_unverified(base64.b64decode(e["wire"]), allow_v2=True)
            for e in r.json()["events"]
        ]
        out.append({str(e.body["text"]) for e in events if e.kind == "post" and e.body})
    return out


def test_a_cross_origin_post_publishes_nothing(
    web_http: httpx.Client, web_app: WebProcess, web_devnet: WebDevnet
) -> None:
    """spec 0007 #web-security: a forged compose request from another site, session
    cookie and CSRF token included, signs nothing; the app's own page posts."""
    forged, own = "forged by another site", "posted from the web app's own page"
    csrf = _csrf(web_http)
    r = web_http.post(
        "/compose", data={"csrf": csrf, "text": forged}, headers={"Origin": "http://evil.example"}
    )
    assert r.status_code == 403, (r.status_code, r.text[:300])
    r = web_http.post("/compose", data={"csrf": csrf, "text": own}, headers={"Origin": web_app.url})
    assert r.status_code == 200, (r.status_code, r.text[:300])
    web_devnet.cluster.wait_until(
        lambda: all(own in texts for texts in _texts_by(web_devnet, "alice")),
        "the same-origin post on every node",
    )
    assert not any(forged in texts for texts in _texts_by(web_devnet, "alice"))


# -- hostile text -----------------------------------------------------------------------

PAYLOADS = (
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">click me</a> or javascript:alert(1)',
    '"><svg onload=alert(1)><iframe src="javascript:alert(1)"></iframe>',
)
EVIL_NAME = "<img src=x onerror=alert('name')>Mallory"


@dataclass(slots=True)
class Hostile:
    did: str
    posts: dict[str, str]


@pytest.fixture(scope="module")
def hostile(web_devnet: WebDevnet) -> Iterator[Hostile]:
    """Mallory, whom alice follows: a script for a name and payloads for posts, each
    sent through another node."""
    home, offline = web_devnet.authors, web_devnet.authors.parent / "offline"
    murmur(home, "id", "new", "mallory", "--no-encrypt", "--recovery-out", str(offline / "m"))
    murmur(home, "profile", "set", "--name", EVIL_NAME, as_name="mallory")
    did: str = murmur(home, "id", "show", "mallory")["did"]
    murmur(web_devnet.reader, "follow", did, as_name="alice")
    posts = {text: web_devnet.post("mallory", text, node=i % 3) for i, text in enumerate(PAYLOADS)}
    yield Hostile(did=did, posts=posts)


@BROWSER_TEST
async def test_hostile_posts_and_names_run_nothing_and_show_as_text(
    browse: Browsing, hostile: Hostile, screenshot: Screenshot
) -> None:
    """spec 0007 #web-inert: post text and names are text (escaped, under the CSP)."""
    page = await browse.open("desktop")
    await page.wait_for_load_state("load")
    for text, eid in hostile.posts.items():
        item = page.locator(f'article[data-testid="post"][data-id="{eid}"]')
        await expect(item.get_by_test_id("post-text")).to_have_text(text)
        await expect(item.locator("a.author")).to_contain_text("Mallory")
        await expect(item.locator("a.author")).to_contain_text("<img src=x onerror=")
    assert await page.locator('[href^="javascript:" i], [src^="javascript:" i]').count() == 0
    made = "main script, main iframe, main svg, main img[onerror], main [onload], main [onerror]"
    assert await page.locator(made).count() == 0
    for link in await page.locator("main a[href^='http']").all():
        assert await link.get_attribute("rel") == "noopener noreferrer nofollow"
    # Clicking the text that claimed to be a link does nothing either.
    await page.get_by_text("click me", exact=False).first.click()
    await screenshot(page, "hostile-timeline")
    browse.guard(page).check()
