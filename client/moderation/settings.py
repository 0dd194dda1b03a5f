"""Editing the reader's moderation settings: what every face calls (spec 0006 §config).

``murmur filters …`` / ``murmur labelers …`` and the web client's moderation page
change ``filters.toml`` only through these functions, so the two faces never
disagree. Each change loads the file (or the defaults, spec 0006 #default-filters),
checks the change (a filter whose parameters change is built again, so a parameter
its class refuses is ``filter-load`` before anything is saved), and writes it back
atomically with :meth:`ModerationConfig.save`.

Besides the generic filter edits (add, enable, disable, remove, move), the everyday
settings have their own calls over the built-in filters: muted words and tags
(``mute-words``), muted and blocked accounts (``mute-authors``, ``block-authors``),
subscribed lists (``list``) and labelers' per-label actions (``[[labelers]]``).
A muted word joins a ``mute-words`` filter with the same action and expiry (a new
one, ``mute-words``, ``mute-words-2``, …, when there is none); removing the last word
of a filter removes the filter.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from client.config import ClientConfig
from client.errors import FilterError, FilterLoadError, FilterNotFoundError
from client.keystore import Keystore
from client.moderation.apply import DEFAULT_FILTERS, LABELERS_FILTER, build_filter, try_filter
from client.moderation.builtins import (
    BUILTINS,
    BlockAuthors,
    Labelers,
    MuteAuthors,
    MuteWords,
    SubscribedList,
)
from client.moderation.config import LABEL_ACTIONS, FilterSpec, LabelerSub, ModerationConfig
from client.moderation.pipeline import DEFAULT_BUDGET_MS
from protocol.errors import BadRequestError, InvalidDidError

__all__ = [
    "MAX_BUDGET_MS",
    "Entries",
    "add_filter",
    "add_to_filter",
    "block_account",
    "entries",
    "implicit_labelers",
    "labelers_note",
    "load_config",
    "move_filter",
    "mute_account",
    "mute_words",
    "parse_label_action",
    "parse_param",
    "parse_when",
    "remove_filter",
    "remove_from_filter",
    "resolve_account",
    "resolve_type",
    "set_enabled",
    "set_label_action",
    "subscribe_labeler",
    "subscribe_list",
    "unsubscribe_labeler",
    "update_params",
]

#: Largest time budget per item a filter may be given, in ms.
MAX_BUDGET_MS: Final = 60_000
_DURATION = re.compile(r"(\d{1,9})\s*(s|m|h|d|w)\Z")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


# -- reading and parsing ----------------------------------------------------------------


def load_config(home: Path) -> tuple[ModerationConfig, bool]:
    """``filters.toml``, or the defaults when it does not exist yet (second value True)."""
    config = ModerationConfig.load(home)
    if config.path.exists():
        return config, False
    config.filters = [replace(f, params=copy.deepcopy(f.params)) for f in DEFAULT_FILTERS]
    return config, True


def parse_param(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``: VALUE as JSON when it parses (numbers, booleans, lists, "strings")."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise BadRequestError(f"parameter {text!r}: write KEY=VALUE")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if _has_null(value):
        raise BadRequestError(f"parameter {key}: null is not a value; leave the parameter out")
    return key, value


def _has_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, list):
        return any(_has_null(v) for v in value)
    if isinstance(value, dict):
        return any(_has_null(v) for v in value.values())
    return False


def parse_label_action(text: str) -> tuple[str, str]:
    """``LABEL=ACTION``, ACTION one of :data:`LABEL_ACTIONS`."""
    val, sep, action = text.partition("=")
    if not sep or action.strip() not in LABEL_ACTIONS:
        raise BadRequestError(
            f"{text!r}: write LABEL=ACTION, ACTION one of {', '.join(LABEL_ACTIONS)}"
        )
    return val.strip(), action.strip()


def parse_when(text: str, now_ms: int | None = None) -> int:
    """ms since the epoch: a duration from now (``7d``, ``12h``, ``30m``) or ISO 8601.

    A date or datetime without a zone is local time. It must be in the future.
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    cleaned = text.strip()
    m = _DURATION.match(cleaned.lower())
    if m:
        when = now + int(m[1]) * _UNIT_MS[m[2]]
    else:
        try:
            parsed = dt.datetime.fromisoformat(cleaned.replace("Z", "+00:00"))
        except ValueError:
            raise BadRequestError(
                f"{text!r} is neither a duration (30m, 12h, 7d, 2w) nor an ISO 8601 "
                "date or datetime (2030-01-31, 2030-01-31T18:00+01:00)"
            ) from None
        when = int(parsed.timestamp() * 1000)  # naive: local time
    if when <= now:
        raise BadRequestError(f"{text!r} is not in the future")
    return when


def resolve_account(config: ClientConfig, keystore: Keystore, who: str) -> str:
    """A did from a did, a petname (``bob`` or ``@bob``, as names are shown), or the
    name of a local identity; ``invalid-did`` with a hint otherwise."""
    cleaned = who.strip()
    if not cleaned:
        raise InvalidDidError("give a did, a petname or an identity name")
    name = cleaned[1:] if cleaned.startswith("@") else cleaned
    try:
        return config.resolve(name)
    except InvalidDidError:
        if name.startswith("did:") or not keystore.exists(name):
            raise
        return keystore.get(name).did


def _kebab(name: str) -> str:
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|_", "-", name).lower()
    return re.sub(r"[^a-z0-9_.-]", "-", words).strip("-.") or "filter"


def resolve_type(type_: str) -> tuple[str, str]:
    """The type as stored (a file path made absolute) and the filter's default name."""
    type_ = type_.strip()
    if type_ in BUILTINS:
        return type_, type_
    if type_.startswith("entry:"):
        return type_, _kebab(type_.removeprefix("entry:"))
    if ".py:" in type_:
        path_text, _, cls = type_.rpartition(":")
        path = Path(path_text).expanduser().resolve()
        if not path.is_file():
            raise FilterLoadError(f"{type_!r}: no such file {path}")
        return f"{path}:{cls}", _kebab(cls)
    known = ", ".join(sorted(BUILTINS))
    raise FilterNotFoundError(
        f"unknown filter type {type_!r}: a built-in ({known}), PATH.py:Class or entry:NAME"
    )


def labelers_note(config: ModerationConfig) -> str | None:
    """Why subscribed labelers would have no effect, if they would not."""
    typed = [f for f in config.filters if f.type == Labelers.name]
    if config.labelers and typed and not any(f.enabled for f in typed):
        names = ", ".join(f.name for f in typed)
        return f"labels have no effect: filter {names} is disabled (murmur filters enable NAME)"
    return None


def implicit_labelers(config: ModerationConfig) -> str | None:
    """The name of the implicit labelers filter (spec 0006 #default-filters), if it runs."""
    if not config.labelers or any(f.type == Labelers.name for f in config.filters):
        return None
    taken, name, n = {f.name for f in config.filters}, LABELERS_FILTER, 1
    while name in taken:
        n += 1
        name = f"{LABELERS_FILTER}-{n}"
    return name


def _free_name(config: ModerationConfig, base: str) -> str:
    taken, name, n = {f.name for f in config.filters}, base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


# -- filters ----------------------------------------------------------------------------


async def add_filter(
    home: Path,
    type_: str,
    *,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    position: int | None = None,
    budget_ms: float | None = None,
    enabled: bool = True,
) -> tuple[FilterSpec, int]:
    """Add a filter as ``murmur filters add`` does; its 1-based position.

    ``position`` counts from 1 (default: last). The filter is built as a view builds
    it (a custom one in its worker) before anything is saved: ``filter-not-found`` /
    ``filter-load``."""
    stored, default_name = resolve_type(type_)
    name = (name or "").strip() or default_name
    config, _ = load_config(home)
    if any(f.name == name for f in config.filters):
        raise FilterError(f"a filter named {name!r} exists; pick another name (--name NAME)")
    if budget_ms is not None and not 0 < budget_ms <= MAX_BUDGET_MS:
        raise BadRequestError(f"the budget must be in (0, {MAX_BUDGET_MS}] ms")
    if position is not None and position < 1:
        raise BadRequestError("the position counts from 1")
    spec = FilterSpec(
        name=name,
        type=stored,
        enabled=enabled,
        params=dict(params or {}),
        budget_ms=DEFAULT_BUDGET_MS if budget_ms is None else budget_ms,
    )
    await try_filter(spec)
    config, _ = load_config(home)  # read again: the build may have taken a while
    config.add(spec, position=None if position is None else position - 1)
    config.save()
    return spec, config.filters.index(spec) + 1


def set_enabled(home: Path, name: str, enabled: bool) -> FilterSpec:
    config, _ = load_config(home)
    spec = config.find(name)
    spec.enabled = enabled
    config.save()
    return spec


def remove_filter(home: Path, name: str) -> FilterSpec:
    config, _ = load_config(home)
    spec = config.remove(name)
    config.save()
    return spec


def move_filter(home: Path, name: str, by: int) -> int:
    """Move a filter ``by`` places (negative: earlier, it runs sooner); its new
    1-based position. Moving past either end stops there."""
    config, _ = load_config(home)
    spec = config.find(name)
    i = config.filters.index(spec)
    j = max(0, min(len(config.filters) - 1, i + by))
    config.filters.insert(j, config.filters.pop(i))
    config.save()
    return j + 1


def _checked(spec: FilterSpec) -> FilterSpec:
    """``spec`` if its filter builds (a built-in: here, without a worker)."""
    build_filter(spec)
    return spec


def update_params(
    home: Path, name: str, changes: Mapping[str, Any], *, drop: Iterable[str] = ()
) -> FilterSpec:
    """Set (``changes``) and remove (``drop``) parameters of a built-in filter; the
    filter is built with them before they are saved."""
    config, _ = load_config(home)
    spec = config.find(name)
    if spec.type not in BUILTINS:
        raise FilterError(
            f"filter {name} is someone's code ({spec.type}): edit its parameters in "
            f"{config.path} or add it again"
        )
    params = {k: v for k, v in spec.params.items() if k not in set(drop)}
    params.update(changes)
    new = _checked(replace(spec, params=params))
    config.filters[config.filters.index(spec)] = new
    config.save()
    return new


# -- muted words, accounts, lists -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entries:
    """What a ``mute-words`` / ``mute-authors`` / ``block-authors`` filter holds, parsed
    as the filter parses it (a comma-separated string is a list)."""

    words: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    regexes: tuple[str, ...] = ()
    dids: tuple[str, ...] = ()
    action: str = "hide"
    expires: int | None = None


def entries(spec: FilterSpec) -> Entries:
    """``spec``'s parsed entries; ``filter-load`` when its parameters are refused."""
    built = build_filter(spec).filter
    if isinstance(built, MuteWords):
        return Entries(
            words=tuple(built.words),
            tags=tuple(built.tags),
            regexes=tuple(built.regexes),
            action=built.action.value,
            expires=built.expires,
        )
    if isinstance(built, MuteAuthors):
        return Entries(dids=tuple(sorted(built.dids)), action=built.action.value,
                       expires=built.expires)  # fmt: skip
    if isinstance(built, BlockAuthors):
        return Entries(dids=tuple(sorted(built.dids)))
    raise FilterError(f"filter {spec.name} ({spec.type}) holds no words or accounts")


def _group(
    config: ModerationConfig, type_: str, action: str | None, expires: int | None
) -> FilterSpec | None:
    """The first enabled filter of ``type_`` with this action and expiry (and no
    ``exclude_follows``), whose parameters build."""
    for spec in config.filters:
        if spec.type != type_ or not spec.enabled or spec.params.get("exclude_follows"):
            continue
        try:
            got = entries(spec)
        except FilterError:
            continue
        if (action is None or got.action == action) and got.expires == expires:
            return spec
    return None


def _join(config: ModerationConfig, new: FilterSpec, old: FilterSpec | None) -> None:
    _checked(new)
    if old is None:
        config.add(new)
    else:
        config.filters[config.filters.index(old)] = new


def mute_words(
    home: Path,
    *,
    words: Iterable[str] = (),
    tags: Iterable[str] = (),
    action: str = "hide",
    expires: int | None = None,
) -> FilterSpec:
    """Mute ``words`` (and phrases) and ``tags`` with ``action`` (hide, warn or badge)
    until ``expires`` (ms, None: for good): into the ``mute-words`` filter with that
    action and expiry, or a new one."""
    words = [w.strip() for w in words if w.strip()]
    tags = [t.strip().lstrip("#") for t in tags if t.strip().lstrip("#")]
    if not words and not tags:
        raise BadRequestError("give a word, a phrase or a tag to mute")
    config, _ = load_config(home)
    old = _group(config, MuteWords.name, action, expires)
    got = Entries() if old is None else entries(old)
    params: dict[str, Any] = {} if old is None else dict(old.params)
    params["words"] = list(dict.fromkeys([*got.words, *words]))
    params["tags"] = list(dict.fromkeys([*got.tags, *tags]))
    for key in ("words", "tags"):
        if not params[key]:
            del params[key]
    params["action"] = action
    if expires is not None:
        params["expires"] = expires
    name = old.name if old is not None else _free_name(config, MuteWords.name)
    if old is None:
        new = FilterSpec(name=name, type=MuteWords.name, params=params)
    else:
        new = replace(old, params=params)
    _join(config, new, old)
    config.save()
    return new


def _account_params(old: FilterSpec | None, did: str) -> dict[str, Any]:
    got = Entries() if old is None else entries(old)
    params: dict[str, Any] = {} if old is None else dict(old.params)
    params["dids"] = sorted({*got.dids, did})
    return params


def mute_account(
    home: Path, did: str, *, action: str = "hide", expires: int | None = None
) -> FilterSpec:
    """Mute ``did`` (hide or warn) until ``expires``: into the ``mute-authors`` filter
    with that action and expiry, or a new one."""
    config, _ = load_config(home)
    old = _group(config, MuteAuthors.name, action, expires)
    params = _account_params(old, did)
    params["action"] = action
    if expires is not None:
        params["expires"] = expires
    if old is None:
        new = FilterSpec(
            name=_free_name(config, MuteAuthors.name), type=MuteAuthors.name, params=params
        )
    else:
        new = replace(old, params=params)
    _join(config, new, old)
    config.save()
    return new


def block_account(home: Path, did: str) -> FilterSpec:
    """Block ``did``: into the first enabled ``block-authors`` filter, or a new one."""
    config, _ = load_config(home)
    old = _group(config, BlockAuthors.name, None, None)
    params = _account_params(old, did)
    if old is None:
        new = FilterSpec(
            name=_free_name(config, BlockAuthors.name), type=BlockAuthors.name, params=params
        )
    else:
        new = replace(old, params=params)
    _join(config, new, old)
    config.save()
    return new


_ENTRY_KEYS = {"word": "words", "tag": "tags", "regex": "regexes", "did": "dids"}


def add_to_filter(home: Path, name: str, what: str, value: str) -> FilterSpec:
    """Add one entry (``what``: word, tag, regex or did) to a filter that holds them."""
    spec = _edit_entries(home, name, what, value, add=True)
    if spec is None:  # never: an entry was added
        raise FilterNotFoundError(f"filter {name} is gone")
    return spec


def remove_from_filter(home: Path, name: str, what: str, value: str) -> FilterSpec | None:
    """Remove one entry from a filter; the filter itself when it was its last (None)."""
    return _edit_entries(home, name, what, value, add=False)


def _edit_entries(home: Path, name: str, what: str, value: str, *, add: bool) -> FilterSpec | None:
    key = _ENTRY_KEYS.get(what)
    if key is None:
        raise BadRequestError(f"{what!r}: a filter holds word, tag, regex or did entries")
    config, _ = load_config(home)
    spec = config.find(name)
    got = entries(spec)
    held: list[str] = list(getattr(got, key))
    cleaned = value.strip().lstrip("#") if key == "tags" else value.strip()
    if not cleaned:
        raise BadRequestError(f"give the {what} to {'add' if add else 'remove'}")
    if add:
        if cleaned in held:
            return spec
        held.append(cleaned)
    else:
        if cleaned not in held:
            raise FilterNotFoundError(f"filter {name} holds no {what} {cleaned!r}")
        held.remove(cleaned)
    if key == "dids":
        held.sort()
    params = {k: v for k, v in spec.params.items() if k != key}
    if held:
        params[key] = held
    others = [k for k in ("words", "tags", "regexes", "dids") if k != key and params.get(k)]
    if not held and not others:
        config.filters.remove(spec)
        config.save()
        return None
    new = _checked(replace(spec, params=params))
    config.filters[config.filters.index(spec)] = new
    config.save()
    return new


def subscribe_list(
    home: Path, author: str, list_name: str, *, action: str | None = None
) -> FilterSpec:
    """Follow ``author``'s ``list_name`` (spec 0006 §lists) as a ``list`` filter named
    after it; ``action`` overrides the list's (hide)."""
    ref = f"{author}/{list_name.strip()}"
    config, _ = load_config(home)
    for spec in config.filters:
        if spec.type == SubscribedList.name and spec.params.get("ref") == ref:
            raise FilterError(f"list {ref} is already filter {spec.name}")
    params: dict[str, Any] = {"ref": ref}
    if action:
        params["action"] = action
    base = "list-" + (_kebab(list_name.strip()) or "list")
    spec = FilterSpec(name=_free_name(config, base[:64]), type=SubscribedList.name, params=params)
    _checked(spec)
    config.add(spec)
    config.save()
    return spec


# -- labelers ---------------------------------------------------------------------------


def subscribe_labeler(
    home: Path, did: str, labels: Mapping[str, str]
) -> tuple[LabelerSub, ModerationConfig]:
    """Trust labeler ``did`` with these label → action mappings (added to what it
    had); a new labeler must come with at least one."""
    config, _ = load_config(home)
    if not labels and config.labeler(did) is None:
        raise BadRequestError("say what each label does: LABEL=hide|warn|badge|ignore")
    sub = config.subscribe(did, dict(labels))
    config.save()
    return sub, config


def unsubscribe_labeler(home: Path, did: str) -> None:
    config, _ = load_config(home)
    config.unsubscribe(did)
    config.save()


def set_label_action(home: Path, did: str, val: str, action: str) -> LabelerSub:
    """What one label of a subscribed labeler does (``hide``, ``warn``, ``badge``,
    ``ignore``); ``filter-not-found`` when the labeler is not subscribed."""
    config, _ = load_config(home)
    if config.labeler(did) is None:
        raise FilterNotFoundError(f"not subscribed to labeler {did}")
    sub = config.subscribe(did, {val.strip(): action})
    config.save()
    return sub
