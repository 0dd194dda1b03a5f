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
    │   └── PublishError          publish-failed     no node stored the event
    └── FilterError               filter-error       moderation config (spec 0006)
        ├── FilterNotFoundError   filter-not-found   no filter/type/labeler by that name
        └── FilterLoadError       filter-load        a custom filter cannot be loaded

A node's own refusal (an HTTP error, a rejected event) is ``protocol.errors.RemoteError``
carrying the node's code and message.
"""

from __future__ import annotations

from protocol.errors import ProtocolError

__all__ = [
    "BadResponseError",
    "ClientError",
    "FilterError",
    "FilterLoadError",
    "FilterNotFoundError",
    "IdentityExistsError",
    "IdentityNotFoundError",
    "KeystoreError",
    "NoNodeAnsweredError",
    "NoNodesError",
    "NodeTimeoutError",
    "NodeUnreachableError",
    "PassphraseError",
    "PublishError",
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


class FilterError(ProtocolError):
    """Moderation configuration: a filter or labeler that cannot be set up (spec 0006)."""

    code = "filter-error"


class FilterNotFoundError(FilterError):
    """No configured filter (or filter type, or labeler) by that name."""

    code = "filter-not-found"


class FilterLoadError(FilterError):
    """A custom filter could not be imported or built from its parameters."""

    code = "filter-load"
