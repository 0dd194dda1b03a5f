"""The moderation page: every setting behind a "why", changed in place (issue #17).

``GET /moderation`` (``moderation``) shows ``filters.toml`` as the library reads it
(:mod:`client.moderation.settings`, the calls ``murmur filters|labelers`` make):
the filters in the order they run (enable, disable, move up or down, remove, add one
by type or ``PATH.py:Class`` with parameters), muted words and tags (action hide,
warn or badge; an expiry), muted and blocked accounts, subscribed lists, and
labelers with an action per label. ``GET /moderation/test`` runs one filter on one
event (a full or short id) and shows its decision (:mod:`client.moderation.trial`).

Anchors: each filter's settings are ``#filter-NAME`` (a muted-words, accounts or
list filter's card in its section; the labelers section for the labelers filter;
the row of the filter list for the others, whose row is otherwise ``#order-NAME``),
and a labeler's label ``#label-DID-VALUE``: what the why panels' "Change this
setting" links name (:func:`client.web.pages.common.setting_anchor`).

Every change is a POST form carrying the CSRF token (the guard checks it and the
Origin); it answers ``303`` back to the page at the control it changed, with a flash
message (post/redirect/get). Bad input answers the page again (``400``) with the
error's stable code and the form as it was sent; nothing is saved.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from client.errors import FilterError
from client.moderation.builtins import (
    BUILTINS,
    BlockAuthors,
    Labelers,
    MuteAuthors,
    MuteWords,
    SubscribedList,
)
from client.moderation.config import LABEL_ACTIONS, FilterSpec, ModerationConfig
from client.moderation.core import ViewContext
from client.moderation.settings import (
    Entries,
    add_filter,
    add_to_filter,
    block_account,
    entries,
    implicit_labelers,
    labelers_note,
    load_config,
    move_filter,
    mute_account,
    mute_words,
    parse_label_action,
    parse_param,
    parse_when,
    remove_filter,
    remove_from_filter,
    resolve_account,
    set_enabled,
    set_label_action,
    subscribe_labeler,
    subscribe_list,
    unsubscribe_labeler,
    update_params,
)
from client.moderation.trial import Trial, check_trial, trial
from client.session import Session
from client.shortids import parse_event_ref
from client.textsafety import safe_line, safe_name
from client.views import profiles_of
from client.web.context import WEB, render
from client.web.pages.common import Why, setting_anchor
from client.web.render import Names, iso_time, relative_time
from client.web.security import CSRF_FIELD, SESSION_KEY
from protocol.errors import BadRequestError, ProtocolError

__all__ = ["setup"]

log = logging.getLogger("murmur.client.web.moderation")

#: Durations the expiry pickers offer (value: what :func:`parse_when` reads).
DURATIONS: Final = (("1h", "1 hour"), ("1d", "1 day"), ("7d", "7 days"), ("30d", "30 days"))
#: Messages kept for a session's next page.
MAX_FLASH: Final = 10
#: Longest text a form field may carry (a filter's parameters, a list of words).
MAX_FIELD_CHARS: Final = 10_000
#: Filter types whose settings have their own card (the rest: their row in the list).
_EDITED: Final = {
    MuteWords.name: "words",
    MuteAuthors.name: "accounts",
    BlockAuthors.name: "accounts",
    SubscribedList.name: "lists",
    Labelers.name: "labelers",
}
_OPS: Final = ("enable", "disable", "remove", "up", "down")
_WORD_ACTIONS: Final = ("hide", "warn", "badge")
_MUTE_ACTIONS: Final = ("hide", "warn")
_LIST_ACTIONS: Final = ("hide", "warn", "badge")

routes = web.RouteTableDef()


# -- what the template draws ------------------------------------------------------------


@dataclass(slots=True)
class FilterRow:
    """One configured filter: its place, state and (for the everyday types) entries."""

    position: int
    spec: FilterSpec
    #: The id of its row in the filter list, and of its settings (``filter-NAME``).
    row_id: str
    settings_id: str
    params: str
    entries: Entries | None = None
    error: str | None = None
    #: ``list`` filters: the list's author and name.
    list_author: str = ""
    list_name: str = ""
    list_action: str = ""

    @property
    def expires(self) -> str | None:
        e = None if self.entries is None else self.entries.expires
        return None if e is None else f"{iso_time(e)} ({relative_time(e)})"


@dataclass(slots=True)
class LabelRow:
    val: str
    action: str
    anchor: str


@dataclass(slots=True)
class LabelerRow:
    did: str
    labels: list[LabelRow]
    anchor: str


@dataclass(slots=True)
class Page:
    """The moderation page's data: rows, names, the labelers filter, problems."""

    path: str
    defaults: bool
    rows: list[FilterRow] = field(default_factory=list)
    labelers: list[LabelerRow] = field(default_factory=list)
    #: Name of the filter the labelers run as (configured or implicit), if any.
    labelers_filter: str | None = None
    implicit: str | None = None
    note: str | None = None
    names: Names | None = None
    names_note: str | None = None

    def of(self, section: str) -> list[FilterRow]:
        return [r for r in self.rows if _EDITED.get(r.spec.type) == section]


@dataclass(slots=True)
class Problem:
    """A refused change: its stable code and message, and the form as it was sent."""

    code: str
    message: str
    form: str
    values: dict[str, str]


def _params_text(spec: FilterSpec) -> str:
    return "  ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in spec.params.items())


def _row(position: int, spec: FilterSpec) -> FilterRow:
    edited = spec.type in _EDITED
    row = FilterRow(
        position=position,
        spec=spec,
        row_id=f"order-{spec.name}" if edited else f"filter-{spec.name}",
        settings_id=f"filter-{spec.name}",
        params=safe_line(_params_text(spec)),
    )
    if spec.type in (MuteWords.name, MuteAuthors.name, BlockAuthors.name):
        try:
            row.entries = entries(spec)
        except FilterError as exc:
            row.error = f"{exc.code}: {exc.message}"
    elif spec.type == SubscribedList.name:
        ref = spec.params.get("ref")
        author, _, name = ref.partition("/") if isinstance(ref, str) else ("", "", "")
        row.list_author, row.list_name = author, safe_name(name)
        action = spec.params.get("action")
        row.list_action = action if isinstance(action, str) else ""
    return row


def _page(config: ModerationConfig, defaults: bool) -> Page:
    page = Page(path=str(config.path), defaults=defaults)
    page.rows = [_row(i, f) for i, f in enumerate(config.filters, start=1)]
    page.implicit = implicit_labelers(config)
    typed = [f.name for f in config.filters if f.type == Labelers.name]
    page.labelers_filter = typed[0] if typed else page.implicit
    page.note = labelers_note(config)
    for sub in config.labelers:
        labels = [
            LabelRow(val=v, action=a, anchor=f"label-{sub.did}-{v}")
            for v, a in sorted(sub.labels.items())
        ]
        page.labelers.append(LabelerRow(did=sub.did, labels=labels, anchor=f"labeler-{sub.did}"))
    return page


def _dids(page: Page) -> set[str]:
    out = {s.did for s in page.labelers}
    for r in page.rows:
        if r.entries is not None:
            out.update(r.entries.dids)
        if r.list_author.startswith("did:"):
            out.add(r.list_author)
    return out


async def _names(reads: Session, page: Page) -> None:
    """Names for the accounts on the page: petnames, and profile names from the nodes
    when they answer (the page works without them)."""
    dids = _dids(page)
    profiles = {}
    if dids:
        try:
            async with reads.reader() as reader:
                profiles = await profiles_of(reader, dids)
        except ProtocolError as exc:
            page.names_note = f"names from your nodes are missing: {exc.code}"
    page.names = Names(reads.config, reads.profiles_with_own(profiles))


async def _draw(
    request: web.Request,
    *,
    status: int = 200,
    problem: Problem | None = None,
    result: Trial | None = None,
    test: Mapping[str, str] | None = None,
) -> web.Response:
    reads = request.app[WEB].reads
    session = request.get(SESSION_KEY)
    flash = [] if session is None else list(session.flash)
    if session is not None:
        session.flash.clear()
    try:
        config, defaults = load_config(reads.home)
    except FilterError as exc:  # a hand-edited file that does not load
        return render(
            request,
            "moderation.html",
            status=400 if problem is None else status,
            title="Moderation",
            page=None,
            broken=f"{exc.code}: {exc.message}",
            flash=flash,
            problem=problem,
            **_helpers(problem),
            result=None,
            test=test or {},
        )
    page = _page(config, defaults)
    await _names(reads, page)
    why = None
    if result is not None and result.decision is not None:
        d = result.decision
        why = Why.of(d, Names(reads.config, result.view.profiles), f"#{setting_anchor(d)}")
    return render(
        request,
        "moderation.html",
        status=status,
        title="Moderation",
        page=page,
        broken=None,
        flash=flash,
        problem=problem,
        result=result,
        result_why=why,
        result_names=None if result is None else Names(reads.config, result.view.profiles),
        test=test or {},
        contexts=[c.value for c in ViewContext],
        builtins=sorted(BUILTINS),
        durations=DURATIONS,
        label_actions=LABEL_ACTIONS,
        word_actions=_WORD_ACTIONS,
        mute_actions=_MUTE_ACTIONS,
        list_actions=_LIST_ACTIONS,
        **_helpers(problem),
    )


def _helpers(problem: Problem | None) -> dict[str, Any]:
    def kept(form: str, name: str, default: str = "") -> str:
        """The value a refused form sent (so nothing typed is lost), else ``default``."""
        if problem is not None and problem.form == form:
            return problem.values.get(name, default)
        return default

    def failed(form: str) -> bool:
        return problem is not None and problem.form == form

    return {"kept": kept, "failed": failed}


@routes.get("/moderation", name="moderation")
async def moderation(request: web.Request) -> web.Response:
    return await _draw(request)


# -- test a filter ------------------------------------------------------------------------


@routes.get("/moderation/test", name="moderation-test")
async def test_filter(request: web.Request) -> web.Response:
    """One filter on one event (``murmur filters test``), drawn on the page."""
    reads = request.app[WEB].reads
    values = {k: request.query.get(k, "") for k in ("filter", "event", "context")}
    try:
        name = values["filter"].strip()
        if not name:
            raise BadRequestError("choose the filter to test")
        try:
            context = ViewContext(values["context"] or ViewContext.TIMELINE.value)
        except ValueError:
            raise BadRequestError(f"{values['context']!r} is not a view context") from None
        config, _ = load_config(reads.home)
        check_trial(config, name)
        ref = parse_event_ref(values["event"])
        me = reads.me() or ""
        async with reads.reader() as reader:
            eid = await reads.event_id(reader, ref)  # spec 0007 #short-ids
            result = await trial(
                reader, config, name, eid, viewer=me, context=context, home=reads.home
            )
    except ProtocolError as exc:
        problem = Problem(code=exc.code, message=exc.message, form="test", values=values)
        return await _draw(request, status=_status(exc), problem=problem, test=values)
    return await _draw(request, result=result, test=values)


# -- changes ------------------------------------------------------------------------------

#: A change: (home, form) → (flash message, anchor to go back to).
Change = Callable[[Session, MultiDictProxy[str]], Awaitable[tuple[str, str]]]


def _status(exc: ProtocolError) -> int:
    """400 for what was typed, 404 for an event no node holds, 502 for the nodes."""
    return exc.status if exc.status in (400, 404) else 502


async def _form(request: web.Request) -> MultiDictProxy[str]:
    raw = await request.post()
    out: dict[str, str] = {}
    for key, value in raw.items():
        if key == CSRF_FIELD or not isinstance(value, str):
            continue
        if len(value) > MAX_FIELD_CHARS:
            raise BadRequestError(f"{key}: at most {MAX_FIELD_CHARS} characters")
        out[key] = value
    return MultiDictProxy(MultiDict(out))


async def _change(request: web.Request, form_id: str, change: Change) -> web.StreamResponse:
    """Run ``change``; 303 back to the page at its anchor with a flash message, or the
    page again with the error and the form as sent."""
    reads = request.app[WEB].reads
    try:
        form = await _form(request)
    except ProtocolError as exc:
        return await _draw(request, status=400, problem=Problem(exc.code, exc.message, form_id, {}))
    try:
        message, anchor = await change(reads, form)
    except ProtocolError as exc:
        log.info("moderation change refused form=%s code=%s", form_id, exc.code)
        problem = Problem(code=exc.code, message=exc.message, form=form_id, values=dict(form))
        return await _draw(request, status=_status(exc), problem=problem)
    log.info("moderation changed form=%s", form_id)
    flash = request[SESSION_KEY].flash
    flash.append(message)
    del flash[:-MAX_FLASH]  # a script that posts and never reads keeps only the last
    resource = request.app.router.named_resources()["moderation"]
    raise web.HTTPSeeOther(location=f"{resource.url_for().path}#{anchor}")


def _choice(form: Mapping[str, str], key: str, allowed: tuple[str, ...], default: str) -> str:
    value = form.get(key, "").strip() or default
    if value not in allowed:
        raise BadRequestError(f"{key} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _expiry(form: Mapping[str, str]) -> int | None:
    """``for``: ``never``, a duration (``7d``) or ``date`` with ``until`` (a date or a
    date and time, local); None for never."""
    how = form.get("for", "").strip() or "never"
    if how == "never":
        return None
    if how == "date":
        until = form.get("until", "").strip()
        if not until:
            raise BadRequestError("pick the date the mute ends, or choose a duration")
        return parse_when(until)
    if how not in {d for d, _ in DURATIONS}:
        raise BadRequestError(f"for must be never, date or one of the durations, not {how!r}")
    return parse_when(how)


def _split(text: str) -> list[str]:
    """Words or tags typed as one field: commas or new lines between them."""
    return [p.strip() for p in text.replace("\n", ",").split(",") if p.strip()]


def _name(request: web.Request) -> str:
    return request.match_info["name"]


@routes.post("/moderation/filters", name="moderation-add-filter")
async def add(request: web.Request) -> web.StreamResponse:
    """``murmur filters add TYPE [--name] [--param K=V]... [--position] [--budget-ms]``."""

    async def change(reads: Session, form: Mapping[str, str]) -> tuple[str, str]:
        type_ = form.get("type", "").strip()
        if not type_:
            raise BadRequestError("give the filter's type: a built-in or PATH.py:Class")
        params = dict(
            parse_param(line) for line in form.get("params", "").splitlines() if line.strip()
        )
        position = _int(form, "position")
        budget = _number(form, "budget_ms")
        spec, at = await add_filter(
            reads.home,
            type_,
            name=form.get("name", "").strip() or None,
            params=params,
            position=position,
            budget_ms=budget,
            enabled=form.get("disabled") is None,
        )
        return f"Added filter {spec.name} at position {at}.", f"filter-{spec.name}"

    return await _change(request, "add-filter", change)


def _int(form: Mapping[str, str], key: str) -> int | None:
    raw = form.get(key, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequestError(f"{key} must be a whole number, not {raw!r}") from None


def _number(form: Mapping[str, str], key: str) -> float | None:
    raw = form.get(key, "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise BadRequestError(f"{key} must be a number, not {raw!r}") from None


@routes.post(
    "/moderation/filters/{name}/{op:enable|disable|remove|up|down}", name="moderation-filter-op"
)
async def filter_op(request: web.Request) -> web.StreamResponse:
    """Enable, disable, remove, or move a filter up or down."""
    name, op = _name(request), request.match_info["op"]

    async def change(reads: Session, form: Mapping[str, str]) -> tuple[str, str]:
        if op not in _OPS:
            raise BadRequestError(f"{op!r}: a filter can be {', '.join(_OPS)}")
        if op == "remove":
            remove_filter(reads.home, name)
            return f"Removed filter {name}.", "filters"
        if op in ("enable", "disable"):
            set_enabled(reads.home, name, op == "enable")
            return f"{op.capitalize()}d filter {name}.", _row_id(reads, name)
        at = move_filter(reads.home, name, -1 if op == "up" else 1)
        return f"Moved filter {name} to position {at}.", f"move-{name}-{op}"

    return await _change(request, f"filter-{name}", change)


def _row_id(reads: Session, name: str) -> str:
    config, _ = load_config(reads.home)
    spec = config.find(name)
    return f"order-{name}" if spec.type in _EDITED else f"filter-{name}"


@routes.post("/moderation/filters/{name}/settings", name="moderation-filter-settings")
async def filter_settings(request: web.Request) -> web.StreamResponse:
    """A muted-words, muted-accounts or list filter's action and expiry."""
    name = _name(request)

    async def change(reads: Session, form: Mapping[str, str]) -> tuple[str, str]:
        config, _ = load_config(reads.home)
        spec = config.find(name)
        allowed = {
            MuteWords.name: _WORD_ACTIONS,
            MuteAuthors.name: _MUTE_ACTIONS,
            SubscribedList.name: _LIST_ACTIONS,
        }.get(spec.type)
        if allowed is None:
            raise FilterError(f"filter {name} ({spec.type}) has no action to change here")
        changes: dict[str, Any] = {"action": _choice(form, "action", allowed, allowed[0])}
        drop: list[str] = []
        how = form.get("for", "").strip() or "keep"
        if spec.type != SubscribedList.name and how != "keep":
            expires = _expiry(form)
            if expires is None:
                drop.append("expires")
            else:
                changes["expires"] = expires
        update_params(reads.home, name, changes, drop=drop)
        return f"Saved filter {name}: {changes['action']}.", f"filter-{name}"

    return await _change(request, f"settings-{name}", change)


@routes.post("/moderation/filters/{name}/entries", name="moderation-filter-entries")
async def filter_entries(request: web.Request) -> web.StreamResponse:
    """Add or remove one word, tag or account of a filter."""
    name = _name(request)

    async def change(reads: Session, form: Mapping[str, str]) -> tuple[str, str]:
        what = form.get("what", "")
        value = form.get("value", "")
        if what == "did" and form.get("op") == "add":
            value = resolve_account(reads.config, reads.keystore, value)
        if form.get("op") == "add":
            add_to_filter(reads.home, name, what, value)
            return f"Added {what} {safe_line(value)!r} to filter {name}.", f"filter-{name}"
        if form.get("op") == "remove":
            left = remove_from_filter(reads.home, name, what, value)
            if left is None:
                return f"Removed {what} {safe_line(value)!r}: filter {name} was empty, removed.", (
                    _section(what)
                )
            return f"Removed {what} {safe_line(value)!r} from filter {name}.", f"filter-{name}"
        raise BadRequestError("op must be add or remove")

    return await _change(request, f"entries-{name}", change)


def _section(what: str) -> str:
    return "accounts" if what == "did" else "words"


@routes.post("/moderation/words", name="moderation-mute-words")
async def add_words(request: web.Request) -> web.StreamResponse:
    """Mute words and tags with an action (hide, warn, badge) and an expiry."""

    async def change(reads: Session, form: Mapping[str, str]) -> tuple[str, str]:
        action = _choice(form, "action", _WORD_ACTIONS, "hide")
        spec = mute_words(
            reads.home,
            words=_split(form.get("words", "")),
            tags=_split(form.get("tags", "")),
            action=action,
            expires=_expiry(form),
        )
        return f"Muted ({action}) in filter {spec.name}.", f"filter-{spec.name}"

    return await _change(request, "mute-words", change)


@routes.post("/moderation/accounts", name="moderation-accounts")
async def add_account(request: web.Request) -> web.StreamResponse:
    """Mute (hide or warn, with an expiry) or block an account: a did, a petname
    (``@bob``) or an identity name."""

    async def change(reads: Session, form: Mapping[str, str]) -> tuple[str, str]:
        did = resolve_account(reads.config, reads.keystore, form.get("who", ""))
        how = _choice(form, "how", ("mute", "block"), "mute")
        if how == "block":
            spec = block_account(reads.home, did)
            return f"Blocked {did} (filter {spec.name}).", f"filter-{spec.name}"
        action = _choice(form, "action", _MUTE_ACTIONS, "hide")
        spec = mute_account(reads.home, did, action=action, expires=_expiry(form))
        return f"Muted {did} ({action}, filter {spec.name}).", f"filter-{spec.name}"

    return await _change(request, "accounts", change)


@routes.post("/moderation/lists", name="moderation-lists")
async def add_list(request: web.Request) -> web.StreamResponse:
    """Subscribe to someone's mute or block list (spec 0006 §lists)."""

    async def change(reads: Session, form: Mapping[str, str]) -> tuple[str, str]:
        did = resolve_account(reads.config, reads.keystore, form.get("who", ""))
        list_name = form.get("list", "").strip()
        if not list_name:
            raise BadRequestError("give the list's name")
        action = form.get("action", "").strip()
        if action:
            _choice(form, "action", _LIST_ACTIONS, "hide")
        spec = subscribe_list(reads.home, did, list_name, action=action or None)
        return f"Subscribed to list {safe_name(list_name)} (filter {spec.name}).", (
            f"filter-{spec.name}"
        )

    return await _change(request, "lists", change)


@routes.post("/moderation/labelers", name="moderation-labelers")
async def add_labeler(request: web.Request) -> web.StreamResponse:
    """``murmur labelers subscribe WHO --set LABEL=ACTION ...``."""

    async def change(reads: Session, form: Mapping[str, str]) -> tuple[str, str]:
        did = resolve_account(reads.config, reads.keystore, form.get("who", ""))
        labels = dict(parse_label_action(p) for p in _split(form.get("labels", "")))
        subscribe_labeler(reads.home, did, labels)
        return f"Subscribed to labeler {did}.", f"labeler-{did}"

    return await _change(request, "labelers", change)


@routes.post("/moderation/labelers/remove", name="moderation-labelers-remove")
async def remove_labeler(request: web.Request) -> web.StreamResponse:
    async def change(reads: Session, form: Mapping[str, str]) -> tuple[str, str]:
        did = form.get("did", "")
        unsubscribe_labeler(reads.home, did)
        return f"Unsubscribed from labeler {did}.", "labelers"

    return await _change(request, "labelers-remove", change)


@routes.post("/moderation/labelers/label", name="moderation-label")
async def label_action(request: web.Request) -> web.StreamResponse:
    """What one label of a subscribed labeler does, changed in place."""

    async def change(reads: Session, form: Mapping[str, str]) -> tuple[str, str]:
        did, val = form.get("did", ""), form.get("val", "").strip()
        action = _choice(form, "action", LABEL_ACTIONS, "")
        set_label_action(reads.home, did, val, action)
        return f"Label {val!r} of {did} now: {action}.", f"label-{did}-{val}"

    sent = await request.post()  # cached: _change reads it again
    form_id = f"label-{sent.get('did', '')}-{sent.get('val', '')}"
    return await _change(request, form_id, change)


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
