"""Other people's text as inert HTML (spec 0007 #web-client, #facets, #terminal-safety).

Everything a peer chose reaches the page through two layers: first
:mod:`client.textsafety` (controls, bidi overrides and isolates, zero-width and other
invisible characters become visible escapes like ``\\u202e``, so nothing can reorder
or hide what the client prints), then HTML escaping (jinja2's autoescape, or
:func:`markupsafe.escape` here). A post's text is cut by :func:`client.facets.segments`
(which trusts no offset) and each facet is shown as what it names, as the CLI does:

- a mention: the reader's own name for its did (petname, else ``~profile name`` with
  its look-alike flags, else a short did), linking to the author page, whatever the
  covered text says;
- a link: a real ``<a>`` only for an ``http``/``https`` URL with a host, with
  ``rel="noopener noreferrer nofollow"``; written text that says something else than
  the target is followed by the target; any other scheme (``javascript:``, ``data:``)
  is shown as plain text;
- a hashtag: as written, with its value when the text says something else.

Everything returned is :class:`markupsafe.Markup` built from escaped pieces.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final
from urllib.parse import urlsplit

from markupsafe import Markup, escape

from client.facets import post_segments
from client.names import Names, relative_time, short_did, short_id
from client.textsafety import safe_line, safe_text
from protocol.events import Event
from protocol.facets import LINK, MENTION

__all__ = [
    "LINK_REL",
    "Names",
    "iso_time",
    "post_html",
    "relative_time",
    "safe_href",
    "short_did",
    "short_id",
    "source_text",
]

#: Every link to elsewhere: no window.opener, no Referer, no endorsement.
LINK_REL: Final = "noopener noreferrer nofollow"


def iso_time(ts_ms: int) -> str:
    """For ``<time datetime>``; an out-of-range timestamp gives an empty string."""
    try:
        return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return ""


def safe_href(url: str) -> str | None:
    """``url`` when a page may link to it: ``http``/``https`` with a host, and no
    character that is not printable ASCII (a control, a space or a bidi mark in a URL
    only serves to make it look like another); else None."""
    if not url.isascii() or not url.isprintable() or " " in url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return url


def author_href(did: str) -> str:
    return f"/author/{did}"


def _link(href: str, inner: Markup) -> Markup:
    return Markup('<a href="{}" rel="{}" class="ext">{}</a>').format(href, LINK_REL, inner)


def post_html(e: Event, names: Names) -> Markup:
    """A post's text as inert HTML, each facet shown as what it names (see module doc).

    Newlines are kept as characters (the stylesheet shows them with ``pre-wrap``)."""
    out: list[Markup] = []
    for seg in post_segments(e):
        f = seg.facet
        shown = escape(safe_text(seg.text))
        if f is None:
            out.append(shown)
        elif f.type == MENTION:
            out.append(
                Markup('<a href="{}" class="mention">{}</a>').format(
                    author_href(f.value), names.display(f.value)
                )
            )
        elif f.type == LINK:
            href = safe_href(f.value)
            target = Markup(' <span class="link-target">[→ {}]</span>').format(safe_line(f.value))
            if href is None:  # never a live link: the text, and what it claims to point at
                out.append(Markup('<span class="dead-link">{}</span>').format(shown) + target)
            elif seg.text == f.value:
                out.append(_link(href, shown))
            else:
                out.append(_link(href, shown) + target)
        else:
            written = seg.text == "#" + f.value
            tag = Markup('<span class="tag">{}</span>').format(shown)
            out.append(tag if written else tag + Markup(" [#{}]").format(safe_line(f.value)))
    return Markup("").join(out)


def source_text(source: str, names: Names) -> str:
    """A decision's source for people (:meth:`client.names.Names.source`)."""
    return names.source(source)
