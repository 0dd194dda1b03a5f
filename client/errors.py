"""Client-side errors: local problems a person can fix, in the one ProtocolError tree.

::

    ProtocolError
    ├── KeystoreError             keystore-error     the home, a key or config file
    │   ├── IdentityExistsError   identity-exists
    │   ├── IdentityNotFoundError identity-not-found
    │   └── PassphraseError       bad-passphrase
    ├── ClientError               client-error       talking to nodes (spec 0007)
    │   ├── NoNodesError          no-nodes           no node configured or given
    │   ├── NodeUnreachableError  node-unreachable   connection refused, DNS, reset
    │   │   └── NodeTimeoutError  node-timeout       no answer within the per-node timeout
    │   ├── BadResponseError      bad-response       a node answered something unparsable
    │   ├── NoNodeAnsweredError   no-node-answered   a read that no node answered
    │   ├── PublishError          publish-failed     no node stored the event
    │   ├── UnknownIdError        unknown-id         no event id starts with that prefix
    │   ├── AmbiguousIdError      ambiguous-id       several event ids start with it
    │   ├── ImageError            bad-image          an image file that cannot be posted
    │   │   ├── UnsupportedImageError unsupported-image  not a PNG, JPEG, WebP or GIF
    │   │   ├── ImageTooLargeError    image-too-large    a file or a picture too big to open
    │   │   └── AltTextRequiredError  alt-required       --image without --alt (or --no-alt)
    │   ├── UploadError           upload-failed      no node took every image of a post
    │   ├── BlobMismatchError     blob-mismatch      a node served bytes a post does not name
    │   ├── BlobUnavailableError  blob-unavailable   no node served an image's bytes
    │   └── FeedUnavailableError  feed-unavailable   no serving node gave a feed's page
    ├── FilterError               filter-error       moderation config (spec 0006)
    │   ├── FilterNotFoundError   filter-not-found   no filter/type/labeler by that name
    │   └── FilterLoadError       filter-load        a custom filter cannot be loaded
    └── RecoveryPointError        recovery-point     where a recovery on a new home attaches
        ├── RecoveryPointRequiredError  recovery-point-required   not chosen (no terminal)
        ├── RecoveryPointAmbiguousError recovery-point-ambiguous  a prefix of several
        ├── RecoveryPointUnknownError   recovery-point-unknown    no such point
        └── RecoveryOutrankedError      recovery-outranked        it would be revoked

A node's own refusal (an HTTP error, a rejected event) is ``protocol.errors.RemoteError``
carrying the node's code and message.
"""

from __future__ import annotations

from typing import Any

from protocol.errors import ProtocolError

__all__ = [
    "AltTextRequiredError",
    "AmbiguousIdError",
    "BadResponseError",
    "BlobMismatchError",
    "BlobUnavailableError",
    "ClientError",
    "FeedUnavailableError",
    "FilterError",
    "FilterLoadError",
    "FilterNotFoundError",
    "IdentityExistsError",
    "IdentityNotFoundError",
    "ImageError",
    "ImageTooLargeError",
    "KeystoreError",
    "NoNodeAnsweredError",
    "NoNodesError",
    "NodeTimeoutError",
    "NodeUnreachableError",
    "PassphraseError",
    "PublishError",
    "RecoveryOutrankedError",
    "RecoveryPointAmbiguousError",
    "RecoveryPointError",
    "RecoveryPointRequiredError",
    "RecoveryPointUnknownError",
    "UnknownIdError",
    "UnsupportedImageError",
    "UploadError",
]


class KeystoreError(ProtocolError):
    """A keystore problem a person can fix; ``code`` is stable, the message says how."""

    code = "keystore-error"


class IdentityExistsError(KeystoreError):
    code = "identity-exists"


class IdentityNotFoundError(KeystoreError):
    code = "identity-not-found"


class PassphraseError(KeystoreError):
    """The key is sealed and no passphrase, or the wrong one, was given."""

    code = "bad-passphrase"


class ClientError(ProtocolError):
    """A problem talking to nodes; ``url`` names the node when there is one."""

    code = "client-error"

    def __init__(self, message: str = "", *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class NoNodesError(ClientError):
    code = "no-nodes"


class NodeUnreachableError(ClientError):
    """The node could not be reached (connection refused, DNS, reset, TLS)."""

    code = "node-unreachable"


class NodeTimeoutError(NodeUnreachableError):
    """The node did not answer within the per-node timeout."""

    code = "node-timeout"


class BadResponseError(ClientError):
    """The node answered, but not with what spec 0004 promises."""

    code = "bad-response"


class NoNodeAnsweredError(ClientError):
    """A read that every configured node failed: there is nothing to show, and an empty
    view would be a lie (spec 0007 #no-answer)."""

    code = "no-node-answered"


class PublishError(ClientError):
    """No node accepted the event; the message lists what each node said."""

    code = "publish-failed"


class UnknownIdError(ClientError):
    """A short event id that no configured node (nor this home) knows (spec 0007
    #short-ids)."""

    code = "unknown-id"


class AmbiguousIdError(ClientError):
    """A short event id that starts several event ids; ``candidates`` are their full
    ids (spec 0007 #short-ids)."""

    code = "ambiguous-id"

    def __init__(self, message: str = "", *, candidates: list[str] | None = None) -> None:
        super().__init__(message)
        self.candidates = list(candidates or [])

    @property
    def details(self) -> dict[str, object]:
        """Extra fields of the CLI's ``--json`` error document."""
        return {"candidates": self.candidates}


class ImageError(ClientError):
    """An image given to post that the client will not prepare (spec 0007 #images)."""

    code = "bad-image"


class UnsupportedImageError(ImageError):
    """Not a PNG, JPEG, WebP or GIF image (SVG, text, another format), or one that
    does not decode."""

    code = "unsupported-image"


class ImageTooLargeError(ImageError):
    """A file too large to open, or a picture of more pixels than the client decodes
    (a decompression bomb: a small file that would fill memory once decoded)."""

    code = "image-too-large"


class AltTextRequiredError(ImageError):
    """An image without a description: ``--alt`` for each ``--image``, or ``--no-alt``
    (spec 0007 #images)."""

    code = "alt-required"


class UploadError(ClientError):
    """No node took every image of a post; nothing was signed. The message lists what
    each node said."""

    code = "upload-failed"


class BlobMismatchError(ClientError):
    """A node served bytes that are not the image a post names (altered or swapped;
    spec 0003 #blob-hash); ``url`` names the node."""

    code = "blob-mismatch"


class BlobUnavailableError(ClientError):
    """No node served the verified bytes of an image; the message says what each did."""

    code = "blob-unavailable"


class FeedUnavailableError(ClientError):
    """No node serving a subscribed feed gave a usable page within the feed's
    deadline (spec 0007 #feed-fallback); the message says what each node did."""

    code = "feed-unavailable"
    status = 502


class FilterError(ProtocolError):
    """Moderation configuration: a filter or labeler that cannot be set up (spec 0006)."""

    code = "filter-error"


class FilterNotFoundError(FilterError):
    """No configured filter (or filter type, or labeler) by that name."""

    code = "filter-not-found"


class FilterLoadError(FilterError):
    """A custom filter could not be imported or built from its parameters."""

    code = "filter-load"


class RecoveryPointError(ProtocolError):
    """``murmur id recover`` on a home without the identity's chain: the event the
    recovery follows is the owner's choice, and this one cannot be used (spec 0007
    #recover-elsewhere). The message lists the choices for people; ``choices`` holds
    them as data (:func:`client.rebuild.point_doc`) for callers of the library."""

    code = "recovery-point"

    def __init__(self, message: str = "", *, choices: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.choices = list(choices or [])


class RecoveryPointRequiredError(RecoveryPointError):
    """No ``--after`` and no terminal to ask on: never attach at a node's head."""

    code = "recovery-point-required"


class RecoveryPointAmbiguousError(RecoveryPointError):
    """``--after`` is a prefix of more than one point."""

    code = "recovery-point-ambiguous"


class RecoveryPointUnknownError(RecoveryPointError):
    """``--after`` names no event a recovery can follow (not served, or under a key
    event that is not valid)."""

    code = "recovery-point-unknown"


class RecoveryOutrankedError(RecoveryPointError):
    """A recovery there would lose the fork choice (spec 0008 §8.6) to a key event of
    higher rank: it would be revoked, so it is not signed."""

    code = "recovery-outranked"
