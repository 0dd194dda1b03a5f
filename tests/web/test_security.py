"""The guard of ``murmur web`` (issue #17 point 4; spec 0007 #web-security): the Host
header (DNS rebinding), the start token and the session cookie, Origin and CSRF on
state-changing requests, and the headers of every answer (CSP and friends)."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.web.security import CSP, is_loopback
from tests.client.conftest import Net
from tests.web.inproc import TOKEN, Web, serve


@pytest.fixture
async def web(tmp_path: Path) -> Web:  # type: ignore[misc]
    net = Net()
    async with serve(tmp_path / "home", net, [net.node("a")]) as w:
        yield w


def _headers_ok(headers: object) -> None:
    h = dict(headers)  # type: ignore[call-overload]
    assert h["Content-Security-Policy"] == CSP
    assert "'unsafe-inline'" not in CSP and "'unsafe-eval'" not in CSP
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["Referrer-Policy"] == "same-origin"


async def test_no_session_no_page(web: Web) -> None:
    """Without the token or its cookie every page is 403 and names nobody; static
    assets are public; a wrong token is refused."""
    for path in ("/", "/search?q=x", "/following", f"/author/{web.me.did}", "/live/timeline"):
        r = await web.client.get(path)
        body = await r.text()
        assert r.status == 403, path
        assert 'data-testid="forbidden"' in body and web.me.did not in body
        _headers_ok(r.headers)
    r = await web.client.get("/?token=" + "y" * len(TOKEN), allow_redirects=False)
    assert r.status == 403
    r = await web.client.get("/static/app.js")
    assert r.status == 200
    _headers_ok(r.headers)


async def test_token_becomes_a_strict_httponly_cookie_and_leaves_the_url(web: Web) -> None:
    r = await web.client.get(f"/search?q=bob&token={TOKEN}", allow_redirects=False)
    assert r.status == 303
    assert r.headers["Location"] == "/search?q=bob"
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith(f"{web.guard.cookie_name}=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert TOKEN not in cookie
    page = await web.client.get("/search?q=")
    assert page.status == 200
    _headers_ok(page.headers)
    assert page.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:{port}", "localhost:{port}", "127.0.0.1", ""]
)
async def test_a_foreign_host_is_refused(web: Web, host: str) -> None:
    """DNS rebinding: a page of evil.example re-pointed at 127.0.0.1 sends its own
    Host; only the exact host:port served is answered, the token does not help."""
    await web.login()
    r = await web.client.get(f"/?token={TOKEN}", headers={"Host": host.format(port=web.guard.port)})
    assert r.status == 421
    assert "Set-Cookie" not in r.headers
    _headers_ok(r.headers)


async def test_state_changing_requests_need_same_origin_and_csrf(web: Web) -> None:
    """POST /logout (a real state change: the session ends) is refused without the
    session's CSRF token, with a wrong one, from a foreign Origin or Referer, or with
    neither; with a same-origin Origin (or Referer) and the token it works."""
    await web.login()
    csrf = await web.csrf()
    own = {"Origin": web.origin}
    refused = [
        ({}, {}),  # no Origin, no Referer, no token
        (own, {}),  # no token
        (own, {"csrf": "wrong"}),
        ({"Origin": "http://evil.example"}, {"csrf": csrf}),
        ({"Origin": "null"}, {"csrf": csrf}),
        ({"Origin": f"http://127.0.0.1:{web.guard.port + 1}"}, {"csrf": csrf}),
        ({"Referer": "http://evil.example/page"}, {"csrf": csrf}),
        ({}, {"csrf": csrf}),  # the token alone is not enough
    ]
    for headers, form in refused:
        r = await web.client.post("/logout", data=form, headers=headers)
        assert r.status == 403, (headers, form)
        assert (await web.client.get("/search")).status == 200  # still signed in
    r = await web.client.post(
        "/logout", headers={"Referer": f"{web.origin}/search", "X-CSRF-Token": csrf}
    )
    assert r.status == 200
    assert (await web.client.get("/search")).status == 403  # the session is over


async def test_csrf_header_works_for_htmx(web: Web) -> None:
    await web.login()
    csrf = await web.csrf()
    r = await web.client.post("/logout", headers={"Origin": web.origin, "X-CSRF-Token": csrf})
    assert r.status == 200


async def test_the_token_is_refused_on_a_post(web: Web) -> None:
    r = await web.client.post(f"/logout?token={TOKEN}", headers={"Origin": web.origin})
    assert r.status == 403


def test_loopback_hosts() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "192.168.1.2", "example.org", "::", "localhost.evil.example"):  # noqa: S104
        assert not is_loopback(host), host


def test_murmur_web_refuses_a_remote_host_without_allow_remote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """spec 0007 #web-security: loopback only unless --allow-remote (nothing is served)."""
    from client.cli.main import main

    assert main(["--home", str(tmp_path), "web", "--host", "0.0.0.0"]) == 2  # noqa: S104
    assert "only loopback" in capsys.readouterr().err
