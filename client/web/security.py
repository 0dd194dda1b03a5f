"""What keeps ``murmur web`` the reader's own (issue #17 point 4, spec 0007 #web-client).

A local web server is reachable by every web page the reader opens (a page may send
requests to ``127.0.0.1``) and by every other user of the machine. So, in the order
the middlewares run:

1. **Host** (:func:`host_guard`): the ``Host`` header must be exactly the
   ``host:port`` served, else ``421``: a DNS-rebinding page (``evil.example``
   re-pointed at 127.0.0.1) sends its own name there.
2. **Headers** on every answer, errors included: a strict Content-Security-Policy
   (:data:`CSP`: scripts, styles and fetches only from this server, no inline script
   or style, no frames, no form posts elsewhere), ``nosniff``, ``Referrer-Policy:
   same-origin`` (not ``no-referrer``: under it a browser sends ``Origin: null`` with a
   plain form's POST, which the Origin check must refuse; other sites get no referrer),
   ``Cross-Origin-Resource-Policy: same-origin`` (a page on another local port is
   "same-site", so cookies alone do not stop it embedding ours), and ``no-store`` on
   pages (they hold the reader's timeline).
3. **Who** (:func:`auth_guard`): the secret token printed at start (``?token=``, as
   Jupyter does) is exchanged, once, for a random session id in an ``HttpOnly``,
   ``SameSite=Strict`` cookie whose name carries the port (cookies do not separate
   ports), and a redirect to the same URL without the token, so it leaves the address
   bar. Any other request without a valid session is ``403``; static assets (no
   secret in them) are public.
4. **Intent** (:func:`auth_guard`, state-changing methods): a same-origin ``Origin``
   (or, without one, a same-origin ``Referer``) AND the session's CSRF token, from the
   form field :data:`CSRF_FIELD` or the header :data:`CSRF_HEADER` (set by
   ``static/app.js`` from the ``<meta name="csrf-token">`` of the page); else ``403``.

Sessions live in memory: a restart asks for the token URL again. Keys never reach
the browser: no handler reads a private key into a page.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware
from multidict import MultiDict
from yarl import URL

__all__ = [
    "CSP",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "TOKEN_PARAM",
    "Guard",
    "SESSION_KEY",
    "SessionState",
    "auth_guard",
    "host_guard",
    "is_loopback",
    "prepare_headers",
    "security_headers",
]

log = logging.getLogger("murmur.client.web.security")

#: The Content-Security-Policy of every answer: nothing inline, nothing from elsewhere.
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: The query parameter that carries the start token.
TOKEN_PARAM: Final = "token"  # noqa: S105 - a parameter name, not a secret
#: Where a form carries the CSRF token, and the header htmx and app.js send it in.
CSRF_FIELD: Final = "csrf"
CSRF_HEADER: Final = "X-CSRF-Token"
#: Methods that may change something: they need Origin and the CSRF token.
SAFE_METHODS: Final = frozenset(("GET", "HEAD", "OPTIONS"))
#: Paths anyone may fetch (no secret in them).
PUBLIC_PREFIX: Final = "/static/"
#: Sessions kept at once; past it the oldest is forgotten (each costs a few bytes).
MAX_SESSIONS: Final = 1000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Renders the 403 page: (request, why) → response.
Refusal = Callable[[web.Request, str], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(slots=True)
class SessionState:
    """One browser session: its CSRF token, and messages for its next page (what a
    form's POST did, shown after its redirect)."""

    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    flash: list[str] = field(default_factory=list)


#: Where :func:`auth_guard` leaves the request's :class:`SessionState`.
SESSION_KEY: Final = web.RequestKey("murmur.session", SessionState)


@dataclass(slots=True)
class Guard:
    """The served origin, the start token and the sessions of one server."""

    host: str
    port: int
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    sessions: dict[str, SessionState] = field(default_factory=dict)

    @property
    def netloc(self) -> str:
        """``host:port`` as a browser writes it in ``Host`` (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        return f"http://{self.netloc}"

    @property
    def cookie_name(self) -> str:
        # Cookies are per host, not per port: two servers must not share one.
        return f"murmur_web_{self.port}"

    def url(self, path: str = "/") -> str:
        """The URL to open, with the token (printed at start)."""
        return f"{self.origin}{path}?{TOKEN_PARAM}={self.token}"

    def token_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.token.encode())

    def new_session(self) -> str:
        while len(self.sessions) >= MAX_SESSIONS:
            self.sessions.pop(next(iter(self.sessions)))
        sid = secrets.token_urlsafe(32)
        self.sessions[sid] = SessionState()
        return sid

    def session(self, request: web.Request) -> SessionState | None:
        sid = request.cookies.get(self.cookie_name)
        if not sid:
            return None
        # Constant-time over the known ids would leak their count only; a dict lookup
        # on 256 random bits is not guessable by timing in practice.
        return self.sessions.get(sid)

    def end_session(self, request: web.Request) -> None:
        sid = request.cookies.get(self.cookie_name)
        if sid:
            self.sessions.pop(sid, None)

    def same_origin(self, request: web.Request) -> bool:
        """``Origin`` is this server's; without one, ``Referer`` is a URL of it."""
        origin = request.headers.get("Origin")
        if origin is not None:
            return origin == self.origin
        referer = request.headers.get("Referer")
        if referer is None:
            return False
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}" == self.origin


def host_guard(guard: Guard) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.headers.get("Host") != guard.netloc:
            log.info("refused host=%r path=%s", request.headers.get("Host"), request.path)
            return web.Response(
                status=421,
                text=f"Misdirected request: this server answers only for {guard.netloc}.\n",
            )
        return await handler(request)

    return middleware


def _set_headers(response: web.StreamResponse, *, page: bool) -> None:
    h = response.headers
    # A handler may set a stricter policy of its own (an image: ``sandbox``).
    h.setdefault("Content-Security-Policy", CSP)
    h["X-Content-Type-Options"] = "nosniff"
    h["Referrer-Policy"] = "same-origin"
    h["Cross-Origin-Resource-Policy"] = "same-origin"
    h["Cross-Origin-Opener-Policy"] = "same-origin"
    h["X-Frame-Options"] = "DENY"
    if page:
        h.setdefault("Cache-Control", "no-store")


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The headers of :data:`CSP` and friends on every answer, errors included."""
    page = not request.path.startswith(PUBLIC_PREFIX)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _set_headers(exc, page=page)
        raise
    if not response.prepared:  # a stream (SSE) sets them itself before preparing
        _set_headers(response, page=page)
    return response


def prepare_headers(response: web.StreamResponse) -> None:
    """For a handler that prepares its own stream: the same headers, set first."""
    _set_headers(response, page=True)


def auth_guard(guard: Guard, refuse: Refusal) -> Middleware:
    """The token → cookie exchange, the session check and the Origin + CSRF check."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(PUBLIC_PREFIX) and request.method in SAFE_METHODS:
            return await handler(request)
        given = request.query.get(TOKEN_PARAM)
        if given is not None:
            if request.method not in SAFE_METHODS or not guard.token_ok(given):
                return await refuse(request, "bad-token")
            # The token leaves the URL: a redirect to the same path without it.
            query = MultiDict(request.query)
            query.popall(TOKEN_PARAM)
            target = URL.build(path=request.path, query=query)
            response = web.HTTPSeeOther(location=str(target))
            response.set_cookie(
                guard.cookie_name,
                guard.new_session(),
                httponly=True,
                samesite="Strict",
                path="/",
            )
            raise response
        session = guard.session(request)
        if session is None:
            return await refuse(request, "no-session")
        if request.method not in SAFE_METHODS:
            if not guard.same_origin(request):
                return await refuse(request, "cross-origin")
            sent = request.headers.get(CSRF_HEADER)
            if sent is None and request.content_type in (
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            ):
                form = await request.post()  # cached: the handler reads it again
                value = form.get(CSRF_FIELD)
                sent = value if isinstance(value, str) else None
            if sent is None or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
                return await refuse(request, "bad-csrf")
        request[SESSION_KEY] = session
        return await handler(request)

    return middleware
