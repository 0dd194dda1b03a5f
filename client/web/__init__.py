"""``murmur web``: the reference client's web face (issue #17, spec 0007 #web-client).

A face over the client library, like the CLI, never importing from it: pages call
:mod:`client.views`, :mod:`client.moderation` and :class:`client.session.Session`
and draw server-side HTML. The layout (see ``README.md`` beside this file):

- :mod:`client.web.app`: ``make_app(home, ...)`` → the aiohttp application; ``run()``;
- :mod:`client.web.security`: Host check, token → session cookie, Origin + CSRF,
  CSP and the other headers;
- :mod:`client.web.context`: typed app state, ``render()``, the nav bar;
- :mod:`client.web.render`: other people's text as inert HTML (facets, names, links);
- :mod:`client.web.pages`: one module per page group, each with ``setup(app)``;
- ``templates/`` (jinja2, autoescape on) and ``static/`` (``app.css``, ``app.js``,
  ``vendor/htmx.min.js`` pinned and vendored by ``scripts/vendor-htmx.sh``).

This package's ``__init__`` imports nothing, so ``murmur`` starts as fast as before.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT"]

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8700
