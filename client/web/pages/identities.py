"""Identities: the home's identities, which one this server acts as, a new rotatable
one, a key rotation and a recovery (spec 0007 #web-identities, #rotatable-keys).

- ``GET /identities`` lists them: the acting one (this server's, for every browser
  session of it) and the home's default (what the CLI uses without ``--as``) marked.
- ``POST /identities/use`` makes one the acting identity of this server (in memory,
  until it stops); with ``default`` ticked, also the home's default
  (:meth:`client.keystore.Keystore.set_default`).
- ``POST /identities/new`` prepares a rotatable did:murmur (:func:`client.keyops.
  prepare_rotatable`: S, N, recovery keys, the signed genesis) and stores *nothing*:
  it answers the recovery keys, once, as a phrase and a downloadable file, with
  ``Cache-Control: no-store``; the prepared keys wait in memory (a ticket bound to the
  browser session, :data:`PENDING_TTL_S`) until ``POST /identities/new/confirm`` says
  they were saved, which stores S and N (sealed with the passphrase typed then) and
  sends the genesis. Shown before committed to (spec 0007 #recovery-shown-first): a
  page that never arrived commits to nothing. The recovery keys are never stored
  and never shown again.
- ``POST /identities/rotate`` and ``POST /identities/recover`` (a recovery key file
  uploaded, or its phrase) are ``murmur id rotate`` and ``murmur id recover`` of an
  identity of this home (:mod:`client.identities`), then the signed event is sent.

Passphrases come from the form of the action that needs one, or, left blank, from
``murmur --passphrase-file PATH web`` or ``$MURMUR_PASSPHRASE`` (spec 0007
#web-passphrase); they are used for that request and kept nowhere. Sealing and
unsealing (scrypt) run in a worker thread. Keys never reach a page: only the new
recovery keys do, once, because showing them is the point.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from multidict import MultiDictProxy

from client.errors import IdentityExistsError, PassphraseError
from client.identities import KeyChange, OutboxSent, recover_identity, rotate_identity, send_outbox
from client.keyops import (
    PreparedRotatable,
    prepare_rotatable,
    recovery_file_text,
    recovery_phrase,
    store_rotatable,
)
from client.keystore import Keystore, StoredIdentity
from client.secretfiles import MAX_SECRET_BYTES, passphrase_from
from client.textsafety import safe_line
from client.web.context import WEB, WebState, render
from client.web.security import SESSION_KEY
from protocol.errors import BadRequestError, ProtocolError
from protocol.limits import MAX_RECOVERY_KEYS

__all__ = ["PENDING", "Pending", "setup"]

log = logging.getLogger("murmur.client.web.identities")

#: How long prepared keys wait for "I saved the recovery keys".
PENDING_TTL_S: Final = 15 * 60
#: Prepared identities kept at once (the oldest is dropped).
MAX_PENDING: Final = 8
#: Every answer of this group: a browser must not keep a recovery key, or a form.
NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}
#: Largest form accepted (a recovery key file is well under 1 KiB).
MAX_FORM_BYTES: Final = 16 * 1024


@dataclass(slots=True)
class PendingIdentity:
    name: str
    prepared: PreparedRotatable
    #: The browser session's CSRF token: only that session can confirm it.
    session: str
    expires: float


@dataclass(slots=True)
class Pending:
    """Prepared identities waiting for their owner to confirm the recovery keys."""

    items: dict[str, PendingIdentity] = field(default_factory=dict)

    def add(self, item: PendingIdentity) -> str:
        self.prune()
        while len(self.items) >= MAX_PENDING:
            self.items.pop(next(iter(self.items)))
        ticket = secrets.token_urlsafe(32)
        self.items[ticket] = item
        return ticket

    def take(self, ticket: str, session: str) -> PendingIdentity | None:
        self.prune()
        item = self.items.get(ticket)
        if item is None or not secrets.compare_digest(item.session, session):
            return None
        return self.items.pop(ticket)

    def put_back(self, ticket: str, item: PendingIdentity) -> None:
        self.items[ticket] = item

    def prune(self) -> None:
        now = time.monotonic()
        for t in [t for t, i in self.items.items() if i.expires < now]:
            del self.items[t]


PENDING: Final = web.AppKey("murmur.web.pending-identities", Pending)

routes = web.RouteTableDef()


def _session(request: web.Request) -> str:
    return request[SESSION_KEY].csrf


def _answer(response: web.StreamResponse) -> web.StreamResponse:
    response.headers.update(NO_STORE)
    return response


def _field(form: MultiDictProxy[Any], name: str, limit: int = 256) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


async def _form(request: web.Request) -> MultiDictProxy[Any]:
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        raise BadRequestError(f"the form is larger than {MAX_FORM_BYTES} bytes")
    return await request.post()


def _rows(state: WebState) -> list[dict[str, Any]]:
    store = state.reads.keystore
    identities = store.list()
    default = identities[0].name if identities else None
    try:
        acting = state.reads.stored_identity().name
    except ProtocolError:
        acting = None
    return [{"id": i, "default": i.name == default, "acting": i.name == acting} for i in identities]


def _page(
    request: web.Request,
    *,
    status: int = 200,
    error: ProtocolError | None = None,
    form: str = "",
    typed: dict[str, str] | None = None,
) -> web.StreamResponse:
    state = request.app[WEB]
    done = {k: request.query[k][:64] for k in ("used", "default", "created") if k in request.query}
    return _answer(
        render(
            request,
            "identities.html",
            status=status,
            title="Identities",
            rows=_rows(state),
            error=error,
            error_form=form,
            typed=typed or {},
            done=done,
            has_source=_has_source(state),
            max_recovery=MAX_RECOVERY_KEYS,
        )
    )


def _has_source(state: WebState) -> bool:
    """Whether a passphrase left blank is read from a file or the environment."""
    try:
        return passphrase_from(state.passphrase_file) is not None
    except ProtocolError:
        return False


def _passphrase(state: WebState, form: MultiDictProxy[Any]) -> str | None:
    """The typed passphrase, else the server's source (file, environment), else None."""
    typed = _field(form, "passphrase", MAX_SECRET_BYTES)
    return typed if typed else passphrase_from(state.passphrase_file)


def _new_passphrase(state: WebState, form: MultiDictProxy[Any], name: str) -> str | None:
    """A new passphrase to seal ``name``'s keys: typed twice, else the server's source;
    None only when ``no_encrypt`` is ticked."""
    if form.get("no_encrypt") == "1":
        return None
    typed = _field(form, "passphrase", MAX_SECRET_BYTES)
    if typed:
        if typed != _field(form, "passphrase2", MAX_SECRET_BYTES):
            raise PassphraseError("the two passphrases differ")
        return typed
    source = passphrase_from(state.passphrase_file)
    if not source:
        raise PassphraseError(
            f"no passphrase to seal the keys of {name!r}: type one (twice), start murmur web "
            "with --passphrase-file PATH or $MURMUR_PASSPHRASE, or tick 'store unencrypted'"
        )
    return source


async def _send(state: WebState, stored: StoredIdentity) -> OutboxSent:
    reads = state.reads
    try:
        nodes = reads.node_clients()
    except ProtocolError:
        nodes = []
    return await send_outbox(
        reads.keystore, stored, nodes, net=reads.net(), node_timeout=reads.timeout()
    )


# -- list and switch ----------------------------------------------------------------------


@routes.get("/identities", name="identities")
async def identities(request: web.Request) -> web.StreamResponse:
    return _page(request)


@routes.post("/identities/use", name="identities-use")
async def use(request: web.Request) -> web.StreamResponse:
    state = request.app[WEB]
    form = await _form(request)
    name = _field(form, "name", 64)
    try:
        stored = state.reads.keystore.get(Keystore.check_name(name))
        make_default = form.get("default") == "1"
        if make_default:
            state.reads.keystore.set_default(stored.name)
    except ProtocolError as exc:
        return _page(request, status=400, error=exc, form="use")
    state.reads.as_name = stored.name
    log.info("acting identity name=%s default=%s", stored.name, make_default)
    query = {"used": stored.name, **({"default": stored.name} if make_default else {})}
    raise web.HTTPSeeOther(request.app.router["identities"].url_for().with_query(query))


# -- a new rotatable identity -------------------------------------------------------------


def _recovery_count(form: MultiDictProxy[Any]) -> int:
    raw = _field(form, "recovery_keys", 8) or "1"
    try:
        value = int(raw)
    except ValueError:
        raise BadRequestError(f"recovery keys: {raw!r} is not a number") from None
    if not 1 <= value <= MAX_RECOVERY_KEYS:
        raise BadRequestError(f"recovery keys: 1 to {MAX_RECOVERY_KEYS}")
    return value


@routes.post("/identities/new", name="identities-new")
async def new(request: web.Request) -> web.StreamResponse:
    state = request.app[WEB]
    form = await _form(request)
    name = _field(form, "name", 64)
    typed = {"name": name, "recovery_keys": _field(form, "recovery_keys", 8)}
    try:
        store = state.reads.keystore
        if store.exists(Keystore.check_name(name)):
            raise IdentityExistsError(f"an identity named {name!r} already exists")
        prepared = await asyncio.to_thread(
            prepare_rotatable, recovery_keys=_recovery_count(form), net=state.reads.net()
        )
    except ProtocolError as exc:
        return _page(request, status=400, error=exc, form="new", typed=typed)
    ticket = request.app[PENDING].add(
        PendingIdentity(
            name=name,
            prepared=prepared,
            session=_session(request),
            expires=time.monotonic() + PENDING_TTL_S,
        )
    )
    log.info("identity prepared name=%s (nothing stored until confirmed)", name)
    return _answer(_recovery_page(request, name, prepared, ticket))


def _recovery_page(
    request: web.Request,
    name: str,
    prepared: PreparedRotatable,
    ticket: str,
    *,
    show_keys: bool = True,
    status: int = 200,
    error: ProtocolError | None = None,
) -> web.Response:
    did = prepared.did
    keys = []
    if show_keys:
        for rk in prepared.recovery:
            text = recovery_file_text(did, rk)
            keys.append(
                {
                    "position": rk.position,
                    "count": rk.count,
                    "phrase": recovery_phrase(rk.key.seed),
                    "file_name": f"{name}-recovery-{rk.position}.key",
                    "href": "data:text/plain;charset=utf-8," + urllib.parse.quote(text),
                }
            )
    return render(
        request,
        "identity_recovery.html",
        status=status,
        title="Save your recovery key",
        name=name,
        did=did,
        keys=keys,
        ticket=ticket,
        error=error,
        has_source=_has_source(request.app[WEB]),
    )


@routes.post("/identities/new/confirm", name="identities-confirm")
async def confirm(request: web.Request) -> web.StreamResponse:
    state = request.app[WEB]
    form = await _form(request)
    ticket = _field(form, "ticket", 128)
    pending = request.app[PENDING].take(ticket, _session(request))
    if pending is None:
        error = BadRequestError(
            "this new identity is no longer waiting (confirmed already, cancelled, or older "
            f"than {PENDING_TTL_S // 60} minutes): nothing was stored; create it again"
        )
        return _page(request, status=400, error=error, form="new")
    if form.get("cancel") == "1":
        log.info("identity cancelled name=%s (nothing stored)", pending.name)
        raise web.HTTPSeeOther(request.app.router["identities"].url_for())
    try:
        if form.get("saved") != "1":
            raise BadRequestError(
                "tick 'I have saved the recovery key offline' first: nothing is stored before"
            )
        passphrase = _new_passphrase(state, form, pending.name)
        store = state.reads.keystore
        made = await asyncio.to_thread(
            store_rotatable, store, pending.name, pending.prepared, passphrase=passphrase
        )
    except ProtocolError as exc:
        request.app[PENDING].put_back(ticket, pending)  # nothing stored: try again
        return _answer(
            _recovery_page(
                request,
                pending.name,
                pending.prepared,
                ticket,
                show_keys=False,
                status=400,
                error=exc,
            )
        )
    log.info("identity created name=%s did=%s", made.stored.name, made.stored.did)
    sent = await _send(state, made.stored)
    return _answer(
        _done(request, "Created", made.stored, made.genesis, sent, what="genesis", resent=False)
    )


# -- rotation and recovery ------------------------------------------------------------------


def _done(
    request: web.Request,
    verb: str,
    stored: StoredIdentity,
    event: Any,
    sent: OutboxSent,
    *,
    what: str,
    resent: bool,
) -> web.Response:
    results = [r for r in sent.results if r.event.id == event.id]
    outcomes = [
        {
            "url": safe_line(o.url),
            "status": safe_line(o.status),
            "code": None if o.code is None else safe_line(o.code),
            "message": None if o.message is None else safe_line(o.message),
            "stored": o.stored,
        }
        for o in (results[0].outcomes if results else ())
    ]
    return render(
        request,
        "identity_done.html",
        title=f"{verb} {stored.name}",
        verb=verb,
        stored=stored,
        event=event,
        what=what,
        resent=resent,
        outcomes=outcomes,
        stored_on=sum(1 for o in outcomes if o["stored"]),
        restored={safe_line(u): n for u, n in sent.restored.items() if n},
    )


async def _key_change(
    request: web.Request,
    form_name: str,
    change: Callable[[WebState, MultiDictProxy[Any], str], KeyChange],
    what: str,
) -> web.StreamResponse:
    state = request.app[WEB]
    try:
        form = await _form(request)
        name = Keystore.check_name(_field(form, "name", 64))
        done = await asyncio.to_thread(change, state, form, name)
    except ProtocolError as exc:
        return _page(request, status=400, error=exc, form=form_name)
    log.info("%s signed name=%s id=%s resent=%s", what, name, done.event.id_hex, done.resent)
    sent = await _send(state, done.stored)
    verb = "Rotated" if what == "rotation" else "Recovered"
    return _answer(
        _done(request, verb, done.stored, done.event, sent, what=what, resent=done.resent)
    )


def _rotate(state: WebState, form: MultiDictProxy[Any], name: str) -> KeyChange:
    return rotate_identity(
        state.reads.keystore,
        name,
        passphrase=lambda: _passphrase(state, form),
        net=state.reads.net(),
    )


def _recovery_text(form: MultiDictProxy[Any]) -> str:
    upload = form.get("recovery_file")
    if isinstance(upload, web.FileField):
        raw = upload.file.read(MAX_SECRET_BYTES + 1)
        if len(raw) > MAX_SECRET_BYTES:
            raise BadRequestError("the recovery key file is too large to be one")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequestError("the recovery key file is not text") from None
        if text.strip():
            return text
    phrase = _field(form, "phrase", MAX_SECRET_BYTES)
    if not phrase.strip():
        raise BadRequestError("give the recovery key: its file, or its phrase")
    return phrase


def _recover(state: WebState, form: MultiDictProxy[Any], name: str) -> KeyChange:
    store = state.reads.keystore
    if not store.exists(name):
        raise BadRequestError(
            f"{name} is not an identity of this home; to recover an identity on a new "
            f"machine, run: murmur id recover {name} --recovery-key FILE --after ID"
        )
    text = _recovery_text(form)
    return recover_identity(
        store,
        name,
        recovery_key=text,
        new_passphrase=lambda: _new_passphrase(state, form, name),
        net=state.reads.net(),
    )


@routes.post("/identities/rotate", name="identities-rotate")
async def rotate(request: web.Request) -> web.StreamResponse:
    return await _key_change(request, "rotate", _rotate, "rotation")


@routes.post("/identities/recover", name="identities-recover")
async def recover(request: web.Request) -> web.StreamResponse:
    return await _key_change(request, "recover", _recover, "recovery")


def setup(app: web.Application) -> None:
    app[PENDING] = Pending()
    app.router.add_routes(routes)
