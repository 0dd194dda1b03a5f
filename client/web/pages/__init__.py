"""The page groups of ``murmur web``: one module a group, each with ``setup(app)``.

To add a page group: write ``client/web/pages/NAME.py`` with a ``setup(app)`` that
adds its routes (name the main route as in :data:`client.web.context.NAV` to put it
in the nav bar), templates under ``client/web/templates/`` extending ``base.html``,
and add the module to :data:`GROUPS`. Handlers read through
``request.app[WEB].reads`` (a :class:`client.session.Session`) and draw with
:func:`client.web.context.render`; a state-changing route is a POST (the guard checks
its Origin and CSRF token: forms carry ``{{ csrf_input() }}`` from ``_macros.html``).
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from client.web.pages import (
    author,
    compose,
    feeds,
    identities,
    media,
    moderation,
    nodes,
    notifications,
    people,
    session,
    thread,
    timeline,
)

__all__ = ["GROUPS", "setup"]

#: Page groups, in registration order.
GROUPS: Final = (
    timeline,
    thread,
    author,
    compose,
    people,
    session,
    nodes,
    identities,
    notifications,
    moderation,
    media,
    feeds,
)


def setup(app: web.Application) -> None:
    for group in GROUPS:
        group.setup(app)
