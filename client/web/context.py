"""What every page handler shares: the application state, the templates, the nav.

:data:`WEB` is the typed key of :class:`WebState` on the application; :func:`render`
draws a template with what every page has (the nav bar, the CSRF token for forms and
htmx, who reads). The nav lists :data:`NAV` entries whose route exists, so a page group
appears in it by naming its main route.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import jinja2
from aiohttp import web

from client.errors import IdentityNotFoundError
from client.session import Session
from client.web.media import MediaState
from client.web.render import LINK_REL, iso_time, post_html, relative_time, short_did, short_id
from client.web.security import CSRF_FIELD, SESSION_KEY, Guard

__all__ = ["NAV", "WEB", "NavItem", "WebState", "nav", "render", "templates"]

HERE: Final = Path(__file__).parent

#: The nav bar: (route name, label). An entry shows once a page group adds that route.
NAV: Final = (
    ("home", "Home"),
    ("compose", "Compose"),
    ("notifications", "Notifications"),
    ("search", "Search"),
    ("moderation", "Moderation"),
    ("nodes", "Nodes"),
    ("identities", "Identities"),
)


@dataclass(slots=True)
class WebState:
    """Everything the handlers share: the home's reads, the guard, the templates."""

    reads: Session
    guard: Guard
    templates: jinja2.Environment
    #: Live streams (Server-Sent Events) to end when the server stops.
    streams: set[asyncio.Task[Any]] = field(default_factory=set)
    #: ``murmur --passphrase-file PATH web``: where an action that needs a passphrase
    #: left blank in its form reads it (else ``$MURMUR_PASSPHRASE``; spec 0007
    #: #web-passphrase). Read at each use, never kept.
    passphrase_file: str | None = None
    #: Posts' images: the claims drawn in pages, the verified bytes kept (``/media/``).
    media: MediaState = field(default_factory=MediaState)


WEB: Final = web.AppKey("murmur.web", WebState)


def templates() -> jinja2.Environment:
    """The page templates; autoescape is on for every template, whatever its name."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(LINK_REL=LINK_REL, CSRF_FIELD=CSRF_FIELD, post_html=post_html)
    env.filters.update(ago=relative_time, iso=iso_time, short_id=short_id, short_did=short_did)
    return env


@dataclass(frozen=True, slots=True)
class NavItem:
    name: str
    label: str
    href: str
    current: bool


def nav(request: web.Request) -> list[NavItem]:
    """The nav entries whose page exists, the current one marked."""
    out: list[NavItem] = []
    routes = request.app.router.named_resources()
    current = request.match_info.route.name
    for name, label in NAV:
        resource = routes.get(name)
        if resource is not None:
            href = resource.url_for().path
            out.append(NavItem(name=name, label=label, href=href, current=current == name))
    return out


def render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    """``template`` with the context every page has: the nav, the CSRF token, who reads.
    A visitor without a session (the 403 page) gets neither nav nor name."""
    state = request.app[WEB]
    session = request.get(SESSION_KEY)
    signed_in = session is not None
    try:
        who = state.reads.stored_identity() if signed_in else None
    except IdentityNotFoundError:
        who = None
    html = state.templates.get_template(template).render(
        nav=nav(request) if signed_in else [],
        csrf=session.csrf if session is not None else "",
        me=None if who is None else who.did,
        me_name=None if who is None else who.name,
        path=request.path,
        **context,
    )
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
