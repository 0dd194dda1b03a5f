"""What a labeler labels: TOML rules or a Python ``label(event)`` function (spec 0006).

A TOML rules file::

    [[rules]]
    label = "spam"                    # the label value ([a-z0-9-])
    keywords = ["buy now"]            # case-insensitive substrings (any of them), and/or
    regex = "(?i)crypto.*giveaway"    # a Python regular expression (re.search)
    kinds = ["post"]                  # kinds the rule looks at (default: post)
    target = "event"                  # "event" labels the event, "author" its author

A rule matches when any keyword or its regex is found in a post's ``text`` (or a
profile's ``name`` and ``bio``). A Python rules file (``*.py``) defines
``label(event: protocol.events.Event)`` returning an iterable whose items are a value
(``"spam"``: label this event) or a ``(subject, value)`` pair, the subject being a did,
a 32-byte event id or its 64-hex form. A Python rule that raises or returns something
else labels nothing for that event and is logged; the labeler keeps running.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.errors import FilterLoadError, KeystoreError
from client.files import read_toml
from client.moderation.config import load_user_module
from protocol import kinds
from protocol.events import Event
from protocol.identity import did_method
from protocol.kinds import is_label_value

__all__ = ["MAX_RULES_BYTES", "Rule", "Rules", "Subject", "subject_key"]

log = logging.getLogger("murmur.client.labeler")

#: Largest TOML rules file read.
MAX_RULES_BYTES = 1024 * 1024

Subject = str | bytes  # a did, or a 32-byte event id


@dataclass(frozen=True, slots=True)
class Rule:
    """One TOML rule; it matches when any keyword or the regex is found in the text."""

    label: str
    keywords: tuple[str, ...] = ()
    regex: re.Pattern[str] | None = None
    kinds: frozenset[str] = frozenset({kinds.POST})
    target: str = "event"

    def matches(self, event: Event) -> bool:
        if event.kind not in self.kinds or event.body is None:
            return False
        text = _text_of(event)
        folded = text.casefold()
        if any(k in folded for k in self.keywords):
            return True
        return self.regex is not None and self.regex.search(text) is not None


def _text_of(event: Event) -> str:
    body = event.body or {}
    parts = [body.get("text"), body.get("name"), body.get("bio")]
    return "\n".join(p for p in parts if isinstance(p, str))


class Rules:
    """What to label: TOML rules or a Python ``label(event)`` function."""

    def __init__(
        self, rules: Sequence[Rule] = (), fn: Callable[[Event], Any] | None = None
    ) -> None:
        self.rules = list(rules)
        self.fn = fn

    @classmethod
    def load(cls, path: Path) -> Rules:
        if not path.is_file():
            raise FilterLoadError(f"rules file {path} does not exist")
        if path.suffix == ".py":
            return cls(fn=_load_python(path))
        if path.stat().st_size > MAX_RULES_BYTES:
            raise FilterLoadError(f"rules file {path} is larger than {MAX_RULES_BYTES} bytes")
        try:
            doc = read_toml(path, "a TOML rules file")
        except KeystoreError as exc:
            raise FilterLoadError(exc.message) from None
        raw = doc.get("rules")
        if not isinstance(raw, list) or not raw:
            raise FilterLoadError(f"{path}: expected one or more [[rules]] tables")
        return cls(rules=[_rule_from(r, f"{path}: rules[{i}]") for i, r in enumerate(raw)])

    def apply(self, event: Event) -> list[tuple[Subject, str]]:
        """(subject, value) pairs for ``event``; a crashing Python rule labels nothing."""
        out: list[tuple[Subject, str]] = []
        for rule in self.rules:
            if rule.matches(event):
                out.append((event.author if rule.target == "author" else event.id, rule.label))
        if self.fn is not None:
            try:
                found = self.fn(event)
                for item in found or ():
                    out.append(_pair(event, item))
            except Exception as exc:  # someone else's code: skip the event, keep running
                log.warning("rules raised on event %s: %r", event.id_hex[:12], exc)
        return list(dict.fromkeys(out))


def _rule_from(raw: object, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise FilterLoadError(f"{where} must be a table")
    unknown = set(raw) - {"label", "keywords", "regex", "kinds", "target"}
    if unknown:
        raise FilterLoadError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    label = raw.get("label")
    if not is_label_value(label):
        raise FilterLoadError(f"{where}: 'label' must be a label value ([a-z0-9-], 1-128 bytes)")
    words = raw.get("keywords", [])
    if not isinstance(words, list) or not all(isinstance(w, str) and w for w in words):
        raise FilterLoadError(f"{where}: 'keywords' must be a list of non-empty strings")
    pattern = raw.get("regex")
    try:
        regex = re.compile(pattern) if isinstance(pattern, str) else None
    except re.error as exc:
        raise FilterLoadError(f"{where}: bad regex: {exc}") from None
    if pattern is not None and regex is None:
        raise FilterLoadError(f"{where}: 'regex' must be a string")
    if not words and regex is None:
        raise FilterLoadError(f"{where}: give 'keywords' and/or 'regex'")
    kinds_ = raw.get("kinds", [kinds.POST])
    if not isinstance(kinds_, list) or not all(isinstance(k, str) for k in kinds_) or not kinds_:
        raise FilterLoadError(f"{where}: 'kinds' must be a non-empty list of kinds")
    target = raw.get("target", "event")
    if target not in ("event", "author"):
        raise FilterLoadError(f'{where}: \'target\' must be "event" or "author"')
    return Rule(
        label=str(label),
        keywords=tuple(w.casefold() for w in words),
        regex=regex,
        kinds=frozenset(kinds_),
        target=str(target),
    )


def _load_python(path: Path) -> Callable[[Event], Any]:
    module = load_user_module(path, prefix="murmur_labeler_rules")
    fn = getattr(module, "label", None)
    if not callable(fn):
        raise FilterLoadError(f"{path} defines no function label(event)")
    return fn  # type: ignore[no-any-return]


def _pair(event: Event, item: object) -> tuple[Subject, str]:
    subject: object
    if isinstance(item, str):
        subject, val = event.id, item
    elif isinstance(item, tuple) and len(item) == 2:
        subject, val = item
    else:
        raise TypeError(f"a rule result is a value or (subject, value), not {item!r}")
    if isinstance(subject, str) and re.fullmatch(r"[0-9a-f]{64}", subject):
        subject = bytes.fromhex(subject)
    if isinstance(subject, str):
        did_method(subject)  # raises InvalidDidError (a ProtocolError)
    elif not isinstance(subject, bytes) or len(subject) != 32:
        raise TypeError(f"a label subject is a did or a 32-byte event id, not {subject!r}")
    if not is_label_value(val):
        raise TypeError(f"{val!r} is not a label value ([a-z0-9-], 1-128 bytes)")
    return subject, str(val)


def subject_key(subject: Subject) -> str:
    return subject.hex() if isinstance(subject, bytes) else subject
