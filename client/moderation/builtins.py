"""The built-in filters (spec 0006 §builtins), by the type names ``filters.toml`` uses.

Each is built as ``Class(**params)`` and checks its parameters there: a bad or unknown
parameter is a :class:`~client.errors.FilterLoadError` that says what to write instead.
List parameters take a list of strings or one comma-separated string (what
``murmur filters add --param words=a,b`` passes). Filters are sync and pure: they look
only at the :class:`~client.moderation.core.Item`; the one that needs a fetch (``list``)
does it once per view in ``prepare(env)``.

Embedded items are the pipeline's business: every filter also sees what an item
quotes, reposts or replies to, and a decision there applies to the carrier. That is
how ``block-authors`` hides a post that quotes, reposts or answers a blocked author.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from client.errors import FilterError, FilterLoadError
from client.moderation.config import LabelerSub, check_label_action
from client.moderation.core import Action, Decision, Env, Item, Label, SourceKind, ViewContext
from protocol import kinds
from protocol.errors import InvalidDidError
from protocol.events import Event
from protocol.identity import did_method

__all__ = [
    "BUILTINS",
    "Allow",
    "BlockAuthors",
    "Labelers",
    "Languages",
    "MuteAuthors",
    "MuteWords",
    "RepliesFromNonFollows",
    "SelfLabels",
    "SubscribedList",
]

#: Bounds on parameters (a filter runs on every item of every view).
MAX_WORDS = 1000
MAX_WORD_CHARS = 200
MAX_REGEXES = 200
MAX_REGEX_CHARS = 500
MAX_DIDS = 10_000
MAX_EVENT_IDS = 10_000
MAX_LANG_PREFIXES = 100
#: How far up a reply chain ``replies-from-non-follows`` looks for the thread root.
MAX_REPLY_DEPTH = 1000

_YOU = "you"
_LANG_PREFIX_RE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{1,8})*\Z")
_HEX_ID_RE = re.compile(r"[0-9a-f]{64}\Z")

# -- parameter parsing ----------------------------------------------------------------


def _reject_unknown(type_: str, unknown: Mapping[str, Any], known: Iterable[str]) -> None:
    if unknown:
        raise FilterLoadError(
            f"{type_}: unknown parameter(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(known)})"
        )


def _split_commas(text: str, *, nested: bool = False) -> list[str]:
    """``"a, b"`` → ``["a", "b"]``; with ``nested``, commas inside (), [], {} or after
    a backslash do not split (so ``"x{1,3}, y"`` is two regexes)."""
    if not nested:
        return text.split(",")
    parts: list[str] = []
    current: list[str] = []
    depth, escaped = 0, False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def _strings(
    type_: str,
    key: str,
    value: object,
    *,
    max_items: int,
    max_chars: int = 1000,
    nested: bool = False,
) -> list[str]:
    """A list parameter: a list of strings or one comma-separated string; blanks dropped."""
    if value is None:
        return []
    if isinstance(value, str):
        raw = _split_commas(value, nested=nested)
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        raw = list(value)
    else:
        raise FilterLoadError(
            f"{type_}: {key} must be a list of strings or one comma-separated string"
        )
    out = list(dict.fromkeys(s.strip() for s in raw if s.strip()))
    if len(out) > max_items:
        raise FilterLoadError(f"{type_}: {key} has {len(out)} entries; at most {max_items}")
    for s in out:
        if len(s) > max_chars:
            raise FilterLoadError(f"{type_}: {key} entry {s[:40]!r}... is over {max_chars} chars")
    return out


def _dids(type_: str, key: str, value: object) -> frozenset[str]:
    out = _strings(type_, key, value, max_items=MAX_DIDS)
    for did in out:
        try:
            did_method(did)
        except InvalidDidError as exc:
            raise FilterLoadError(
                f"{type_}: {key}: {did!r} is not a did ({exc.message})"
            ) from None
    return frozenset(out)


def _bool(type_: str, key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "0", "off"):
        return False
    raise FilterLoadError(f"{type_}: {key} must be true or false, not {value!r}")


def _action(type_: str, value: object, allowed: tuple[Action, ...]) -> Action:
    names = [a.value for a in allowed]
    if not isinstance(value, str) or value not in names:
        raise FilterLoadError(f"{type_}: action must be one of {', '.join(names)}, not {value!r}")
    return Action(value)


def _expires(type_: str, value: object) -> int | None:
    """None, ms since the epoch, or an ISO 8601 date/datetime (naive means UTC)."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise FilterLoadError(f"{type_}: expires must not be negative")
        return value
    when: dt.datetime | None = None
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, dt.date):
        when = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            when = None
    if when is None:
        raise FilterLoadError(
            f"{type_}: expires must be ms since the epoch or an ISO 8601 date/datetime "
            f"(2025-06-01 or 2025-06-01T12:00:00Z), not {value!r}"
        )
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def _now(item: Item) -> int:
    return item.now_ms or int(time.time() * 1000)


def _expired(expires: int | None, item: Item) -> bool:
    return expires is not None and _now(item) >= expires


# -- filters --------------------------------------------------------------------------


class MuteWords:
    """Hide (or warn on, or badge) posts whose text has a muted word, phrase or
    pattern, or tag (``action``: hide, warn or badge; a badge shows the post with the
    muted term named on it).

    Words match case-insensitively as whole words (Unicode ``\\w``; a phrase matches
    across any whitespace) in the text, and as whole tags. ``regexes`` are searched
    case-insensitively in the text and in each tag. ``tags`` match tags only; a leading
    ``#`` is ignored on both sides. After ``expires`` the filter does nothing; with
    ``exclude_follows`` people the reader follows are not muted.
    """

    name = "mute-words"

    def __init__(
        self,
        *,
        words: object = None,
        regexes: object = None,
        tags: object = None,
        expires: object = None,
        exclude_follows: object = False,
        action: object = "hide",
        **unknown: Any,
    ) -> None:
        t = self.name
        _reject_unknown(
            t, unknown, ("words", "regexes", "tags", "expires", "exclude_follows", "action")
        )
        self.words = _strings(t, "words", words, max_items=MAX_WORDS, max_chars=MAX_WORD_CHARS)
        self.regexes = _strings(
            t, "regexes", regexes, max_items=MAX_REGEXES, max_chars=MAX_REGEX_CHARS, nested=True
        )
        self.tags = _strings(t, "tags", tags, max_items=MAX_WORDS, max_chars=MAX_WORD_CHARS)
        if not (self.words or self.regexes or self.tags):
            raise FilterLoadError(f"{t}: give at least one of words, regexes, tags")
        self.expires = _expires(t, expires)
        self.exclude_follows = _bool(t, "exclude_follows", exclude_follows)
        self.action = _action(t, action, (Action.HIDE, Action.WARN, Action.BADGE))
        self._words_re: re.Pattern[str] | None = None
        if self.words:
            groups = "|".join(f"(?P<w{i}>{_word_pattern(w)})" for i, w in enumerate(self.words))
            self._words_re = re.compile(groups, re.IGNORECASE)
        self._word_tags = {_tag_key(w): w for w in self.words}
        self._tags = {_tag_key(g): g for g in self.tags}
        self._regexes: list[tuple[str, re.Pattern[str]]] = []
        for pattern in self.regexes:
            try:
                self._regexes.append((pattern, re.compile(pattern, re.IGNORECASE)))
            except re.error as exc:
                raise FilterLoadError(f"{t}: regex {pattern!r} does not compile: {exc}") from None

    def check(self, item: Item) -> Decision | None:
        if _expired(self.expires, item):
            return None
        if self.exclude_follows and item.author in item.follows:
            return None
        reason = self._match(item)
        if reason is None:
            return None
        return Decision(self.action, reason, _YOU, SourceKind.USER)

    def _match(self, item: Item) -> str | None:
        text = item.text
        if self._words_re is not None and text:
            m = self._words_re.search(text)
            if m is not None and m.lastgroup is not None:
                return f'muted word "{self.words[int(m.lastgroup[1:])]}"'
        for tag in item.tags:
            key = _tag_key(tag)
            if key in self._word_tags:
                return f'muted word "{self._word_tags[key]}"'
            if key in self._tags:
                return f'muted tag "#{self._tags[key].lstrip("#")}"'
        for pattern, compiled in self._regexes:
            if compiled.search(text) or any(compiled.search(t.lstrip("#")) for t in item.tags):
                return f"muted pattern /{pattern}/"
        return None


def _word_pattern(word: str) -> str:
    body = r"\s+".join(re.escape(part) for part in word.split())
    return rf"(?<!\w){body}(?!\w)"


def _tag_key(tag: str) -> str:
    return tag.strip().lstrip("#").casefold()


class MuteAuthors:
    """Hide (or warn on) everything by these authors, until ``expires`` if given."""

    name = "mute-authors"

    def __init__(
        self,
        *,
        dids: object = None,
        expires: object = None,
        action: object = "hide",
        **unknown: Any,
    ) -> None:
        _reject_unknown(self.name, unknown, ("dids", "expires", "action"))
        self.dids = _dids(self.name, "dids", dids)
        if not self.dids:
            raise FilterLoadError(f"{self.name}: dids must name at least one did")
        self.expires = _expires(self.name, expires)
        self.action = _action(self.name, action, (Action.HIDE, Action.WARN))

    def check(self, item: Item) -> Decision | None:
        if item.author not in self.dids or _expired(self.expires, item):
            return None
        return Decision(self.action, "muted author", _YOU, SourceKind.USER)


class BlockAuthors:
    """Hide everything by these authors and, through embeds, what quotes, reposts or
    replies to them."""

    name = "block-authors"

    def __init__(self, *, dids: object = None, **unknown: Any) -> None:
        _reject_unknown(self.name, unknown, ("dids",))
        self.dids = _dids(self.name, "dids", dids)
        if not self.dids:
            raise FilterLoadError(f"{self.name}: dids must name at least one did")

    def check(self, item: Item) -> Decision | None:
        if item.author not in self.dids:
            return None
        return Decision(Action.HIDE, "blocked author", _YOU, SourceKind.USER)


class SubscribedList:
    """Someone else's signed ``list`` (spec 0003 §3.10), followed by ``ref = "DID/NAME"``.

    ``prepare`` fetches the newest version each view, so a new version applies as
    soon as it is published. ``mute`` and ``block`` lists hide their members (a block
    list's decision also reaches what quotes, reposts or answers a member, through
    embeds); ``action`` overrides ``hide``. A ``curate`` list selects, it does not
    moderate: it has no effect here. A list that cannot be found does nothing.
    """

    name = "list"

    def __init__(self, *, ref: object = None, action: object = None, **unknown: Any) -> None:
        _reject_unknown(self.name, unknown, ("ref", "action"))
        if not isinstance(ref, str) or "/" not in ref:
            raise FilterLoadError(f'{self.name}: ref must be "DID/NAME", not {ref!r}')
        did, _, list_name = ref.strip().partition("/")
        try:
            did_method(did)
        except InvalidDidError as exc:
            raise FilterLoadError(
                f"{self.name}: ref: {did!r} is not a did ({exc.message})"
            ) from None
        if not list_name:
            raise FilterLoadError(f'{self.name}: ref must be "DID/NAME" with a list name')
        self.did, self.list_name = did, list_name
        self.action = (
            None
            if action is None
            else _action(self.name, action, (Action.HIDE, Action.WARN, Action.BADGE))
        )
        self.purpose: str | None = None
        self.members: frozenset[str] = frozenset()
        self.version: Event | None = None

    @property
    def source(self) -> str:
        return f"list:{self.did}/{self.list_name}"

    async def prepare(self, env: Env) -> None:
        self.purpose, self.members, self.version = None, frozenset(), None
        event = await env.latest_list(self.did, self.list_name)
        if event is None or event.body is None:
            return
        body = event.body
        if (
            event.author != self.did
            or event.kind != kinds.LIST
            or body.get("name") != self.list_name
        ):
            return  # not the list asked for: never trust it
        self.version = event
        self.purpose = body.get("purpose") if isinstance(body.get("purpose"), str) else None
        members = body.get("members")
        if isinstance(members, list):
            self.members = frozenset(m for m in members if isinstance(m, str))

    def check(self, item: Item) -> Decision | None:
        if self.purpose not in ("mute", "block") or item.author not in self.members:
            return None
        reason = f'in {self.purpose} list "{self.list_name}"'
        return Decision(self.action or Action.HIDE, reason, self.source, SourceKind.LIST)


class Labelers:
    """The reader's subscribed labelers: each label value → hide, warn, badge or ignore.

    ``item.labels`` holds only the active labels of subscribed labelers (the client
    resolved ``neg`` and ``exp`` before); a label on the author's did applies to all
    of their posts, one on an image's hash to every post embedding it. The most
    severe label wins; values a subscription does not name, or maps to ``ignore``, do
    nothing.
    """

    name = "labelers"

    def __init__(self, *, subs: object = None, **unknown: Any) -> None:
        _reject_unknown(self.name, unknown, ("subs",))
        if subs is None:
            subs = []
        if not isinstance(subs, list | tuple):
            raise FilterLoadError(f"{self.name}: subs must be a list of labeler subscriptions")
        self.subs: dict[str, LabelerSub] = {}
        for raw in subs:
            sub = _labeler_sub(self.name, raw)
            self.subs[sub.did] = sub

    def check(self, item: Item) -> Decision | None:
        best: Decision | None = None
        for label in item.labels:
            decision = self._decide(item, label)
            if decision is not None and (
                best is None or decision.action.severity > best.action.severity
            ):
                best = decision
        return best

    def _decide(self, item: Item, label: Label) -> Decision | None:
        sub = self.subs.get(label.labeler)
        if sub is None or (item.now_ms and not label.active(item.now_ms)):
            return None
        if label.on_blob:  # spec 0006 #images: a label on a picture, on every post of it
            if label.subject not in item.image_hashes:
                return None
            reason = f'image labeled "{label.val}"'
        elif label.subject_type is not None:
            return None  # a subject this client does not know (spec 0003 #label-blob)
        elif label.subject == item.event.id_hex:
            reason = f'labeled "{label.val}"'
        elif label.subject == item.author:
            reason = f'author labeled "{label.val}"'
        else:
            return None
        action = sub.action_for(label.val)
        return None if action is None else Decision(action, reason, sub.did, SourceKind.LABELER)


def _labeler_sub(type_: str, raw: object) -> LabelerSub:
    if isinstance(raw, LabelerSub):
        did, labels = raw.did, raw.labels
    elif isinstance(raw, Mapping) and isinstance(raw.get("did"), str):
        did, labels = raw["did"], raw.get("labels", {})
        if not isinstance(labels, Mapping):
            raise FilterLoadError(f"{type_}: labels of {did} must map label values to actions")
    else:
        raise FilterLoadError(f'{type_}: each subscription is {{"did": ..., "labels": {{...}}}}')
    try:
        did_method(did)
        for val, act in labels.items():
            if not isinstance(act, str):
                raise FilterError(f"label {val!r}: the action must be a string")
            check_label_action(val, act)
    except (InvalidDidError, FilterError) as exc:
        raise FilterLoadError(f"{type_}: labeler {did}: {exc.message}") from None
    return LabelerSub(did=did, labels=dict(labels))


class SelfLabels:
    """The author's own content warnings (a post's ``warn``) → warn (or badge, hide)."""

    name = "self-labels"

    def __init__(self, *, action: object = "warn", **unknown: Any) -> None:
        _reject_unknown(self.name, unknown, ("action",))
        self.action = _action(self.name, action, (Action.WARN, Action.BADGE, Action.HIDE))

    def check(self, item: Item) -> Decision | None:
        labels = item.self_labels
        if not labels:
            return None
        reason = "author marked it " + ", ".join(f'"{v}"' for v in labels)
        return Decision(self.action, reason, "author", SourceKind.AUTHOR)


class Languages:
    """Only posts in these languages: ``allow`` holds BCP 47 prefixes (``en`` matches
    ``en`` and ``en-GB``, not ``eng``). Posts that declare no ``langs`` pass."""

    name = "languages"

    def __init__(self, *, allow: object = None, action: object = "hide", **unknown: Any) -> None:
        _reject_unknown(self.name, unknown, ("allow", "action"))
        self.allow = [
            p.lower() for p in _strings(self.name, "allow", allow, max_items=MAX_LANG_PREFIXES)
        ]
        if not self.allow:
            raise FilterLoadError(f"{self.name}: allow must name at least one language (en, pt-BR)")
        for prefix in self.allow:
            if not _LANG_PREFIX_RE.match(prefix):
                raise FilterLoadError(f"{self.name}: {prefix!r} is not a BCP 47 language tag")
        self.action = _action(self.name, action, (Action.HIDE, Action.WARN, Action.BADGE))

    def _allowed(self, lang: str) -> bool:
        lang = lang.lower()
        return any(lang == p or lang.startswith(p + "-") for p in self.allow)

    def check(self, item: Item) -> Decision | None:
        langs = item.langs
        if not langs or any(self._allowed(lang) for lang in langs):
            return None
        reason = f"language {', '.join(langs)} is not one of yours"
        return Decision(self.action, reason, _YOU, SourceKind.USER)


class RepliesFromNonFollows:
    """In thread views, hide replies by people the reader does not follow.

    A reply passes when its author is the reader, someone the reader follows, or the
    author of the thread's root. The root is found by walking the ``parent`` embeds up
    from the reply (the client builds them up to the root in thread views) to the
    event whose id is the reply's ``reply.root``; when the root is not held, only
    follows and the reader pass. Other views are left alone.
    """

    name = "replies-from-non-follows"

    def __init__(self, *, action: object = "hide", **unknown: Any) -> None:
        _reject_unknown(self.name, unknown, ("action",))
        self.action = _action(self.name, action, (Action.HIDE, Action.WARN, Action.BADGE))

    def check(self, item: Item) -> Decision | None:
        if item.context is not ViewContext.THREAD or not item.is_reply:
            return None
        if item.mine or item.author in item.follows or item.author == _root_author(item):
            return None
        return Decision(self.action, "reply from someone you do not follow", _YOU, SourceKind.USER)


def _root_author(item: Item) -> str | None:
    body = item.event.body or {}
    root = body["reply"].get("root") if isinstance(body.get("reply"), dict) else None
    node: Item | None = item.embeds.get("parent")
    for _ in range(MAX_REPLY_DEPTH):
        if node is None:
            return None
        if node.event.id == root:
            return node.author
        node = node.embeds.get("parent")
    return None


class Allow:
    """The reader's explicit allow-rule: these authors or events are shown whatever
    labelers and lists say (the reader's own mutes still apply)."""

    name = "allow"

    def __init__(self, *, dids: object = None, events: object = None, **unknown: Any) -> None:
        _reject_unknown(self.name, unknown, ("dids", "events"))
        self.dids = _dids(self.name, "dids", dids)
        ids = [e.lower() for e in _strings(self.name, "events", events, max_items=MAX_EVENT_IDS)]
        for eid in ids:
            if not _HEX_ID_RE.match(eid):
                raise FilterLoadError(f"{self.name}: events: {eid!r} is not a 64-hex event id")
        self.events = frozenset(ids)
        if not self.dids and not self.events:
            raise FilterLoadError(f"{self.name}: give dids, events, or both")

    def check(self, item: Item) -> Decision | None:
        if item.author in self.dids or item.event.id_hex in self.events:
            return Decision(Action.ALLOW, "allowed by you", _YOU, SourceKind.USER)
        return None


#: Built-in filter types by the name ``filters.toml`` uses.
BUILTINS: dict[str, type] = {
    cls.name: cls
    for cls in (
        MuteWords,
        MuteAuthors,
        BlockAuthors,
        SubscribedList,
        Labelers,
        SelfLabels,
        Languages,
        RepliesFromNonFollows,
        Allow,
    )
}
