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

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final
from urllib.parse import urlsplit

from markupsafe import Markup, escape

from client.config import ClientConfig
from client.facets import segments
from client.textsafety import name_flags, safe_line, safe_name, safe_text
from protocol import kinds
from protocol.errors import BadFieldError
from protocol.events import Event
from protocol.facets import LINK, MENTION, Facet, post_facets

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
SHORT_ID: Final = 12


def short_id(eid: bytes | str) -> str:
    return (eid.hex() if isinstance(eid, bytes) else eid)[:SHORT_ID]


def short_did(did: str) -> str:
    key = did.removeprefix("did:key:").removeprefix("did:murmur:")
    return f"{key[:8]}…{key[-6:]}" if len(key) > 16 else key


def relative_time(ts_ms: int, now_ms: int | None = None) -> str:
    now = int(time.time() * 1000) if now_ms is None else now_ms
    delta = (now - ts_ms) // 1000
    future, delta = delta < 0, abs(delta)
    if delta < 10:
        return "just now"
    for size, unit in ((31536000, "y"), (2592000, "mo"), (86400, "d"), (3600, "h"), (60, "m")):
        if delta >= size:
            amount = f"{delta // size}{unit}"
            return f"in {amount}" if future else f"{amount} ago"
    return f"in {delta}s" if future else f"{delta}s ago"


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


class Names:
    """Names as the reader sees them: petname > ``~``profile name > short did (the
    CLI's rule, spec 0007 #own-name). Strings, escaped by the templates."""

    def __init__(self, config: ClientConfig, profiles: Mapping[str, Event]) -> None:
        self.config = config
        self.profiles = dict(profiles)

    def profile_name(self, did: str) -> str | None:
        p = self.profiles.get(did)
        name = p.body.get("name") if p is not None and p.body is not None else None
        return name if isinstance(name, str) and name.strip() else None

    def display(self, did: str) -> str:
        alias = self.config.alias_of(did)
        if alias is not None:
            return f"@{safe_name(alias)}"
        name = self.profile_name(did)
        return f"~{safe_name(name.strip())}" if name is not None else short_did(did)

    def flags(self, did: str) -> tuple[str, ...]:
        """Look-alike flags of the profile name shown (none for a petname)."""
        if self.config.alias_of(did) is not None:
            return ()
        name = self.profile_name(did)
        return name_flags(name.strip()) if name is not None else ()

    def alias(self, did: str) -> str | None:
        return self.config.alias_of(did)


def author_href(did: str) -> str:
    return f"/author/{did}"


def _facets_of(e: Event) -> list[Facet]:
    if e.kind != kinds.POST or e.body is None:
        return []
    try:
        return post_facets(e.body)
    except BadFieldError:  # never for a verified event; a renderer still does not crash
        return []


def _link(href: str, inner: Markup) -> Markup:
    return Markup('<a href="{}" rel="{}" class="ext">{}</a>').format(href, LINK_REL, inner)


def post_html(e: Event, names: Names) -> Markup:
    """A post's text as inert HTML, each facet shown as what it names (see module doc).

    Newlines are kept as characters (the stylesheet shows them with ``pre-wrap``)."""
    raw = (e.body or {}).get("text")
    text = raw if isinstance(raw, str) else ("" if raw is None else str(raw))
    out: list[Markup] = []
    for seg in segments(text, _facets_of(e)):
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
    """A decision's source for people: a name for a did, ``list NAME/list`` for a list."""
    if source.startswith("did:"):
        return names.display(source)
    if source.startswith("list:"):
        did, _, name = source.removeprefix("list:").partition("/")
        return f"list {names.display(did)}/{safe_name(name)}"
    return safe_line(source)
