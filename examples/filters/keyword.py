"""Two keyword filters: the smallest useful Murmur filters (spec 0006 §6.9).

Add them with::

    murmur filters add ./examples/filters/keyword.py:KeywordFilter --param words=rust,python
    murmur filters add ./examples/filters/keyword.py:ShoutingFilter --param percent=80

A filter is a class built as ``Class(**params)`` with a ``name`` and a ``check(item)``
that returns a :class:`Decision` or ``None``. Both filters here are synchronous and
pure: everything they need is on the item, so they cost microseconds per post.
"""

from __future__ import annotations

import re

from client.moderation import Action, Decision, Item


def _words(value: str | list[str]) -> list[str]:
    # `--param words=a,b` gives the text "a,b"; filters.toml may give a real list.
    items = value.split(",") if isinstance(value, str) else value
    return [w.strip().lower() for w in items if w.strip()]


class KeywordFilter:
    """Badge (or warn, or hide) posts that mention one of ``words``, as whole words."""

    name = "keyword"

    def __init__(self, words: str | list[str], action: str = "badge") -> None:
        self.words = _words(words)
        if not self.words:
            raise ValueError("keyword: give at least one word (--param words=a,b)")
        self.action = Action(action)  # ValueError on a typo: reported as filter-load
        if self.action is Action.ALLOW:
            raise ValueError("keyword: action must be badge, warn or hide")
        # One compiled pattern, so check() is a single regex search.
        alternatives = "|".join(re.escape(w) for w in self.words)
        self._pattern = re.compile(rf"\b({alternatives})\b", re.IGNORECASE)

    def check(self, item: Item) -> Decision | None:
        match = self._pattern.search(item.text)
        if match is None:
            return None
        reason = f"mentions {match.group(1).lower()!r}"
        return Decision(action=self.action, reason=reason, source=self.name)


class ShoutingFilter:
    """Warn on posts that are mostly CAPITALS: at least ``percent`` % of their letters."""

    name = "shouting"

    def __init__(self, percent: int | str = 70, min_letters: int | str = 12) -> None:
        # `--param percent=80` and filters.toml give an integer; accept "80" too.
        self.percent = int(percent)
        self.min_letters = int(min_letters)
        if not 0 < self.percent <= 100 or self.min_letters < 1:
            raise ValueError("shouting: percent must be 1-100 and min_letters >= 1")

    def check(self, item: Item) -> Decision | None:
        letters = [c for c in item.text if c.isalpha()]
        if len(letters) < self.min_letters:  # "OK" or "LOL" is not shouting
            return None
        upper = sum(1 for c in letters if c.isupper())
        share = 100 * upper // len(letters)
        if share < self.percent:
            return None
        return Decision(action=Action.WARN, reason=f"mostly capitals ({share}%)", source=self.name)
