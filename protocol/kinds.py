"""The event kinds and their body schemas (spec 0003; key events and moves, spec 0008).

Bodies are canonical maps. For a known kind, :func:`validate_body` checks the fields
spec 0003 defines: presence, type and limits. Keys a kind does not define are allowed
and ignored — that is how a kind grows without breaking old readers — but they are
still covered by the canonical-encoding rules and the body size limit. Unknown kinds
are valid events with opaque bodies: nodes store and forward them, clients ignore what
they do not understand (DESIGN.md, "Events").

The key events of spec 0008 (``genesis``, ``rotate``, ``recover``) and ``move`` are
checked here for structure only: field types, counts and the keys of one body being
distinct. Whether a key was entitled to sign one, against the author's key state, is
``protocol/keystate.py``'s business; checks that compare a body with its header's
``key`` are in ``protocol/events.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

from protocol.embeds import validate_embed
from protocol.errors import BadFieldError, InvalidDidError
from protocol.facets import validate_facets
from protocol.identity import (
    DidMethod,
    did_method,
    next_key_commitment,
)
from protocol.limits import (
    MAX_BIO_BYTES,
    MAX_FEED_DESCRIPTION_BYTES,
    MAX_FEED_NAME_BYTES,
    MAX_FEED_NODE_URL_BYTES,
    MAX_FEED_NODES,
    MAX_LABEL_BYTES,
    MAX_LANGS,
    MAX_LIST_MEMBERS,
    MAX_LIST_NAME_BYTES,
    MAX_NAME_BYTES,
    MAX_RECOVERY_KEYS,
    MAX_TAG_BYTES,
    MAX_TAGS,
    MAX_TEXT_BYTES,
    MAX_TS,
    MAX_WARN,
)

__all__ = [
    "DELETE",
    "FEED",
    "FOLLOW",
    "GENESIS",
    "KEY_EVENT_KINDS",
    "LABEL",
    "LABEL_SUBJECT_BLOB",
    "LIST",
    "LIKE",
    "LIST_PURPOSES",
    "MOVE",
    "POST",
    "PROFILE",
    "RECOVER",
    "REPOST",
    "ROTATE",
    "UNFOLLOW",
    "V1_KINDS",
    "is_feed_name",
    "is_feed_node_url",
    "is_key_event_kind",
    "is_known_kind",
    "is_label_value",
    "label_subject_type",
    "validate_body",
]

PROFILE: Final = "profile"
POST: Final = "post"
REPOST: Final = "repost"
LIKE: Final = "like"
FOLLOW: Final = "follow"
UNFOLLOW: Final = "unfollow"
DELETE: Final = "delete"
LABEL: Final = "label"
LIST: Final = "list"
GENESIS: Final = "genesis"
ROTATE: Final = "rotate"
RECOVER: Final = "recover"
MOVE: Final = "move"
#: A feed announcement (spec 0003 #feed, spec 0009): a name, a description and the
#: nodes that serve ``GET /v1/feeds/{name}``.
FEED: Final = "feed"

LIST_PURPOSES: Final = frozenset({"mute", "block", "curate"})

#: ``label.subject_type`` of a label on a blob: ``subject`` is the SHA-256 of an image's
#: bytes, as a post's embed names it (spec 0003 #label-blob, #embed).
LABEL_SUBJECT_BLOB: Final = "blob"

_LABEL_RE = re.compile(r"[a-z0-9-]+\Z")
# BCP 47, loosely: a 2–3 letter primary subtag, then alphanumeric subtags.
_LANG_RE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{1,8})*\Z")
_FEED_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*\Z")


def is_label_value(value: object) -> bool:
    """``[a-z0-9-]``, 1 to 128 bytes (labels and self-labels alike)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_LABEL_BYTES
        and _LABEL_RE.match(value) is not None
    )


def is_feed_name(value: object) -> bool:
    """A feed's name (spec 0003 #feed): 1 to 64 bytes of ``[a-z0-9_.-]``, starting with
    a letter or digit; what ``GET /v1/feeds/{name}`` and ``DID/NAME`` carry as is."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_FEED_NAME_BYTES
        and _FEED_NAME_RE.match(value) is not None
    )


def is_feed_node_url(value: object) -> bool:
    """A node's base URL in a ``feed`` event (spec 0003 #feed): ``http://`` or
    ``https://`` (lowercase), a non-empty host, then an optional path; at most 256
    bytes of printable ASCII; no userinfo (``@`` before the path), query or fragment.

    A client appends ``/v1/feeds/{name}`` to it, so anything that would make that
    ambiguous (a query, a fragment) or smuggle credentials (userinfo) is refused.
    """
    if not isinstance(value, str) or not 0 < len(value) <= MAX_FEED_NODE_URL_BYTES:
        return False
    if not value.isascii() or not all(33 <= ord(c) <= 126 for c in value):
        return False
    for scheme in ("https://", "http://"):
        if value.startswith(scheme):
            rest = value[len(scheme) :]
            break
    else:
        return False
    authority = rest.partition("/")[0]
    return bool(authority) and not any(c in value for c in "?#") and "@" not in authority


def label_subject_type(body: Mapping[str, Any]) -> str | None:
    """What a valid ``label`` body's ``subject`` names (spec 0003 #label-blob): None
    for the original subjects (a 32-byte bin is an event id, a str a did),
    :data:`LABEL_SUBJECT_BLOB` for a blob, or another value a reader MUST ignore the
    label for."""
    subject_type = body.get("subject_type")
    return subject_type if isinstance(subject_type, str) else None


# -- field checkers -------------------------------------------------------------------


def _text(body: dict[str, Any], key: str, max_bytes: int, *, required: bool) -> None:
    if key not in body:
        if required:
            raise BadFieldError(f"body.{key} is required")
        return
    value = body[key]
    if not isinstance(value, str):
        raise BadFieldError(f"body.{key} must be a string")
    if len(value.encode("utf-8")) > max_bytes:
        raise BadFieldError(f"body.{key} is longer than {max_bytes} bytes")


def _event_id(body: dict[str, Any], key: str, *, required: bool, where: str = "body") -> None:
    if key not in body:
        if required:
            raise BadFieldError(f"{where}.{key} is required")
        return
    value = body[key]
    if not isinstance(value, bytes) or len(value) != 32:
        raise BadFieldError(f"{where}.{key} must be a 32-byte event id")


def _did(body: dict[str, Any], key: str, *, only: DidMethod | None = None) -> None:
    """A did naming a person: a did:key or a did:murmur (spec 0008 #did-murmur), or
    only the method ``only``."""
    if key not in body:
        raise BadFieldError(f"body.{key} is required")
    value = body[key]
    if not isinstance(value, str):
        raise BadFieldError(f"body.{key} must be a did string")
    try:
        method = did_method(value)
    except InvalidDidError as exc:
        raise BadFieldError(f"body.{key}: {exc.message}") from None
    if only is not None and method != only:
        raise BadFieldError(f"body.{key} must be a did:{only}, not a did:{method}")


def _str_list(
    body: dict[str, Any], key: str, max_items: int, check: Callable[[str], bool], what: str
) -> None:
    if key not in body:
        return
    value = body[key]
    if not isinstance(value, list):
        raise BadFieldError(f"body.{key} must be a list")
    if len(value) > max_items:
        raise BadFieldError(f"body.{key} has more than {max_items} items")
    for item in value:
        if not isinstance(item, str) or not check(item):
            raise BadFieldError(f"body.{key} items must be {what}")


def _tag_ok(tag: str) -> bool:
    return 0 < len(tag.encode("utf-8")) <= MAX_TAG_BYTES


def _lang_ok(lang: str) -> bool:
    return len(lang) <= 35 and _LANG_RE.match(lang) is not None


# -- kinds ----------------------------------------------------------------------------


def _profile(body: dict[str, Any]) -> None:
    _text(body, "name", MAX_NAME_BYTES, required=False)
    _text(body, "bio", MAX_BIO_BYTES, required=False)


def _post(body: dict[str, Any]) -> None:
    _text(body, "text", MAX_TEXT_BYTES, required=True)
    if "reply" in body:
        reply = body["reply"]
        if not isinstance(reply, dict):
            raise BadFieldError("body.reply must be a map {root, parent}")
        _event_id(reply, "root", required=True, where="body.reply")
        _event_id(reply, "parent", required=True, where="body.reply")
    _event_id(body, "quote", required=False)
    _str_list(body, "tags", MAX_TAGS, _tag_ok, f"non-empty strings of <= {MAX_TAG_BYTES} bytes")
    _str_list(body, "langs", MAX_LANGS, _lang_ok, "BCP 47 language tags such as 'en' or 'pt-BR'")
    _str_list(body, "warn", MAX_WARN, is_label_value, "label values ([a-z0-9-], 1-128 bytes)")
    if "facets" in body:  # spec 0003 #facets; text is a str by now
        validate_facets(body["text"], body["facets"])
    if "embed" in body:  # spec 0003 #embed
        validate_embed(body["embed"])


def _target(body: dict[str, Any]) -> None:
    _event_id(body, "target", required=True)


def _subject_did(body: dict[str, Any]) -> None:
    _did(body, "subject")


def _label(body: dict[str, Any]) -> None:
    if "subject" not in body:
        raise BadFieldError("body.subject is required")
    subject = body["subject"]
    if isinstance(subject, bytes):
        if len(subject) != 32:
            raise BadFieldError("body.subject must be a 32-byte event id or a did")
    else:
        _did(body, "subject")
    # spec 0003 #label-blob. The subject rule above holds whatever the type, so a node
    # that predates subject_type accepts exactly the labels a newer one does; readers
    # ignore a label whose subject_type they do not know (a future subject).
    if "subject_type" in body:
        subject_type = body["subject_type"]
        if (
            not isinstance(subject_type, str)
            or not 0 < len(subject_type.encode("utf-8")) <= MAX_LABEL_BYTES
        ):
            raise BadFieldError(f"body.subject_type must be a string of 1-{MAX_LABEL_BYTES} bytes")
        if subject_type == LABEL_SUBJECT_BLOB and not isinstance(subject, bytes):
            raise BadFieldError(
                'body.subject must be the 32-byte SHA-256 of a blob when subject_type is "blob"'
            )
    if not is_label_value(body.get("val")):
        raise BadFieldError("body.val must be a label value ([a-z0-9-], 1-128 bytes)")
    if "neg" in body and not isinstance(body["neg"], bool):
        raise BadFieldError("body.neg must be a boolean")
    if "exp" in body:
        exp = body["exp"]
        if not isinstance(exp, int) or isinstance(exp, bool) or not 0 <= exp <= MAX_TS:
            raise BadFieldError(f"body.exp must be an integer in [0, {MAX_TS}] (ms since epoch)")


def _list(body: dict[str, Any]) -> None:
    _text(body, "name", MAX_LIST_NAME_BYTES, required=True)
    if not body["name"]:
        raise BadFieldError("body.name must not be empty")
    purpose = body.get("purpose")
    if not isinstance(purpose, str) or purpose not in LIST_PURPOSES:
        raise BadFieldError(f"body.purpose must be one of {sorted(LIST_PURPOSES)}")
    members = body.get("members")
    if not isinstance(members, list):
        raise BadFieldError("body.members must be a list of dids")
    if len(members) > MAX_LIST_MEMBERS:
        raise BadFieldError(f"body.members has more than {MAX_LIST_MEMBERS} dids")
    for member in members:
        if not isinstance(member, str):
            raise BadFieldError("body.members must be a list of dids")
        try:
            did_method(member)
        except InvalidDidError as exc:
            raise BadFieldError(f"body.members: {exc.message}") from None
    if len(set(members)) != len(members):
        raise BadFieldError("body.members has duplicates")


def _feed(body: dict[str, Any]) -> None:
    """spec 0003 #feed: who serves which feed, announced by its author."""
    if not is_feed_name(body.get("name")):
        raise BadFieldError(
            f"body.name must be 1-{MAX_FEED_NAME_BYTES} bytes of [a-z0-9_.-], "
            "starting with a letter or digit"
        )
    _text(body, "description", MAX_FEED_DESCRIPTION_BYTES, required=False)
    nodes = body.get("nodes")
    if not isinstance(nodes, list) or not 0 < len(nodes) <= MAX_FEED_NODES:
        raise BadFieldError(f"body.nodes must be a list of 1 to {MAX_FEED_NODES} node URLs")
    for url in nodes:
        if not is_feed_node_url(url):
            raise BadFieldError(
                f"body.nodes items must be http:// or https:// URLs of at most "
                f"{MAX_FEED_NODE_URL_BYTES} bytes, without userinfo, query or fragment"
            )
    if len(set(nodes)) != len(nodes):
        raise BadFieldError("body.nodes has duplicates")


# -- key events and moves (spec 0008) ----------------------------------------------------


def _key(body: dict[str, Any], key: str) -> bytes:
    """A required Ed25519 public key (or key commitment): a 32-byte bin."""
    if key not in body:
        raise BadFieldError(f"body.{key} is required")
    value = body[key]
    if not isinstance(value, bytes) or len(value) != 32:
        raise BadFieldError(f"body.{key} must be 32 bytes of bin")
    return value


def _key_state(
    body: dict[str, Any], *, recovery: Literal["required", "optional", "absent"]
) -> None:
    """``signing``, ``next`` and ``recovery`` of a key event (spec 0008 #genesis,
    #key-events); every key distinct (#distinct-keys).

    ``next`` is a commitment, not a key, so "distinct" means: it commits to none of the
    keys the body names. A next key equal to the signing key would hand a thief of S
    the rotation too; one equal to a recovery key would spend it on a rotation.
    """
    signing = _key(body, "signing")
    next_ = _key(body, "next")
    keys = [signing]
    if "recovery" in body:
        if recovery == "absent":
            raise BadFieldError("body.recovery: a rotate cannot change the recovery keys")
        value = body["recovery"]
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_RECOVERY_KEYS:
            raise BadFieldError(f"body.recovery must be a list of 1 to {MAX_RECOVERY_KEYS} keys")
        for item in value:
            if not isinstance(item, bytes) or len(item) != 32:
                raise BadFieldError("body.recovery items must be 32 bytes of bin")
        keys.extend(value)
    elif recovery == "required":
        raise BadFieldError("body.recovery is required")
    if len(set(keys)) != len(keys):
        raise BadFieldError("body.signing and body.recovery keys must all be distinct")
    if any(next_key_commitment(k) == next_ for k in keys):
        raise BadFieldError("body.next must not commit to the signing key or a recovery key")


def _genesis(body: dict[str, Any]) -> None:
    _key_state(body, recovery="required")
    if "from" in body:
        _did(body, "from", only="key")


def _rotate(body: dict[str, Any]) -> None:
    _key_state(body, recovery="absent")


def _recover(body: dict[str, Any]) -> None:
    _key_state(body, recovery="optional")


def _move(body: dict[str, Any]) -> None:
    _did(body, "to", only="murmur")


_VALIDATORS: Final[dict[str, Callable[[dict[str, Any]], None]]] = {
    PROFILE: _profile,
    POST: _post,
    REPOST: _target,
    LIKE: _target,
    FOLLOW: _subject_did,
    UNFOLLOW: _subject_did,
    DELETE: _target,
    LABEL: _label,
    LIST: _list,
    FEED: _feed,
    GENESIS: _genesis,
    ROTATE: _rotate,
    RECOVER: _recover,
    MOVE: _move,
}

#: The kinds defined by spec 0003, in the order the spec lists them.
V1_KINDS: Final = (PROFILE, POST, REPOST, LIKE, FOLLOW, UNFOLLOW, DELETE, LABEL, LIST)
#: The key events of spec 0008 #key-events: they change the author's key state.
KEY_EVENT_KINDS: Final = frozenset({GENESIS, ROTATE, RECOVER})


def is_known_kind(kind: str) -> bool:
    return kind in _VALIDATORS


def is_key_event_kind(kind: str) -> bool:
    return kind in KEY_EVENT_KINDS


def validate_body(kind: str, body: object) -> None:
    """Raise ``BadFieldError`` unless ``body`` is a valid body for ``kind``.

    Any map is a valid body for a kind this version does not know.
    """
    if not isinstance(body, dict):
        raise BadFieldError("body must be a map")
    validator = _VALIDATORS.get(kind)
    if validator is not None:
        validator(body)
