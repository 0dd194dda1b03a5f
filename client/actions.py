"""What a person does, for every face: post, like, repost, delete, undo a like or a
repost, follow, unfollow, set a profile, label (spec 0003 §3, spec 0007).

Each action takes a :class:`~client.session.Session`, checks what it must before
anything is signed, signs with the acting identity and publishes to the node set, and
returns a plain result: :class:`Done` (what was published, on which nodes) or
:class:`Unchanged` (what was asked for holds already: nothing was signed, spec 0007
#no-duplicates). Faces only parse their input (:meth:`Draft.parse`, event refs, names)
and draw the result; errors are the tree of :mod:`protocol.errors`, with their codes.

- A post needs text, unless it quotes (spec 0007 #empty-post); its mentions, links and
  hashtags become facets (spec 0007 #facets; a mention nobody resolves is a warning
  through ``session.warn``); a reply names the thread's root and its parent.
- Event ids may be short, as the views print them (spec 0007 #short-ids).
- The reads before signing (short ids, the target, the duplicate check, profiles) do
  not wait for a slow node once enough others answered; the nodes they went on
  without are :attr:`Done.not_consulted` (spec 0007 #slow-lookups).
- Likes, reposts, deletes and follows are state: one that already stands is not
  signed again (:mod:`client.ownacts`). Undoing a like or a repost deletes the
  reader's own standing ones (all of them, should an older client have signed two).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from client.facets import fill_post
from client.fanout import Cut
from client.feeds.config import check_feed_name, check_feed_nodes
from client.imagexfer import upload_images
from client.media import PreparedImage
from client.names import short_id
from client.ownacts import own_acts
from client.publish import Publisher, PublishResult
from client.reader import NodeReport, Reader, reply_root
from client.session import Session
from client.shortids import EventRef, parse_event_ref
from client.views import profile_view, profiles_of
from protocol import kinds
from protocol.embeds import EmbedImage
from protocol.errors import (
    BadFieldError,
    BadRequestError,
    InvalidDidError,
    NotAuthorError,
    NotFoundError,
)
from protocol.events import Event
from protocol.identity import Identity
from protocol.kinds import is_label_value
from protocol.limits import MAX_EMBED_IMAGES, MAX_FEED_DESCRIPTION_BYTES

__all__ = [
    "Done",
    "Draft",
    "DraftImage",
    "Unchanged",
    "act_on",
    "announce_feed",
    "checks_reader",
    "follow",
    "is_blank",
    "label",
    "post",
    "set_profile",
    "undo",
]

#: Kinds :func:`act_on` signs about an event, and :func:`undo` withdraws.
TARGET_KINDS = (kinds.LIKE, kinds.REPOST, kinds.DELETE)
UNDO_KINDS = (kinds.LIKE, kinds.REPOST)


def is_blank(text: str) -> bool:
    """Empty, or only spaces, line breaks and invisible format characters."""
    return all(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zs") for ch in text)


@dataclass(frozen=True, slots=True, kw_only=True)
class DraftImage:
    """One image of a draft: the bytes to upload and what the post will claim."""

    prepared: PreparedImage
    claim: EmbedImage

    @classmethod
    def of(cls, prepared: PreparedImage, alt: str) -> DraftImage:
        """``bad-field`` for an alt text the protocol refuses (too long)."""
        return cls(prepared=prepared, claim=prepared.claim(alt))


@dataclass(frozen=True, slots=True, kw_only=True)
class Draft:
    """A post to write: text, what it replies to and quotes, content warnings (self
    labels, e.g. ``spoiler``) and languages (BCP 47)."""

    text: str
    reply_to: EventRef | None = None
    quote: EventRef | None = None
    warn: tuple[str, ...] = ()
    langs: tuple[str, ...] = ()
    #: Images to embed (spec 0007 #images): prepared bytes and their claims (alt text
    #: included), uploaded to the node set right before the post is signed.
    images: tuple[DraftImage, ...] = ()

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        reply_to: str | None = None,
        quote: str | None = None,
        warn: Sequence[str] = (),
        langs: Sequence[str] = (),
        images: Sequence[tuple[PreparedImage, str]] = (),
    ) -> Draft:
        """A draft from what a person typed; ``bad-request`` for an empty post (spec
        0007 #empty-post) or an id that is not one (spec 0007 #short-ids); ``images``:
        prepared images with their alt text (``bad-field`` for more than
        ``MAX_EMBED_IMAGES`` or an alt text over ``MAX_ALT_BYTES``)."""
        if is_blank(text) and not quote and not images:
            raise BadRequestError(
                "a post needs text: this one is empty or only spaces (spec 0007 #empty-post; "
                "only a quote or images may leave its text empty)"
            )
        if len(images) > MAX_EMBED_IMAGES:
            raise BadFieldError(f"{len(images)} images: a post embeds at most {MAX_EMBED_IMAGES}")
        return cls(
            images=tuple(DraftImage.of(p, alt) for p, alt in images),
            text=text,
            reply_to=parse_event_ref(reply_to) if reply_to else None,
            quote=parse_event_ref(quote) if quote else None,
            warn=tuple(dict.fromkeys(warn)),
            langs=tuple(dict.fromkeys(langs)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Done:
    """An action that signed: the (last) event it published and each node's outcome."""

    result: PublishResult
    #: Profiles read on the way (the acting identity's, a followed person's).
    profiles: dict[str, Event] = field(default_factory=dict)
    #: Nodes the checks before signing went on without (spec 0007 #slow-lookups).
    not_consulted: tuple[NodeReport, ...] = ()
    #: The event acted on (a like's post, the post whose like was withdrawn).
    target: bytes | None = None
    #: Who was followed or unfollowed.
    subject: str | None = None
    #: The standing events an undo deleted.
    undone: tuple[Event, ...] = ()
    #: What the person should know about what was signed (an ``@name`` nobody resolves
    #: stayed plain text); also given to ``session.warn`` before signing.
    notes: tuple[str, ...] = ()

    @property
    def event(self) -> Event:
        return self.result.event


@dataclass(frozen=True, slots=True, kw_only=True)
class Unchanged:
    """What was asked for holds already; nothing was signed (spec 0007 #no-duplicates).

    ``reason`` is a stable code: ``already-liked``, ``already-reposted``,
    ``already-deleted``, ``not-liked``, ``not-reposted``, ``already-following``,
    ``not-following``."""

    reason: str
    target: bytes | None = None
    #: The standing event that makes it hold (a like already signed).
    existing: Event | None = None
    subject: str | None = None
    #: Profiles read on the way (to name the subject).
    profiles: dict[str, Event] = field(default_factory=dict)
    not_consulted: tuple[NodeReport, ...] = ()

    def message(self, name: Callable[[str], str]) -> str:
        """For people; ``name`` shows a did the face's way."""
        target = short_id(self.target) if self.target is not None else ""
        said = _SAID[self.reason]
        if self.reason == "already-deleted":
            return f"Event {target} is deleted already; nothing was signed."
        if self.subject is not None:
            who = name(self.subject)
            if self.reason == "already-following":
                return f"You follow {who} already; nothing was signed."
            return f"{said} {who}; nothing was signed."
        if self.existing is not None:
            return (
                f"{said} {target} ({self.existing.kind} {short_id(self.existing.id)}); "
                "nothing was signed."
            )
        return f"{said} {target}; nothing was signed."

    def extra(self) -> dict[str, Any]:
        """What the JSON forms add: ``target``, ``existing``, ``subject`` when known."""
        out: dict[str, Any] = {}
        if self.target is not None:
            out["target"] = self.target.hex()
        if self.existing is not None:
            out["existing"] = self.existing.id_hex
        if self.subject is not None:
            out["subject"] = self.subject
        return out


_SAID = {
    "already-liked": "You already like",
    "already-reposted": "You already reposted",
    "already-deleted": "",
    "not-liked": "You do not like",
    "not-reposted": "You have not reposted",
    "already-following": "You follow",
    "not-following": "You do not follow",
}
#: Why nothing was signed, by kind: the act stands already / does not stand.
_STANDING = {kinds.LIKE: "already-liked", kinds.REPOST: "already-reposted"}
_NOT_STANDING = {kinds.LIKE: "not-liked", kinds.REPOST: "not-reposted"}


def checks_reader(pub: Publisher) -> Reader:
    """The reader of what an action checks before signing: its fan-outs go on without
    a node still silent ``QUORUM_GRACE_S`` after the publish quorum answered (spec 0007
    #slow-lookups)."""
    return Reader(
        pub.nodes,
        net=pub.net,
        timeout=pub.timeout,
        keycache=pub.keycache,
        cut=Cut(quorum=pub.quorum),
    )


def _cut(reader: Reader) -> tuple[NodeReport, ...]:
    return tuple(n for n in reader.report.nodes if n.error is not None)


async def _find(reader: Reader, eid: bytes, why: str) -> Event:
    found = await reader.find(eid)
    if found is None:
        errors = "; ".join(f"{n.url}: {n.error.code}" for n in reader.report.nodes if n.error)
        raise NotFoundError(
            f"cannot {why}: no configured node holds event {eid.hex()}"
            + (f" ({errors})" if errors else "")
        )
    return found


def _mention_resolver(session: Session) -> Callable[[str], str | None]:
    """Who ``@name`` in a post is: a petname, else a local identity's name, as for
    ``DID|ALIAS`` arguments (spec 0007 #facets); None for a name neither knows."""

    def resolve(name: str) -> str | None:
        try:
            return session.resolve(name)
        except InvalidDidError:
            return None

    return resolve


# -- post -------------------------------------------------------------------------------


async def post(
    session: Session,
    draft: Draft,
    *,
    identity: Identity | None = None,
    progress: Callable[[str], None] | None = None,
) -> Done:
    """Sign and publish ``draft`` (a reply when it has ``reply_to``). ``identity``: the
    acting identity, unsealed by the face already (else the session unseals it).

    The draft's images are uploaded to every node right before signing (spec 0007
    #images; ``progress`` hears of each upload): ``upload-failed`` and nothing signed
    unless one node took them all; a node that did not is a note (``session.warn``)."""
    body: dict[str, Any] = {"text": draft.text}
    if draft.langs:
        body["langs"] = list(draft.langs)
    if draft.warn:
        body["warn"] = list(draft.warn)
    notes = tuple(fill_post(body, _mention_resolver(session)))  # mentions, links, #tags
    for note in notes:
        session.warn(note)
    async with session.publisher(identity) as pub:
        reader = checks_reader(pub)
        if draft.reply_to is not None:
            parent = await _find(reader, await session.event_id(reader, draft.reply_to), "reply")
            body["reply"] = {"root": reply_root(parent) or parent.id, "parent": parent.id}
        if draft.quote is not None:
            body["quote"] = await session.event_id(reader, draft.quote)
        if draft.images:
            uploaded = await upload_images(
                pub.nodes, [i.prepared for i in draft.images], progress=progress or _quiet
            )
            for f in uploaded.failed:
                note = f"{f.url} did not take the images ({f.code}); it may fetch them from peers"
                session.warn(note)
                notes = (*notes, note)
            body["embed"] = {"images": [i.claim.to_map() for i in draft.images]}
        result = await pub.publish(kinds.POST, body)
        return Done(result=result, not_consulted=_cut(reader), notes=notes)


def _quiet(message: str) -> None:
    """No progress reports."""


# -- like, repost, delete, and their undoing --------------------------------------------


async def act_on(
    session: Session, kind: str, ref: EventRef, *, identity: Identity | None = None
) -> Done | Unchanged:
    """Like, repost or delete (``kind``) the event ``ref`` names, unless that stands
    already. Only an event's author can delete it (``not-author``)."""
    if kind not in TARGET_KINDS:
        raise ValueError(f"act_on signs {TARGET_KINDS}, not {kind!r}")
    async with session.publisher(identity) as pub:
        reader = checks_reader(pub)
        target = await session.event_id(reader, ref)
        if kind == kinds.DELETE:
            held = await reader.find(target)
            if held is not None and held.author != pub.did:
                raise NotAuthorError(
                    f"event {target.hex()} was written by {held.author}; "
                    "only its author can delete it"
                )
        else:
            await _find(reader, target, kind)
        acts = await own_acts(reader, pub.did, [kind], chain=pub.chain)
        profiles = {pub.did: acts.profile} if acts.profile is not None else {}
        session.profiles_with_own(profiles)  # keeps the own profile just read
        if kind == kinds.DELETE and target in acts.deleted:
            return Unchanged(reason="already-deleted", target=target, not_consulted=_cut(reader))
        standing = acts.acting_on(kind, target) if kind in _STANDING else None
        if standing is not None:
            return Unchanged(
                reason=_STANDING[kind],
                target=target,
                existing=standing,
                not_consulted=_cut(reader),
            )
        result = await pub.publish(kind, {"target": target})
        return Done(result=result, profiles=profiles, target=target, not_consulted=_cut(reader))


async def undo(
    session: Session, kind: str, ref: EventRef, *, identity: Identity | None = None
) -> Done | Unchanged:
    """Withdraw the acting identity's like or repost (``kind``) of ``ref``: delete each
    standing one."""
    if kind not in UNDO_KINDS:
        raise ValueError(f"undo withdraws {UNDO_KINDS}, not {kind!r}")
    async with session.publisher(identity) as pub:
        reader = checks_reader(pub)
        target = await session.event_id(reader, ref)
        acts = await own_acts(reader, pub.did, [kind], chain=pub.chain)
        profiles = {pub.did: acts.profile} if acts.profile is not None else {}
        standing = [
            e
            for e in acts.events
            if e.kind == kind and e.body is not None and e.body.get("target") == target
        ]
        if not standing:
            return Unchanged(reason=_NOT_STANDING[kind], target=target, not_consulted=_cut(reader))
        results = [await pub.publish(kinds.DELETE, {"target": e.id}) for e in standing]
        return Done(
            result=results[-1],
            profiles=profiles,
            target=target,
            undone=tuple(standing),
            not_consulted=_cut(reader),
        )


# -- follow, profile --------------------------------------------------------------------


async def follow(
    session: Session,
    who: str,
    *,
    unfollow: bool = False,
    alias: str | None = None,
    identity: Identity | None = None,
) -> Done | Unchanged:
    """Follow (or unfollow) ``who`` (a did, a petname, a local identity's name): signed
    only when it changes what the latest follow or unfollow of that subject says (spec
    0003 §3.6, 0007 #no-duplicates); following yourself is refused. ``alias`` is also
    saved as the reader's petname for them (checked before anything is signed)."""
    did = session.resolve(who)
    kind = kinds.UNFOLLOW if unfollow else kinds.FOLLOW
    if kind == kinds.FOLLOW and did == session.me():
        raise BadRequestError(
            "you cannot follow yourself: your own posts are in your timeline already"
        )
    config = session.config
    if alias:
        config.set_petname(alias, did)  # validates before anything is signed
    async with session.publisher(identity) as pub:
        reader = checks_reader(pub)  # spec 0007 #slow-lookups
        acts = await own_acts(reader, pub.did, [kinds.FOLLOW], chain=pub.chain)
        profiles = await profiles_of(reader, [pub.did, did])
        result = None
        if (did in acts.following) != (kind == kinds.FOLLOW):
            result = await pub.publish(kind, {"subject": did})
    if alias:
        config.save()
    if result is None:
        reason = "already-following" if kind == kinds.FOLLOW else "not-following"
        return Unchanged(reason=reason, subject=did, profiles=profiles, not_consulted=_cut(reader))
    return Done(result=result, profiles=profiles, subject=did, not_consulted=_cut(reader))


async def set_profile(
    session: Session,
    *,
    name: str | None = None,
    bio: str | None = None,
    identity: Identity | None = None,
) -> Done:
    """Publish a new profile: the fields not given are kept from the current one (the
    latest profile wins as a whole, spec 0003 §3.2); an empty value clears one."""
    if name is None and bio is None:
        raise BadRequestError("give --name and/or --bio")
    me = session.stored_identity().did
    async with session.publisher(identity) as pub:
        reader = checks_reader(pub)  # spec 0007 #slow-lookups
        current = (await profile_view(reader, me)).profiles.get(me)
        body: dict[str, Any] = dict(current.body or {}) if current is not None else {}
        for key, value in (("name", name), ("bio", bio)):
            if value is not None:
                body[key] = value
            if body.get(key) == "":
                del body[key]
        result = await pub.publish(kinds.PROFILE, body)
    # The profile just signed is the latest: names show it from now on (#own-name).
    return Done(
        result=result, profiles={result.event.author: result.event}, not_consulted=_cut(reader)
    )


# -- label --------------------------------------------------------------------------------


async def label(
    session: Session,
    subject: str | EventRef,
    value: str,
    *,
    neg: bool = False,
    exp: int | None = None,
    identity: Identity | None = None,
    blob: bool = False,
) -> Done:
    """Label ``subject`` (a did, or an event: full or short id) ``value`` as the acting
    identity (spec 0003 §3.9); ``neg`` retracts that label, ``exp`` ends it (ms).
    With ``blob``, ``subject`` is the 32-byte SHA-256 of an image (spec 0003
    #label-blob): the label is on every post that embeds it."""
    if not is_label_value(value):
        raise BadRequestError(f"label {value!r}: use 1-128 of a-z 0-9 -")
    body: dict[str, Any] = {"val": value}
    if blob:
        if not isinstance(subject, bytes) or len(subject) != 32:
            raise BadRequestError("an image is labeled by its hash: all 64 hex of its SHA-256")
        body["subject_type"] = kinds.LABEL_SUBJECT_BLOB
    if neg:
        body["neg"] = True
    if exp is not None:
        body["exp"] = exp
    async with session.publisher(identity) as pub:
        if isinstance(subject, str) and not subject.startswith("did:"):  # a short event id
            reader = Reader(pub.nodes, net=pub.net, timeout=pub.timeout)
            body["subject"] = await session.event_id(reader, subject)
        else:
            body["subject"] = subject
        result = await pub.publish(kinds.LABEL, body)
    target = body["subject"] if isinstance(body["subject"], bytes) else None
    subj = body["subject"] if isinstance(body["subject"], str) else None
    return Done(result=result, target=target, subject=subj)


async def announce_feed(
    session: Session, *, name: str, nodes: Sequence[str], description: str = ""
) -> Done:
    """Sign and publish a ``feed`` event (spec 0003 #feed): the feed ``name`` is served
    by ``nodes`` (1-8 URLs, asked in this order). Anyone may then subscribe to
    ``DID/name`` (spec 0007 #feeds). The caller checks the nodes serve it."""
    body = {
        "name": check_feed_name(name),
        "description": description,
        "nodes": check_feed_nodes(list(nodes), "nodes"),
    }
    if len(description.encode()) > MAX_FEED_DESCRIPTION_BYTES:
        raise BadRequestError(f"a feed's description is at most {MAX_FEED_DESCRIPTION_BYTES} bytes")
    async with session.publisher() as pub:
        result = await pub.publish(kinds.FEED, body)
    return Done(result=result)
