"""Compose and act: post, reply, quote, like, repost and their undoing, delete your own
(spec 0007 #web-compose), through :mod:`client.actions` as ``murmur post|like|...``.

- ``GET /compose`` (``?reply=ID``, ``?quote=ID``, short ids accepted) is the form:
  text, content warnings and languages, and a passphrase field when the acting
  identity's key is sealed and the server has no passphrase source (spec 0007
  #web-passphrase). ``POST /compose`` keeps the form as this browser session's draft
  for the acting identity (per reply/quote target, in memory) before anything else, so
  a post that fails is answered with the form again, the text in it and the error with
  its code, and a reload of ``/compose`` gives the draft back; a post that went out
  drops it. ``save`` only keeps the draft.
- ``POST /act`` (``kind`` = like, unlike, repost, unrepost, delete; ``id``) signs one
  of those; a delete is first confirmed (``GET /delete/{id}`` or the same form without
  ``confirm``), and so is any action that needs a passphrase the server does not have.
- ``POST /follow`` (``kind`` = follow, unfollow; ``did``; ``alias``, a petname saved
  with a follow, as ``murmur follow DID --alias``) from the author page, which it
  answers with a ``303`` back to ``/author/{did}?done=TICKET``: the outcome shown
  above the profile, the button now saying what holds (spec 0007 #web-own-state).
- What was done (or that it stood already: nothing signed) is a page of its own,
  ``GET /done/{ticket}``, after a ``303`` (a reload signs nothing twice): each node's
  outcome, the nodes the checks went without, and links to the post.

The unsealed key lives for the request only; scrypt runs off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

from aiohttp import web
from multidict import MultiDictProxy

from client import actions
from client.actions import Done, Draft, Unchanged
from client.errors import PassphraseError
from client.names import Names, short_id
from client.publish import NodeOutcome
from client.reader import NodeReport
from client.secretfiles import MAX_SECRET_BYTES, passphrase_from
from client.shortids import parse_event_ref
from client.textsafety import safe_line
from client.web.context import WEB, WebState, render
from client.web.security import SESSION_KEY
from protocol import kinds
from protocol.errors import BadRequestError, ProtocolError
from protocol.identity import Identity, did_method

__all__ = ["COMPOSE", "ComposeState", "DraftForm", "held_outcome", "setup"]

log = logging.getLogger("murmur.client.web.compose")

#: Largest compose or action form (a post is at most 3000 bytes of text).
MAX_FORM_BYTES: Final = 64 * 1024
#: Characters of text a draft keeps (the node refuses a longer post with its code).
MAX_DRAFT_CHARS: Final = 20_000
#: Drafts and outcomes kept by one server (the oldest are dropped).
MAX_DRAFTS: Final = 64
MAX_OUTCOMES: Final = 64
#: What ``POST /act`` signs: kind -> (action, kind of event, what the done page says).
ACTS: Final = {
    "like": (actions.act_on, kinds.LIKE, "Liked"),
    "repost": (actions.act_on, kinds.REPOST, "Reposted"),
    "delete": (actions.act_on, kinds.DELETE, "Deleted"),
    "unlike": (actions.undo, kinds.LIKE, "Unliked"),
    "unrepost": (actions.undo, kinds.REPOST, "Unreposted"),
}
#: How a page answers a failed action: a person's mistake is 400, the rest the nodes'.
FAILED_STATUS: Final = 502


@dataclass(slots=True)
class DraftForm:
    """The compose form as typed (kept as is, so a failed post loses nothing)."""

    text: str = ""
    reply_to: str = ""
    quote: str = ""
    warn: str = ""
    lang: str = ""

    @classmethod
    def of(cls, form: MultiDictProxy[Any]) -> DraftForm:
        return cls(
            text=_field(form, "text", MAX_DRAFT_CHARS),
            reply_to=_field(form, "reply_to", 64).strip(),
            quote=_field(form, "quote", 64).strip(),
            warn=_field(form, "warn", 512),
            lang=_field(form, "lang", 256),
        )

    def draft(self) -> Draft:
        """The draft to sign; ``bad-request`` for an empty post or a bad id."""
        return Draft.parse(
            self.text,
            reply_to=self.reply_to or None,
            quote=self.quote or None,
            warn=_words(self.warn),
            langs=_words(self.lang),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What an action did, for its done page."""

    title: str
    message: str
    event: str | None = None  # hex id of the event signed
    thread: str | None = None  # hex id of the post to open
    nodes: tuple[dict[str, Any], ...] = ()
    stored_on: int = 0
    not_consulted: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    back: str = "/"
    changed: bool = True


@dataclass(slots=True)
class ComposeState:
    """Drafts by (browser session, acting identity, reply target, quoted post), and
    outcomes by ticket (with their browser session)."""

    drafts: OrderedDict[tuple[str, str, str, str], DraftForm] = field(default_factory=OrderedDict)
    outcomes: OrderedDict[str, tuple[str, Outcome]] = field(default_factory=OrderedDict)

    def keep(self, key: tuple[str, str, str, str], form: DraftForm) -> None:
        self.drafts[key] = form
        self.drafts.move_to_end(key)
        while len(self.drafts) > MAX_DRAFTS:
            self.drafts.popitem(last=False)

    def add_outcome(self, session: str, outcome: Outcome) -> str:
        ticket = secrets.token_urlsafe(16)
        self.outcomes[ticket] = (session, outcome)
        while len(self.outcomes) > MAX_OUTCOMES:
            self.outcomes.popitem(last=False)
        return ticket


COMPOSE: Final = web.AppKey("murmur.web.compose", ComposeState)

routes = web.RouteTableDef()


def _field(form: MultiDictProxy[Any], name: str, limit: int) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def _words(text: str) -> list[str]:
    """``spoiler, nsfw`` or ``en pt-BR``: the words, in order."""
    return [w for w in text.replace(",", " ").split() if w]


async def _form(request: web.Request) -> MultiDictProxy[Any]:
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        raise BadRequestError(f"the form is larger than {MAX_FORM_BYTES} bytes")
    return await request.post()


def _browser(request: web.Request) -> str:
    return request[SESSION_KEY].csrf


def _back(raw: str) -> str:
    """A path on this server to go back to (never another origin)."""
    if raw.startswith("/") and not raw.startswith("//") and "\\" not in raw:
        return raw[:512]
    return "/"


def _status(exc: ProtocolError) -> int:
    return exc.status if exc.status in (400, 403, 404, 409) else FAILED_STATUS


# -- the passphrase (spec 0007 #web-passphrase) ----------------------------------------------


def _server_passphrase(state: WebState) -> str | None:
    try:
        return passphrase_from(state.passphrase_file)
    except ProtocolError:
        return None


def needs_passphrase(state: WebState) -> bool:
    """Whether signing needs a passphrase typed in the form: the acting identity's key
    is sealed and the server has no source (``--passphrase-file``, the environment)."""
    try:
        stored = state.reads.stored_identity()
    except ProtocolError:
        return False
    return stored.sealed and _server_passphrase(state) is None


async def _unseal(state: WebState, form: MultiDictProxy[Any]) -> Identity:
    """The acting identity, unsealed for this request with the typed passphrase, else
    the server's source; nothing is kept."""
    typed = _field(form, "passphrase", MAX_SECRET_BYTES)
    if not typed and needs_passphrase(state):
        raise PassphraseError(
            "your key is protected by a passphrase: type it in the form (or start murmur "
            "web with --passphrase-file PATH or $MURMUR_PASSPHRASE)"
        )
    return await asyncio.to_thread(
        state.reads.identity, lambda _stored: typed or passphrase_from(state.passphrase_file)
    )


# -- compose ----------------------------------------------------------------------------------


def _draft_key(request: web.Request, form: DraftForm) -> tuple[str, str, str, str]:
    me = request.app[WEB].reads.me() or ""
    return (_browser(request), me, form.reply_to.lower(), form.quote.lower())


def _compose_page(
    request: web.Request,
    form: DraftForm,
    *,
    status: int = 200,
    error: ProtocolError | None = None,
    saved: bool = False,
) -> web.Response:
    state = request.app[WEB]
    return render(
        request,
        "compose.html",
        status=status,
        title="Reply" if form.reply_to else "Compose",
        form=form,
        error=error,
        saved=saved,
        needs_passphrase=needs_passphrase(state),
    )


@routes.get("/compose", name="compose")
async def compose(request: web.Request) -> web.Response:
    asked = DraftForm(
        reply_to=request.query.get("reply", "")[:64].strip(),
        quote=request.query.get("quote", "")[:64].strip(),
    )
    kept = request.app[COMPOSE].drafts.get(_draft_key(request, asked))
    return _compose_page(request, kept or asked, saved="saved" in request.query)


@routes.post("/compose", name="compose-send")
async def send(request: web.Request) -> web.StreamResponse:
    state = request.app[WEB]
    raw = await _form(request)
    form = DraftForm.of(raw)
    key = _draft_key(request, form)
    request.app[COMPOSE].keep(key, form)  # before anything can fail
    if raw.get("save") is not None:
        query = {"saved": "1", **({"reply": form.reply_to} if form.reply_to else {})}
        query |= {"quote": form.quote} if form.quote else {}
        raise web.HTTPSeeOther(request.app.router["compose"].url_for().with_query(query))
    try:
        draft = form.draft()
        identity = await _unseal(state, raw)
        done = await actions.post(state.reads, draft, identity=identity)
    except ProtocolError as exc:
        log.info("post failed code=%s (draft kept)", exc.code)
        return _compose_page(request, form, status=_status(exc), error=exc)
    request.app[COMPOSE].drafts.pop(key, None)
    verb = "Replied" if draft.reply_to is not None else "Posted"
    log.info("%s id=%s", verb.lower(), done.event.id_hex)
    return _to_outcome(request, _done_outcome(done, verb, back="/"))


# -- like, repost, delete and their undoing ----------------------------------------------------


def _confirm_page(
    request: web.Request,
    kind: str,
    target: str,
    back: str,
    *,
    status: int = 200,
    error: ProtocolError | None = None,
) -> web.Response:
    state = request.app[WEB]
    return render(
        request,
        "act_confirm.html",
        status=status,
        title="Delete" if kind == "delete" else kind.capitalize(),
        kind=kind,
        target=target,
        back=back,
        error=error,
        needs_passphrase=needs_passphrase(state),
    )


@routes.get("/delete/{id}", name="delete")
async def delete(request: web.Request) -> web.Response:
    target = request.match_info["id"][:64]
    parse_event_ref(target)  # bad-request (400) for anything but an id
    back = _back(request.query.get("next", "/"))
    return _confirm_page(request, "delete", target, back)


@routes.post("/act", name="act")
async def act(request: web.Request) -> web.StreamResponse:
    state = request.app[WEB]
    raw = await _form(request)
    kind = _field(raw, "kind", 16)
    target = _field(raw, "id", 64).strip()
    back = _back(_field(raw, "next", 512))
    if kind not in ACTS:
        raise BadRequestError(f"unknown action {kind!r}: one of {', '.join(ACTS)}")
    ref = parse_event_ref(target)
    confirmed = raw.get("confirm") == "1"
    typed = bool(_field(raw, "passphrase", MAX_SECRET_BYTES))
    if (kind == "delete" and not confirmed) or (needs_passphrase(state) and not typed):
        return _confirm_page(request, kind, target, back)
    run, event_kind, verb = ACTS[kind]
    try:
        identity = await _unseal(state, raw)
        done = await run(state.reads, event_kind, ref, identity=identity)
    except ProtocolError as exc:
        log.info("%s failed code=%s", kind, exc.code)
        return _confirm_page(request, kind, target, back, status=_status(exc), error=exc)
    if isinstance(done, Unchanged):
        outcome = _unchanged_outcome(request, done, back)
    else:
        if kind in ("unlike", "unrepost") and done.target is not None:
            verb = f"{verb} {short_id(done.target)}: deleted"
        outcome = _done_outcome(done, verb, back=back)
    log.info("%s %s", kind, "signed" if outcome.changed else "stood already")
    return _to_outcome(request, outcome)


# -- follow, unfollow --------------------------------------------------------------------------


@routes.post("/follow", name="follow")
async def follow(request: web.Request) -> web.StreamResponse:
    state = request.app[WEB]
    raw = await _form(request)
    kind = _field(raw, "kind", 16)
    did = _field(raw, "did", 256).strip()
    alias = _field(raw, "alias", 128).strip() if kind == "follow" else ""
    if kind not in ("follow", "unfollow"):
        raise BadRequestError(f"unknown action {kind!r}: follow or unfollow")
    did_method(did)  # invalid-did (400): only a did, never a name to resolve
    back = f"/author/{quote(did, safe=':')}"  # as the pages link it
    try:
        identity = await _unseal(state, raw)
        done = await actions.follow(
            state.reads, did, unfollow=kind == "unfollow", alias=alias or None, identity=identity
        )
    except ProtocolError as exc:
        log.info("%s failed code=%s", kind, exc.code)
        raise
    if isinstance(done, Unchanged):
        outcome = _unchanged_outcome(request, done, back)
    else:
        who = _names(request, done).display(did)
        outcome = _done_outcome(done, f"{kind.capitalize()}ed {who}:", back=back)
    log.info("%s %s", kind, "signed" if outcome.changed else "stood already")
    ticket = request.app[COMPOSE].add_outcome(_browser(request), outcome)
    raise web.HTTPSeeOther(f"{back}?done={ticket}")


# -- outcomes ---------------------------------------------------------------------------------


def held_outcome(request: web.Request, ticket: str) -> Outcome | None:
    """The outcome kept under ``ticket`` for this browser session, else None."""
    held = request.app[COMPOSE].outcomes.get(ticket)
    if held is None or not secrets.compare_digest(held[0], _browser(request)):
        return None
    return held[1]


def _names(request: web.Request, done: Done | Unchanged) -> Names:
    reads = request.app[WEB].reads
    return Names(reads.config, reads.profiles_with_own(done.profiles))


def _nodes(outcomes: tuple[NodeOutcome, ...]) -> tuple[dict[str, Any], ...]:
    return tuple(
        {
            "url": safe_line(o.url),
            "status": safe_line(o.status),
            "code": None if o.code is None else safe_line(o.code),
            "message": None if o.message is None else safe_line(o.message),
            "stored": o.stored,
        }
        for o in outcomes
    )


def _cut(nodes: tuple[NodeReport, ...]) -> tuple[str, ...]:
    return tuple(
        f"{safe_line(n.url)}: {n.error.code}: {safe_line(n.error.message)}"
        for n in nodes
        if n.error is not None
    )


def _done_outcome(done: Done, verb: str, *, back: str) -> Outcome:
    e = done.event
    thread = e.id_hex if e.kind == kinds.POST else (done.target.hex() if done.target else None)
    if e.kind == kinds.DELETE:
        thread = None
    stored = sum(1 for o in done.result.outcomes if o.stored)
    message = f"{verb} {short_id(e.id)} — stored on {stored} of {len(done.result.outcomes)} node(s)"
    if not done.result.quorum_met:
        message += f"; fewer than the {done.result.quorum} asked for"
    return Outcome(
        title=verb.split(" ")[0],
        message=message,
        event=e.id_hex,
        thread=thread,
        nodes=_nodes(done.result.outcomes),
        stored_on=stored,
        not_consulted=_cut(done.not_consulted),
        notes=tuple(safe_line(n) for n in done.notes),
        back=back,
    )


def _unchanged_outcome(request: web.Request, done: Unchanged, back: str) -> Outcome:
    return Outcome(
        title="Nothing to do",
        message=done.message(_names(request, done).display),
        thread=done.target.hex() if done.target is not None else None,
        not_consulted=_cut(done.not_consulted),
        back=back,
        changed=False,
    )


def _to_outcome(request: web.Request, outcome: Outcome) -> web.StreamResponse:
    ticket = request.app[COMPOSE].add_outcome(_browser(request), outcome)
    raise web.HTTPSeeOther(request.app.router["done"].url_for(ticket=ticket))


@routes.get("/done/{ticket}", name="done")
async def done_page(request: web.Request) -> web.Response:
    outcome = held_outcome(request, request.match_info["ticket"])
    if outcome is None:
        return render(
            request,
            "error.html",
            status=404,
            title="Gone",
            code="not-found",
            message="this outcome is no longer kept (or belongs to another browser session)",
        )
    return render(request, "done.html", title=outcome.title, outcome=outcome)


def setup(app: web.Application) -> None:
    app[COMPOSE] = ComposeState()
    app.router.add_routes(routes)
