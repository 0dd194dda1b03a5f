"""``no-links``: an example Murmur filter shipped as a package (spec 0006 §6.9).

Installed, it is found by its entry point ``no-links`` in the group
``murmur.filters``, so no path is needed::

    pip install ./examples/filters/murmur-filter-example
    murmur filters add entry:no-links --param allow_domains=example.org,murmur.dev

It warns on posts with a web link, except links to ``allow_domains`` (and their
subdomains). ``action`` may be ``badge``, ``warn`` (default) or ``hide``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from client.moderation import Action, Decision, Item

__all__ = ["NoLinks"]

# Good enough for a filter, not a URL parser: a scheme or "www.", then the host.
_LINK = re.compile(r"(?:https?://|www\.)([a-z0-9.-]+)", re.IGNORECASE)


class NoLinks:
    """Warn on posts that link outside ``allow_domains``."""

    name = "no-links"

    def __init__(self, action: str = "warn", allow_domains: str | Sequence[str] = ()) -> None:
        self.action = Action(action)
        if self.action is Action.ALLOW:
            raise ValueError("no-links: action must be badge, warn or hide")
        # `--param allow_domains=a,b` gives the text "a,b"; filters.toml may give a list.
        items = allow_domains.split(",") if isinstance(allow_domains, str) else allow_domains
        self.allow_domains = tuple(
            d.strip().lower().removeprefix("www.") for d in items if d.strip()
        )

    def _allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".").removeprefix("www.")
        return any(host == d or host.endswith("." + d) for d in self.allow_domains)

    def check(self, item: Item) -> Decision | None:
        hosts = [m.group(1) for m in _LINK.finditer(item.text)]
        outside = sorted({h.lower() for h in hosts if not self._allowed(h)})
        if not outside:
            return None
        return Decision(
            action=self.action, reason=f"links to {', '.join(outside)}", source=self.name
        )
