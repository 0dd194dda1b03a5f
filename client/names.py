"""How the client names people, events and times, for every face (spec 0007 #own-name,
#terminal-safety).

One rule everywhere: the reader's petname for a did (``@bob``), else the latest profile
name, marked with ``~`` (anyone can claim any display name), else a short did. Event ids
are shown as their first :data:`SHORT_ID` hex characters (spec 0007 #short-ids) and
times relative to now ("3m ago").

:class:`Names` gives plain strings with every invisible character escaped
(:func:`client.textsafety.safe_name`); each face adds only its own escaping and markup:
the CLI appends the look-alike marker to a profile name (``⚠mixed-script``), the web
shows :meth:`Names.flags` as badges and leaves HTML escaping to its templates.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Final

from client.config import ClientConfig
from client.textsafety import name_flags, safe_line, safe_name
from protocol.events import Event

__all__ = ["SHORT_ID", "Names", "relative_time", "short_did", "short_id"]

#: Hex characters of a shown event id (spec 0007 #short-ids).
SHORT_ID: Final = 12


def short_id(eid: bytes | str) -> str:
    return (eid.hex() if isinstance(eid, bytes) else eid)[:SHORT_ID]


def short_did(did: str) -> str:
    key = did.removeprefix("did:key:").removeprefix("did:murmur:")
    return f"{key[:8]}…{key[-6:]}" if len(key) > 16 else key


#: (seconds, unit) from the largest; a month is 30 days, a year 365.
_UNITS: Final = ((86400 * 365, "y"), (86400 * 30, "mo"), (86400, "d"), (3600, "h"), (60, "m"))


def relative_time(ts_ms: int, now_ms: int | None = None) -> str:
    """``ts_ms`` relative to now: "just now" within 10 s, else "3m ago" / "in 2d"."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    delta = (now - ts_ms) // 1000
    future, delta = delta < 0, abs(delta)
    if delta < 10:
        return "just now"
    amount = f"{delta}s"
    for size, unit in _UNITS:
        if delta >= size:
            amount = f"{delta // size}{unit}"
            break
    return f"in {amount}" if future else f"{amount} ago"


class Names:
    """Display names: petname > ``~``profile name > short did.

    :meth:`display` is escaped (one line, invisible characters shown); a face may
    override :meth:`shown_profile_name` to mark look-alike names its own way.
    :meth:`display_raw` is the exact form (for ``--json``).
    """

    def __init__(self, config: ClientConfig, profiles: Mapping[str, Event] | None = None) -> None:
        self.config = config
        self.profiles = dict(profiles or {})

    def profile_name(self, did: str) -> str | None:
        p = self.profiles.get(did)
        name = p.body.get("name") if p is not None and p.body is not None else None
        return name if isinstance(name, str) and name.strip() else None

    def alias(self, did: str) -> str | None:
        return self.config.alias_of(did)

    def shown_profile_name(self, name: str) -> str:
        """A profile name as this face shows it (here: escaped, no marker)."""
        return safe_name(name)

    def display(self, did: str) -> str:
        alias = self.config.alias_of(did)
        if alias is not None:
            return f"@{safe_name(alias)}"
        name = self.profile_name(did)
        return f"~{self.shown_profile_name(name.strip())}" if name is not None else short_did(did)

    def display_raw(self, did: str) -> str:
        """As :meth:`display`, with the exact characters and no marker."""
        alias = self.config.alias_of(did)
        if alias is not None:
            return f"@{alias}"
        name = self.profile_name(did)
        return f"~{name.strip()}" if name is not None else short_did(did)

    def flags(self, did: str) -> tuple[str, ...]:
        """Look-alike flags of the profile name shown (none for a petname)."""
        if self.config.alias_of(did) is not None:
            return ()
        name = self.profile_name(did)
        return name_flags(name.strip()) if name is not None else ()

    def source(self, source: str) -> str:
        """A moderation decision's source (spec 0006 §explain): a name for a did,
        ``list NAME/list`` for a list, else the source escaped."""
        if source.startswith("did:"):
            return self.display(source)
        if source.startswith("list:"):
            did, _, name = source.removeprefix("list:").partition("/")
            return f"list {self.display(did)}/{safe_name(name)}"
        return safe_line(source)
