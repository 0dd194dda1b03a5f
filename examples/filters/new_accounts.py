"""Hide (or warn about) posts from accounts your nodes have known only briefly (spec
0006 #account-age).

Add it with::

    murmur filters add ./examples/filters/new_accounts.py:NewAccounts --param days=7
    murmur filters add ./examples/filters/new_accounts.py:NewAccounts --param days=2 \\
        --param action=warn --param unknown=badge

``item.account_age_ms`` is how long the reader's nodes have held events of the author:
the client asks each node for the time it first stored one (``first_seen_ms``, spec
0004 #author-stats) and takes the earliest. A node's clock is its own word and a node
that joined late sees everyone as new, so this is "new to my nodes", not a birth
date. ``item.author_first_ts`` is the author's own claim (the oldest ``ts`` they
signed): anyone can backdate it, so it is not used here. People you follow and your
own posts are never judged.
"""

from __future__ import annotations

from client.moderation import Action, Decision, Item

DAY_MS = 86_400_000


class NewAccounts:
    """``action`` (hide) on posts of authors younger than ``days`` on your nodes;
    ``unknown`` (none, or badge/warn/hide) when no node said how old the author is."""

    name = "new-accounts"
    #: The client fetches the account ages for filters that say they read them (a
    #: custom filter always gets them).
    uses_account_age = True

    def __init__(self, days: float | str = 7, action: str = "hide", unknown: str = "none") -> None:
        self.min_age_ms = float(days) * DAY_MS
        if self.min_age_ms < 0:
            raise ValueError("new-accounts: days must be 0 or more")
        self.action = Action(action)
        self.unknown = None if unknown == "none" else Action(unknown)
        if Action.ALLOW in (self.action, self.unknown):
            raise ValueError("new-accounts: actions are badge, warn or hide (unknown: also none)")

    def check(self, item: Item) -> Decision | None:
        if item.mine or item.author in item.follows:
            return None
        age = item.account_age_ms
        if age is None:
            if self.unknown is None:
                return None
            return Decision(action=self.unknown, reason="account age unknown", source=self.name)
        if age >= self.min_age_ms:
            return None
        days = age / DAY_MS
        shown = f"{days:.1f} days" if days >= 1 else f"{age / 3_600_000:.1f} hours"
        return Decision(
            action=self.action, reason=f"new account (known for {shown})", source=self.name
        )
