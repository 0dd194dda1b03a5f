"""The v1 event kinds and their body schemas (spec 0003).

Bodies are canonical maps. For a known kind, :func:`validate_body` checks the fields
spec 0003 defines: presence, type and limits. Keys a kind does not define are allowed
and ignored — that is how a kind grows without breaking old readers — but they are
still covered by the canonical-encoding rules and the body size limit. Unknown kinds
are valid events with opaque bodies: nodes store and forward them, clients ignore what
they do not understand (DESIGN.md, "Events").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from protocol.errors import BadFieldError, InvalidDidError
from protocol.identity import public_bytes_from_did
from protocol.limits import (
    MAX_BIO_BYTES,
    MAX_LABEL_BYTES,
    MAX_LANGS,
    MAX_LIST_MEMBERS,
    MAX_LIST_NAME_BYTES,
    MAX_NAME_BYTES,
    MAX_TAG_BYTES,
    MAX_TAGS,
    MAX_TEXT_BYTES,
    MAX_TS,
    MAX_WARN,
)

__all__ = [
    "DELETE",
    "FOLLOW",
    "LABEL",
    "LIST",
    "LIKE",
    "LIST_PURPOSES",
    "POST",
    "PROFILE",
    "REPOST",
    "UNFOLLOW",
    "V1_KINDS",
    "is_known_kind",
    "is_label_value",
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

LIST_PURPOSES: Final = frozenset({"mute", "block", "curate"})

_LABEL_RE = re.compile(r"[a-z0-9-]+\Z")
# BCP 47, loosely: a 2–3 letter primary subtag, then alphanumeric subtags.
_LANG_RE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{1,8})*\Z")


def is_label_value(value: object) -> bool:
    """``[a-z0-9-]``, 1 to 128 bytes (labels and self-labels alike)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_LABEL_BYTES
        and _LABEL_RE.match(value) is not None
    )


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


def _did(body: dict[str, Any], key: str) -> None:
    if key not in body:
        raise BadFieldError(f"body.{key} is required")
    value = body[key]
    if not isinstance(value, str):
        raise BadFieldError(f"body.{key} must be a did:key string")
    try:
        public_bytes_from_did(value)
    except InvalidDidError as exc:
        raise BadFieldError(f"body.{key}: {exc.message}") from None


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
            public_bytes_from_did(member)
        except InvalidDidError as exc:
            raise BadFieldError(f"body.members: {exc.message}") from None
    if len(set(members)) != len(members):
        raise BadFieldError("body.members has duplicates")


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
}

#: The kinds defined by spec 0003, in the order the spec lists them.
V1_KINDS: Final = tuple(_VALIDATORS)


def is_known_kind(kind: str) -> bool:
    return kind in _VALIDATORS


def validate_body(kind: str, body: object) -> None:
    """Raise ``BadFieldError`` unless ``body`` is a valid body for ``kind``.

    Any map is a valid body for a kind this version does not know.
    """
    if not isinstance(body, dict):
        raise BadFieldError("body must be a map")
    validator = _VALIDATORS.get(kind)
    if validator is not None:
        validator(body)
